#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// out (..., n) f32 = x (..., k) f32 @ weight^T + bias; weight (n, k) f32, f16, bf16 or a GGUF block
// type (dequantized a few rows at a time, never whole); bias (n) f32 or null. out must not
// share memory with x.
void matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias = nullptr);

// matmul of one x by several weights: parts[i].out = x @ parts[i].weight^T + parts[i].bias, each
// exactly what matmul gives it, the outputs disjoint from each other and from x; the backend may
// share the work on x between them.
void matmul_shared(const Tensor& x, std::span<const MatmulPart> parts);

// matmul whose weight must be a block-quantized type: for call sites that mean to use one.
void quant_matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias = nullptr);

}  // namespace pagoda::ops
