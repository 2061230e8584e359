#include "backends/cpu/quant/dequantize_avx2.h"

#if PAGODA_DEQUANT_HAS_AVX2

#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#include "backends/cpu/quant/block_layout.h"
#include "backends/cpu/quant/float_convert.h"

// The target attribute (rather than a global -mavx2) keeps the library runnable on CPUs without
// AVX2; the dispatcher checks cpu_has_avx2() first.
#define PAGODA_AVX2 __attribute__((target("avx2")))

namespace pagoda::cpu {
namespace {

namespace L = layout;

// Eight bytes (the low half of `v`) widened to eight floats, unsigned or signed.
PAGODA_AVX2 inline __m256 u8x8_to_ps(__m128i v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}
PAGODA_AVX2 inline __m256 i8x8_to_ps(__m128i v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

// dst[0..15] = scale * q - min for the 16 unsigned bytes of `q`.
PAGODA_AVX2 inline void scale_sub_u8x16(__m128i q, __m256 scale, __m256 min, float* dst) {
  _mm256_storeu_ps(dst, _mm256_sub_ps(_mm256_mul_ps(scale, u8x8_to_ps(q)), min));
  _mm256_storeu_ps(dst + 8, _mm256_sub_ps(_mm256_mul_ps(scale, u8x8_to_ps(_mm_srli_si128(q, 8))), min));
}

// dst[0..15] = scale * q for the 16 signed bytes of `q`.
PAGODA_AVX2 inline void scale_i8x16(__m128i q, __m256 scale, float* dst) {
  _mm256_storeu_ps(dst, _mm256_mul_ps(scale, i8x8_to_ps(q)));
  _mm256_storeu_ps(dst + 8, _mm256_mul_ps(scale, i8x8_to_ps(_mm_srli_si128(q, 8))));
}

}  // namespace

bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") != 0;
}

bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return cpu_has_avx2() && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}

__attribute__((target("avx2,f16c"))) void quantize_row_f16_f16c(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  const auto scalar = [&](int64_t i) {
    const uint16_t h = fp32_to_fp16(src[i]);
    std::memcpy(p + 2 * i, &h, sizeof h);
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      for (int64_t j = i; j < i + 8; ++j)
        scalar(j);
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 2 * i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i)
    scalar(i);
}

// Integer arithmetic as fp16_to_fp32 does it, eight at a time (vcvtph2ps would quiet signalling
// NaNs): normal halves move their exponent bias from 15 to 127, infinities and NaNs get an
// all-ones exponent with the payload kept, subnormals are mantissa * 2^-24 computed exactly.
PAGODA_AVX2 void dequantize_row_f16_avx2(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  const __m256i magnitude_mask = _mm256_set1_epi32(0x7fff);
  const __m256i sign_mask = _mm256_set1_epi32(0x8000);
  const __m256i rebias = _mm256_set1_epi32(112 << 23);
  const __m256i all_ones_exponent = _mm256_set1_epi32(0x7f800000);
  const __m256i largest_finite = _mm256_set1_epi32(0x7bff);
  const __m256i smallest_normal = _mm256_set1_epi32(0x0400);
  const __m256 subnormal_unit = _mm256_set1_ps(0x1p-24f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    const __m256i magnitude = _mm256_and_si256(h, magnitude_mask);
    const __m256i shifted = _mm256_slli_epi32(magnitude, 13);
    const __m256i normal = _mm256_add_epi32(shifted, rebias);
    const __m256i special = _mm256_or_si256(shifted, all_ones_exponent);
    const __m256i subnormal = _mm256_castps_si256(_mm256_mul_ps(_mm256_cvtepi32_ps(magnitude), subnormal_unit));
    __m256i bits = _mm256_blendv_epi8(normal, special, _mm256_cmpgt_epi32(magnitude, largest_finite));
    bits = _mm256_blendv_epi8(bits, subnormal, _mm256_cmpgt_epi32(smallest_normal, magnitude));
    bits = _mm256_or_si256(bits, _mm256_slli_epi32(_mm256_and_si256(h, sign_mask), 16));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(bits));
  }
  for (; i < n; ++i)
    dst[i] = L::read_f16(p + 2 * i);
}

PAGODA_AVX2 void dequantize_row_q4_1_avx2(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (int64_t blk = 0; blk < n / L::kQK; ++blk, b += L::q4_1::kBytes, dst += L::kQK) {
    const __m256 d = _mm256_set1_ps(L::read_f16(b + L::q4_1::kD));
    const __m256 m = _mm256_set1_ps(L::read_f16(b + L::q4_1::kM));
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + L::q4_1::kQs));
    const __m128i lo = _mm_and_si128(qs, low4);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low4);
    // (d * q) + m, as the reference: product first, then the sum.
    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(lo)), m));
    _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(lo, 8))), m));
    _mm256_storeu_ps(dst + 16, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(hi)), m));
    _mm256_storeu_ps(dst + 24, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(hi, 8))), m));
  }
}

PAGODA_AVX2 void dequantize_row_q8_0_avx2(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t blk = 0; blk < n / L::kQK; ++blk, b += L::q8_0::kBytes, dst += L::kQK) {
    const __m256 d = _mm256_set1_ps(L::read_f16(b + L::q8_0::kD));
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + L::q8_0::kQs));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + L::q8_0::kQs + 16));
    scale_i8x16(q0, d, dst);
    scale_i8x16(q1, d, dst + 16);
  }
}

PAGODA_AVX2 void dequantize_row_q4_k_avx2(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q4_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f16(b + L::q4_k::kD);
    const float dmin = L::read_f16(b + L::q4_k::kDmin);
    for (int r = 0; r < 4; ++r) {  // run r: low nibbles are sub-block 2r, high nibbles 2r+1
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + L::q4_k::kQs + 32 * r));
      const __m256i nibbles[2] = {_mm256_and_si256(qs, low4), _mm256_and_si256(_mm256_srli_epi16(qs, 4), low4)};
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * r + h;
        uint8_t sc = 0;
        uint8_t mn = 0;
        L::k_scale_min(b + L::q4_k::kScales, s, &sc, &mn);
        const __m256 dl = _mm256_set1_ps(d * static_cast<float>(sc));
        const __m256 ml = _mm256_set1_ps(dmin * static_cast<float>(mn));
        float* out = dst + 32 * s;
        scale_sub_u8x16(_mm256_castsi256_si128(nibbles[h]), dl, ml, out);
        scale_sub_u8x16(_mm256_extracti128_si256(nibbles[h], 1), dl, ml, out + 16);
      }
    }
  }
}

PAGODA_AVX2 void dequantize_row_q6_k_avx2(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i low2 = _mm256_set1_epi8(0x03);
  const __m256i bias = _mm256_set1_epi8(32);
  for (int64_t blk = 0; blk < n / L::kQK_K; ++blk, b += L::q6_k::kBytes, dst += L::kQK_K) {
    const float d = L::read_f16(b + L::q6_k::kD);
    const auto* scales = reinterpret_cast<const int8_t*>(b + L::q6_k::kScales);
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b + L::q6_k::kQl + 64 * half;
      const __m256i ql_a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i ql_b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + L::q6_k::kQh + 32 * half));
      // Chunk c (32 elements): low nibbles of ql_a, ql_b, then high nibbles of ql_a, ql_b; the
      // fifth and sixth bits are bit pair c of qh.
      const __m256i low[4] = {
          _mm256_and_si256(ql_a, low4),
          _mm256_and_si256(ql_b, low4),
          _mm256_and_si256(_mm256_srli_epi16(ql_a, 4), low4),
          _mm256_and_si256(_mm256_srli_epi16(ql_b, 4), low4),
      };
      const __m256i high[4] = {
          _mm256_and_si256(qh, low2),
          _mm256_and_si256(_mm256_srli_epi16(qh, 2), low2),
          _mm256_and_si256(_mm256_srli_epi16(qh, 4), low2),
          _mm256_and_si256(_mm256_srli_epi16(qh, 6), low2),
      };
      for (int c = 0; c < 4; ++c) {
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(low[c], _mm256_slli_epi16(high[c], 4)), bias);
        const int s = 8 * half + 2 * c;  // two 16-element sub-blocks per chunk
        float* out = dst + 16 * s;
        scale_i8x16(_mm256_castsi256_si128(q), _mm256_set1_ps(d * static_cast<float>(scales[s])), out);
        scale_i8x16(_mm256_extracti128_si256(q, 1), _mm256_set1_ps(d * static_cast<float>(scales[s + 1])), out + 16);
      }
    }
  }
}

}  // namespace pagoda::cpu

#endif  // PAGODA_DEQUANT_HAS_AVX2
