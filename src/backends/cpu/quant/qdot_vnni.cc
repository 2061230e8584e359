#include "backends/cpu/quant/qdot_vnni.h"

#include "backends/cpu/isa.h"
#include "backends/cpu/quant/amx_config.h"

#if PAGODA_QDOT_HAS_AVX2

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() (a self-initialised variable) as their
// unused merge source, which it then reports as uninitialized wherever they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#define PAGODA_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define PAGODA_AMX __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")))

namespace pagoda::cpu::qdot {
namespace {

// Every repacked type (qdot.h, pack_rows8) comes down to the same block step: eight vectors of
// unsigned weight bytes u[0..7], lane i of u[v] holding four bytes of weight row i that meet
// activation bytes 4v..4v+3; `vpdpbusd` adds each lane's four products straight into its int32,
// so eight of them leave row i's exact integer block dot in lane i. What differs by type is how
// the bytes are unpacked, an exact integer offset (times the activation block's sum) and the
// float scale and minimum vectors; the float step itself is the AVX2 kernels' instruction for
// instruction, so the results are their bits.
//
// G is the number of eight-row groups per vector: G = 1 works on 256-bit vectors (AVX512VL), G = 2
// on 512-bit ones, the first group in the low half and the second `group` bytes further on in the
// high half, so one broadcast of four activation bytes and one vpdpbusd serve sixteen weight rows.
template <int G>
struct Vec;
template <>
struct Vec<1> {
  using I = __m256i;
  using F = __m256;
};
template <>
struct Vec<2> {
  using I = __m512i;
  using F = __m512;
};
template <int G>
using IV = typename Vec<G>::I;
template <int G>
using FV = typename Vec<G>::F;

PAGODA_VNNI inline __m256i v_and(__m256i a, __m256i b) {
  return _mm256_and_si256(a, b);
}
PAGODA_VNNI inline __m512i v_and(__m512i a, __m512i b) {
  return _mm512_and_si512(a, b);
}
PAGODA_VNNI inline __m256i v_or(__m256i a, __m256i b) {
  return _mm256_or_si256(a, b);
}
PAGODA_VNNI inline __m512i v_or(__m512i a, __m512i b) {
  return _mm512_or_si512(a, b);
}
PAGODA_VNNI inline __m256i v_xor(__m256i a, __m256i b) {
  return _mm256_xor_si256(a, b);
}
PAGODA_VNNI inline __m512i v_xor(__m512i a, __m512i b) {
  return _mm512_xor_si512(a, b);
}
PAGODA_VNNI inline __m256i v_srli16(__m256i a, int n) {
  return _mm256_srli_epi16(a, n);
}
PAGODA_VNNI inline __m512i v_srli16(__m512i a, int n) {
  return _mm512_srli_epi16(a, static_cast<unsigned>(n));
}
PAGODA_VNNI inline __m256i v_add32(__m256i a, __m256i b) {
  return _mm256_add_epi32(a, b);
}
PAGODA_VNNI inline __m512i v_add32(__m512i a, __m512i b) {
  return _mm512_add_epi32(a, b);
}
PAGODA_VNNI inline __m256i v_sub32(__m256i a, __m256i b) {
  return _mm256_sub_epi32(a, b);
}
PAGODA_VNNI inline __m512i v_sub32(__m512i a, __m512i b) {
  return _mm512_sub_epi32(a, b);
}
PAGODA_VNNI inline __m256i v_dpbusd(__m256i acc, __m256i u, __m256i s) {
  return _mm256_dpbusd_epi32(acc, u, s);
}
PAGODA_VNNI inline __m512i v_dpbusd(__m512i acc, __m512i u, __m512i s) {
  return _mm512_dpbusd_epi32(acc, u, s);
}
PAGODA_VNNI inline __m256i v_shuffle8(__m256i a, __m256i idx) {
  return _mm256_shuffle_epi8(a, idx);
}
PAGODA_VNNI inline __m512i v_shuffle8(__m512i a, __m512i idx) {
  return _mm512_shuffle_epi8(a, idx);
}
// `bits` where a byte of v has all the bits of `select` set, else 0
PAGODA_VNNI inline __m256i v_where_all(__m256i v, __m256i select, __m256i bits) {
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, select), select), bits);
}
PAGODA_VNNI inline __m512i v_where_all(__m512i v, __m512i select, __m512i bits) {
  return _mm512_maskz_mov_epi8(_mm512_cmpeq_epi8_mask(_mm512_and_si512(v, select), select), bits);
}
PAGODA_VNNI inline __m256 v_cvt(__m256i a) {
  return _mm256_cvtepi32_ps(a);
}
PAGODA_VNNI inline __m512 v_cvt(__m512i a) {
  return _mm512_cvtepi32_ps(a);
}
PAGODA_VNNI inline __m256 v_mul(__m256 a, __m256 b) {
  return _mm256_mul_ps(a, b);
}
PAGODA_VNNI inline __m512 v_mul(__m512 a, __m512 b) {
  return _mm512_mul_ps(a, b);
}
PAGODA_VNNI inline __m256 v_fmadd(__m256 a, __m256 b, __m256 c) {
  return _mm256_fmadd_ps(a, b, c);
}
PAGODA_VNNI inline __m512 v_fmadd(__m512 a, __m512 b, __m512 c) {
  return _mm512_fmadd_ps(a, b, c);
}
// -a, by its sign bit (as the AVX2 kernels' xor with -0.0f)
PAGODA_VNNI inline __m256 v_neg(__m256 a) {
  return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(a), _mm256_set1_epi32(INT32_MIN)));
}
PAGODA_VNNI inline __m512 v_neg(__m512 a) {
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MIN)));
}

template <int G>
PAGODA_VNNI inline IV<G> splat8(int c) {
  if constexpr (G == 1) {
    return _mm256_set1_epi8(static_cast<char>(c));
  } else {
    return _mm512_set1_epi8(static_cast<char>(c));
  }
}
template <int G>
PAGODA_VNNI inline IV<G> splat32(int c) {
  if constexpr (G == 1) {
    return _mm256_set1_epi32(c);
  } else {
    return _mm512_set1_epi32(c);
  }
}
template <int G>
PAGODA_VNNI inline FV<G> splat_ps(float f) {
  if constexpr (G == 1) {
    return _mm256_set1_ps(f);
  } else {
    return _mm512_set1_ps(f);
  }
}
template <int G>
PAGODA_VNNI inline FV<G> zero_ps() {
  return splat_ps<G>(0.0f);
}
// four activation bytes in every 32-bit lane
template <int G>
PAGODA_VNNI inline IV<G> bcast4(const int8_t* p) {
  int v;
  std::memcpy(&v, p, 4);
  return splat32<G>(v);
}
// the 16 bytes of `lane` in every 128-bit lane
template <int G>
PAGODA_VNNI inline IV<G> per_lane(__m128i lane) {
  if constexpr (G == 1) {
    return _mm256_broadcastsi128_si256(lane);
  } else {
    return _mm512_broadcast_i32x4(lane);
  }
}

// The 32 bytes at p of the first group and at p + group of the second.
template <int G>
PAGODA_VNNI inline IV<G> load_q(const uint8_t* p, uint64_t group) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  if constexpr (G == 1) {
    (void)group;
    return a;
  } else {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + group));
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
  }
}
// Eight f16 at p (and at p + group) as floats.
template <int G>
PAGODA_VNNI inline FV<G> load_halves(const uint8_t* p, uint64_t group) {
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (G == 1) {
    (void)group;
    return _mm256_cvtph_ps(a);
  } else {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + group));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
  }
}
// Eight unsigned bytes at p (and at p + group) as floats.
template <int G>
PAGODA_VNNI inline FV<G> load_bytes_ps(const uint8_t* p, uint64_t group) {
  const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  if constexpr (G == 1) {
    (void)group;
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(a));
  } else {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + group));
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi64(a, b)));
  }
}

// `bytes` of a group's weight stream 1 KiB ahead of p, in each group.
template <int G>
PAGODA_VNNI inline void prefetch(const uint8_t* p, uint64_t group, uint64_t bytes) {
  for (int h = 0; h < G; ++h) {
    for (uint64_t o = 0; o < bytes; o += 64)
      _mm_prefetch(reinterpret_cast<const char*>(p + h * group + 1024 + o), _MM_HINT_T0);
  }
}

// One block of a repacked type: its weight vectors (u), scales and, for types with a minimum, the
// minimum vector that multiplies the activation block's d * sum(q).
template <int G>
struct Block {
  IV<G> u[8];
  FV<G> scale;
  FV<G> min;
};

// Q4_0 / Q4_1: scales (and minimums) first, then four vectors of nibbles, vector j holding
// elements 4j..4j+3 (low nibbles) and 16+4j..16+4j+3 (high nibbles) of each row. Q4_0's offset 8
// comes off exactly as 8 * sum(q).
template <bool kQ4_1>
struct Q4 {
  static constexpr int kHead = kQ4_1 ? 32 : 16;
  static constexpr uint64_t kBlockBytes = kHead + 8 * 16;
  static constexpr int kOffset = kQ4_1 ? 0 : 8;
  static constexpr bool kMin = kQ4_1;
  template <int G>
  PAGODA_VNNI static void load(const uint8_t* w, uint64_t group, int64_t b, Block<G>& k) {
    const uint8_t* g = w + static_cast<uint64_t>(b) * kBlockBytes;
    prefetch<G>(g, group, kBlockBytes);
    const IV<G> low4 = splat8<G>(0x0f);
    for (int j = 0; j < 4; ++j) {
      const IV<G> v = load_q<G>(g + kHead + 32 * j, group);
      k.u[j] = v_and(v, low4);
      k.u[4 + j] = v_and(v_srli16(v, 4), low4);
    }
    k.scale = load_halves<G>(g, group);
    if constexpr (kQ4_1) k.min = load_halves<G>(g + 16, group);
  }
};

// Q8_0: 16 bytes of scales, then eight vectors, vector j holding quant bytes 4j..4j+3 of each row.
// The signed weights are made unsigned by adding 128 (a flip of the top bit), which adds
// 128 * sum(q) to the dot; that comes off exactly.
struct Q8 {
  static constexpr uint64_t kBlockBytes = 16 + 8 * 32;
  static constexpr int kOffset = 128;
  static constexpr bool kMin = false;
  template <int G>
  PAGODA_VNNI static void load(const uint8_t* w, uint64_t group, int64_t b, Block<G>& k) {
    const uint8_t* g = w + static_cast<uint64_t>(b) * kBlockBytes;
    prefetch<G>(g, group, kBlockBytes);
    const IV<G> top = splat8<G>(0x80);
    for (int j = 0; j < 8; ++j)
      k.u[j] = v_xor(load_q<G>(g + 16 + 32 * j, group), top);
    k.scale = load_halves<G>(g, group);
  }
};

// Q5_0: Q4_0's layout with the rows' fifth-bit words (lane i = row i's qh) after the scales. For
// vector j the fifth bits of the low nibbles' elements are bits 4j..4j+3 of qh (its byte j / 2) and
// those of the high nibbles' bits 16+4j.. (byte 2 + j / 2): a byte shuffle spreads the byte over
// the lane's four bytes and a per-byte bit test sets bit 4. The offset 16 comes off as 16 * sum(q).
struct Q5 {
  static constexpr uint64_t kBlockBytes = 48 + 8 * 16;
  static constexpr int kOffset = 16;
  static constexpr bool kMin = false;
  template <int G>
  PAGODA_VNNI static void load(const uint8_t* w, uint64_t group, int64_t b, Block<G>& k) {
    const uint8_t* g = w + static_cast<uint64_t>(b) * kBlockBytes;
    prefetch<G>(g, group, kBlockBytes);
    const IV<G> low4 = splat8<G>(0x0f);
    const IV<G> bit4 = splat8<G>(0x10);
    const IV<G> lane_base = per_lane<G>(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
    const IV<G> qh = load_q<G>(g + 16, group);
    for (int j = 0; j < 4; ++j) {
      const int shift = 4 * (j % 2);
      const IV<G> select =
          splat32<G>(static_cast<int>((1u << shift) | (2u << shift) << 8 | (4u << shift) << 16 | (8u << shift) << 24));
      const IV<G> h_lo = v_where_all(v_shuffle8(qh, v_or(lane_base, splat8<G>(j / 2))), select, bit4);
      const IV<G> h_hi = v_where_all(v_shuffle8(qh, v_or(lane_base, splat8<G>(2 + j / 2))), select, bit4);
      const IV<G> v = load_q<G>(g + 48 + 32 * j, group);
      k.u[j] = v_or(v_and(v, low4), h_lo);
      k.u[4 + j] = v_or(v_and(v_srli16(v, 4), low4), h_hi);
    }
    k.scale = load_halves<G>(g, group);
  }
};

// Q4_K by sub-block (32-element block b is sub-block b % 8 of super-block b / 8): the rows'
// scales and minimums unpacked to bytes at repack time, and chunk s / 2's eight vectors, low or
// high nibbles. scale = d * sc and min = -(dmin * m), as the AVX2 kernel computes them.
struct Q4K {
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true;
  template <int G>
  PAGODA_VNNI static void load(const uint8_t* w, uint64_t group, int64_t b, Block<G>& k) {
    const uint8_t* g = w + static_cast<uint64_t>(b / 8) * kPackedQ4KBytes;
    const int s = static_cast<int>(b % 8);
    const uint8_t* chunk = g + 160 + 256 * (s / 2);
    for (int h = 0; h < G; ++h) {
      for (int o = 0; o < 128; o += 64)
        _mm_prefetch(reinterpret_cast<const char*>(chunk + h * group + 2 * kPackedQ4KBytes + 128 * (s % 2) + o),
                     _MM_HINT_T0);
    }
    const IV<G> low4 = splat8<G>(0x0f);
    for (int j = 0; j < 8; ++j)
      k.u[j] = v_and(v_srli16(load_q<G>(chunk + 32 * j, group), 4 * (s % 2)), low4);
    k.scale = v_mul(load_halves<G>(g, group), load_bytes_ps<G>(g + 32 + 8 * s, group));
    k.min = v_neg(v_mul(load_halves<G>(g + 16, group), load_bytes_ps<G>(g + 96 + 8 * s, group)));
  }
};

// R activation rows against G groups of eight weight rows (all eight of the first real when G = 2,
// `valid` of the last): out[r * ldo + i] for i < 8 * (G - 1) + valid.
template <class T, int R, int G>
PAGODA_VNNI void packed_vnni(const uint8_t* w, uint64_t group, int valid, const ActBlock* x, int64_t stride, int64_t nb,
                             float* out, int64_t ldo) {
  FV<G> acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = zero_ps<G>();
  const IV<G> zero = splat32<G>(0);
  for (int64_t b = 0; b < nb; ++b) {
    Block<G> k;
    T::template load<G>(w, group, b, k);
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      // two chains of four, so the dependent vpdpbusd latency is halved
      IV<G> s0 = v_dpbusd(zero, k.u[0], bcast4<G>(a.q));
      IV<G> s1 = v_dpbusd(zero, k.u[4], bcast4<G>(a.q + 16));
      for (int j = 1; j < 4; ++j) {
        s0 = v_dpbusd(s0, k.u[j], bcast4<G>(a.q + 4 * j));
        s1 = v_dpbusd(s1, k.u[4 + j], bcast4<G>(a.q + 16 + 4 * j));
      }
      IV<G> s = v_add32(s0, s1);
      if constexpr (T::kOffset != 0) s = v_sub32(s, splat32<G>(T::kOffset * a.qsum));
      acc[r] = v_fmadd(v_cvt(s), v_mul(k.scale, splat_ps<G>(a.d)), acc[r]);
      if constexpr (T::kMin) acc[r] = v_fmadd(k.min, splat_ps<G>(a.dsum), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    if constexpr (G == 1) {
      _mm256_mask_storeu_ps(out + r * ldo, static_cast<__mmask8>((1u << valid) - 1), acc[r]);
    } else {
      _mm512_mask_storeu_ps(out + r * ldo, static_cast<__mmask16>((1u << (8 + valid)) - 1), acc[r]);
    }
  }
}

// AMX: the integer block dots of 16 activation rows against two groups (16 weight rows) in one
// tile multiply. The two-group block's eight weight vectors (T::load, as above) are exactly
// the rows of the B operand: B row p holds the four weight bytes of every column (weight row) that
// meet activation bytes 4p..4p+3. The A operand is the 16 activation rows' 32 quant bytes of the
// block (AmxRows), and `tdpbsud` (signed A by unsigned B, into int32) leaves the 16 x 16 exact
// block dots in C. The float step then runs per activation row on a 16-lane vector of weight rows,
// the same instructions as the two-group VNNI kernel, so the results are the same bits.
//
// A pair of groups is unpacked once for all its blocks (amx_unpack), then serves every 16 rows of
// the call. Per 16 rows, the tile work of block b + 2 is issued before the float step of block b,
// with three C buffers in turn, so the float step never waits for the multiply it reads. The
// accumulators stay in registers: they are indexed only by constants (index_sequence), since GCC
// keeps a loop-indexed vector array in memory, through every tile store's memory clobber.

// The tile shapes every AMX kernel uses, loaded where the thread's tiles hold other shapes (or
// none): loading them costs about as much as a block's work (amx_config.h, use_tile_config). The
// tiles stay configured after the call.
PAGODA_AMX void amx_begin() {
  static const TileConfig cfg = [] {
    TileConfig c;
    for (int t = 0; t < 2; ++t) {
      c.colsb[t] = 32, c.rows[t] = 16;         // A: the activation bytes
      c.colsb[2 + t] = 64, c.rows[2 + t] = 8;  // B: the weight vectors
    }
    for (int t = 4; t < 7; ++t)
      c.colsb[t] = 64, c.rows[t] = 16;  // C: the block dots
    return c;
  }();
  use_tile_config(cfg);
}

// Bytes of B operands and floats of scale and minimum vectors per block of a pair of groups.
constexpr int64_t kAmxBBytes = 8 * 64;
constexpr int64_t kAmxScaleMinFloats = 32;

// Block b of a pair of groups (at w, the second `group` bytes on) as a B operand (bt + kAmxBBytes
// * b) and its scale and minimum vectors (sm + kAmxScaleMinFloats * b, scale first).
template <class T>
PAGODA_AMX inline __attribute__((always_inline)) void amx_unpack(const uint8_t* w, uint64_t group, int64_t b,
                                                                 uint8_t* bt, float* sm) {
  Block<2> k;
  T::template load<2>(w, group, b, k);
  for (int j = 0; j < 8; ++j) {
    // the weights with an offset as their signed values (q - offset), for a signed tile multiply
    if constexpr (T::kOffset != 0) k.u[j] = _mm512_sub_epi8(k.u[j], _mm512_set1_epi8(static_cast<char>(T::kOffset)));
    _mm512_store_si512(bt + kAmxBBytes * b + 64 * j, k.u[j]);
  }
  _mm512_store_ps(sm + kAmxScaleMinFloats * b, k.scale);
  _mm512_store_ps(sm + kAmxScaleMinFloats * b + 16, T::kMin ? k.min : zero_ps<2>());
}

// The tile multiply of one block through tile slot S (0, 1 or 2; the tile numbers must be
// literals, as the intrinsics paste them into the instruction text), and the store of its block
// dots to ct. _tile_stored's memory clobber keeps the float step's loads of ct after it.
template <int S, bool kSigned>
PAGODA_AMX inline __attribute__((always_inline)) void amx_dots(const int8_t* a, long a_stride, const uint8_t* bt) {
  if constexpr (S == 0) {
    _tile_loadd(0, a, a_stride);
    _tile_loadd(2, bt, 64);
    _tile_zero(4);
    if constexpr (kSigned) {
      _tile_dpbssd(4, 0, 2);
    } else {
      _tile_dpbsud(4, 0, 2);
    }
  } else if constexpr (S == 1) {
    _tile_loadd(1, a, a_stride);
    _tile_loadd(3, bt, 64);
    _tile_zero(5);
    if constexpr (kSigned) {
      _tile_dpbssd(5, 1, 3);
    } else {
      _tile_dpbsud(5, 1, 3);
    }
  } else {
    _tile_loadd(0, a, a_stride);
    _tile_loadd(2, bt, 64);
    _tile_zero(6);
    if constexpr (kSigned) {
      _tile_dpbssd(6, 0, 2);
    } else {
      _tile_dpbsud(6, 0, 2);
    }
  }
}

template <int S>
PAGODA_AMX inline __attribute__((always_inline)) void amx_store_dots(int32_t* ct) {
  if constexpr (S == 0) {
    _tile_stored(4, ct, 64);
  } else if constexpr (S == 1) {
    _tile_stored(5, ct, 64);
  } else {
    _tile_stored(6, ct, 64);
  }
}

// The float step of one block for activation row R: its block dots (ct row R) with the row's d and
// dsum (s: the block's AmxRows scales).
template <class T, size_t R>
PAGODA_AMX inline __attribute__((always_inline)) void amx_float_row(const int32_t* ct, FV<2> scale, FV<2> min,
                                                                    const float* s, __m512 (&acc)[16]) {
  // (the dots of weights with an offset are exact signed sums, s - offset * qsum of the other kernels)
  const __m512i v = _mm512_load_si512(ct + 16 * R);
  acc[R] = v_fmadd(v_cvt(v), v_mul(scale, splat_ps<2>(s[R])), acc[R]);
  if constexpr (T::kMin) acc[R] = v_fmadd(min, splat_ps<2>(s[16 + R]), acc[R]);
}

template <class T, size_t... R>
PAGODA_AMX inline __attribute__((always_inline)) void amx_float_step(std::index_sequence<R...>, const int32_t* ct,
                                                                     const float* sm, const float* s,
                                                                     __m512 (&acc)[16]) {
  const FV<2> scale = _mm512_load_ps(sm);
  const FV<2> min = _mm512_load_ps(sm + 16);
  (amx_float_row<T, R>(ct, scale, min, s, acc), ...);
}

// R... + O.
template <size_t O, size_t... R>
constexpr auto offset_by(std::index_sequence<R...>) {
  return std::index_sequence<(O + R)...>{};
}

template <size_t... R>
PAGODA_AMX inline __attribute__((always_inline)) void amx_zero(std::index_sequence<R...>, __m512 (&acc)[16]) {
  ((acc[R] = _mm512_setzero_ps()), ...);
}

template <size_t... R>
PAGODA_AMX inline __attribute__((always_inline)) void amx_store(std::index_sequence<R...>, const __m512 (&acc)[16],
                                                                __mmask16 mask, float* out, int64_t ldo) {
  (_mm512_mask_storeu_ps(out + static_cast<int64_t>(R) * ldo, mask, acc[R]), ...);
}

// Block b's tile multiply in slot S, block b unpacked first where w is non-null.
template <class T, int S>
PAGODA_AMX inline __attribute__((always_inline)) void amx_issue(const uint8_t* w, uint64_t group, uint8_t* bt,
                                                                float* sm, const int8_t* q, long q_stride, int64_t b) {
  if (w != nullptr) amx_unpack<T>(w, group, b, bt, sm);
  amx_dots<S, T::kOffset != 0>(q + kBlock * b, q_stride, bt + kAmxBBytes * b);
}

// 16 activation rows (quant bytes at q, q_stride bytes apart; scales at s, kAmxScaleFloats per
// block) against a pair of groups unpacked at (bt, sm), `valid` rows of its second group real.
// With w non-null the pair is unpacked from w on the way, each block just before its tile work.
template <class T>
PAGODA_AMX void amx_rows16(const uint8_t* w, uint64_t group, uint8_t* bt, float* sm, const int8_t* q, long q_stride,
                           const float* s, int64_t nb, int valid, float* out, int64_t ldo) {
  constexpr auto rows = std::make_index_sequence<16>{};
  alignas(64) int32_t ct[3][256];
  __m512 acc[16];
  amx_zero(rows, acc);
  const float* sm_b = sm;  // block b's scale and minimum vectors, and its rows' scales
  const float* s_b = s;
  // Block b + 2's multiply is issued, then block b + 1's dots stored in the middle of block b's
  // float step (its first eight rows before the store, the other eight after): a multiply has a
  // whole float step's time before its store, and the store as long before the loads that read
  // it. With the store between two halves of independent float work rather than before all of it,
  // a 16-row kernel measured 3-6 % faster at the median (one core, alternated runs).
  amx_issue<T, 0>(w, group, bt, sm, q, q_stride, 0);
  if (nb > 1) amx_issue<T, 1>(w, group, bt, sm, q, q_stride, 1);
  amx_store_dots<0>(ct[0]);
  int64_t b = 0;
  constexpr auto lo = std::make_index_sequence<8>{};
  constexpr auto hi = offset_by<8>(std::make_index_sequence<8>{});
  for (; b + 3 <= nb; b += 3) {
    amx_issue<T, 2>(w, group, bt, sm, q, q_stride, b + 2);
    amx_float_step<T>(lo, ct[0], sm_b, s_b, acc);
    amx_store_dots<1>(ct[1]);
    amx_float_step<T>(hi, ct[0], sm_b, s_b, acc);
    if (b + 3 < nb) amx_issue<T, 0>(w, group, bt, sm, q, q_stride, b + 3);
    amx_float_step<T>(lo, ct[1], sm_b + kAmxScaleMinFloats, s_b + kAmxScaleFloats, acc);
    amx_store_dots<2>(ct[2]);
    amx_float_step<T>(hi, ct[1], sm_b + kAmxScaleMinFloats, s_b + kAmxScaleFloats, acc);
    if (b + 4 < nb) amx_issue<T, 1>(w, group, bt, sm, q, q_stride, b + 4);
    amx_float_step<T>(lo, ct[2], sm_b + 2 * kAmxScaleMinFloats, s_b + 2 * kAmxScaleFloats, acc);
    if (b + 3 < nb) amx_store_dots<0>(ct[0]);
    amx_float_step<T>(hi, ct[2], sm_b + 2 * kAmxScaleMinFloats, s_b + 2 * kAmxScaleFloats, acc);
    sm_b += 3 * kAmxScaleMinFloats, s_b += 3 * kAmxScaleFloats;
  }
  // at most two blocks left: b's multiply issued and its dots stored, b + 1's multiply issued
  if (b < nb) amx_float_step<T>(rows, ct[0], sm_b, s_b, acc);
  if (b + 1 < nb) {
    amx_store_dots<1>(ct[1]);
    amx_float_step<T>(rows, ct[1], sm_b + kAmxScaleMinFloats, s_b + kAmxScaleFloats, acc);
  }
  amx_store(rows, acc, static_cast<__mmask16>((1u << (8 + valid)) - 1), out, ldo);
}

// A 64-byte aligned scratch buffer per thread, grown as needed.
PAGODA_AMX uint8_t* amx_scratch(uint64_t bytes) {
  thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < bytes + 64) buffer.resize(bytes + 64);
  const auto at = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - at % 64) % 64);
}

// What a thread's scratch holds: the unpacked pairs of the weight rows at `packed` (n rows of
// groups `group` bytes apart, by `kernel`), for the matmul `epoch` (AmxRows). The next call on
// the same rows in the same matmul (the tile's next block of activation rows) uses them as they
// are. Weights do not change within a matmul, and an epoch is never reused, so a weight freed and
// another allocated at the same address is never taken for the first.
struct AmxUnpacked {
  const void* kernel = nullptr;
  const uint8_t* packed = nullptr;
  uint64_t group = 0;
  int64_t n = 0;
  uint64_t epoch = 0;
  bool operator==(const AmxUnpacked&) const = default;
};
// One per thread, whatever the kernel: every kernel unpacks into the same scratch.
thread_local AmxUnpacked t_held;
// A distinct address per kernel, for AmxUnpacked::kernel.
template <class T>
constexpr char kKernelTag = 0;

template <class T>
PAGODA_AMX void packed_amx(uint64_t group, const uint8_t* packed, int64_t n, const AmxRows& x, int64_t nb, int64_t m,
                           float* out, int64_t ldo) {
  const uint64_t pair_bytes = static_cast<uint64_t>(nb) * (kAmxBBytes + kAmxScaleMinFloats * sizeof(float));
  const int64_t pairs = (n + 7) / 16;  // the pairs j = 0, 16, ... with j + 8 < n
  const AmxUnpacked want{&kKernelTag<T>, packed, group, n, x.epoch};
  const bool reuse = x.epoch != 0 && t_held == want;
  uint8_t* scratch = amx_scratch(static_cast<uint64_t>(pairs) * pair_bytes);
  t_held = want;
  const long q_stride = static_cast<long>(nb * kBlock);
  for (int64_t j = 0; j + 8 < n; j += 16) {
    const uint8_t* w = reuse ? nullptr : packed + static_cast<uint64_t>(j / 8) * group;
    uint8_t* bt = scratch + static_cast<uint64_t>(j / 16) * pair_bytes;
    auto* sm = reinterpret_cast<float*>(bt + kAmxBBytes * nb);
    const int valid = static_cast<int>(std::min<int64_t>(8, n - j - 8));
    for (int64_t r0 = 0; r0 < m; r0 += 16) {  // the first 16 rows unpack the pair for the others
      amx_rows16<T>(r0 == 0 ? w : nullptr, group, bt, sm, x.q + r0 * q_stride, q_stride,
                    x.scales + (r0 / 16) * nb * kAmxScaleFloats, nb, valid, out + r0 * ldo + j, ldo);
    }
  }
}

template <class T, int R>
PAGODA_VNNI void tile(const uint8_t* w, int valid, const ActBlock* x, int64_t stride, int64_t nb, float* out,
                      int64_t ldo) {
  packed_vnni<T, R, 1>(w, 0, valid, x, stride, nb, out, ldo);
}

template <class T>
void tiles_of(PackedTileFn tiles[4]) {
  tiles[0] = tile<T, 1>, tiles[1] = tile<T, 2>, tiles[2] = tile<T, 3>, tiles[3] = tile<T, 4>;
}

template <class T>
void pairs_of(PackedPairFn pairs[4]) {
  pairs[0] = packed_vnni<T, 1, 2>, pairs[1] = packed_vnni<T, 2, 2>, pairs[2] = packed_vnni<T, 3, 2>,
  pairs[3] = packed_vnni<T, 4, 2>;
}

// The kernel family of a repacked type, on one group (G = 1) or two.
template <class Fn>
void for_type(DType t, Fn&& fn) {
  switch (t) {
    case DType::kQ4_0: fn(Q4<false>{}); return;
    case DType::kQ4_1: fn(Q4<true>{}); return;
    case DType::kQ5_0: fn(Q5{}); return;
    case DType::kQ8_0: fn(Q8{}); return;
    case DType::kQ4_K: fn(Q4K{}); return;
    default: std::abort();  // callers check packs() first
  }
}

}  // namespace

bool qdot_cpu_has_vnni() {
  return qdot_cpu_has_avx2() && __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
         __builtin_cpu_supports("avx512vl") != 0 && __builtin_cpu_supports("avx512vnni") != 0;
}

void packed_tiles_vnni(DType t, PackedTileFn tiles[4]) {
  for_type(t, [&](auto type) { tiles_of<decltype(type)>(tiles); });
}

void packed_pairs_vnni(DType t, PackedPairFn pairs[4]) {
  for_type(t, [&](auto type) { pairs_of<decltype(type)>(pairs); });
}

bool qdot_cpu_has_amx() {
  static const bool amx = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!qdot_cpu_has_vnni() || __get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
    if ((d & (1u << 24)) == 0 || (d & (1u << 25)) == 0) return false;  // AMX-TILE, AMX-INT8
    return amx_tile_state_granted();
  }();
  return amx;
}

PackedAmxFn packed_amx_kernel(DType t) {
  PackedAmxFn fn = nullptr;
  for_type(t, [&](auto type) { fn = packed_amx<decltype(type)>; });
  return fn;
}

void run_packed_amx(PackedAmxFn amx, const PackedTileFn tiles[4], uint64_t group, const uint8_t* packed, int64_t n,
                    const ActBlock* x, const AmxRows& ax, int64_t blocks, int64_t m, float* out, int64_t ldo) {
  amx_begin();
  amx(group, packed, n, ax, blocks, m, out, ldo);
  const int64_t j = n - n % 16;
  if (j + 8 < n || j == n) return;  // no last group of its own
  // a last group of its own: the one-group kernels, four activation rows at a time
  for (int64_t r = 0; r < m; r += 4) {
    tiles[3](packed + static_cast<uint64_t>(j / 8) * group, static_cast<int>(n - j), x + r * blocks, blocks, blocks,
             out + r * ldo + j, ldo);
  }
}

}  // namespace pagoda::cpu::qdot

#endif  // PAGODA_QDOT_HAS_AVX2
