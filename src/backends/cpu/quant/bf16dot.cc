#include "backends/cpu/quant/bf16dot.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/isa.h"
#include "backends/cpu/quant/amx_config.h"
#include "backends/cpu/quant/float_convert.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PAGODA_BF16DOT_X86 1
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() (a self-initialised variable) as their
// unused merge source, which it then reports as uninitialized wherever they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>
#else
#define PAGODA_BF16DOT_X86 0
#endif

namespace pagoda::cpu::bf16dot {

namespace {

constexpr uint64_t kChunkBytes = static_cast<uint64_t>(kGroupRows * kChunk) * 2;  // one B tile

uint16_t read_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

// Byte offset of element c of lane (row) j within its group: chunk c / 32, line (c % 32) / 2, the
// lane's 32-bit pair, element c % 2.
uint64_t offset_in_group(int64_t j, int64_t c) {
  return static_cast<uint64_t>(c / kChunk) * kChunkBytes +
         static_cast<uint64_t>(((c % kChunk) / 2) * 64 + (j % kGroupRows) * 4 + (c % 2) * 2);
}

#if PAGODA_BF16DOT_X86
#define PAGODA_BF16 __attribute__((target("avx2,fma,avx512f,avx512bf16")))
#define PAGODA_AMX_BF16 __attribute__((target("amx-tile,amx-bf16")))

// AVX512-BF16 (`vdpbf16ps`): R activation rows against NB groups, each output in its own lane.
// For each pair p of a chunk the activation pair is broadcast to every lane and meets line p of
// the group (the pair of every weight row), so each lane adds its output's pairs in k order.
template <int R, int NB>
PAGODA_BF16 void lanes(const uint8_t* w, uint64_t group_bytes, const int valid[2], const uint16_t* x, int64_t kp,
                       float* out, int64_t ldo) {
  __m512 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b)
      acc[r][b] = _mm512_setzero_ps();
  const int64_t chunks = kp / kChunk;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const uint8_t* wc = w + static_cast<uint64_t>(ch) * kChunkBytes;
    const uint16_t* xc = x + ch * kChunk;
    for (int p = 0; p < kGroupRows; ++p) {
      __m512i wv[NB];
      for (int b = 0; b < NB; ++b)
        wv[b] = _mm512_loadu_si512(wc + b * group_bytes + 64 * p);
      for (int r = 0; r < R; ++r) {
        int32_t pair;
        std::memcpy(&pair, xc + r * kp + 2 * p, 4);
        const __m512i xv = _mm512_set1_epi32(pair);
        for (int b = 0; b < NB; ++b)
          acc[r][b] = _mm512_dpbf16_ps(acc[r][b], (__m512bh)xv, (__m512bh)wv[b]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < NB; ++b) {
      const auto mask = static_cast<__mmask16>((1u << valid[b]) - 1);
      _mm512_mask_storeu_ps(out + r * ldo + b * kGroupRows, mask, acc[r][b]);
    }
  }
}

template <int NB>
PAGODA_BF16 void lanes_rows(const uint8_t* w, uint64_t group_bytes, const int valid[2], const uint16_t* x, int64_t kp,
                            int64_t m, float* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4)
    lanes<4, NB>(w, group_bytes, valid, x + i * kp, kp, out + i * ldo, ldo);
  switch (m - i) {
    case 3: lanes<3, NB>(w, group_bytes, valid, x + i * kp, kp, out + i * ldo, ldo); break;
    case 2: lanes<2, NB>(w, group_bytes, valid, x + i * kp, kp, out + i * ldo, ldo); break;
    case 1: lanes<1, NB>(w, group_bytes, valid, x + i * kp, kp, out + i * ldo, ldo); break;
    default: break;
  }
}

void run_lanes(const uint8_t* packed, int64_t n, int64_t k, const uint16_t* x, int64_t m, float* out, int64_t ldo) {
  const int64_t kp = padded_k(k);
  const uint64_t gb = packed_group_bytes(k);
  for (int64_t j = 0; j < n; j += 2 * kGroupRows) {
    const uint8_t* w = packed + static_cast<uint64_t>(j / kGroupRows) * gb;
    const int valid[2] = {static_cast<int>(std::min<int64_t>(kGroupRows, n - j)),
                          static_cast<int>(std::clamp<int64_t>(n - j - kGroupRows, 0, kGroupRows))};
    if (valid[1] > 0) {
      lanes_rows<2>(w, gb, valid, x, kp, m, out + j, ldo);
    } else {
      lanes_rows<1>(w, gb, valid, x, kp, m, out + j, ldo);
    }
  }
}

// AMX-BF16: tiles 0-3 accumulate C for up to two blocks of 16 activation rows (A in tiles 4, 5)
// against up to two groups (B in tiles 6, 7), over every chunk of k; `tdpbf16ps` adds each
// output's 16 pairs of a chunk in order. Each tile is 16 rows of 64 bytes.
// The tiles stay configured after the call (amx_config.h, use_tile_config).
PAGODA_AMX_BF16 void amx_begin() {
  static const TileConfig cfg = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t)
      c.colsb[t] = 64, c.rows[t] = 16;
    return c;
  }();
  use_tile_config(cfg);
}

// C for MA blocks of 16 activation rows (x, row stride kp elements) against NB groups, into c
// (rows ldc floats apart; block a's rows at 16a, group b's columns at 16b).
template <int MA, int NB>
PAGODA_AMX_BF16 void amx_tile(const uint8_t* w, uint64_t group_bytes, const uint16_t* x, int64_t kp, float* c,
                              int64_t ldc) {
  __asm__ volatile("" ::: "memory");  // the tile loads read x and w
  const long stride = static_cast<long>(kp * 2);
  const uint16_t* x1 = x + kGroupRows * kp;
  const uint8_t* w1 = w + group_bytes;
  // (the tile numbers must be literals: the intrinsics paste them into the instruction text)
  _tile_zero(0);
  if constexpr (NB == 2) _tile_zero(1);
  if constexpr (MA == 2) _tile_zero(2);
  if constexpr (MA == 2 && NB == 2) _tile_zero(3);
  const int64_t chunks = kp / kChunk;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const uint64_t off = static_cast<uint64_t>(ch) * kChunkBytes;
    _tile_loadd(4, x + ch * kChunk, stride);
    _tile_loadd(6, w + off, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NB == 2) {
      _tile_loadd(7, w1 + off, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (MA == 2) {
      _tile_loadd(5, x1 + ch * kChunk, stride);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (NB == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  const long ld = static_cast<long>(ldc * 4);
  _tile_stored(0, c, ld);
  if constexpr (NB == 2) _tile_stored(1, c + 16, ld);
  if constexpr (MA == 2) _tile_stored(2, c + 16 * ldc, ld);
  if constexpr (MA == 2 && NB == 2) _tile_stored(3, c + 16 * ldc + 16, ld);
}

void run_amx(const uint8_t* packed, int64_t n, int64_t k, const uint16_t* x, int64_t m, float* out, int64_t ldo) {
  const int64_t kp = padded_k(k);
  const uint64_t gb = packed_group_bytes(k);
  alignas(64) float c[32 * 32];
  amx_begin();
  for (int64_t r0 = 0; r0 < m; r0 += 2 * kGroupRows) {
    const int64_t rows = std::min<int64_t>(2 * kGroupRows, m - r0);
    for (int64_t j = 0; j < n; j += 2 * kGroupRows) {
      const int64_t cols = std::min<int64_t>(2 * kGroupRows, n - j);
      const uint8_t* w = packed + static_cast<uint64_t>(j / kGroupRows) * gb;
      const uint16_t* xr = x + r0 * kp;
      // whole tiles straight into out, partial ones through c
      const bool whole = rows % kGroupRows == 0 && cols % kGroupRows == 0;
      float* dst = whole ? out + r0 * ldo + j : c;
      const int64_t ld = whole ? ldo : 32;
      if (rows > kGroupRows) {
        cols > kGroupRows ? amx_tile<2, 2>(w, gb, xr, kp, dst, ld) : amx_tile<2, 1>(w, gb, xr, kp, dst, ld);
      } else {
        cols > kGroupRows ? amx_tile<1, 2>(w, gb, xr, kp, dst, ld) : amx_tile<1, 1>(w, gb, xr, kp, dst, ld);
      }
      if (whole) continue;
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(out + (r0 + r) * ldo + j, c + r * 32, static_cast<size_t>(cols) * sizeof(float));
    }
  }
}

// fp32_to_bf16 on eight floats, the same integer steps: add 0x7fff plus the kept part's lowest bit
// and keep the top half (nearest even); a NaN keeps its top half with the quiet bit set.
__attribute__((target("avx2"))) inline __m256i round8(const float* p) {
  const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i top = _mm256_srli_epi32(u, 16);
  const __m256i bump = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(top, _mm256_set1_epi32(1)));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bump), 16);
  const __m256i nan =
      _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  return _mm256_blendv_epi8(rounded, _mm256_or_si256(top, _mm256_set1_epi32(0x40)), nan);
}

// round8 over a row, 16 floats at a time; returns how many it converted (a multiple of 16).
__attribute__((target("avx2"))) int64_t round_row_avx2(const float* r, int64_t k, uint16_t* o) {
  int64_t c = 0;
  for (; c + 16 <= k; c += 16) {
    // (values up to 0xffff: the unsigned saturating pack keeps them; it interleaves 128-bit lanes)
    const __m256i packed = _mm256_packus_epi32(round8(r + c), round8(r + c + 8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), _mm256_permute4x64_epi64(packed, 0xd8));
  }
  return c;
}

bool cpu_has_avx512_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__builtin_cpu_supports("avx512f") == 0 || __get_cpuid_count(7, 1, &a, &b, &c, &d) == 0) return false;
  return (a & (1u << 5)) != 0;
}

bool cpu_has_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  if ((d & (1u << 22)) == 0 || (d & (1u << 24)) == 0) return false;  // AMX-BF16, AMX-TILE
  return amx_tile_state_granted();
}
#endif

enum class Kernel { kNone, kLanes, kAmx };

Kernel kernel() {
  static const Kernel k = [] {
#if PAGODA_BF16DOT_X86
    if (isa_limit() == IsaLimit::kAvx2) return Kernel::kNone;
    if (isa_limit() == IsaLimit::kNone && cpu_has_amx_bf16()) return Kernel::kAmx;
    if (cpu_has_avx512_bf16()) return Kernel::kLanes;
#endif
    return Kernel::kNone;
  }();
  return k;
}

}  // namespace

void pack_rows16(const uint8_t* w, uint64_t row_bytes, int64_t n, int64_t k, uint8_t* out) {
  const uint64_t gb = packed_group_bytes(k);
  const int64_t groups = (n + kGroupRows - 1) / kGroupRows;
  std::memset(out, 0, static_cast<size_t>(groups) * gb);
  for (int64_t j = 0; j < n; ++j) {
    uint8_t* group = out + static_cast<uint64_t>(j / kGroupRows) * gb;
    const uint8_t* row = w + static_cast<uint64_t>(j) * row_bytes;
    for (int64_t c = 0; c < k; ++c) {
      uint8_t* dst = group + offset_in_group(j, c);
      dst[0] = row[2 * c];
      dst[1] = row[2 * c + 1];
    }
  }
}

uint16_t packed_at(const uint8_t* packed, int64_t k, int64_t j, int64_t c) {
  const uint8_t* group = packed + static_cast<uint64_t>(j / kGroupRows) * packed_group_bytes(k);
  return read_u16(group + offset_in_group(j, c));
}

void round_rows(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out) {
  const int64_t kp = padded_k(k);
#if PAGODA_BF16DOT_X86
  static const bool avx2 = __builtin_cpu_supports("avx2") != 0;
#endif
  for (int64_t i = 0; i < m; ++i) {
    uint16_t* o = out + i * kp;
    const float* r = x + i * ldx;
    int64_t c = 0;
#if PAGODA_BF16DOT_X86
    if (avx2) c = round_row_avx2(r, k, o);
#endif
    for (; c < k; ++c)
      o[c] = fp32_to_bf16(r[c]);
    std::fill(o + k, o + kp, uint16_t{0});
  }
}

void dot_rows_packed(const uint8_t* packed, int64_t n, int64_t k, const uint16_t* x, int64_t m, float* out,
                     int64_t ldo) {
#if PAGODA_BF16DOT_X86
  switch (kernel()) {
    case Kernel::kAmx: run_amx(packed, n, k, x, m, out, ldo); return;
    case Kernel::kLanes: run_lanes(packed, n, k, x, m, out, ldo); return;
    case Kernel::kNone: break;
  }
#else
  (void)packed, (void)n, (void)k, (void)x, (void)m, (void)out, (void)ldo;
#endif
  std::abort();  // callers check available() first
}

const char* kernel_name() {
  switch (kernel()) {
    case Kernel::kAmx: return "amx-bf16";
    case Kernel::kLanes: return "avx512-bf16";
    case Kernel::kNone: break;
  }
  return "none";
}

bool available() {
  return kernel() != Kernel::kNone;
}

}  // namespace pagoda::cpu::bf16dot
