#pragma once

// AVX-512 VNNI versions of the repacked kernels (qdot.h, dot_rows_packed) for every repacked type
// (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K). `vpdpbusd` multiplies unsigned weight bytes with signed
// activation bytes and adds groups of four products straight into int32 lanes, replacing the AVX2
// kernels' multiply-add to int16, the int16 additions and the widening multiply-add (and, for
// Q8_0, the sign trick). The one-group kernels work on 256-bit vectors (AVX512VL); the two-group
// ones on 512-bit vectors, one group per half. The integer block dots are exact either way and the
// float work is the same instructions in the same order, so the results are bit for bit those of
// the AVX2 kernels. Call them only when qdot_cpu_has_vnni().

#include <cstdint>

#include "backends/cpu/quant/qdot.h"
#include "backends/cpu/quant/qdot_avx2.h"

namespace pagoda::cpu::qdot {

#if PAGODA_QDOT_HAS_AVX2
[[nodiscard]] bool qdot_cpu_has_vnni();
// The VNNI kernels for 1, 2, 3 and 4 activation rows of a repacked type, on one group of eight
// weight rows and on two (as packed_pairs_avx2, but for every repacked type).
void packed_tiles_vnni(DType t, PackedTileFn tiles[4]);
void packed_pairs_vnni(DType t, PackedPairFn pairs[4]);

// AMX (AMX-TILE and AMX-INT8, and the process allowed to use the tile registers, which the first
// call asks Linux for): the integer block dots of 16 activation rows against two groups in one
// tile multiply, the float step as the two-group VNNI kernels, so the same bits again.
[[nodiscard]] bool qdot_cpu_has_amx();
// The AMX kernel of a repacked type: every two groups of the n weight rows against m activation
// rows (a multiple of 16) in the AmxRows layout; a last odd group is left to the caller.
using PackedAmxFn = void (*)(uint64_t group_bytes, const uint8_t* packed, int64_t n, const AmxRows& x, int64_t blocks,
                             int64_t m, float* out, int64_t ldo);
[[nodiscard]] PackedAmxFn packed_amx_kernel(DType t);
// dot_rows_packed for a multiple of 16 activation rows (m), given both as ActBlocks (x) and in the
// AmxRows layout (ax): the AMX kernel over every two groups, the one-group kernels `tiles` for a
// last odd group.
void run_packed_amx(PackedAmxFn amx, const PackedTileFn tiles[4], uint64_t group, const uint8_t* packed, int64_t n,
                    const ActBlock* x, const AmxRows& ax, int64_t blocks, int64_t m, float* out, int64_t ldo);
#endif

}  // namespace pagoda::cpu::qdot
