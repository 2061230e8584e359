#include "backends/cpu/ops/activation_avx2.h"

#include "backends/cpu/vec.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "backends/cpu/ops/exp_avx2.h"

namespace pagoda::cpu {
namespace {

template <ActivationKind kAct>
PAGODA_EXP_AVX2 inline __m256 gated(__m256 g, __m256 u) {
  __m256 z;  // act(g) = g / (1 + exp(-z))
  if constexpr (kAct == ActivationKind::kSilu) {
    z = g;
  } else {
    // 2 sqrt(2 / pi) (g + 0.044715 g^3)
    const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
    z = _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.79788456080286536f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
  }
  const __m256 e = exp_avx2(_mm256_xor_ps(z, _mm256_set1_ps(-0.0f)));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

template <ActivationKind kAct>
PAGODA_EXP_AVX2 void rows(const float* x, float* out, int64_t rows, int64_t d) {
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
