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
// F16C as well (CPUID leaf 1, ECX bit 29).
[[nodiscard]] bool cpu_has_f16c();
// quantize_row_f16 with vcvtps2ph (round to nearest even: fp32_to_fp16's bits); a group of eight
// holding a NaN goes through fp32_to_fp16, which keeps a signalling NaN's payload as it is.
void quantize_row_f16_f16c(const float* src, void* dst, int64_t n);
void dequantize_row_q4_1_avx2(const void* src, float* dst, int64_t n);
void dequantize_row_q4_k_avx2(const void* src, float* dst, int64_t n);
void dequantize_row_q6_k_avx2(const void* src, float* dst, int64_t n);
void dequantize_row_q8_0_avx2(const void* src, float* dst, int64_t n);
#endif

}  // namespace pagoda::cpu
