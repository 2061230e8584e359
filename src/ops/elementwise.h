#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// out = a + b, all f32 of one shape; out may be a or b.
void add(Tensor& out, const Tensor& a, const Tensor& b);
// x *= s, in place (f32).
void scale(Tensor& x, float s);
// x = cap * tanh(x / cap), in place (f32); cap > 0.
void softcap(Tensor& x, float cap);

}  // namespace pagoda::ops
