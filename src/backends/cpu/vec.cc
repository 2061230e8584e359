#include "backends/cpu/vec.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PAGODA_VEC_HAS_AVX2 1
#include <immintrin.h>
#else
#define PAGODA_VEC_HAS_AVX2 0
#endif

namespace pagoda::cpu::vec {
namespace {

// Portable versions. Eight independent partial sums let the compiler keep a vector register of
// them without reassociating a single sum (which it may not do without -ffast-math).
float dot_portable(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j)
      acc[j] += a[i + j] * b[i + j];
  }
  float sum = 0.0f;
  for (; i < n; ++i)
    sum += a[i] * b[i];
  return sum + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void dot_tile_portable(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t n, int64_t k,
                       float* out, int64_t ldo) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j)
      out[i * ldo + j] = dot_portable(x + i * ldx, w + j * ldw, k);
  }
}

void axpy_portable(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] += a * x[i];
}

void scale_portable(float* y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] *= s;
}

#if PAGODA_VEC_HAS_AVX2
#define PAGODA_AVX2 __attribute__((target("avx2,fma")))

PAGODA_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

PAGODA_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i)
    sum += a[i] * b[i];
  return sum;
}

// Two activation rows against four weight rows: eight accumulators, and each loaded vector is
// used two (weights) or four (activations) times.
PAGODA_AVX2 void dot_2x4_avx2(const float* x0, const float* x1, const float* w, int64_t ldw, int64_t k, float* out0,
                              float* out1) {
  const float* w0 = w;
  const float* w1 = w + ldw;
  const float* w2 = w + 2 * ldw;
  const float* w3 = w + 3 * ldw;
  __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a02 = _mm256_setzero_ps(), a03 = _mm256_setzero_ps();
  __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps(), a12 = _mm256_setzero_ps(), a13 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v0 = _mm256_loadu_ps(x0 + i);
    const __m256 v1 = _mm256_loadu_ps(x1 + i);
    __m256 c = _mm256_loadu_ps(w0 + i);
    a00 = _mm256_fmadd_ps(v0, c, a00);
    a10 = _mm256_fmadd_ps(v1, c, a10);
    c = _mm256_loadu_ps(w1 + i);
    a01 = _mm256_fmadd_ps(v0, c, a01);
    a11 = _mm256_fmadd_ps(v1, c, a11);
    c = _mm256_loadu_ps(w2 + i);
    a02 = _mm256_fmadd_ps(v0, c, a02);
    a12 = _mm256_fmadd_ps(v1, c, a12);
    c = _mm256_loadu_ps(w3 + i);
    a03 = _mm256_fmadd_ps(v0, c, a03);
    a13 = _mm256_fmadd_ps(v1, c, a13);
  }
  float r[8] = {hsum(a00), hsum(a01), hsum(a02), hsum(a03), hsum(a10), hsum(a11), hsum(a12), hsum(a13)};
  for (; i < k; ++i) {
    r[0] += x0[i] * w0[i];
    r[1] += x0[i] * w1[i];
    r[2] += x0[i] * w2[i];
    r[3] += x0[i] * w3[i];
    r[4] += x1[i] * w0[i];
    r[5] += x1[i] * w1[i];
    r[6] += x1[i] * w2[i];
    r[7] += x1[i] * w3[i];
  }
  for (int j = 0; j < 4; ++j) {
    out0[j] = r[j];
    out1[j] = r[4 + j];
  }
}

// One activation row against four weight rows.
PAGODA_AVX2 void dot_1x4_avx2(const float* x0, const float* w, int64_t ldw, int64_t k, float* out0) {
  const float* w0 = w;
  const float* w1 = w + ldw;
  const float* w2 = w + 2 * ldw;
  const float* w3 = w + 3 * ldw;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v0 = _mm256_loadu_ps(x0 + i);
    a0 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(w0 + i), a0);
    a1 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(w1 + i), a1);
    a2 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(w2 + i), a2);
    a3 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(w3 + i), a3);
  }
  float r[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
  for (; i < k; ++i) {
    r[0] += x0[i] * w0[i];
    r[1] += x0[i] * w1[i];
    r[2] += x0[i] * w2[i];
    r[3] += x0[i] * w3[i];
  }
  for (int j = 0; j < 4; ++j)
    out0[j] = r[j];
}

PAGODA_AVX2 void dot_tile_avx2(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t n,
                               int64_t k, float* out, int64_t ldo) {
  const int64_t n4 = n - n % 4;
  int64_t i = 0;
  for (; i + 2 <= m; i += 2) {
    const float* x0 = x + i * ldx;
    const float* x1 = x0 + ldx;
    for (int64_t j = 0; j < n4; j += 4)
      dot_2x4_avx2(x0, x1, w + j * ldw, ldw, k, out + i * ldo + j, out + (i + 1) * ldo + j);
    for (int64_t j = n4; j < n; ++j) {
      out[i * ldo + j] = dot_avx2(x0, w + j * ldw, k);
      out[(i + 1) * ldo + j] = dot_avx2(x1, w + j * ldw, k);
    }
  }
  if (i < m) {
    const float* x0 = x + i * ldx;
    for (int64_t j = 0; j < n4; j += 4)
      dot_1x4_avx2(x0, w + j * ldw, ldw, k, out + i * ldo + j);
    for (int64_t j = n4; j < n; ++j)
      out[i * ldo + j] = dot_avx2(x0, w + j * ldw, k);
  }
}

PAGODA_AVX2 void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i)
    y[i] += a * x[i];
}

PAGODA_AVX2 void scale_avx2(float* y, float s, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(vs, _mm256_loadu_ps(y + i)));
  for (; i < n; ++i)
    y[i] *= s;
}

bool detect_avx2() {
  return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
}
#else
bool detect_avx2() {
  return false;
}
#endif

struct Kernels {
  float (*dot)(const float*, const float*, int64_t);
  void (*dot_tile)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*, int64_t);
  void (*axpy)(float, const float*, float*, int64_t);
  void (*scale)(float*, float, int64_t);
};

const Kernels& kernels() {
  static const Kernels k = [] {
#if PAGODA_VEC_HAS_AVX2
    if (detect_avx2()) return Kernels{dot_avx2, dot_tile_avx2, axpy_avx2, scale_avx2};
#endif
    return Kernels{dot_portable, dot_tile_portable, axpy_portable, scale_portable};
  }();
  return k;
}

}  // namespace

float dot(const float* a, const float* b, int64_t n) {
  return kernels().dot(a, b, n);
}

void dot_tile(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t n, int64_t k, float* out,
              int64_t ldo) {
  kernels().dot_tile(x, ldx, m, w, ldw, n, k, out, ldo);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  kernels().axpy(a, x, y, n);
}

void scale(float* y, float s, int64_t n) {
  kernels().scale(y, s, n);
}

bool uses_avx2() {
  return detect_avx2();
}

}  // namespace pagoda::cpu::vec
