#pragma once

// The CPU matrix product behind matmul and the MoE experts, on raw pointers.

#include <cstdint>

#include "backends/cpu/thread_pool.h"
#include "core/dtype.h"

namespace pagoda::cpu {

// out (m, n) = x (m, k) @ w^T (+ bias (n) when not null). Rows of x are ldx floats apart and rows
// of out ldo floats apart; w holds n rows of k elements of `wtype` (any type dequantize_row
// supports), each dtype_row_bytes(wtype, k) bytes, back to back. With `quantize_activations`,
// weights that uses_int8_kernel() accepts are multiplied with 8-bit quantized activations in
// integer arithmetic (see matmul.cc), and bf16 weights that uses_bf16_kernel() accepts with
// activations rounded to bf16; other weights always take the float path. `packed`, when not null,
// is w repacked by qdot::pack_rows8 (or bf16dot::pack_rows16 for bf16), which those paths then
// read instead of w.
void gemm(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const void* w, DType wtype, int64_t n, int64_t k,
          const float* bias, float* out, int64_t ldo, bool quantize_activations, const uint8_t* packed = nullptr);

// Whether a (n, k) weight of `wtype` has an integer-dot kernel.
[[nodiscard]] bool uses_int8_kernel(DType wtype, int64_t k);
// Whether bf16 weights have a bf16-pair kernel on this CPU (AMX-BF16 or AVX512-BF16).
[[nodiscard]] bool uses_bf16_kernel(DType wtype);

}  // namespace pagoda::cpu
