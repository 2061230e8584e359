#include "backends/cpu/ops/attention_avx2.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "backends/cpu/vec.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>

#include "backends/cpu/ops/exp_avx2.h"

namespace pagoda::cpu::attn {

bool available() {
  return vec::uses_avx2();
}

bool available_f16() {
  // F16C through CPUID leaf 1 (ECX bit 29).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return available() && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}

// Eight elements of a key or value row as floats: f32 loaded, f16 converted (exact for every f16
// value; F16C only quiets a signalling NaN, which stays a NaN).
PAGODA_EXP_AVX2 inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float load1(const float* p) {
  return *p;
}
__attribute__((target("f16c"))) inline float load1(const uint16_t* p) {
  return _cvtsh_ss(*p);
}

// Four keys at a time (a last partial group repeats its last key and drops the extra lanes), one
// accumulator per key over the head dimension in steps of eight, reduced together: every score
// goes through the same instructions whatever its lane, so it depends only on q and its key.
template <typename T>
__attribute__((target("avx2,fma,f16c"))) void scores_of(const float* q, const T* keys, int64_t n, int64_t hs,
                                                        float scale, float* out) {
  const int64_t hs8 = hs - hs % 8;
  for (int64_t j = 0; j < n; j += 4) {
    const T* k[4];
    for (int t = 0; t < 4; ++t)
      k[t] = keys + std::min<int64_t>(j + t, n - 1) * hs;
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t d = 0; d < hs8; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      for (int t = 0; t < 4; ++t)
        a[t] = _mm256_fmadd_ps(qv, load8(k[t] + d), a[t]);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    alignas(16) float sums[4];
    _mm_store_ps(sums, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    for (int t = 0; t < 4 && j + t < n; ++t) {
      float sum = sums[t];
      for (int64_t d = hs8; d < hs; ++d)
        sum = std::fma(q[d], load1(k[t] + d), sum);
      out[j + t] = scale * sum;
    }
  }
}

void scores(const float* q, const float* keys, int64_t n, int64_t hs, float scale, float* out) {
  scores_of(q, keys, n, hs, scale, out);
}

void scores(const float* q, const uint16_t* keys, int64_t n, int64_t hs, float scale, float* out) {
  scores_of(q, keys, n, hs, scale, out);
}

PAGODA_EXP_AVX2 float exp_sum(float* p, int64_t n, float max) {
  const __m256 vmax = _mm256_set1_ps(max);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(p + j, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(p + j), vmax)));
  if (j < n) {
    alignas(32) float t[8] = {};
    for (int64_t i = j; i < n; ++i)
      t[i - j] = p[i];
    _mm256_store_ps(t, exp_avx2(_mm256_sub_ps(_mm256_load_ps(t), vmax)));
    for (int64_t i = j; i < n; ++i)
      p[i] = t[i - j];
  }
  float sum = 0.0f;
  for (j = 0; j < n; ++j)
    sum += p[j];
  return sum;
}

// Eight-float columns [d, d + 8 W) of acc, held in registers over all n keys.
template <int W, typename T>
__attribute__((target("avx2,fma,f16c"))) inline void accumulate_cols(const float* p, const T* values, int64_t n,
                                                                     int64_t hs, float* acc) {
  __m256 a[W];
  for (int c = 0; c < W; ++c)
    a[c] = _mm256_loadu_ps(acc + 8 * c);
  for (int64_t j = 0; j < n; ++j) {
    const __m256 pj = _mm256_set1_ps(p[j]);
    const T* v = values + j * hs;
    for (int c = 0; c < W; ++c)
      a[c] = _mm256_fmadd_ps(pj, load8(v + 8 * c), a[c]);
  }
  for (int c = 0; c < W; ++c)
    _mm256_storeu_ps(acc + 8 * c, a[c]);
}

template <typename T>
__attribute__((target("avx2,fma,f16c"))) void accumulate_of(const float* p, const T* values, int64_t n, int64_t hs,
                                                            float* acc) {
  int64_t d = 0;
  for (; d + 64 <= hs; d += 64)
    accumulate_cols<8>(p, values + d, n, hs, acc + d);
  for (; d + 8 <= hs; d += 8)
    accumulate_cols<1>(p, values + d, n, hs, acc + d);
  for (; d < hs; ++d) {
    for (int64_t j = 0; j < n; ++j)
      acc[d] = std::fma(p[j], load1(values + j * hs + d), acc[d]);
  }
}

void accumulate(const float* p, const float* values, int64_t n, int64_t hs, float* acc) {
  accumulate_of(p, values, n, hs, acc);
}

void accumulate(const float* p, const uint16_t* values, int64_t n, int64_t hs, float* acc) {
  accumulate_of(p, values, n, hs, acc);
}

}  // namespace pagoda::cpu::attn

#else

namespace pagoda::cpu::attn {
bool available() {
  return false;
}
bool available_f16() {
  return false;
}
void scores(const float*, const float*, int64_t, int64_t, float, float*) {
  std::abort();
}
void scores(const float*, const uint16_t*, int64_t, int64_t, float, float*) {
  std::abort();
}
float exp_sum(float*, int64_t, float) {
  std::abort();
}
void accumulate(const float*, const float*, int64_t, int64_t, float*) {
  std::abort();
}
void accumulate(const float*, const uint16_t*, int64_t, int64_t, float*) {
  std::abort();
}
}  // namespace pagoda::cpu::attn

#endif
