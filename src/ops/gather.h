#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// out (n, cols) = rows indices (n) i32 of x (rows, cols), any dtype (out has x's). An index
// outside [0, rows) is an error.
void gather_rows(Tensor& out, const Tensor& x, const Tensor& indices);

}  // namespace pagoda::ops
