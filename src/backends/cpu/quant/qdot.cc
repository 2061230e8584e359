// Portable integer-dot kernels (the reference the vectorized ones are tested against) and the
// dispatch between them.

#include "backends/cpu/quant/qdot.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cpu/isa.h"
#include "backends/cpu/quant/block_layout.h"
#include "backends/cpu/quant/qdot_avx2.h"
#include "backends/cpu/quant/qdot_vnni.h"

namespace pagoda::cpu::qdot {

namespace L = layout;

bool supports(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ8_0:
    case DType::kQ4_K:
    case DType::kQ6_K: return true;
    default: return false;
  }
}

void quantize_row_scalar(const float* x, ActBlock* out, int64_t k) {
  for (int64_t b = 0; b < k / kBlock; ++b, x += kBlock) {
    ActBlock& o = out[b];
    float amax = 0.0f;
    bool finite = true;
    for (int i = 0; i < kBlock; ++i) {
      if (!std::isfinite(x[i])) finite = false;
      amax = std::fmax(amax, std::fabs(x[i]));
    }
    if (!finite) {
      // d * 0 is NaN for an infinite or NaN d: the block poisons every dot it takes part in.
      o.d = std::numeric_limits<float>::quiet_NaN();
      o.dsum = o.d;
      o.qsum = 0;
      for (int i = 0; i < kBlock; ++i)
        o.q[i] = 0;
      continue;
    }
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < kBlock; ++i) {
      const float v = std::nearbyint(x[i] * id);  // round half to even, as the vector code
      const int q = static_cast<int>(std::fmin(127.0f, std::fmax(-127.0f, v)));
      o.q[i] = static_cast<int8_t>(q);
      sum += q;
    }
    o.d = d;
    o.dsum = d * static_cast<float>(sum);
    o.qsum = sum;
  }
}

namespace {

// One (weight row, activation row) dot per type. `nb` counts activation blocks.

float dot_q4_0(const uint8_t* w, const ActBlock* x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += L::q4_0::kBytes) {
    const uint8_t* qs = w + L::q4_0::kQs;
    int isum = 0;
    for (int j = 0; j < 16; ++j)
      isum += ((qs[j] & 0x0f) - 8) * x[b].q[j] + ((qs[j] >> 4) - 8) * x[b].q[j + 16];
    sum += (L::read_f16(w + L::q4_0::kD) * x[b].d) * static_cast<float>(isum);
  }
  return sum;
}

float dot_q4_1(const uint8_t* w, const ActBlock* x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += L::q4_1::kBytes) {
    const uint8_t* qs = w + L::q4_1::kQs;
    int isum = 0;
    for (int j = 0; j < 16; ++j)
      isum += (qs[j] & 0x0f) * x[b].q[j] + (qs[j] >> 4) * x[b].q[j + 16];
    sum += (L::read_f16(w + L::q4_1::kD) * x[b].d) * static_cast<float>(isum);
    sum += L::read_f16(w + L::q4_1::kM) * x[b].dsum;
  }
  return sum;
}

float dot_q5_0(const uint8_t* w, const ActBlock* x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += L::q5_0::kBytes) {
    const uint32_t qh = L::read_u32(w + L::q5_0::kQh);
    const uint8_t* qs = w + L::q5_0::kQs;
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      const int lo = ((qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4)) - 16;
      const int hi = ((qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4)) - 16;
      isum += lo * x[b].q[j] + hi * x[b].q[j + 16];
    }
    sum += (L::read_f16(w + L::q5_0::kD) * x[b].d) * static_cast<float>(isum);
  }
  return sum;
}

float dot_q8_0(const uint8_t* w, const ActBlock* x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, w += L::q8_0::kBytes) {
    const auto* qs = reinterpret_cast<const int8_t*>(w + L::q8_0::kQs);
    int isum = 0;
    for (int j = 0; j < kBlock; ++j)
      isum += qs[j] * x[b].q[j];
    sum += (L::read_f16(w + L::q8_0::kD) * x[b].d) * static_cast<float>(isum);
  }
  return sum;
}

float dot_q4_k(const uint8_t* w, const ActBlock* x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += L::q4_k::kBytes, x += 8) {
    const float d = L::read_f16(w + L::q4_k::kD);
    const float dmin = L::read_f16(w + L::q4_k::kDmin);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc = 0;
      uint8_t mn = 0;
      L::k_scale_min(w + L::q4_k::kScales, s, &sc, &mn);
      const uint8_t* run = w + L::q4_k::kQs + (s / 2) * 32;
      const int shift = 4 * (s % 2);
      int isum = 0;
      for (int i = 0; i < 32; ++i)
        isum += ((run[i] >> shift) & 0x0f) * x[s].q[i];
      sum += ((d * static_cast<float>(sc)) * x[s].d) * static_cast<float>(isum);
      sum -= (dmin * static_cast<float>(mn)) * x[s].dsum;
    }
  }
  return sum;
}

float dot_q6_k(const uint8_t* w, const ActBlock* x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t sb = 0; sb < nb / 8; ++sb, w += L::q6_k::kBytes, x += 8) {
    const float d = L::read_f16(w + L::q6_k::kD);
    const auto* scales = reinterpret_cast<const int8_t*>(w + L::q6_k::kScales);
    for (int c = 0; c < 8; ++c) {  // 32-element chunk c = two 16-element sub-blocks
      int isum = 0;
      for (int half16 = 0; half16 < 2; ++half16) {
        const int o = 32 * c + 16 * half16;
        const int r = o % 128;
        const uint8_t* ql = w + L::q6_k::kQl + (o / 128) * 64 + (r % 64);
        const uint8_t* qh = w + L::q6_k::kQh + (o / 128) * 32 + (r % 32);
        const int lshift = 4 * (r / 64);
        const int hshift = 2 * (r / 32);
        int part = 0;
        for (int i = 0; i < 16; ++i) {
          const int q = (((ql[i] >> lshift) & 0x0f) | (((qh[i] >> hshift) & 3) << 4)) - 32;
          part += q * x[c].q[16 * half16 + i];
        }
        isum += part * scales[o / 16];
      }
      sum += (d * x[c].d) * static_cast<float>(isum);
    }
  }
  return sum;
}

using DotFn = float (*)(const uint8_t*, const ActBlock*, int64_t);

DotFn scalar_dot(DType t) {
  switch (t) {
    case DType::kQ4_0: return dot_q4_0;
    case DType::kQ4_1: return dot_q4_1;
    case DType::kQ5_0: return dot_q5_0;
    case DType::kQ8_0: return dot_q8_0;
    case DType::kQ4_K: return dot_q4_k;
    case DType::kQ6_K: return dot_q6_k;
    default: return nullptr;
  }
}

bool use_avx2() {
#if PAGODA_QDOT_HAS_AVX2
  static const bool avx2 = qdot_cpu_has_avx2();
  return avx2;
#else
  return false;
#endif
}

// The AVX-512 VNNI kernels for repacked weights, unless PAGODA_CPU_ISA=avx2 asks for the AVX2
// ones (for comparing the two on one machine).
bool use_vnni() {
#if PAGODA_QDOT_HAS_AVX2
  static const bool vnni = qdot_cpu_has_vnni() && isa_limit() != IsaLimit::kAvx2;
  return vnni;
#else
  return false;
#endif
}

// AMX for many activation rows, unless PAGODA_CPU_ISA asks for avx2 or avx512 (VNNI without AMX).
bool use_amx() {
#if PAGODA_QDOT_HAS_AVX2
  static const bool amx = use_vnni() && isa_limit() == IsaLimit::kNone && qdot_cpu_has_amx();
  return amx;
#else
  return false;
#endif
}

}  // namespace

void dot_rows_scalar(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks,
                     int64_t m, float* out, int64_t ldo) {
  const DotFn fn = scalar_dot(t);
  if (fn == nullptr) std::abort();  // callers check supports() first
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j)
      out[r * ldo + j] = fn(w + static_cast<uint64_t>(j) * row_bytes, x + r * blocks, blocks);
  }
}

void quantize_row(const float* x, ActBlock* out, int64_t k) {
#if PAGODA_QDOT_HAS_AVX2
  if (use_avx2()) {
    quantize_row_avx2(x, out, k);
    return;
  }
#endif
  quantize_row_scalar(x, out, k);
}

void dot_rows(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks, int64_t m,
              float* out, int64_t ldo) {
#if PAGODA_QDOT_HAS_AVX2
  if (use_avx2()) {
    dot_rows_avx2(t, w, row_bytes, n, x, blocks, m, out, ldo);
    return;
  }
#endif
  dot_rows_scalar(t, w, row_bytes, n, x, blocks, m, out, ldo);
}

bool packs(DType t) {
#if PAGODA_QDOT_HAS_AVX2
  return use_avx2() && (t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ5_0 || t == DType::kQ8_0 ||
                        t == DType::kQ4_K || t == DType::kQ6_K);
#else
  (void)t;
  return false;
#endif
}

uint64_t packed_group_bytes(DType t, int64_t blocks) {
  if (t == DType::kQ4_K) return kPackedQ4KBytes * static_cast<uint64_t>(blocks / 8);
  if (t == DType::kQ6_K) return kPackedQ6KBytes * static_cast<uint64_t>(blocks / 8);
  // scales (and minimums, or fifth bits), then 8 x 16 bytes of quants (8 x 32 for Q8_0)
  const uint64_t per_block = t == DType::kQ8_0   ? 16 + 8 * 32
                             : t == DType::kQ5_0 ? 48 + 8 * 16
                             : t == DType::kQ4_1 ? 32 + 8 * 16
                                                 : 16 + 8 * 16;
  return per_block * static_cast<uint64_t>(blocks);
}

namespace {

// Q4_K: per super-block, d[8], dmin[8], then the six-bit scales and minimums unpacked to bytes,
// sub-block major (scale of sub-block s, row i at 32 + 8 s + i; minimum at 96 + 8 s + i), then
// for each 32-byte chunk p of quants (sub-blocks 2p and 2p + 1 in its low and high nibbles) eight
// vectors, vector j holding bytes 4j..4j+3 of the chunk of rows 0..7.
void pack_q4_k(const uint8_t* w, uint64_t row_bytes, int64_t n, int64_t blocks, uint8_t* out) {
  namespace K = layout::q4_k;
  const int64_t super_blocks = blocks / 8;
  for (int64_t g = 0; g < (n + 7) / 8; ++g) {
    for (int64_t sb = 0; sb < super_blocks; ++sb) {
      uint8_t* o = out + static_cast<uint64_t>(g * super_blocks + sb) * kPackedQ4KBytes;
      for (int i = 0; i < 8; ++i) {
        const int64_t row = std::min<int64_t>(8 * g + i, n - 1);
        const uint8_t* src = w + static_cast<uint64_t>(row) * row_bytes + static_cast<uint64_t>(sb) * K::kBytes;
        std::memcpy(o + 2 * i, src + K::kD, 2);
        std::memcpy(o + 16 + 2 * i, src + K::kDmin, 2);
        const uint8_t* sc = src + K::kScales;
        for (int s = 0; s < 8; ++s) {
          const uint8_t scale =
              s < 4 ? sc[s] & 0x3f : static_cast<uint8_t>((sc[s + 4] & 0x0f) | ((sc[s - 4] >> 6) << 4));
          const uint8_t min = s < 4 ? sc[s + 4] & 0x3f : static_cast<uint8_t>((sc[s + 4] >> 4) | ((sc[s] >> 6) << 4));
          o[32 + 8 * s + i] = scale;
          o[96 + 8 * s + i] = min;
        }
        for (int p = 0; p < 4; ++p) {
          for (int j = 0; j < 8; ++j)
            std::memcpy(o + 160 + 256 * p + 32 * j + 4 * i, src + K::kQs + 32 * p + 4 * j, 4);
        }
      }
    }
  }
}

// Q6_K: per super-block, d[8], then the int8 scales sub-block major (row i of sub-block s at
// 16 + 8 s + i), then per 32-element chunk c (192 bytes from 144 + 192 c) four vectors of low
// nibbles (vector t: elements 4t..4t+3 low, 16+4t..16+4t+3 high, of rows 0..7 in turn) and two
// vectors of top bit pairs (for elements 0-15, then 16-31: bit pair t of byte b of row i's lane =
// element 4t + b's, plus 16 in the second).
void pack_q6_k(const uint8_t* w, uint64_t row_bytes, int64_t n, int64_t blocks, uint8_t* out) {
  namespace K = layout::q6_k;
  const int64_t super_blocks = blocks / 8;
  for (int64_t g = 0; g < (n + 7) / 8; ++g) {
    for (int64_t sb = 0; sb < super_blocks; ++sb) {
      uint8_t* o = out + static_cast<uint64_t>(g * super_blocks + sb) * kPackedQ6KBytes;
      std::memset(o, 0, kPackedQ6KBytes);
      for (int i = 0; i < 8; ++i) {
        const int64_t row = std::min<int64_t>(8 * g + i, n - 1);
        const uint8_t* src = w + static_cast<uint64_t>(row) * row_bytes + static_cast<uint64_t>(sb) * K::kBytes;
        std::memcpy(o + 2 * i, src + K::kD, 2);
        for (int s = 0; s < 16; ++s)
          o[16 + 8 * s + i] = src[K::kScales + s];
        for (int e = 0; e < 256; ++e) {  // element e of the super-block: chunk e / 32, position p
          const int half = e / 128, r = e % 128;
          const int low = (src[K::kQl + 64 * half + r % 64] >> (4 * (r / 64))) & 0x0f;
          const int top = (src[K::kQh + 32 * half + r % 32] >> (2 * (r / 32))) & 3;
          const int p = e % 32;
          uint8_t* chunk = o + 144 + 192 * (e / 32);
          const int t = (p % 16) / 4, b = p % 4;
          chunk[32 * t + 4 * i + b] |= static_cast<uint8_t>(low << (p < 16 ? 0 : 4));
          chunk[128 + 32 * (p / 16) + 4 * i + b] |= static_cast<uint8_t>(top << (2 * t));
        }
      }
    }
  }
}

}  // namespace

void pack_rows8(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, int64_t blocks, uint8_t* out) {
  if (t == DType::kQ4_K) {
    pack_q4_k(w, row_bytes, n, blocks, out);
    return;
  }
  if (t == DType::kQ6_K) {
    pack_q6_k(w, row_bytes, n, blocks, out);
    return;
  }
  const bool q4_1 = t == DType::kQ4_1;
  const bool q5_0 = t == DType::kQ5_0;
  const bool q8_0 = t == DType::kQ8_0;
  const int block_bytes = q8_0   ? layout::q8_0::kBytes
                          : q5_0 ? layout::q5_0::kBytes
                          : q4_1 ? layout::q4_1::kBytes
                                 : layout::q4_0::kBytes;
  const int qs = q8_0 ? layout::q8_0::kQs : q5_0 ? layout::q5_0::kQs : q4_1 ? layout::q4_1::kQs : layout::q4_0::kQs;
  const int vectors = q8_0 ? 8 : 4;             // 32-byte vectors of quants per block
  const int head = q5_0 ? 48 : q4_1 ? 32 : 16;  // the scales (and minimums or fifth bits) before the quants
  const uint64_t per_block = packed_group_bytes(t, 1);
  for (int64_t g = 0; g < (n + 7) / 8; ++g) {
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* o = out + (static_cast<uint64_t>(g * blocks + b)) * per_block;
      for (int i = 0; i < 8; ++i) {
        const int64_t row = std::min<int64_t>(8 * g + i, n - 1);
        const uint8_t* src = w + static_cast<uint64_t>(row) * row_bytes + static_cast<uint64_t>(b) * block_bytes;
        std::memcpy(o + 2 * i, src, 2);                                     // d
        if (q4_1) std::memcpy(o + 16 + 2 * i, src + layout::q4_1::kM, 2);   // m
        if (q5_0) std::memcpy(o + 16 + 4 * i, src + layout::q5_0::kQh, 4);  // fifth bits
        for (int j = 0; j < vectors; ++j)  // quant bytes 4j..4j+3 of the eight rows form vector j
          std::memcpy(o + head + 32 * j + 4 * i, src + qs + 4 * j, 4);
      }
    }
  }
}

#if PAGODA_QDOT_HAS_AVX2
// Activation rows from which dot_rows_packed uses the two-group kernels (bench/cpu_qdot). With
// fewer, the AVX2 ones measured slower: their weight streams, not the multiplies, bound them. The
// VNNI ones (one 512-bit vector for both groups) win from four rows on and are mixed below.
constexpr int64_t kPairRowsAvx2 = 8;
constexpr int64_t kPairRowsVnni = 4;
// Activation rows from which the AMX kernels take over from the VNNI ones, 16 at a time: with
// fewer rows in a tile multiply they were slower (bench/cpu_qdot).
constexpr int64_t kAmxRows = 16;

void run_packed(const PackedTileFn tiles[4], const PackedPairFn pairs[4], uint64_t group, const uint8_t* packed,
                int64_t n, const ActBlock* x, int64_t blocks, int64_t m, float* out, int64_t ldo) {
  // Groups of four activation rows against each group of eight weight rows, or each two groups.
  for (int64_t r0 = 0; r0 < m; r0 += 4) {
    const int64_t rows = std::min<int64_t>(4, m - r0);
    const PackedTileFn fn = tiles[rows - 1];
    const PackedPairFn pair = pairs == nullptr ? nullptr : pairs[rows - 1];
    int64_t j = 0;
    if (pair != nullptr) {
      for (; j + 8 < n; j += 16) {
        pair(packed + static_cast<uint64_t>(j / 8) * group, group, static_cast<int>(std::min<int64_t>(8, n - j - 8)),
             x + r0 * blocks, blocks, blocks, out + r0 * ldo + j, ldo);
      }
    }
    for (; j < n; j += 8) {
      fn(packed + static_cast<uint64_t>(j / 8) * group, static_cast<int>(std::min<int64_t>(8, n - j)), x + r0 * blocks,
         blocks, blocks, out + r0 * ldo + j, ldo);
    }
  }
}
#endif

bool needs_half_sums(DType t) {
  return t == DType::kQ6_K && packs(t);
}

void half_sums(const ActBlock* x, int64_t count, int32_t* out) {
#if PAGODA_QDOT_HAS_AVX2
  if (use_avx2()) {
    half_sums_avx2(x, count, out);
    return;
  }
#endif
  for (int64_t b = 0; b < count; ++b) {
    int lo = 0, hi = 0;
    for (int i = 0; i < 16; ++i) {
      lo += x[b].q[i];
      hi += x[b].q[16 + i];
    }
    out[b] = half_sums_word(lo, hi);
  }
}

bool uses_amx(DType t, int64_t m) {
#if PAGODA_QDOT_HAS_AVX2
  return m >= kAmxRows && t != DType::kQ6_K && packs(t) && use_amx();
#else
  (void)t, (void)m;
  return false;
#endif
}

uint64_t new_amx_epoch() {
  static std::atomic<uint64_t> last{0};
  return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

void amx_rows_layout(const ActBlock* x, int64_t blocks, int64_t begin, int64_t end, int8_t* q, float* scales) {
  for (int64_t r = begin; r < end; ++r) {
    const int64_t lane = r % 16;
    float* s = scales + r / 16 * blocks * kAmxScaleFloats;
    for (int64_t b = 0; b < blocks; ++b, s += kAmxScaleFloats) {
      const ActBlock& a = x[r * blocks + b];
      std::memcpy(q + (r * blocks + b) * kBlock, a.q, kBlock);
      s[lane] = a.d;
      s[16 + lane] = a.dsum;
    }
  }
}

void dot_rows_packed(DType t, const uint8_t* packed, int64_t n, const ActBlock* x, int64_t blocks, int64_t m,
                     float* out, int64_t ldo, const int32_t* half, const AmxRows* amx) {
#if PAGODA_QDOT_HAS_AVX2
  if (t == DType::kQ6_K && packs(t)) {
    dot_rows_packed_q6_k_avx2(packed, n, x, blocks, m, out, ldo, half);
    return;
  }
  if (packs(t)) {
    PackedTileFn tiles[4];
    PackedPairFn pairs[4];
    int64_t pair_rows = kPairRowsAvx2;
    if (uses_amx(t, m)) {
      // AMX for every 16 activation rows, the VNNI kernels for the rest
      const int64_t done = m - m % 16;
      std::vector<int8_t> own_q;
      std::vector<float> own_scales;
      AmxRows rows{};
      if (amx != nullptr) {
        rows = *amx;
      } else {
        own_q.resize(static_cast<size_t>(done * blocks * kBlock));
        own_scales.resize(static_cast<size_t>(done / 16 * blocks * kAmxScaleFloats));
        amx_rows_layout(x, blocks, 0, done, own_q.data(), own_scales.data());
        rows = {own_q.data(), own_scales.data()};
      }
      packed_tiles_vnni(t, tiles);
      run_packed_amx(packed_amx_kernel(t), tiles, packed_group_bytes(t, blocks), packed, n, x, rows, blocks, done, out,
                     ldo);
      x += done * blocks, out += done * ldo, m -= done;
      if (m == 0) return;
    }
    if (use_vnni()) {
      packed_tiles_vnni(t, tiles);
      packed_pairs_vnni(t, pairs);
      pair_rows = kPairRowsVnni;
    } else {
      packed_tiles_avx2(t, tiles);
      packed_pairs_avx2(t, pairs);
    }
    run_packed(tiles, m >= pair_rows ? pairs : nullptr, packed_group_bytes(t, blocks), packed, n, x, blocks, m, out,
               ldo);
    return;
  }
#endif
  (void)packed, (void)n, (void)x, (void)blocks, (void)m, (void)out, (void)ldo, (void)half, (void)amx;
  std::abort();  // callers check packs() first
}

const char* packed_kernel_name() {
  return use_amx() ? "avx512-vnni+amx" : use_vnni() ? "avx512-vnni" : use_avx2() ? "avx2" : "none";
}

const char* kernel_name() {
  return use_avx2() ? "avx2" : "scalar";
}

}  // namespace pagoda::cpu::qdot
