#include "backends/cpu/ops/attention_avx2.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "backends/cpu/isa.h"
#include "backends/cpu/vec.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() (a self-initialised variable) as their
// unused merge source, which it then reports as uninitialized wherever they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cpuid.h>

#include "backends/cpu/ops/exp_avx2.h"

#define PAGODA_ATTN_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PAGODA_ATTN_AVX512 __attribute__((target("avx2,fma,f16c,avx512f")))

namespace pagoda::cpu::attn {

bool available() {
  return vec::uses_avx2();
}

bool available_f16() {
  // F16C through CPUID leaf 1 (ECX bit 29).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return available() && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}

namespace {

// A bf16 element, a type apart from f16's uint16_t so that overloads tell the two loads apart.
struct Bf16 {
  uint16_t bits;
};

// Eight elements of a key or value row as floats: f32 loaded, f16 and bf16 converted (exactly,
// as the dequantizers convert them; F16C only quiets a signalling NaN, which stays a NaN).
PAGODA_ATTN_AVX2 inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
PAGODA_ATTN_AVX2 inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
PAGODA_ATTN_AVX2 inline __m256 load8(const Bf16* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline float load1(const float* p) {
  return *p;
}
PAGODA_ATTN_AVX2 inline float load1(const uint16_t* p) {
  return _cvtsh_ss(*p);
}
inline float load1(const Bf16* p) {
  uint16_t bits = 0;
  std::memcpy(&bits, p, sizeof(bits));
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f = 0.0f;
  std::memcpy(&f, &wide, sizeof(f));
  return f;
}

// Consecutive rows of one block, in one tile per kv head.
struct Run {
  const uint8_t* tiles;  // kv head 0's first row
  int64_t count;
};

// The run of rows from j (at most to hi) in j's block.
template <typename T>
inline Run run_at(const Rows& r, int64_t j, int64_t hi) {
  const int64_t block = j / r.block_size;
  const int64_t first = j - block * r.block_size;
  return {r.base + static_cast<uint64_t>(r.table[block]) * r.block_stride +
              static_cast<uint64_t>(first * r.head_size) * sizeof(T),
          std::min(r.block_size - first, hi + 1 - j)};
}

// Scores of N queries against `rows` consecutive keys, K keys at a time (a last partial group
// repeats its last key and drops the extra lanes): one accumulator per (query, key) over the
// head dimension in steps of eight, each reduced by the same tree, (0+1 + 2+3) + (4+5 + 6+7) of
// its lanes, then the tail of the head dimension one element at a time. A score thus goes
// through the same instructions whatever N, K and its lane: it depends only on q and its key.
//
// With N = 3 and K = 4 the twelve accumulators, three query vectors and one key vector take all
// sixteen registers. The empty asm statements pin the query and key vectors in registers: left
// to itself, GCC folds each key load into every multiply-add that uses it, and the loads, not
// the multiply-adds, then bound the loop.
template <int N, int K, typename T>
PAGODA_ATTN_AVX2 void scores_run(const float* const* q, const T* keys, int64_t rows, int64_t hs, float scale,
                                 float* const* out) {
  static_assert(K % 4 == 0);
  const int64_t hs8 = hs - hs % 8;
  const __m128 vscale = _mm_set1_ps(scale);
  for (int64_t j = 0; j < rows; j += K) {
    const T* k[K];
    for (int t = 0; t < K; ++t)
      k[t] = keys + std::min<int64_t>(j + t, rows - 1) * hs;
    __m256 a[N][K];
    for (int i = 0; i < N; ++i) {
      for (int t = 0; t < K; ++t)
        a[i][t] = _mm256_setzero_ps();
    }
    for (int64_t d = 0; d < hs8; d += 8) {
      __m256 qv[N];
      for (int i = 0; i < N; ++i) {
        qv[i] = _mm256_loadu_ps(q[i] + d);
        asm("" : "+x"(qv[i]));
      }
      for (int t = 0; t < K; ++t) {
        __m256 kv = load8(k[t] + d);
        if (N > 1) asm("" : "+x"(kv));
        for (int i = 0; i < N; ++i)
          a[i][t] = _mm256_fmadd_ps(qv[i], kv, a[i][t]);
      }
    }
    // Unrolled in full, so that the accumulators stay in registers: GCC keeps an array it indexes
    // in a loop in memory, and would store and reload every accumulator.
    __m128 sums[N][K / 4];
#pragma GCC unroll 12
    for (int i = 0; i < N; ++i) {
#pragma GCC unroll 2
      for (int g = 0; g < K / 4; ++g) {
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[i][4 * g], a[i][4 * g + 1]),
                                        _mm256_hadd_ps(a[i][4 * g + 2], a[i][4 * g + 3]));
        sums[i][g] = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
      }
    }
    if (hs8 == hs && j + K <= rows) {
#pragma GCC unroll 12
      for (int i = 0; i < N; ++i) {
#pragma GCC unroll 2
        for (int g = 0; g < K / 4; ++g)
          _mm_storeu_ps(out[i] + j + 4 * g, _mm_mul_ps(vscale, sums[i][g]));
      }
      continue;
    }
    for (int i = 0; i < N; ++i) {
      alignas(16) float s[K];
      for (int g = 0; g < K / 4; ++g)
        _mm_store_ps(s + 4 * g, sums[i][g]);
      for (int t = 0; t < K && j + t < rows; ++t) {
        float sum = s[t];
        for (int64_t d = hs8; d < hs; ++d)
          sum = std::fma(q[i][d], load1(k[t] + d), sum);
        out[i][j + t] = scale * sum;
      }
    }
  }
}

// Columns [d, d + 8 W) of the N accumulators, in registers over the run's rows. Each column's
// sum takes the rows in order, one fused multiply-add each, whatever N and W. The asm statement
// keeps a value vector in a register for the N multiply-adds that use it (see scores_run).
template <int N, int W, typename T>
PAGODA_ATTN_AVX2 inline void accumulate_cols(const float* const* p, const T* values, int64_t rows, int64_t hs,
                                             int64_t d, float* const* acc) {
  __m256 a[N][W];
  for (int i = 0; i < N; ++i) {
    for (int c = 0; c < W; ++c)
      a[i][c] = _mm256_loadu_ps(acc[i] + d + 8 * c);
  }
  for (int64_t j = 0; j < rows; ++j) {
    __m256 pj[N];
    for (int i = 0; i < N; ++i)
      pj[i] = _mm256_broadcast_ss(p[i] + j);
    const T* v = values + j * hs + d;
    for (int c = 0; c < W; ++c) {
      __m256 vc = load8(v + 8 * c);
      if (N > 1) asm("" : "+x"(vc));
      for (int i = 0; i < N; ++i)
        a[i][c] = _mm256_fmadd_ps(pj[i], vc, a[i][c]);
    }
  }
  for (int i = 0; i < N; ++i) {
    for (int c = 0; c < W; ++c)
      _mm256_storeu_ps(acc[i] + d + 8 * c, a[i][c]);
  }
}

// W columns of eight for N queries: N W accumulators, the W value vectors and N broadcast
// weights within the sixteen registers, with enough independent sums to hide the latency.
template <int N>
constexpr int kCols = N == 1   ? 8
                      : N == 2 ? 4
                               : 3;

template <int N, typename T>
PAGODA_ATTN_AVX2 void accumulate_run(const float* const* p, const T* values, int64_t rows, int64_t hs,
                                     float* const* acc) {
  constexpr int W = kCols<N>;
  int64_t d = 0;
  for (; d + 8 * W <= hs; d += 8 * W)
    accumulate_cols<N, W>(p, values, rows, hs, d, acc);
  for (; d + 16 <= hs; d += 16)
    accumulate_cols<N, 2>(p, values, rows, hs, d, acc);
  for (; d + 8 <= hs; d += 8)
    accumulate_cols<N, 1>(p, values, rows, hs, d, acc);
  for (; d < hs; ++d) {
    for (int i = 0; i < N; ++i) {
      float sum = acc[i][d];
      for (int64_t j = 0; j < rows; ++j)
        sum = std::fma(p[i][j], load1(values + j * hs + d), sum);
      acc[i][d] = sum;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 (512-bit vectors, 32 registers): the same walks with sixteen elements per step. Where
// the CPU has AVX-512F (and PAGODA_CPU_ISA is not avx2) every query of the process takes these,
// so the invariances above hold among them; the bits differ from the AVX2 loops' (another
// reduction tree).

PAGODA_ATTN_AVX512 inline __m512 load16(const float* p) {
  return _mm512_loadu_ps(p);
}
PAGODA_ATTN_AVX512 inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
PAGODA_ATTN_AVX512 inline __m512 load16(const Bf16* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

// Four accumulators' sums: each one's two 256-bit halves added, then scores_run's tree.
PAGODA_ATTN_AVX512 inline __m128 sums4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const auto half_sum = [](__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  };
  const __m256 h =
      _mm256_hadd_ps(_mm256_hadd_ps(half_sum(a0), half_sum(a1)), _mm256_hadd_ps(half_sum(a2), half_sum(a3)));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// scores_run with sixteen elements per step: N K accumulators (3 x 8 = 24 of the 32 registers).
template <int N, int K, typename T>
PAGODA_ATTN_AVX512 void scores_run512(const float* const* q, const T* keys, int64_t rows, int64_t hs, float scale,
                                      float* const* out) {
  static_assert(K % 4 == 0);
  const int64_t hs16 = hs - hs % 16;
  const __m128 vscale = _mm_set1_ps(scale);
  for (int64_t j = 0; j < rows; j += K) {
    const T* k[K];
    for (int t = 0; t < K; ++t)
      k[t] = keys + std::min<int64_t>(j + t, rows - 1) * hs;
    __m512 a[N][K];
    for (int i = 0; i < N; ++i) {
      for (int t = 0; t < K; ++t)
        a[i][t] = _mm512_setzero_ps();
    }
    for (int64_t d = 0; d < hs16; d += 16) {
      __m512 qv[N];
      for (int i = 0; i < N; ++i) {
        qv[i] = _mm512_loadu_ps(q[i] + d);
        asm("" : "+v"(qv[i]));
      }
      for (int t = 0; t < K; ++t) {
        __m512 kv = load16(k[t] + d);
        if (N > 1) asm("" : "+v"(kv));
        for (int i = 0; i < N; ++i)
          a[i][t] = _mm512_fmadd_ps(qv[i], kv, a[i][t]);
      }
    }
    __m128 sums[N][K / 4];
#pragma GCC unroll 12
    for (int i = 0; i < N; ++i) {
#pragma GCC unroll 4
      for (int g = 0; g < K / 4; ++g)
        sums[i][g] = sums4(a[i][4 * g], a[i][4 * g + 1], a[i][4 * g + 2], a[i][4 * g + 3]);
    }
    if (hs16 == hs && j + K <= rows) {
#pragma GCC unroll 12
      for (int i = 0; i < N; ++i) {
#pragma GCC unroll 4
        for (int g = 0; g < K / 4; ++g)
          _mm_storeu_ps(out[i] + j + 4 * g, _mm_mul_ps(vscale, sums[i][g]));
      }
      continue;
    }
    for (int i = 0; i < N; ++i) {
      alignas(16) float s[K];
      for (int g = 0; g < K / 4; ++g)
        _mm_store_ps(s + 4 * g, sums[i][g]);
      for (int t = 0; t < K && j + t < rows; ++t) {
        float sum = s[t];
        for (int64_t d = hs16; d < hs; ++d)
          sum = std::fma(q[i][d], load1(k[t] + d), sum);
        out[i][j + t] = scale * sum;
      }
    }
  }
}

// accumulate_cols with sixteen columns per vector.
template <int N, int W, typename T>
PAGODA_ATTN_AVX512 inline void accumulate_cols512(const float* const* p, const T* values, int64_t rows, int64_t hs,
                                                  int64_t d, float* const* acc) {
  __m512 a[N][W];
  for (int i = 0; i < N; ++i) {
    for (int c = 0; c < W; ++c)
      a[i][c] = _mm512_loadu_ps(acc[i] + d + 16 * c);
  }
  for (int64_t j = 0; j < rows; ++j) {
    __m512 pj[N];
    for (int i = 0; i < N; ++i)
      pj[i] = _mm512_set1_ps(p[i][j]);
    const T* v = values + j * hs + d;
    for (int c = 0; c < W; ++c) {
      __m512 vc = load16(v + 16 * c);
      if (N > 1) asm("" : "+v"(vc));
      for (int i = 0; i < N; ++i)
        a[i][c] = _mm512_fmadd_ps(pj[i], vc, a[i][c]);
    }
  }
  for (int i = 0; i < N; ++i) {
    for (int c = 0; c < W; ++c)
      _mm512_storeu_ps(acc[i] + d + 16 * c, a[i][c]);
  }
}

template <int N, typename T>
PAGODA_ATTN_AVX512 void accumulate_run512(const float* const* p, const T* values, int64_t rows, int64_t hs,
                                          float* const* acc) {
  int64_t d = 0;
  for (; d + 128 <= hs; d += 128)
    accumulate_cols512<N, 8>(p, values, rows, hs, d, acc);
  for (; d + 64 <= hs; d += 64)
    accumulate_cols512<N, 4>(p, values, rows, hs, d, acc);
  for (; d + 32 <= hs; d += 32)
    accumulate_cols512<N, 2>(p, values, rows, hs, d, acc);
  for (; d + 16 <= hs; d += 16)
    accumulate_cols512<N, 1>(p, values, rows, hs, d, acc);
  for (; d < hs; ++d) {
    for (int i = 0; i < N; ++i) {
      float sum = acc[i][d];
      for (int64_t j = 0; j < rows; ++j)
        sum = std::fma(p[i][j], load1(values + j * hs + d), sum);
      acc[i][d] = sum;
    }
  }
}

// The kernels of one vector width: the scores of N = 1..3 queries against a run of keys (more
// keys at a time for one query alone, to have as many independent sums in flight), and their
// weighted sums of a run of values.
struct Avx2Runs {
  template <int N, typename T>
  static void scores(const float* const* q, const T* keys, int64_t rows, int64_t hs, float scale, float* const* out) {
    scores_run<N, N == 1 ? 8 : 4>(q, keys, rows, hs, scale, out);
  }
  template <int N, typename T>
  static void values(const float* const* p, const T* values, int64_t rows, int64_t hs, float* const* acc) {
    accumulate_run<N>(p, values, rows, hs, acc);
  }
};
struct Avx512Runs {
  template <int N, typename T>
  static void scores(const float* const* q, const T* keys, int64_t rows, int64_t hs, float scale, float* const* out) {
    scores_run512<N, N == 1 ? 16 : 8>(q, keys, rows, hs, scale, out);
  }
  template <int N, typename T>
  static void values(const float* const* p, const T* values, int64_t rows, int64_t hs, float* const* acc) {
    accumulate_run512<N>(p, values, rows, hs, acc);
  }
};

// Block by block, and within a block kv head by kv head, whose tiles lie side by side: the reads
// go through memory in long runs, which the hardware prefetcher follows (software prefetches of
// the next block measured slower). Up to three queries of a kv head share each loaded key.
template <class Runs, typename T>
void scores_of(const float* const* q, int64_t n, int64_t group, const Rows& keys, int64_t lo, int64_t hi, float scale,
               float* const* out) {
  for (int64_t j = lo; j <= hi;) {
    const Run run = run_at<T>(keys, j, hi);
    for (int64_t i = 0; i < n;) {
      const int64_t m = std::min<int64_t>(3, group - i % group);
      const T* rows = reinterpret_cast<const T*>(run.tiles + (i / group) * keys.head_stride);
      float* o[3];
      for (int64_t t = 0; t < m; ++t)
        o[t] = out[i + t] + (j - lo);
      if (m == 3) {
        Runs::template scores<3>(q + i, rows, run.count, keys.head_size, scale, o);
      } else if (m == 2) {
        Runs::template scores<2>(q + i, rows, run.count, keys.head_size, scale, o);
      } else {
        Runs::template scores<1>(q + i, rows, run.count, keys.head_size, scale, o);
      }
      i += m;
    }
    j += run.count;
  }
}

// The values in the same order.
template <class Runs, typename T>
void accumulate_of(const float* const* p, int64_t n, int64_t group, const Rows& values, int64_t lo, int64_t hi,
                   float* const* acc) {
  for (int64_t j = lo; j <= hi;) {
    const Run run = run_at<T>(values, j, hi);
    for (int64_t i = 0; i < n;) {
      const int64_t m = std::min<int64_t>(3, group - i % group);
      const T* rows = reinterpret_cast<const T*>(run.tiles + (i / group) * values.head_stride);
      const float* pj[3];
      for (int64_t t = 0; t < m; ++t)
        pj[t] = p[i + t] + (j - lo);
      if (m == 3) {
        Runs::template values<3>(pj, rows, run.count, values.head_size, acc + i);
      } else if (m == 2) {
        Runs::template values<2>(pj, rows, run.count, values.head_size, acc + i);
      } else {
        Runs::template values<1>(pj, rows, run.count, values.head_size, acc + i);
      }
      i += m;
    }
    j += run.count;
  }
}

// AVX-512F on this CPU, unless PAGODA_CPU_ISA=avx2.
bool use_avx512() {
  static const bool avx512 = __builtin_cpu_supports("avx512f") != 0 && isa_limit() != IsaLimit::kAvx2;
  return avx512;
}

// Lanes below `n` (0 to 8) set.
PAGODA_ATTN_AVX2 inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <class Runs>
void scores_with(const float* const* q, int64_t n, int64_t group, const Rows& keys, int64_t lo, int64_t hi, float scale,
                 float* const* out) {
  switch (keys.elem) {
    case Elem::kF32: return scores_of<Runs, float>(q, n, group, keys, lo, hi, scale, out);
    case Elem::kF16: return scores_of<Runs, uint16_t>(q, n, group, keys, lo, hi, scale, out);
    case Elem::kBF16: return scores_of<Runs, Bf16>(q, n, group, keys, lo, hi, scale, out);
  }
}

template <class Runs>
void accumulate_with(const float* const* p, int64_t n, int64_t group, const Rows& values, int64_t lo, int64_t hi,
                     float* const* acc) {
  switch (values.elem) {
    case Elem::kF32: return accumulate_of<Runs, float>(p, n, group, values, lo, hi, acc);
    case Elem::kF16: return accumulate_of<Runs, uint16_t>(p, n, group, values, lo, hi, acc);
    case Elem::kBF16: return accumulate_of<Runs, Bf16>(p, n, group, values, lo, hi, acc);
  }
}

}  // namespace

void scores(const float* const* q, int64_t n, int64_t group, const Rows& keys, int64_t lo, int64_t hi, float scale,
            float* const* out) {
  if (use_avx512()) return scores_with<Avx512Runs>(q, n, group, keys, lo, hi, scale, out);
  scores_with<Avx2Runs>(q, n, group, keys, lo, hi, scale, out);
}

PAGODA_ATTN_AVX2 float softmax_numerators(float* p, int64_t n) {
  const __m256 lowest = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const int64_t n8 = n - n % 8;
  const __m256i tail = first_lanes(n - n8);
  // max(x, m) is m when x is a NaN, so NaN scores are passed over.
  __m256 m = lowest;
  for (int64_t j = 0; j < n8; j += 8)
    m = _mm256_max_ps(_mm256_loadu_ps(p + j), m);
  m = _mm256_max_ps(_mm256_blendv_ps(lowest, _mm256_maskload_ps(p + n8, tail), _mm256_castsi256_ps(tail)), m);
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  const float max = _mm_cvtss_f32(m4);
  if (max == -std::numeric_limits<float>::infinity()) return 0.0f;
  const __m256 vmax = _mm256_set1_ps(max);
  __m256 sum = _mm256_setzero_ps();
  for (int64_t j = 0; j < n8; j += 8) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(p + j), vmax));
    _mm256_storeu_ps(p + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 e =
      _mm256_and_ps(exp_avx2(_mm256_sub_ps(_mm256_maskload_ps(p + n8, tail), vmax)), _mm256_castsi256_ps(tail));
  _mm256_maskstore_ps(p + n8, tail, e);
  sum = _mm256_add_ps(sum, e);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
  return _mm_cvtss_f32(s4);
}

void accumulate(const float* const* p, int64_t n, int64_t group, const Rows& values, int64_t lo, int64_t hi,
                float* const* acc) {
  if (use_avx512()) return accumulate_with<Avx512Runs>(p, n, group, values, lo, hi, acc);
  accumulate_with<Avx2Runs>(p, n, group, values, lo, hi, acc);
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
void scores(const float* const*, int64_t, int64_t, const Rows&, int64_t, int64_t, float, float* const*) {
  std::abort();
}
float softmax_numerators(float*, int64_t) {
  std::abort();
}
void accumulate(const float* const*, int64_t, int64_t, const Rows&, int64_t, int64_t, float* const*) {
  std::abort();
}
}  // namespace pagoda::cpu::attn

#endif
