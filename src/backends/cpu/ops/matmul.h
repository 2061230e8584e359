#pragma once

// The CPU matrix product behind matmul and the MoE experts, on raw pointers.

#include <cstdint>

#include "backends/cpu/thread_pool.h"
#include "core/dtype.h"

namespace pagoda::cpu {

// out (m, n) = x (m, k) @ w^T (+ bias (n) when not null). Rows of x are ldx floats apart and rows
// of out ldo floats apart; w holds n rows of k elements of `wtype` (any type dequantize_row
// supports), each dtype_row_bytes(wtype, k) bytes, back to back.
void gemm(ThreadPool& pool, const float* x, int64_t ldx, int64_t m, const void* w, DType wtype, int64_t n, int64_t k,
          const float* bias, float* out, int64_t ldo);

}  // namespace pagoda::cpu
