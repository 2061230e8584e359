#pragma once

// Dequantization of rows of GGUF block types into float32 on the CPU.
//
// Every function produces bit-for-bit the values of the `gguf` Python package's reference
// (gguf/quants.py, numpy float32 arithmetic). That holds whatever the order of the multiplications
// and whether the compiler fuses a multiply and an add: a half-precision scale has 11 significant
// bits and the integers it is multiplied by (a sub-block scale times a quant) at most 12 (Q6_K:
// 127 * 31), so every product fits float32's 24-bit significand and is exact, subnormal scales
// included (their products are integer multiples of 2^-24). The one rounding is the final addition
// of a min, as in the reference. (Q8_K's scale is a float32; its single product rounds once.)
//
// The per-type functions take `n` elements (a whole number of blocks; the caller checks) and read
// n / block_size(type) blocks from `src`, which need not be aligned. They are the portable scalar
// reference; `dequantize_row` picks the fastest kernel this CPU runs and checks its arguments.

#include <cstdint>

#include "core/dtype.h"

namespace pagoda::cpu {

void dequantize_row_f32(const void* src, float* dst, int64_t n);
void dequantize_row_f16(const void* src, float* dst, int64_t n);
void dequantize_row_bf16(const void* src, float* dst, int64_t n);
void dequantize_row_q4_0(const void* src, float* dst, int64_t n);
void dequantize_row_q4_1(const void* src, float* dst, int64_t n);
void dequantize_row_q5_0(const void* src, float* dst, int64_t n);
void dequantize_row_q5_1(const void* src, float* dst, int64_t n);
void dequantize_row_q8_0(const void* src, float* dst, int64_t n);
void dequantize_row_q2_k(const void* src, float* dst, int64_t n);
void dequantize_row_q3_k(const void* src, float* dst, int64_t n);
void dequantize_row_q4_k(const void* src, float* dst, int64_t n);
void dequantize_row_q5_k(const void* src, float* dst, int64_t n);
void dequantize_row_q6_k(const void* src, float* dst, int64_t n);
void dequantize_row_q8_k(const void* src, float* dst, int64_t n);

// The inverse conversions for the plain float types (for building test data and for writing
// activations back): round to nearest even as numpy and ggml do.
void quantize_row_f16(const float* src, void* dst, int64_t n);
void quantize_row_bf16(const float* src, void* dst, int64_t n);

// Whether `dequantize_row` implements `t`.
[[nodiscard]] bool can_dequantize(DType t);

// Dequantizes `n` elements of type `t` with the fastest kernel for this CPU. Throws Error
// kUnsupported naming the type when it has no implementation, and kInvalidArgument when `n` is
// negative or not a whole number of blocks.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// The same with the portable scalar kernels only, for checking the fast ones.
void dequantize_row_scalar(DType t, const void* src, float* dst, int64_t n);

// Whether `dequantize_row` uses a vectorized kernel for `t` on this CPU.
[[nodiscard]] bool has_fast_dequantize(DType t);

}  // namespace pagoda::cpu
