#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// The norms work on the last dimension; x may have any number of leading dimensions (tokens, or
// (tokens, heads) for per-head q/k norms). out may be x itself.
//   out = x / sqrt(mean(x^2) + eps) * (weight + weight_offset); weight (hidden) f32.
void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps, float weight_offset = 0.0f);
// residual += x; x = rms_norm(residual), both in place.
void fused_add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, float weight_offset = 0.0f);
// out = (x - mean) / sqrt(var + eps) * weight + bias (bias may be null).
void layer_norm(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias, float eps);

}  // namespace pagoda::ops
