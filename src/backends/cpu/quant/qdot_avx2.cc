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
#include <vector>

#include "backends/cpu/quant/block_layout.h"

#define PAGODA_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace pagoda::cpu::qdot {
namespace {

namespace L = layout;

// signed weight bytes (|w| <= 127 or -128 never met with x = -128) x signed activation bytes
PAGODA_AVX2 inline __m256i mul_ss16(__m256i ws, __m256i x) {
  return _mm256_maddubs_epi16(_mm256_sign_epi8(ws, ws), _mm256_sign_epi8(x, ws));
}

PAGODA_AVX2 inline __m256i load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 16 bytes in both 128-bit lanes: one broadcast load, no shuffle-port work.
PAGODA_AVX2 inline __m256i half_twice(const void* p) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p)));
}

// x points at block 0 of the first activation row; row r is `stride` blocks further on.

// ---------------------------------------------------------------------------------------------
// Eight weight rows at a time. Each weight block of the eight rows is unpacked once, multiplied
// with up to four activation rows, and the integer products of the eight rows are reduced
// horizontally so that lane i of one vector holds row i's exact integer block dot. The float
// part then runs once per (block, activation row) for all eight weight rows: one convert, one
// product of the weight scales with the activation scale and one fused multiply-add (plus one for
// the minimum term of Q4_1 / Q4_K). Each (weight row, activation row) pair thus sees one float
// chain over the blocks, in block order, in its own lane: the same instructions whatever the lane,
// the number of activation rows beside it, or how many of the eight rows are real (missing rows
// of a last group repeat the last real row and are not stored). The integer sums are exact, so
// their reduction order does not matter.

// Pointers to the eight rows of a group; rows past `valid` repeat the last real one.
PAGODA_AVX2 inline void rows8(const uint8_t* w, uint64_t row_bytes, int valid, const uint8_t* p[8]) {
  for (int i = 0; i < 8; ++i)
    p[i] = w + static_cast<uint64_t>(std::min(i, valid - 1)) * row_bytes;
}

// The f16 at byte `off` of each of the eight rows, as floats.
PAGODA_AVX2 inline __m256 halves8(const uint8_t* const p[8], uint64_t off) {
  const __m128i h =
      _mm_setr_epi16(static_cast<int16_t>(L::read_u16(p[0] + off)), static_cast<int16_t>(L::read_u16(p[1] + off)),
                     static_cast<int16_t>(L::read_u16(p[2] + off)), static_cast<int16_t>(L::read_u16(p[3] + off)),
                     static_cast<int16_t>(L::read_u16(p[4] + off)), static_cast<int16_t>(L::read_u16(p[5] + off)),
                     static_cast<int16_t>(L::read_u16(p[6] + off)), static_cast<int16_t>(L::read_u16(p[7] + off)));
  return _mm256_cvtph_ps(h);
}

// Lane i = the sum of the sixteen int16 lanes of m[i]; each lane of m must be at most 4095 in
// magnitude (4-bit unsigned weights: 2 * 15 * 127), so every partial sum fits in int16.
PAGODA_AVX2 inline __m256i reduce8_small(const __m256i m[8]) {
  const __m256i a = _mm256_hadd_epi16(m[0], m[1]);  // per 128-bit half: m0 x4, m1 x4
  const __m256i b = _mm256_hadd_epi16(m[2], m[3]);
  const __m256i c = _mm256_hadd_epi16(m[4], m[5]);
  const __m256i d = _mm256_hadd_epi16(m[6], m[7]);
  const __m256i ab = _mm256_hadd_epi16(a, b);  // m0 x2 .. m3 x2
  const __m256i cd = _mm256_hadd_epi16(c, d);
  const __m256i all = _mm256_hadd_epi16(ab, cd);  // m0 .. m7, once per half
  return _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(all)),
                          _mm256_cvtepi16_epi32(_mm256_extracti128_si256(all, 1)));
}

// Lane i = the sum of the eight int32 lanes of m[i].
PAGODA_AVX2 inline __m256i reduce8_epi32(const __m256i m[8]) {
  const __m256i a = _mm256_hadd_epi32(m[0], m[1]);
  const __m256i b = _mm256_hadd_epi32(m[2], m[3]);
  const __m256i c = _mm256_hadd_epi32(m[4], m[5]);
  const __m256i d = _mm256_hadd_epi32(m[6], m[7]);
  const __m256i ab = _mm256_hadd_epi32(a, b);  // m0 .. m3 per half
  const __m256i cd = _mm256_hadd_epi32(c, d);
  return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

// The same for any int16 lanes (signed 8-bit weights): widened to int32 first.
PAGODA_AVX2 inline __m256i reduce8_wide(const __m256i m[8]) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i w[8];
  for (int i = 0; i < 8; ++i)
    w[i] = _mm256_madd_epi16(m[i], ones);
  return reduce8_epi32(w);
}

// The eight rows of a group lie one after another, but the kernels walk them in step, block by
// block: eight interleaved streams the hardware prefetcher does not follow well. Each step
// therefore prefetches its share of the next group (the `bytes` of the next eight rows' `unit`
// from byte `at` of that group). Prefetches past the weight's end are harmless on x86.
PAGODA_AVX2 inline void prefetch_next(const uint8_t* w, uint64_t row_bytes, uint64_t at, uint64_t bytes) {
  const uint8_t* next = w + 8 * row_bytes + at;
  for (uint64_t o = 0; o < bytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(next + o), _MM_HINT_T0);
}

template <int R>
PAGODA_AVX2 inline void store8(const __m256 acc[R], float* out, int64_t ldo, int valid) {
  for (int r = 0; r < R; ++r) {
    if (valid == 8) {
      _mm256_storeu_ps(out + r * ldo, acc[r]);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[r]);
      for (int i = 0; i < valid; ++i)
        out[r * ldo + i] = tmp[i];
    }
  }
}

// The 32-bit word at byte `off` of each of the eight rows.
PAGODA_AVX2 inline __m256i words8(const uint8_t* const p[8], uint64_t off) {
  return _mm256_setr_epi32(static_cast<int>(L::read_u32(p[0] + off)), static_cast<int>(L::read_u32(p[1] + off)),
                           static_cast<int>(L::read_u32(p[2] + off)), static_cast<int>(L::read_u32(p[3] + off)),
                           static_cast<int>(L::read_u32(p[4] + off)), static_cast<int>(L::read_u32(p[5] + off)),
                           static_cast<int>(L::read_u32(p[6] + off)), static_cast<int>(L::read_u32(p[7] + off)));
}

// Legacy 32-element blocks with unsigned 4-bit quants: Q4_1 (q * d + m) and Q4_0 ((q - 8) * d,
// the offset subtracted exactly as 8 * sum(x)). A block's 16 bytes of nibbles hold elements 0-15
// (low) and 16-31 (high); rows i and i + 4 share one vector (row i in the low 128 bits), so one
// shift and two masks unpack two rows, and the products with the activation's two halves (each
// repeated in both 128-bit lanes) add up in int16 (at most 2 * 2 * 15 * 127). The pairing makes the
// reduction's lanes come out in row order.
template <int R, bool kQ4_1>
PAGODA_AVX2 void tile_q4(const uint8_t* w, uint64_t row_bytes, int valid, const ActBlock* x, int64_t stride, int64_t nb,
                         float* out, int64_t ldo) {
  const uint8_t* p[8];
  rows8(w, row_bytes, valid, p);
  constexpr int kBytes = kQ4_1 ? L::q4_1::kBytes : L::q4_0::kBytes;
  constexpr int kQs = kQ4_1 ? L::q4_1::kQs : L::q4_0::kQs;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  // (d, m) pairs of eight rows -> d0..d3 m0..m3 | d4..d7 m4..m7 within the 128-bit lanes
  const __m256i split = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13,
                                         2, 3, 6, 7, 10, 11, 14, 15);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i lo[4];
    __m256i hi[4];
    __m256 dw;
    __m256 mw = _mm256_setzero_ps();
    const uint64_t off = static_cast<uint64_t>(b) * kBytes;
    prefetch_next(w, row_bytes, 8 * off, 8 * kBytes);
    for (int i = 0; i < 4; ++i) {
      const __m256i v = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[i] + off + kQs))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[i + 4] + off + kQs)), 1);
      lo[i] = _mm256_and_si256(v, low4);
      hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    }
    if constexpr (kQ4_1) {
      // d0..d3 d4..d7 | m0..m3 m4..m7
      const __m256i dm = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(words8(p, off), split), 0xd8);
      dw = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
      mw = _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1));
    } else {
      dw = halves8(p, off + L::q4_0::kD);
    }
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      const __m256i x0 = half_twice(a.q);       // elements 0-15, twice
      const __m256i x1 = half_twice(a.q + 16);  // elements 16-31, twice
      __m256i s4[4];
      for (int i = 0; i < 4; ++i)
        s4[i] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], x0), _mm256_maddubs_epi16(hi[i], x1));
      // [r0 x4, r1 x4 | r4 x4, r5 x4] and [r2, r3 | r6, r7] -> [r0..r3 x2 | r4..r7 x2] -> int32
      const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(s4[0], s4[1]), _mm256_hadd_epi16(s4[2], s4[3]));
      __m256i s = _mm256_madd_epi16(h, ones);
      if constexpr (!kQ4_1) s = _mm256_sub_epi32(s, _mm256_set1_epi32(8 * a.qsum));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(a.d)), acc[r]);
      if constexpr (kQ4_1) acc[r] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.dsum), acc[r]);
    }
  }
  store8<R>(acc, out, ldo, valid);
}

// Q5_0: (q - 16) * d with q's fifth bit from qh; unsigned 5-bit quants, offset 16 * sum(x). Rows
// i and i + 4 share a vector as in tile_q4; the pair sums of the two halves add up in int16 (at
// most 2 * 2 * 31 * 127), one more int16 step, then int32.
template <int R>
PAGODA_AVX2 void tile_q5_0(const uint8_t* w, uint64_t row_bytes, int valid, const ActBlock* x, int64_t stride,
                           int64_t nb, float* out, int64_t ldo) {
  const uint8_t* p[8];
  rows8(w, row_bytes, valid, p);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i select = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  // qh bytes 0-1 (elements 0-15) and 2-3 (elements 16-31), each spread over eight bytes
  const __m256i spread_lo =
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m256i spread_hi =
      _mm256_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint64_t off = static_cast<uint64_t>(b) * L::q5_0::kBytes;
    prefetch_next(w, row_bytes, 8 * off, 8 * L::q5_0::kBytes);
    __m256i lo[4];
    __m256i hi[4];
    for (int i = 0; i < 4; ++i) {
      const __m256i v = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[i] + off + L::q5_0::kQs))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[i + 4] + off + L::q5_0::kQs)), 1);
      const __m256i qh = _mm256_set_m128i(_mm_set1_epi32(static_cast<int>(L::read_u32(p[i + 4] + off + L::q5_0::kQh))),
                                          _mm_set1_epi32(static_cast<int>(L::read_u32(p[i] + off + L::q5_0::kQh))));
      const __m256i h_lo = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, spread_lo), select), select);
      const __m256i h_hi = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, spread_hi), select), select);
      lo[i] = _mm256_or_si256(_mm256_and_si256(v, low4), _mm256_and_si256(h_lo, bit4));
      hi[i] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), _mm256_and_si256(h_hi, bit4));
    }
    const __m256 dw = halves8(p, off + L::q5_0::kD);
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      const __m256i x0 = half_twice(a.q);
      const __m256i x1 = half_twice(a.q + 16);
      __m256i s2[4];
      for (int i = 0; i < 4; ++i)
        s2[i] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], x0), _mm256_maddubs_epi16(hi[i], x1));
      // [r0 x4, r1 x4 | r4 x4, r5 x4] -> int32 [r0 x2, r1 x2 | r4 x2, r5 x2]; with rows 2, 3, 6, 7
      const __m256i m01 = _mm256_madd_epi16(_mm256_hadd_epi16(s2[0], s2[1]), ones);
      const __m256i m23 = _mm256_madd_epi16(_mm256_hadd_epi16(s2[2], s2[3]), ones);
      const __m256i s = _mm256_sub_epi32(_mm256_hadd_epi32(m01, m23), _mm256_set1_epi32(16 * a.qsum));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(a.d)), acc[r]);
    }
  }
  store8<R>(acc, out, ldo, valid);
}

// Q8_0: signed weights, |w| times x with w's sign moved onto x.
template <int R>
PAGODA_AVX2 void tile_q8_0(const uint8_t* w, uint64_t row_bytes, int valid, const ActBlock* x, int64_t stride,
                           int64_t nb, float* out, int64_t ldo) {
  const uint8_t* p[8];
  rows8(w, row_bytes, valid, p);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint64_t off = static_cast<uint64_t>(b) * L::q8_0::kBytes;
    prefetch_next(w, row_bytes, 8 * off, 8 * L::q8_0::kBytes);
    const __m256 dw = halves8(p, off + L::q8_0::kD);
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      const __m256i xv = load32(a.q);
      __m256i m[8];
      for (int i = 0; i < 8; ++i) {
        const __m256i q = load32(p[i] + off + L::q8_0::kQs);
        m[i] = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xv, q));
      }
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8_wide(m)), _mm256_mul_ps(dw, _mm256_set1_ps(a.d)), acc[r]);
    }
  }
  store8<R>(acc, out, ldo, valid);
}

// Q6_K: 6-bit quants q (low four bits in ql, the top two in qh) minus 32, in 16-element
// sub-blocks with int8 scales, one f16 d per 256 elements. For 32-element chunk c of a super-block
// each row's quants are unpacked once (signed, |q - 32| <= 32), multiplied with the activation
// block (mul_ss16: pair sums of at most 2 * 32 * 128), scaled per sub-block in the integer domain
// (_mm256_madd_epi16 by the two sub-blocks' scales) and reduced so that lane i holds row i's exact
// chunk dot; the float step is one fused multiply-add by d * a.d. packed_q6_k gives the same bits.
template <int R>
PAGODA_AVX2 void tile_q6_k(const uint8_t* w, uint64_t row_bytes, int valid, const ActBlock* x, int64_t stride,
                           int64_t nb, float* out, int64_t ldo) {
  namespace K = L::q6_k;
  const uint8_t* p[8];
  rows8(w, row_bytes, valid, p);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i low2 = _mm256_set1_epi8(0x03);
  const __m256i bias = _mm256_set1_epi8(32);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nb / 8; ++sb) {
    const uint64_t off = static_cast<uint64_t>(sb) * K::kBytes;
    prefetch_next(w, row_bytes, 8 * off, 8 * K::kBytes);
    const __m256 d = halves8(p, off + K::kD);
    for (int c = 0; c < 8; ++c) {
      // chunk c: ql bytes 32 * (c % 2) of half c / 4, low nibbles for c % 4 < 2; bit pair c % 4 of
      // the half's 32 qh bytes
      const uint64_t ql = off + K::kQl + 64 * (c / 4) + 32 * (c % 2);
      const uint64_t qh = off + K::kQh + 32 * (c / 4);
      const int nibble = 4 * ((c % 4) / 2);
      __m256i m[R][8];
      for (int i = 0; i < 8; ++i) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(load32(p[i] + ql), nibble), low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(load32(p[i] + qh), 2 * (c % 4)), low2);
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), bias);
        const auto* sc = reinterpret_cast<const int8_t*>(p[i] + off + K::kScales + 2 * c);
        const __m256i scale16 = _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
        for (int r = 0; r < R; ++r)
          m[r][i] = _mm256_madd_epi16(mul_ss16(q, load32(x[r * stride + 8 * sb + c].q)), scale16);
      }
      for (int r = 0; r < R; ++r) {
        const ActBlock& a = x[r * stride + 8 * sb + c];
        acc[r] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8_epi32(m[r])), _mm256_mul_ps(d, _mm256_set1_ps(a.d)), acc[r]);
      }
    }
  }
  store8<R>(acc, out, ldo, valid);
}

// 8 x 8 bytes (row i in the low 8 bytes of r[i]) -> four vectors holding columns 2c and 2c + 1
// (byte i of a column from row i) in their low and high 8 bytes.
PAGODA_AVX2 inline void transpose8x8(const __m128i r[8], __m128i cols[4]) {
  const __m128i t0 = _mm_unpacklo_epi8(r[0], r[1]);
  const __m128i t1 = _mm_unpacklo_epi8(r[2], r[3]);
  const __m128i t2 = _mm_unpacklo_epi8(r[4], r[5]);
  const __m128i t3 = _mm_unpacklo_epi8(r[6], r[7]);
  const __m128i u0 = _mm_unpacklo_epi16(t0, t1);  // columns 0-3, rows 0-3
  const __m128i u1 = _mm_unpackhi_epi16(t0, t1);  // columns 4-7, rows 0-3
  const __m128i u2 = _mm_unpacklo_epi16(t2, t3);  // columns 0-3, rows 4-7
  const __m128i u3 = _mm_unpackhi_epi16(t2, t3);
  cols[0] = _mm_unpacklo_epi32(u0, u2);
  cols[1] = _mm_unpackhi_epi32(u0, u2);
  cols[2] = _mm_unpacklo_epi32(u1, u3);
  cols[3] = _mm_unpackhi_epi32(u1, u3);
}

// Column s (0..7) of transpose8x8's output, as eight floats.
PAGODA_AVX2 inline __m256 column_ps(const __m128i cols[4], int s) {
  const __m128i c = (s % 2) == 0 ? cols[s / 2] : _mm_srli_si128(cols[s / 2], 8);
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
}

// Q4_K: per super-block, the eight 6-bit scales and mins of each row are unpacked with 32-bit
// operations and transposed so that sub-block s's eight scales (one per row) form one vector.
template <int R>
PAGODA_AVX2 void tile_q4_k(const uint8_t* w, uint64_t row_bytes, int valid, const ActBlock* x, int64_t stride,
                           int64_t nb, float* out, int64_t ldo) {
  const uint8_t* p[8];
  rows8(w, row_bytes, valid, p);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t sb = 0; sb < nb / 8; ++sb) {
    const uint64_t off = static_cast<uint64_t>(sb) * L::q4_k::kBytes;
    prefetch_next(w, row_bytes, 8 * off, 8 * L::q4_k::kBytes);
    const __m256 d = halves8(p, off + L::q4_k::kD);
    const __m256 dmin = halves8(p, off + L::q4_k::kDmin);
    __m128i sc_rows[8];
    __m128i mn_rows[8];
    for (int i = 0; i < 8; ++i) {
      const uint8_t* s = p[i] + off + L::q4_k::kScales;
      const uint32_t u0 = L::read_u32(s);
      const uint32_t u1 = L::read_u32(s + 4);
      const uint32_t u2 = L::read_u32(s + 8);
      const uint32_t sc_lo = u0 & 0x3f3f3f3fu;
      const uint32_t mn_lo = u1 & 0x3f3f3f3fu;
      const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
      const uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
      sc_rows[i] = _mm_setr_epi32(static_cast<int>(sc_lo), static_cast<int>(sc_hi), 0, 0);
      mn_rows[i] = _mm_setr_epi32(static_cast<int>(mn_lo), static_cast<int>(mn_hi), 0, 0);
    }
    __m128i sc_cols[4];
    __m128i mn_cols[4];
    transpose8x8(sc_rows, sc_cols);
    transpose8x8(mn_rows, mn_cols);
    for (int s = 0; s < 8; ++s) {
      const __m256 dsc = _mm256_mul_ps(d, column_ps(sc_cols, s));
      const __m256 neg_dmn = _mm256_xor_ps(_mm256_mul_ps(dmin, column_ps(mn_cols, s)), sign);
      const uint64_t qoff = off + L::q4_k::kQs + 32 * static_cast<uint64_t>(s / 2);
      const int shift = 4 * (s % 2);
      __m256i q[8];
      for (int i = 0; i < 8; ++i)
        q[i] = _mm256_and_si256(_mm256_srli_epi16(load32(p[i] + qoff), shift), low4);
      for (int r = 0; r < R; ++r) {
        const ActBlock& a = x[r * stride + 8 * sb + s];
        const __m256i xv = load32(a.q);
        __m256i m[8];
        for (int i = 0; i < 8; ++i)
          m[i] = _mm256_maddubs_epi16(q[i], xv);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8_small(m)), _mm256_mul_ps(dsc, _mm256_set1_ps(a.d)), acc[r]);
        acc[r] = _mm256_fmadd_ps(neg_dmn, _mm256_set1_ps(a.dsum), acc[r]);
      }
    }
  }
  store8<R>(acc, out, ldo, valid);
}

using TileFn = void (*)(const uint8_t*, uint64_t, int, const ActBlock*, int64_t, int64_t, float*, int64_t);

// A repacked group's weights are one stream: each block step prefetches the block 1 KiB ahead.
PAGODA_AVX2 inline void prefetch_ahead(const uint8_t* block, uint64_t bytes) {
  for (uint64_t o = 0; o < bytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(block + 1024 + o), _MM_HINT_T0);
}

// Q4_0 / Q4_1 on a repacked group (qdot.h, pack_rows8): lane i of quant vector j holds bytes
// 4j..4j+3 of row i, that is elements 4j..4j+3 (low nibbles) and 16+4j..16+4j+3 (high nibbles).
// Each product with the matching four activation bytes, broadcast to every lane, leaves row i's
// pair sums in the lane's two int16 halves; the eight products of a block add up there (at most
// 8 * 2 * 15 * 128 = 30720 in magnitude) and one multiply-add by ones gives row i's exact block
// dot in int32 lane i, as tile_q4's reduction does. The float part is tile_q4's.
PAGODA_AVX2 inline __m256i bcast4(const int8_t* p) {
  return _mm256_set1_epi32(static_cast<int>(L::read_u32(reinterpret_cast<const uint8_t*>(p))));
}

// The int16 sums of a rows-in-lanes block against activation block q: s0 over the low-nibble
// vectors (elements 0-15), s1 over the high ones (16-31), in two chains.
PAGODA_AVX2 inline void lane_sums(const __m256i lo[4], const __m256i hi[4], const int8_t* q, __m256i& s0, __m256i& s1) {
  s0 = _mm256_maddubs_epi16(lo[0], bcast4(q));
  s1 = _mm256_maddubs_epi16(hi[0], bcast4(q + 16));
  for (int j = 1; j < 4; ++j) {
    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(lo[j], bcast4(q + 4 * j)));
    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(hi[j], bcast4(q + 16 + 4 * j)));
  }
}

// One block's float step for output lanes whose exact int16 sums are `s16`: to int32, then
// acc += float(dot) * (dw * d) (+ mw * dsum for Q4_1; for Q4_0 the offset 8 * qsum comes off the
// integer dot first). Every Q4 kernel below ends a block with exactly this.
template <bool kQ4_1>
PAGODA_AVX2 inline void block_step(__m256i s16, __m256 dw, __m256 mw, const ActBlock& a, __m256i ones, __m256& acc) {
  __m256i s = _mm256_madd_epi16(s16, ones);
  if constexpr (!kQ4_1) s = _mm256_sub_epi32(s, _mm256_set1_epi32(8 * a.qsum));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(a.d)), acc);
  if constexpr (kQ4_1) acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.dsum), acc);
}

template <int R, bool kQ4_1>
PAGODA_AVX2 void packed_q4(const uint8_t* w, int valid, const ActBlock* x, int64_t stride, int64_t nb, float* out,
                           int64_t ldo) {
  constexpr int kHead = kQ4_1 ? 32 : 16;  // scales (and minimums) first
  constexpr uint64_t kBlockBytes = kHead + 8 * 16;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + static_cast<uint64_t>(b) * kBlockBytes;
    prefetch_ahead(g, kBlockBytes);
    __m256i lo[4];
    __m256i hi[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i v = load32(g + kHead + 32 * j);
      lo[j] = _mm256_and_si256(v, low4);
      hi[j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    __m256 mw = _mm256_setzero_ps();
    if constexpr (kQ4_1) mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      __m256i s0, s1;
      lane_sums(lo, hi, a.q, s0, s1);
      block_step<kQ4_1>(_mm256_add_epi16(s0, s1), dw, mw, a, ones, acc[r]);  // joined in int16: at most 30720
    }
  }
  store8<R>(acc, out, ldo, valid);
}

// Two groups of eight rows (the second `group` bytes after the first, `valid` of its rows real)
// against R activation rows: each broadcast of four activation bytes serves both groups, which
// halves the broadcasts per multiply that bound packed_q4. Per output the integer block dot is
// the same exact sum and the float steps are block_step's, so the results are packed_q4's bits.
template <int R, bool kQ4_1>
PAGODA_AVX2 void packed_q4_pair(const uint8_t* w, uint64_t group, int valid, const ActBlock* x, int64_t stride,
                                int64_t nb, float* out, int64_t ldo) {
  constexpr int kHead = kQ4_1 ? 32 : 16;
  constexpr uint64_t kBlockBytes = kHead + 8 * 16;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[2][R];
  for (int r = 0; r < R; ++r)
    acc[0][r] = acc[1][r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g[2] = {w + static_cast<uint64_t>(b) * kBlockBytes,
                           w + group + static_cast<uint64_t>(b) * kBlockBytes};
    prefetch_ahead(g[0], kBlockBytes);
    prefetch_ahead(g[1], kBlockBytes);
    // s[h][r]: int16 lane sums of group h against row r, as lane_sums' s0 + s1 (at most 30720).
    __m256i s[2][R];
#pragma GCC unroll 1
    for (int j = 0; j < 4; ++j) {
      __m256i lo[2];
      __m256i hi[2];
      for (int h = 0; h < 2; ++h) {
        const __m256i v = load32(g[h] + kHead + 32 * j);
        lo[h] = _mm256_and_si256(v, low4);
        hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const int8_t* q = x[r * stride + b].q;
        const __m256i xl = bcast4(q + 4 * j);
        const __m256i xh = bcast4(q + 16 + 4 * j);
        for (int h = 0; h < 2; ++h) {
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], xl), _mm256_maddubs_epi16(hi[h], xh));
          s[h][r] = j == 0 ? p : _mm256_add_epi16(s[h][r], p);
        }
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[h])));
      __m256 mw = _mm256_setzero_ps();
      if constexpr (kQ4_1) mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[h] + 16)));
      for (int r = 0; r < R; ++r)
        block_step<kQ4_1>(s[h][r], dw, mw, x[r * stride + b], ones, acc[h][r]);
    }
  }
  store8<R>(acc[0], out, ldo, 8);
  store8<R>(acc[1], out + 8, ldo, valid);
}

// Q8_0 on a repacked group: 16 bytes of scales, then eight vectors, vector j holding quant bytes
// 4j..4j+3 of rows 0..7. mul_ss16's sign trick on a broadcast (|w| times the four activation bytes
// with each lane's weight signs moved onto them); a pair sum can reach 2 * 128 * 127, so every
// product goes to int32 at once, and the eight add up to row i's exact block dot in lane i. The
// float step is tile_q8_0's, so the results are its bits.
template <int R>
PAGODA_AVX2 void packed_q8_0(const uint8_t* w, int valid, const ActBlock* x, int64_t stride, int64_t nb, float* out,
                             int64_t ldo) {
  constexpr uint64_t kBlockBytes = 16 + 8 * 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + static_cast<uint64_t>(b) * kBlockBytes;
    prefetch_ahead(g, kBlockBytes);
    __m256i s[R];
#pragma GCC unroll 1
    for (int j = 0; j < 8; ++j) {
      const __m256i q = load32(g + 16 + 32 * j);
      const __m256i aq = _mm256_sign_epi8(q, q);
      for (int r = 0; r < R; ++r) {
        const __m256i xv = _mm256_sign_epi8(bcast4(x[r * stride + b].q + 4 * j), q);
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, xv), ones);
        s[r] = j == 0 ? p : _mm256_add_epi32(s[r], p);
      }
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    for (int r = 0; r < R; ++r)
      acc[r] =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r]), _mm256_mul_ps(dw, _mm256_set1_ps(x[r * stride + b].d)), acc[r]);
  }
  store8<R>(acc, out, ldo, valid);
}

// Q5_0 on a repacked group: packed_q4's layout with the eight rows' fifth-bit words (lane i = row
// i's qh) after the scales. For vector j the fifth bits of elements 4j..4j+3 (low nibbles) are
// bits 4j..4j+3 of qh, in its byte j / 2, and those of elements 16+4j.. (high nibbles) are in
// byte 2 + j / 2: a byte shuffle spreads that byte over the lane's four bytes, and a per-byte bit
// test sets bit 4. Quants reach 31, so each half's four products (at most 4 * 2 * 31 * 128) add
// up in int16 on its own before going to int32; the offset 16 is taken off exactly as 16 * sum(x)
// and the float part is tile_q5_0's.
template <int R>
PAGODA_AVX2 void packed_q5_0(const uint8_t* w, int valid, const ActBlock* x, int64_t stride, int64_t nb, float* out,
                             int64_t ldo) {
  constexpr uint64_t kBlockBytes = 48 + 8 * 16;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  const __m256i ones = _mm256_set1_epi16(1);
  // the first byte of each 32-bit lane, four times
  const __m256i lane_base = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0, 0, 0, 0, 4, 4, 4, 4,
                                             8, 8, 8, 8, 12, 12, 12, 12);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + static_cast<uint64_t>(b) * kBlockBytes;
    prefetch_ahead(g, kBlockBytes);
    const __m256i qh = load32(g + 16);
    __m256i lo[4];
    __m256i hi[4];
    for (int j = 0; j < 4; ++j) {
      // byte b of each 32-bit lane <- byte j / 2 (low nibbles) or 2 + j / 2 (high) of that lane
      const __m256i spread_lo = _mm256_add_epi8(lane_base, _mm256_set1_epi8(static_cast<char>(j / 2)));
      const __m256i spread_hi = _mm256_add_epi8(lane_base, _mm256_set1_epi8(static_cast<char>(2 + j / 2)));
      const int shift = 4 * (j % 2);
      const __m256i select = _mm256_set1_epi32(
          static_cast<int>((1u << shift) | (2u << shift) << 8 | (4u << shift) << 16 | (8u << shift) << 24));
      const __m256i h_lo = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, spread_lo), select), select);
      const __m256i h_hi = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, spread_hi), select), select);
      const __m256i v = load32(g + 48 + 32 * j);
      lo[j] = _mm256_or_si256(_mm256_and_si256(v, low4), _mm256_and_si256(h_lo, bit4));
      hi[j] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), _mm256_and_si256(h_hi, bit4));
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      __m256i s0, s1;
      lane_sums(lo, hi, a.q, s0, s1);
      const __m256i s = _mm256_sub_epi32(_mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones)),
                                         _mm256_set1_epi32(16 * a.qsum));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(a.d)), acc[r]);
    }
  }
  store8<R>(acc, out, ldo, valid);
}

// Q4_K on a repacked group (pack_rows8): per sub-block s, the eight rows' scales and minimums are
// one 8-byte load each (tile_q4_k transposes them instead), and the quants are chunk s / 2's eight
// vectors, low or high nibbles. Row i's exact sub-block dot ends in int32 lane i (eight products
// of at most 2 * 15 * 128 add up in int16), and the float part is tile_q4_k's.
template <int R>
PAGODA_AVX2 void packed_q4_k(const uint8_t* w, int valid, const ActBlock* x, int64_t stride, int64_t nb, float* out,
                             int64_t ldo) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nb / 8; ++sb) {
    const uint8_t* g = w + static_cast<uint64_t>(sb) * kPackedQ4KBytes;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    for (int s = 0; s < 8; ++s) {
      const uint8_t* chunk = g + 160 + 256 * (s / 2);
      for (int o = 0; o < 128; o += 64)
        _mm_prefetch(reinterpret_cast<const char*>(chunk + 2 * kPackedQ4KBytes + 128 * (s % 2) + o), _MM_HINT_T0);
      const __m256 sc =
          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 32 + 8 * s))));
      const __m256 mn =
          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 96 + 8 * s))));
      const __m256 dsc = _mm256_mul_ps(d, sc);
      const __m256 neg_dmn = _mm256_xor_ps(_mm256_mul_ps(dmin, mn), sign);
      const int shift = 4 * (s % 2);
      __m256i s16[R];
      for (int j = 0; j < 8; ++j) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(load32(chunk + 32 * j), shift), low4);
        for (int r = 0; r < R; ++r) {
          const __m256i p = _mm256_maddubs_epi16(q, bcast4(x[r * stride + 8 * sb + s].q + 4 * j));
          s16[r] = j == 0 ? p : _mm256_add_epi16(s16[r], p);
        }
      }
      for (int r = 0; r < R; ++r) {
        const ActBlock& a = x[r * stride + 8 * sb + s];
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s16[r], ones)),
                                 _mm256_mul_ps(dsc, _mm256_set1_ps(a.d)), acc[r]);
        acc[r] = _mm256_fmadd_ps(neg_dmn, _mm256_set1_ps(a.dsum), acc[r]);
      }
    }
  }
  store8<R>(acc, out, ldo, valid);
}

// Q6_K on a repacked group (pack_rows8): per super-block the eight rows' d, their sixteen
// sub-block scales sub-block major (row i of sub-block s at 16 + 8 s + i), then per 32-element
// chunk four vectors of low nibbles, vector t holding elements 4t..4t+3 (low nibbles) and
// 16+4t..16+4t+3 (high nibbles) of rows 0..7 in its lanes, and two vectors of top bit pairs for
// elements 0-15 and 16-31, byte b of lane i holding bit pairs t = 0..3 of element 4t + b of row i
// (at bits 2t, 2t + 1). One shift and one mask put a vector's bit pairs at bits 4-5.
//
// The quants stay unsigned (0..63): two products of at most 2 * 63 * 128 add up in int16, a
// multiply-add by the sub-block's scales takes them to int32, and the offset 32 * sum(scale *
// sum of x over the sub-block) comes off exactly, from the activation's sub-block sums (xs:
// 8 * the sum of elements 0-15 in the low int16, of 16-31 in the high one). Row i's exact chunk
// dot thus ends in lane i, and the float step is tile_q6_k's: the same bits.
template <int R>
PAGODA_AVX2 void packed_q6_k(const uint8_t* w, int valid, const ActBlock* x, int64_t stride, int64_t nb,
                             const int32_t* xs, float* out, int64_t ldo) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nb / 8; ++sb) {
    const uint8_t* g = w + static_cast<uint64_t>(sb) * kPackedQ6KBytes;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    for (int c = 0; c < 8; ++c) {
      const uint8_t* chunk = g + 144 + 192 * c;
      prefetch_ahead(chunk, 192);
      // sign-extended scales of sub-blocks 2c and 2c + 1, one per lane
      const __m256i s0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 16 + 16 * c)));
      const __m256i s1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 24 + 16 * c)));
      const __m256i sc16[2] = {_mm256_blend_epi16(s0, _mm256_slli_epi32(s0, 16), 0xaa),
                               _mm256_blend_epi16(s1, _mm256_slli_epi32(s1, 16), 0xaa)};
      const __m256i sc_pair = _mm256_blend_epi16(s0, _mm256_slli_epi32(s1, 16), 0xaa);
      __m256i dot[R];
      for (int h = 0; h < 2; ++h) {  // sub-block 2c + h: elements 16h..16h+15
        const __m256i top = load32(chunk + 128 + 32 * h);
#pragma GCC unroll 1
        for (int jp = 0; jp < 2; ++jp) {
          __m256i v[2];
          for (int u = 0; u < 2; ++u) {
            const int t = 2 * jp + u;
            const __m256i nib = load32(chunk + 32 * t);
            const __m256i lo = h == 0 ? _mm256_and_si256(nib, low4) : _mm256_and_si256(_mm256_srli_epi16(nib, 4), low4);
            const __m256i hb = t == 3 ? _mm256_srli_epi16(top, 2) : _mm256_slli_epi16(top, 4 - 2 * t);
            v[u] = _mm256_or_si256(lo, _mm256_and_si256(hb, bits45));
          }
          for (int r = 0; r < R; ++r) {
            const int8_t* q = x[r * stride + 8 * sb + c].q + 16 * h + 8 * jp;
            const __m256i p16 =
                _mm256_add_epi16(_mm256_maddubs_epi16(v[0], bcast4(q)), _mm256_maddubs_epi16(v[1], bcast4(q + 4)));
            const __m256i p = _mm256_madd_epi16(p16, sc16[h]);
            dot[r] = h == 0 && jp == 0 ? p : _mm256_add_epi32(dot[r], p);
          }
        }
      }
      for (int r = 0; r < R; ++r) {
        const int64_t at = r * stride + 8 * sb + c;
        const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc_pair, _mm256_set1_epi32(xs[at])), 2);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dot[r], offset)),
                                 _mm256_mul_ps(d, _mm256_set1_ps(x[at].d)), acc[r]);
      }
    }
  }
  store8<R>(acc, out, ldo, valid);
}

using Q6Fn = void (*)(const uint8_t*, int, const ActBlock*, int64_t, int64_t, const int32_t*, float*, int64_t);

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
      o.qsum = 0;
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
    o.qsum = _mm_cvtsi128_si32(s4);
    o.dsum = d * static_cast<float>(o.qsum);
  }
}

void packed_pairs_avx2(DType t, PackedPairFn pairs[4]) {
  if (t == DType::kQ4_1) {
    pairs[0] = packed_q4_pair<1, true>, pairs[1] = packed_q4_pair<2, true>, pairs[2] = packed_q4_pair<3, true>,
    pairs[3] = packed_q4_pair<4, true>;
  } else if (t == DType::kQ4_0) {
    pairs[0] = packed_q4_pair<1, false>, pairs[1] = packed_q4_pair<2, false>, pairs[2] = packed_q4_pair<3, false>,
    pairs[3] = packed_q4_pair<4, false>;
  } else {
    pairs[0] = pairs[1] = pairs[2] = pairs[3] = nullptr;
  }
}

void packed_tiles_avx2(DType t, PackedTileFn tiles[4]) {
  if (t == DType::kQ4_1) {
    tiles[0] = packed_q4<1, true>, tiles[1] = packed_q4<2, true>, tiles[2] = packed_q4<3, true>,
    tiles[3] = packed_q4<4, true>;
  } else if (t == DType::kQ4_0) {
    tiles[0] = packed_q4<1, false>, tiles[1] = packed_q4<2, false>, tiles[2] = packed_q4<3, false>,
    tiles[3] = packed_q4<4, false>;
  } else if (t == DType::kQ5_0) {
    tiles[0] = packed_q5_0<1>, tiles[1] = packed_q5_0<2>, tiles[2] = packed_q5_0<3>, tiles[3] = packed_q5_0<4>;
  } else if (t == DType::kQ8_0) {
    tiles[0] = packed_q8_0<1>, tiles[1] = packed_q8_0<2>, tiles[2] = packed_q8_0<3>, tiles[3] = packed_q8_0<4>;
  } else if (t == DType::kQ4_K) {
    tiles[0] = packed_q4_k<1>, tiles[1] = packed_q4_k<2>, tiles[2] = packed_q4_k<3>, tiles[3] = packed_q4_k<4>;
  } else {
    std::abort();  // callers check packs() first
  }
}

void dot_rows_avx2(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks,
                   int64_t m, float* out, int64_t ldo) {
  TileFn tiles[4] = {nullptr, nullptr, nullptr, nullptr};
  switch (t) {
    case DType::kQ4_0:
      tiles[0] = tile_q4<1, false>, tiles[1] = tile_q4<2, false>, tiles[2] = tile_q4<3, false>,
      tiles[3] = tile_q4<4, false>;
      break;
    case DType::kQ4_1:
      tiles[0] = tile_q4<1, true>, tiles[1] = tile_q4<2, true>, tiles[2] = tile_q4<3, true>,
      tiles[3] = tile_q4<4, true>;
      break;
    case DType::kQ5_0:
      tiles[0] = tile_q5_0<1>, tiles[1] = tile_q5_0<2>, tiles[2] = tile_q5_0<3>, tiles[3] = tile_q5_0<4>;
      break;
    case DType::kQ8_0:
      tiles[0] = tile_q8_0<1>, tiles[1] = tile_q8_0<2>, tiles[2] = tile_q8_0<3>, tiles[3] = tile_q8_0<4>;
      break;
    case DType::kQ4_K:
      tiles[0] = tile_q4_k<1>, tiles[1] = tile_q4_k<2>, tiles[2] = tile_q4_k<3>, tiles[3] = tile_q4_k<4>;
      break;
    case DType::kQ6_K:
      tiles[0] = tile_q6_k<1>, tiles[1] = tile_q6_k<2>, tiles[2] = tile_q6_k<3>, tiles[3] = tile_q6_k<4>;
      break;
    default: std::abort();  // callers check supports() first
  }
  // Groups of four activation rows (in L1 together) against groups of eight weight rows.
  for (int64_t r0 = 0; r0 < m; r0 += 4) {
    const auto rows = static_cast<int>(std::min<int64_t>(4, m - r0));
    const TileFn fn = tiles[rows - 1];
    for (int64_t j = 0; j < n; j += 8) {
      const auto valid = static_cast<int>(std::min<int64_t>(8, n - j));
      fn(w + static_cast<uint64_t>(j) * row_bytes, row_bytes, valid, x + r0 * blocks, blocks, blocks,
         out + r0 * ldo + j, ldo);
    }
  }
}

PAGODA_AVX2 void half_sums_avx2(const ActBlock* x, int64_t count, int32_t* out) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < count; ++b) {
    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, load32(x[b].q)), ones16);  // 4 + 4 partial sums
    __m128i lo = _mm256_castsi256_si128(s);
    __m128i hi = _mm256_extracti128_si256(s, 1);
    lo = _mm_hadd_epi32(lo, hi);  // lo0+lo1, lo2+lo3, hi0+hi1, hi2+hi3
    lo = _mm_hadd_epi32(lo, lo);  // sum lo, sum hi
    const int32_t a = _mm_cvtsi128_si32(lo);
    const int32_t c = _mm_extract_epi32(lo, 1);
    out[b] = half_sums_word(a, c);
  }
}

void dot_rows_packed_q6_k_avx2(const uint8_t* packed, int64_t n, const ActBlock* x, int64_t blocks, int64_t m,
                               float* out, int64_t ldo, const int32_t* half) {
  thread_local std::vector<int32_t> own;
  if (half == nullptr) {  // not given: computed here, for this call
    own.resize(static_cast<size_t>(m * blocks));
    half_sums_avx2(x, m * blocks, own.data());
    half = own.data();
  }
  const uint64_t group = packed_group_bytes(DType::kQ6_K, blocks);
  const Q6Fn fns[4] = {packed_q6_k<1>, packed_q6_k<2>, packed_q6_k<3>, packed_q6_k<4>};
  for (int64_t r0 = 0; r0 < m; r0 += 4) {
    const Q6Fn fn = fns[std::min<int64_t>(4, m - r0) - 1];
    for (int64_t j = 0; j < n; j += 8) {
      fn(packed + static_cast<uint64_t>(j / 8) * group, static_cast<int>(std::min<int64_t>(8, n - j)), x + r0 * blocks,
         blocks, blocks, half + r0 * blocks, out + r0 * ldo + j, ldo);
    }
  }
}

}  // namespace pagoda::cpu::qdot

#endif  // PAGODA_QDOT_HAS_AVX2
