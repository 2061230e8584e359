#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// x (..., 2 * d) = [gate | up] f32; out (..., d) = act(gate) * up. gelu is the exact (erf) GELU,
// gelu_tanh its tanh approximation.
void act_and_mul(Tensor& out, const Tensor& x, ActivationKind act);
void silu_and_mul(Tensor& out, const Tensor& x);
void gelu_and_mul(Tensor& out, const Tensor& x);
void gelu_tanh_and_mul(Tensor& out, const Tensor& x);

// out = act(x), same shape; out may be x itself.
void activation(Tensor& out, const Tensor& x, ActivationKind act);
void gelu(Tensor& out, const Tensor& x);

}  // namespace pagoda::ops
