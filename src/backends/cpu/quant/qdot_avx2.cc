// AVX2 integer-dot kernels. A 32-element block of weights is unpacked once into 32 bytes and then
// multiplied with the matching block of up to four activation rows: _mm256_maddubs_epi16 (unsigned
// x signed bytes, pairs summed to int16, which cannot saturate for these ranges: at most
// 2 * 128 * 127), _mm256_madd_epi16 to int32, then one float multiply-add by the two scales.
// Signed weights use the sign trick: |w| (unsigned) times x with w's sign moved onto it.
//
// For each activation row the kernels for R = 1..4 rows execute the same instructions in the same
// order (the rows never share an accumulator), so a row's result does not depend on how many rows
// are computed beside it. Scalar accumulations use explicit fused multiply-adds so that no
// compiler contraction decision can differ between the instantiations.

#include "backends/cpu/quant/qdot_avx2.h"

#if PAGODA_QDOT_HAS_AVX2

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>

#include "backends/cpu/quant/block_layout.h"

#define PAGODA_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace pagoda::cpu::qdot {
namespace {

namespace L = layout;

PAGODA_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A block scale. F16C is fine here (unlike in the bit-exact dequantizers): a scale that is a
// signalling NaN poisons the dot either way.
PAGODA_AVX2 inline float half(const uint8_t* p) {
  return _cvtsh_ss(L::read_u16(p));
}

PAGODA_AVX2 inline float fma_ss(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

// Eight int32 sums of the pairwise int16 products, as floats.
PAGODA_AVX2 inline __m256 pairs_to_ps(__m256i p16) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

// unsigned weight bytes x signed activation bytes
PAGODA_AVX2 inline __m256 dot_us(__m256i wu, __m256i x) {
  return pairs_to_ps(_mm256_maddubs_epi16(wu, x));
}

// signed weight bytes (|w| <= 127 or -128 never met with x = -128) x signed activation bytes
PAGODA_AVX2 inline __m256i mul_ss16(__m256i ws, __m256i x) {
  return _mm256_maddubs_epi16(_mm256_sign_epi8(ws, ws), _mm256_sign_epi8(x, ws));
}

PAGODA_AVX2 inline __m256i load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 16 bytes of packed nibbles -> 32 bytes: the low nibbles (elements 0-15), then the high ones.
PAGODA_AVX2 inline __m256i unpack_nibbles16(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// Byte e is 0xff when bit e of `bits` is set, else 0.
PAGODA_AVX2 inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i select = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
}

template <int R>
struct Acc {
  __m256 v[R];
  float mins[R];
  PAGODA_AVX2 Acc() {
    for (int r = 0; r < R; ++r) {
      v[r] = _mm256_setzero_ps();
      mins[r] = 0.0f;
    }
  }
  PAGODA_AVX2 void store(float* out, int64_t ldo) const {
    for (int r = 0; r < R; ++r)
      out[r * ldo] = hsum(v[r]) - mins[r];
  }
};

// x points at block 0 of the first activation row; row r is `stride` blocks further on.

template <int R>
PAGODA_AVX2 void rows_q8_0(const uint8_t* w, const ActBlock* x, int64_t stride, int64_t nb, float* out, int64_t ldo) {
  Acc<R> acc;
  for (int64_t b = 0; b < nb; ++b, w += L::q8_0::kBytes) {
    const __m256i q = load32(w + L::q8_0::kQs);
    const float dw = half(w + L::q8_0::kD);
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      const __m256 p = pairs_to_ps(mul_ss16(q, load32(a.q)));
      acc.v[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * a.d), acc.v[r]);
    }
  }
  acc.store(out, ldo);
}

template <int R>
PAGODA_AVX2 void rows_q4_0(const uint8_t* w, const ActBlock* x, int64_t stride, int64_t nb, float* out, int64_t ldo) {
  Acc<R> acc;
  for (int64_t b = 0; b < nb; ++b, w += L::q4_0::kBytes) {
    const __m256i q = _mm256_sub_epi8(unpack_nibbles16(w + L::q4_0::kQs), _mm256_set1_epi8(8));
    const float dw = half(w + L::q4_0::kD);
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      const __m256 p = pairs_to_ps(mul_ss16(q, load32(a.q)));
      acc.v[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * a.d), acc.v[r]);
    }
  }
  acc.store(out, ldo);
}

template <int R>
PAGODA_AVX2 void rows_q4_1(const uint8_t* w, const ActBlock* x, int64_t stride, int64_t nb, float* out, int64_t ldo) {
  Acc<R> acc;
  for (int64_t b = 0; b < nb; ++b, w += L::q4_1::kBytes) {
    const __m256i q = unpack_nibbles16(w + L::q4_1::kQs);
    const float dw = half(w + L::q4_1::kD);
    const float mw = half(w + L::q4_1::kM);
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      acc.v[r] = _mm256_fmadd_ps(dot_us(q, load32(a.q)), _mm256_set1_ps(dw * a.d), acc.v[r]);
      acc.mins[r] = fma_ss(-mw, a.dsum, acc.mins[r]);  // the minimum adds: subtract its negation
    }
  }
  acc.store(out, ldo);
}

template <int R>
PAGODA_AVX2 void rows_q5_0(const uint8_t* w, const ActBlock* x, int64_t stride, int64_t nb, float* out, int64_t ldo) {
  Acc<R> acc;
  for (int64_t b = 0; b < nb; ++b, w += L::q5_0::kBytes) {
    const __m256i high = _mm256_and_si256(bits_to_bytes(L::read_u32(w + L::q5_0::kQh)), _mm256_set1_epi8(0x10));
    const __m256i q = _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles16(w + L::q5_0::kQs), high), _mm256_set1_epi8(16));
    const float dw = half(w + L::q5_0::kD);
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      const __m256 p = pairs_to_ps(mul_ss16(q, load32(a.q)));
      acc.v[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * a.d), acc.v[r]);
    }
  }
  acc.store(out, ldo);
}

template <int R>
PAGODA_AVX2 void rows_q4_k(const uint8_t* w, const ActBlock* x, int64_t stride, int64_t nb, float* out, int64_t ldo) {
  Acc<R> acc;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += L::q4_k::kBytes) {
    const float d = half(w + L::q4_k::kD);
    const float dmin = half(w + L::q4_k::kDmin);
    float dsc[8];
    float dmn[8];
    for (int s = 0; s < 8; ++s) {
      uint8_t sc = 0;
      uint8_t mn = 0;
      L::k_scale_min(w + L::q4_k::kScales, s, &sc, &mn);
      dsc[s] = d * static_cast<float>(sc);
      dmn[s] = dmin * static_cast<float>(mn);
    }
    for (int run = 0; run < 4; ++run) {
      const __m256i qs = load32(w + L::q4_k::kQs + 32 * run);
      const __m256i halves[2] = {_mm256_and_si256(qs, low4), _mm256_and_si256(_mm256_srli_epi16(qs, 4), low4)};
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * run + h;
        for (int r = 0; r < R; ++r) {
          const ActBlock& a = x[r * stride + 8 * sb + s];
          acc.v[r] = _mm256_fmadd_ps(dot_us(halves[h], load32(a.q)), _mm256_set1_ps(dsc[s] * a.d), acc.v[r]);
          acc.mins[r] = fma_ss(dmn[s], a.dsum, acc.mins[r]);
        }
      }
    }
  }
  acc.store(out, ldo);
}

template <int R>
PAGODA_AVX2 void rows_q6_k(const uint8_t* w, const ActBlock* x, int64_t stride, int64_t nb, float* out, int64_t ldo) {
  Acc<R> acc;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i low2 = _mm256_set1_epi8(0x03);
  const __m256i bias = _mm256_set1_epi8(32);
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += L::q6_k::kBytes) {
    const float d = half(w + L::q6_k::kD);
    const auto* scales = reinterpret_cast<const int8_t*>(w + L::q6_k::kScales);
    for (int part = 0; part < 2; ++part) {
      const uint8_t* ql = w + L::q6_k::kQl + 64 * part;
      const __m256i ql_a = load32(ql);
      const __m256i ql_b = load32(ql + 32);
      const __m256i qh = load32(w + L::q6_k::kQh + 32 * part);
      // Chunk c (32 elements): low nibbles of ql_a, ql_b, then high nibbles of ql_a, ql_b; the
      // fifth and sixth bits are bit pair c of qh.
      const __m256i low[4] = {
          _mm256_and_si256(ql_a, low4),
          _mm256_and_si256(ql_b, low4),
          _mm256_and_si256(_mm256_srli_epi16(ql_a, 4), low4),
          _mm256_and_si256(_mm256_srli_epi16(ql_b, 4), low4),
      };
      for (int c = 0; c < 4; ++c) {
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), low2);
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(low[c], _mm256_slli_epi16(high, 4)), bias);
        const int s = 8 * part + 2 * c;  // the 16-element sub-blocks of this chunk: s and s + 1
        const __m256i scale16 = _mm256_set_m128i(_mm_set1_epi16(scales[s + 1]), _mm_set1_epi16(scales[s]));
        for (int r = 0; r < R; ++r) {
          const ActBlock& a = x[r * stride + 8 * sb + 4 * part + c];
          const __m256i p32 = _mm256_madd_epi16(mul_ss16(q, load32(a.q)), scale16);
          acc.v[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(d * a.d), acc.v[r]);
        }
      }
    }
  }
  acc.store(out, ldo);
}

using RowsFn = void (*)(const uint8_t*, const ActBlock*, int64_t, int64_t, float*, int64_t);

}  // namespace

bool qdot_cpu_has_avx2() {
  // F16C through CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
  return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0 && f16c;
}

PAGODA_AVX2 void quantize_row_avx2(const float* x, ActBlock* out, int64_t k) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    ActBlock& o = out[b];
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    __m256 nan = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float max_abs = _mm_cvtss_f32(m4);
    if (_mm256_movemask_ps(nan) != 0 || max_abs > 3.4028234663852886e38f) {
      o.d = __builtin_nanf("");
      o.dsum = o.d;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q), _mm256_setzero_si256());
      continue;
    }
    const float d = max_abs / 127.0f;
    const __m256 id = _mm256_set1_ps(max_abs != 0.0f ? 127.0f / max_abs : 0.0f);
    __m256i q[4];
    __m256i sum = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
      // cvtps rounds half to even (the default rounding mode), as nearbyint in the scalar code.
      q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
      sum = _mm256_add_epi32(sum, q[i]);
    }
    const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    // The packs work within 128-bit lanes: put the 32-bit groups back in element order.
    const __m256i ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q), ordered);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    o.d = d;
    o.dsum = d * static_cast<float>(_mm_cvtsi128_si32(s4));
  }
}

void dot_rows_avx2(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks,
                   int64_t m, float* out, int64_t ldo) {
  RowsFn fns[4];
  switch (t) {
    case DType::kQ4_0:
      fns[0] = rows_q4_0<1>, fns[1] = rows_q4_0<2>, fns[2] = rows_q4_0<3>, fns[3] = rows_q4_0<4>;
      break;
    case DType::kQ4_1:
      fns[0] = rows_q4_1<1>, fns[1] = rows_q4_1<2>, fns[2] = rows_q4_1<3>, fns[3] = rows_q4_1<4>;
      break;
    case DType::kQ5_0:
      fns[0] = rows_q5_0<1>, fns[1] = rows_q5_0<2>, fns[2] = rows_q5_0<3>, fns[3] = rows_q5_0<4>;
      break;
    case DType::kQ8_0:
      fns[0] = rows_q8_0<1>, fns[1] = rows_q8_0<2>, fns[2] = rows_q8_0<3>, fns[3] = rows_q8_0<4>;
      break;
    case DType::kQ4_K:
      fns[0] = rows_q4_k<1>, fns[1] = rows_q4_k<2>, fns[2] = rows_q4_k<3>, fns[3] = rows_q4_k<4>;
      break;
    case DType::kQ6_K:
      fns[0] = rows_q6_k<1>, fns[1] = rows_q6_k<2>, fns[2] = rows_q6_k<3>, fns[3] = rows_q6_k<4>;
      break;
    default: std::abort();  // callers check supports() first
  }
  // Groups of four activation rows (in L1 together) against each weight row in turn: every
  // unpacked weight block serves four rows.
  for (int64_t r0 = 0; r0 < m; r0 += 4) {
    const auto rows = static_cast<int>(std::min<int64_t>(4, m - r0));
    const RowsFn fn = fns[rows - 1];
    for (int64_t j = 0; j < n; ++j)
      fn(w + static_cast<uint64_t>(j) * row_bytes, x + r0 * blocks, blocks, blocks, out + r0 * ldo + j, ldo);
  }
}

}  // namespace pagoda::cpu::qdot

#endif  // PAGODA_QDOT_HAS_AVX2
