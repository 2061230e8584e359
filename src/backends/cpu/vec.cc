#include "backends/cpu/vec.h"

#include "backends/cpu/isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PAGODA_VEC_HAS_AVX2 1
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() (a self-initialised variable) as their
// unused merge source, which it then reports as uninitialized wherever they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cmath>
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

// R activation rows against C weight rows: R * C accumulators, one per output, each a single
// chain of fused multiply-adds over k in steps of eight, then one horizontal sum and the scalar
// rest. Every output goes through the same arithmetic whatever R, C and its place in the tile, so
// a row's result never depends on the rows around it.
template <int R, int C>
PAGODA_AVX2 void dot_rxc_avx2(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t k, float* out,
                              int64_t ldo) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      acc[r][c] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 xv[R];
    for (int r = 0; r < R; ++r)
      xv[r] = _mm256_loadu_ps(x + r * ldx + i);
    for (int c = 0; c < C; ++c) {
      __m256 wv = _mm256_loadu_ps(w + c * ldw + i);
      // One load per weight vector, held in a register for the R multiplies (compilers otherwise
      // fold the load into each multiply-add, and loads are what this loop is short of).
      __asm__("" : "+x"(wv));
      for (int r = 0; r < R; ++r)
        acc[r][c] = _mm256_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float sum = hsum(acc[r][c]);
      for (int64_t t = i; t < k; ++t)
        sum = std::fma(x[r * ldx + t], w[c * ldw + t], sum);
      out[r * ldo + c] = sum;
    }
  }
}

// Six weight rows (the last group fewer) outer, activation rows two at a time inner: the group's
// rows stay in L1 while the activation rows pass over them.
template <int C>
PAGODA_AVX2 void dot_cols_avx2(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t k,
                               float* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + 2 <= m; i += 2)
    dot_rxc_avx2<2, C>(x + i * ldx, ldx, w, ldw, k, out + i * ldo, ldo);
  if (i < m) dot_rxc_avx2<1, C>(x + i * ldx, ldx, w, ldw, k, out + i * ldo, ldo);
}

PAGODA_AVX2 void dot_tile_avx2(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t n,
                               int64_t k, float* out, int64_t ldo) {
  int64_t j = 0;
  for (; j + 6 <= n; j += 6)
    dot_cols_avx2<6>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo);
  switch (n - j) {
    case 5: dot_cols_avx2<5>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 4: dot_cols_avx2<4>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 3: dot_cols_avx2<3>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 2: dot_cols_avx2<2>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 1: dot_cols_avx2<1>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    default: break;
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

// AVX-512: R activation rows against C weight rows on 512-bit vectors, each output one chain of
// fused multiply-adds over k in steps of 16, then one horizontal sum in a fixed order and the
// scalar rest (a masked last step made GCC store every accumulator on every step). Four activation
// rows per step instead of two: 24 accumulators, four activation vectors and the weight vector
// fill 29 of the 32 registers, so a weight vector serves four multiplies. As in the AVX2 tile, an output's arithmetic
// does not depend on R, C or its place in the tile; it differs from the AVX2 tile's (16 lanes, not 8).
#define PAGODA_AVX512 __attribute__((target("avx2,fma,avx512f")))

template <int R, int C>
PAGODA_AVX512 void dot_rxc_avx512(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t k, float* out,
                                  int64_t ldo) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c)
      acc[r][c] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 xv[R];
    for (int r = 0; r < R; ++r)
      xv[r] = _mm512_loadu_ps(x + r * ldx + i);
    for (int c = 0; c < C; ++c) {
      __m512 wv = _mm512_loadu_ps(w + c * ldw + i);
      __asm__("" : "+v"(wv));
      for (int r = 0; r < R; ++r)
        acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      // halves, then quarters, ...: a fixed pairwise order
      const __m512 v = acc[r][c];
      const __m256 h =
          _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xee)));
      __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
      q = _mm_add_ps(q, _mm_movehl_ps(q, q));
      q = _mm_add_ss(q, _mm_movehdup_ps(q));
      float sum = _mm_cvtss_f32(q);
      for (int64_t t = i; t < k; ++t)
        sum = std::fma(x[r * ldx + t], w[c * ldw + t], sum);
      out[r * ldo + c] = sum;
    }
  }
}

template <int C>
PAGODA_AVX512 void dot_cols_avx512(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t k,
                                   float* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4)
    dot_rxc_avx512<4, C>(x + i * ldx, ldx, w, ldw, k, out + i * ldo, ldo);
  switch (m - i) {
    case 3: dot_rxc_avx512<3, C>(x + i * ldx, ldx, w, ldw, k, out + i * ldo, ldo); break;
    case 2: dot_rxc_avx512<2, C>(x + i * ldx, ldx, w, ldw, k, out + i * ldo, ldo); break;
    case 1: dot_rxc_avx512<1, C>(x + i * ldx, ldx, w, ldw, k, out + i * ldo, ldo); break;
    default: break;
  }
}

PAGODA_AVX512 void dot_tile_avx512(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw, int64_t n,
                                   int64_t k, float* out, int64_t ldo) {
  int64_t j = 0;
  for (; j + 6 <= n; j += 6)
    dot_cols_avx512<6>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo);
  switch (n - j) {
    case 5: dot_cols_avx512<5>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 4: dot_cols_avx512<4>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 3: dot_cols_avx512<3>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 2: dot_cols_avx512<2>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    case 1: dot_cols_avx512<1>(x, ldx, m, w + j * ldw, ldw, k, out + j, ldo); break;
    default: break;
  }
}

bool detect_avx2() {
  return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
}

// The AVX-512 tile where the CPU has AVX-512F, unless PAGODA_CPU_ISA=avx2 asks for the AVX2 one.
bool detect_avx512() {
  return detect_avx2() && __builtin_cpu_supports("avx512f") != 0 && isa_limit() != IsaLimit::kAvx2;
}
#else
bool detect_avx2() {
  return false;
}
bool detect_avx512() {
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
    if (detect_avx512()) return Kernels{dot_avx2, dot_tile_avx512, axpy_avx2, scale_avx2};
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

const char* tile_kernel_name() {
  static const char* name = detect_avx512() ? "avx512" : detect_avx2() ? "avx2" : "portable";
  return name;
}

}  // namespace pagoda::cpu::vec
