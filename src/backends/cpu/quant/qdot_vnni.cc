#include "backends/cpu/quant/qdot_vnni.h"

#if PAGODA_QDOT_HAS_AVX2

#include <immintrin.h>

#include <cstdlib>
#include <cstring>

#define PAGODA_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace pagoda::cpu::qdot {
namespace {

PAGODA_VNNI inline __m256i bcast4(const int8_t* p) {
  int v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Repacked Q4_0 / Q4_1 (see packed_q4 in qdot_avx2.cc for the layout and the float part, which this
// repeats instruction for instruction). Lane i of each quant vector belongs to weight row i, and
// vpdpbusd adds the four products of a lane straight into its int32, so eight of them leave row
// i's exact block dot in lane i.
template <int R, bool kQ4_1>
PAGODA_VNNI void tile_q4_vnni(const uint8_t* w, int valid, const ActBlock* x, int64_t stride, int64_t nb, float* out,
                              int64_t ldo) {
  constexpr int kHead = kQ4_1 ? 32 : 16;
  constexpr uint64_t kPackedBlock = kHead + 8 * 16;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  __m256 acc[R];
  for (int r = 0; r < R; ++r)
    acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* g = w + static_cast<uint64_t>(b) * kPackedBlock;
    for (uint64_t o = 0; o < kPackedBlock; o += 64)
      _mm_prefetch(reinterpret_cast<const char*>(g + 1024 + o), _MM_HINT_T0);
    __m256i lo[4];
    __m256i hi[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kHead + 32 * j));
      lo[j] = _mm256_and_si256(v, low4);
      hi[j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    __m256 mw = _mm256_setzero_ps();
    if constexpr (kQ4_1) mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    for (int r = 0; r < R; ++r) {
      const ActBlock& a = x[r * stride + b];
      // Two chains of four, so the dependent vpdpbusd latency is halved.
      __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo[0], bcast4(a.q));
      __m256i s1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), hi[0], bcast4(a.q + 16));
      for (int j = 1; j < 4; ++j) {
        s0 = _mm256_dpbusd_epi32(s0, lo[j], bcast4(a.q + 4 * j));
        s1 = _mm256_dpbusd_epi32(s1, hi[j], bcast4(a.q + 16 + 4 * j));
      }
      __m256i s = _mm256_add_epi32(s0, s1);
      if constexpr (!kQ4_1) s = _mm256_sub_epi32(s, _mm256_set1_epi32(8 * a.qsum));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(a.d)), acc[r]);
      if constexpr (kQ4_1) acc[r] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.dsum), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, acc[r]);
    for (int i = 0; i < valid; ++i)
      out[r * ldo + i] = tmp[i];
  }
}

}  // namespace

bool qdot_cpu_has_vnni() {
  return qdot_cpu_has_avx2() && __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
         __builtin_cpu_supports("avx512vl") != 0 && __builtin_cpu_supports("avx512vnni") != 0;
}

void packed_tiles_vnni(DType t, PackedTileFn tiles[4]) {
  if (t == DType::kQ4_1) {
    tiles[0] = tile_q4_vnni<1, true>, tiles[1] = tile_q4_vnni<2, true>, tiles[2] = tile_q4_vnni<3, true>,
    tiles[3] = tile_q4_vnni<4, true>;
  } else if (t == DType::kQ4_0) {
    tiles[0] = tile_q4_vnni<1, false>, tiles[1] = tile_q4_vnni<2, false>, tiles[2] = tile_q4_vnni<3, false>,
    tiles[3] = tile_q4_vnni<4, false>;
  } else if (t == DType::kQ5_0 || t == DType::kQ8_0 || t == DType::kQ4_K) {
    packed_tiles_avx2(t, tiles);  // no VNNI kernels of their own yet
  } else {
    std::abort();  // callers check packs() first
  }
}

}  // namespace pagoda::cpu::qdot

#endif  // PAGODA_QDOT_HAS_AVX2
