#pragma once

// AVX2 versions of the integer-dot kernels (qdot.h). Call them only when qdot_cpu_has_avx2().

#include <cstdint>

#include "backends/cpu/quant/qdot.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PAGODA_QDOT_HAS_AVX2 1
#else
#define PAGODA_QDOT_HAS_AVX2 0
#endif

namespace pagoda::cpu::qdot {

#if PAGODA_QDOT_HAS_AVX2
[[nodiscard]] bool qdot_cpu_has_avx2();
void quantize_row_avx2(const float* x, ActBlock* out, int64_t k);
void dot_rows_avx2(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks,
                   int64_t m, float* out, int64_t ldo);
// A kernel on repacked weights (qdot.h, pack_rows8): one group of eight weight rows (`valid` of
// them real) against 1..4 activation rows, row r at x + r * stride, out[r * ldo + i] for i < valid.
using PackedTileFn = void (*)(const uint8_t* group, int valid, const ActBlock* x, int64_t stride, int64_t blocks,
                              float* out, int64_t ldo);
// The AVX2 kernels for 1, 2, 3 and 4 activation rows of a repacked type.
void packed_tiles_avx2(DType t, PackedTileFn tiles[4]);
// Kernels on two consecutive groups (the second `group_bytes` after the first; all eight rows of
// the first real, `valid` of the second), out[r * ldo + i] for i < 8 + valid, with the bits of
// two single-group calls; for 1..4 activation rows, or null where type `t` has none (all but Q4_0
// and Q4_1).
using PackedPairFn = void (*)(const uint8_t* group, uint64_t group_bytes, int valid, const ActBlock* x, int64_t stride,
                              int64_t blocks, float* out, int64_t ldo);
void packed_pairs_avx2(DType t, PackedPairFn pairs[4]);
// dot_rows_packed for repacked Q6_K (AVX2 only: the AVX-512 machines run it too).
// `half`: half_sums of the m activation rows (qdot.h).
void dot_rows_packed_q6_k_avx2(const uint8_t* packed, int64_t n, const ActBlock* x, int64_t blocks, int64_t m,
                               float* out, int64_t ldo, const int32_t* half);
void half_sums_avx2(const ActBlock* x, int64_t count, int32_t* out);
// dot_rows_packed with the given kernels (pairs null, or entries null, for one group at a time):
// repacked weights of n rows (groups `group` bytes apart) against m activation rows.
void run_packed(const PackedTileFn tiles[4], const PackedPairFn pairs[4], uint64_t group, const uint8_t* packed,
                int64_t n, const ActBlock* x, int64_t blocks, int64_t m, float* out, int64_t ldo);
#endif

}  // namespace pagoda::cpu::qdot
