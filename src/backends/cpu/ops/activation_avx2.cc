#include "backends/cpu/ops/activation_avx2.h"

#include "backends/cpu/vec.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#define PAGODA_AVX2 __attribute__((target("avx2,fma")))

namespace pagoda::cpu {
namespace {

// exp(x): x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two for an exact n ln2), a degree-6
// polynomial for exp(r) (Cephes' expf coefficients), and 2^n put into the exponent. Inputs are
// clamped to +-88.37 (results from ~1e-38 to ~2.4e38); a NaN passes through the clamps.
PAGODA_AVX2 inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n is in [-128, 128]: split 2^n in two factors so that neither exponent leaves the normal range.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 s2 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

template <ActivationKind kAct>
PAGODA_AVX2 inline __m256 gated(__m256 g, __m256 u) {
  __m256 z;  // act(g) = g / (1 + exp(-z))
  if constexpr (kAct == ActivationKind::kSilu) {
    z = g;
  } else {
    // 2 sqrt(2 / pi) (g + 0.044715 g^3)
    const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
    z = _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.79788456080286536f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
  }
  const __m256 e = exp_ps(_mm256_xor_ps(z, _mm256_set1_ps(-0.0f)));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

template <ActivationKind kAct>
PAGODA_AVX2 void rows(const float* x, float* out, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gate = x + r * 2 * d;
    const float* up = gate + d;
    float* o = out + r * d;
    int64_t i = 0;
    for (; i + 8 <= d; i += 8)
      _mm256_storeu_ps(o + i, gated<kAct>(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < d) {
      alignas(32) float g[8] = {};
      alignas(32) float u[8] = {};
      alignas(32) float v[8];
      for (int64_t j = i; j < d; ++j) {
        g[j - i] = gate[j];
        u[j - i] = up[j];
      }
      _mm256_store_ps(v, gated<kAct>(_mm256_load_ps(g), _mm256_load_ps(u)));
      for (int64_t j = i; j < d; ++j)
        o[j] = v[j - i];
    }
  }
}

}  // namespace

bool act_and_mul_rows_avx2(const float* x, float* out, int64_t rows_, int64_t d, ActivationKind act) {
  if (!vec::uses_avx2()) return false;
  switch (act) {
    case ActivationKind::kSilu: rows<ActivationKind::kSilu>(x, out, rows_, d); return true;
    case ActivationKind::kGeluTanh: rows<ActivationKind::kGeluTanh>(x, out, rows_, d); return true;
    case ActivationKind::kGelu: return false;
  }
  return false;
}

}  // namespace pagoda::cpu

#else

namespace pagoda::cpu {
bool act_and_mul_rows_avx2(const float*, float*, int64_t, int64_t, ActivationKind) {
  return false;
}
}  // namespace pagoda::cpu

#endif
