#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// out (rows) i32 = index of the largest value of each row of logits (rows, vocab) f32; ties go to
// the lowest index and NaNs never win (a row of NaNs gives 0).
void argmax(Tensor& out, const Tensor& logits);

}  // namespace pagoda::ops
