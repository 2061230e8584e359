#pragma once

// AVX2 kernels for the block types of the default models and for f16. Each gives exactly the scalar kernel's
// bits (the same float32 operations); call them only when cpu_has_avx2().

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PAGODA_DEQUANT_HAS_AVX2 1
#else
#define PAGODA_DEQUANT_HAS_AVX2 0
#endif

namespace pagoda::cpu {

#if PAGODA_DEQUANT_HAS_AVX2
[[nodiscard]] bool cpu_has_avx2();

void dequantize_row_f16_avx2(const void* src, float* dst, int64_t n);
void dequantize_row_q4_1_avx2(const void* src, float* dst, int64_t n);
void dequantize_row_q4_k_avx2(const void* src, float* dst, int64_t n);
void dequantize_row_q6_k_avx2(const void* src, float* dst, int64_t n);
void dequantize_row_q8_0_avx2(const void* src, float* dst, int64_t n);
#endif

}  // namespace pagoda::cpu
