#pragma once

// Integer dot products between GGUF block-quantized weight rows and activation rows quantized on
// the fly to 8 bits, as ggml's CPU backend computes its quantized matmuls.
//
// An activation row of k floats (k a multiple of 32) becomes k / 32 ActBlocks: a float32 scale d =
// max|x| / 127 and 32 signed bytes q = round(x / d) (so |x - d q| <= d / 2 per element), plus d
// times the sum of q for the weight types whose blocks carry an additive minimum. One activation
// block lines up with one 32-element weight block, or with one 32-element slice of a 256-element
// K-quant super-block, so every product of quants is an exact integer sum and only the per-block
// scales are float.
//
// Batch invariance: the value computed for (weight row, activation row) depends on those two rows
// only. Kernels that handle several activation rows at once run, for each row, exactly the
// operations the one-row kernel runs, in the same order, so a row's result is bit-for-bit the
// same whatever rows surround it.

#include <cstdint>

#include "core/dtype.h"

namespace pagoda::cpu::qdot {

inline constexpr int kBlock = 32;

struct ActBlock {
  float d;       // scale: x ~ d * q
  float dsum;    // d * (sum of q), for the minimum terms of Q4_1 and the K-quants
  int32_t qsum;  // sum of q: the exact offset term of weights stored with a bias (Q4_0, Q5_0)
  int8_t q[kBlock];
};
static_assert(sizeof(ActBlock) == 44);

// Whether weights of type `t` have an integer-dot kernel (and `k` fits it: a whole number of the
// type's blocks, which is also a whole number of activation blocks).
[[nodiscard]] bool supports(DType t);

// Quantizes one row of k floats (k % 32 == 0) into k / 32 blocks. Non-finite inputs make the
// block's scale non-finite, as a float matmul would propagate them.
void quantize_row(const float* x, ActBlock* out, int64_t k);
void quantize_row_scalar(const float* x, ActBlock* out, int64_t k);

// out[r * ldo + j] = dot(weight row j, activation row r) for j < n, r < m. Weight row j starts at
// w + j * row_bytes; activation row r is x + r * blocks (blocks = k / 32). Uses the fastest kernel
// this CPU runs; `dot_rows_scalar` is the portable reference.
void dot_rows(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks, int64_t m,
              float* out, int64_t ldo);
void dot_rows_scalar(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, const ActBlock* x, int64_t blocks,
                     int64_t m, float* out, int64_t ldo);

// Repacked weights. For Q4_0, Q4_1, Q5_0 and Q8_0 the AVX2 kernels also take a weight repacked in
// groups of eight rows, interleaved block by block: for each 32-element block, the eight rows'
// f16 scales d (and for Q4_1 the eight minimums m, for Q5_0 the eight 32-bit words of fifth bits)
// back to back, then 32-byte vectors (four; eight for Q8_0) whose vector j holds quant bytes
// 4j..4j+3 of rows 0..7 in turn (144 bytes per block for Q4_0, 160 for Q4_1, 176 for Q5_0, 272 for
// Q8_0). Q4_K and Q6_K are repacked by super-block, in kPackedQ4KBytes and kPackedQ6KBytes (see
// pack_rows8 in qdot.cc; Q6_K's take as many bytes as the original rows). Each 32-bit lane of a
// vector thus belongs to one output row: the kernels multiply it with four activation bytes
// broadcast to every lane and add up in the lane, with no horizontal reduction, and a group's
// block is one contiguous run of loads, the weight one stream. A last group of fewer than eight
// rows repeats its last row. The results are bit for bit those of dot_rows on the original rows:
// the same exact integer block dots and the same float operations. Q6_K runs the AVX2 kernel on
// AVX-512 CPUs too.
//
inline constexpr uint64_t kPackedQ4KBytes = 16 + 16 + 64 + 64 + 4 * 8 * 32;  // a super-block of eight rows
inline constexpr uint64_t kPackedQ6KBytes = 16 + 128 + 8 * 192;              // d, scales, eight chunks

// Whether `t` can be repacked for this CPU's kernels.
[[nodiscard]] bool packs(DType t);
// Bytes of one group of eight rows of `blocks` blocks each.
[[nodiscard]] uint64_t packed_group_bytes(DType t, int64_t blocks);
// Repacks n rows (row j at w + j * row_bytes) into ceil(n / 8) * packed_group_bytes(t, blocks)
// bytes at `out`.
void pack_rows8(DType t, const uint8_t* w, uint64_t row_bytes, int64_t n, int64_t blocks, uint8_t* out);
// Activation rows as the AMX kernels read them: row r's quant bytes at q + r * blocks * 32 (a
// block's 32 bytes never cross a cache line, and 16 rows' block is one tile load), and, for each
// group g of 16 rows and each block b, at scales + (g * blocks + b) * kAmxScaleFloats, the 16 rows'
// d, then their dsum, so the float step reads them at fixed offsets. (No qsum: the AMX kernels
// multiply weights stored with an offset as their signed values.)
struct AmxRows {
  const int8_t* q;
  const float* scales;
  // Non-zero: the matmul these rows belong to (new_amx_epoch), within which a thread may keep
  // the weight rows it unpacked for the AMX kernels for its next call on the same rows.
  uint64_t epoch = 0;
};
// A number no earlier call returned, for AmxRows::epoch.
[[nodiscard]] uint64_t new_amx_epoch();
inline constexpr int64_t kAmxScaleFloats = 32;
// Whether dot_rows_packed runs the AMX kernels on m activation rows of a weight of type `t` (and
// so reads AmxRows when it is given them).
[[nodiscard]] bool uses_amx(DType t, int64_t m);
// Writes rows [begin, end) of the activation rows x into the AmxRows layout at q (m * blocks * 32
// bytes) and scales ((m + 15) / 16 * blocks * kAmxScaleFloats floats). Rows of one group may be
// written by different calls.
void amx_rows_layout(const ActBlock* x, int64_t blocks, int64_t begin, int64_t end, int8_t* q, float* scales);

// dot_rows on a repacked weight: `packed` is the group that holds row 0 of the n rows. For the
// types of needs_half_sums, `half` may hold half_sums of the m activation rows (m * blocks
// values, row r at half + r * blocks); null, they are computed per call. Where uses_amx(t, m),
// `amx` may hold the same rows in the AmxRows layout (row 0 the first of a group of 16); null,
// it is built per call.
void dot_rows_packed(DType t, const uint8_t* packed, int64_t n, const ActBlock* x, int64_t blocks, int64_t m,
                     float* out, int64_t ldo, const int32_t* half = nullptr, const AmxRows* amx = nullptr);
// Whether the repacked kernel of `t` (Q6_K) uses the activation blocks' half sums.
[[nodiscard]] bool needs_half_sums(DType t);
// For each of `count` activation blocks: 8 * (sum of q[0..15]) in the low 16 bits and
// 8 * (sum of q[16..31]) in the high 16 bits (for Q6_K's 16-element sub-blocks).
void half_sums(const ActBlock* x, int64_t count, int32_t* out);
// One block's half_sums value from the sums of q[0..15] and q[16..31] (|8 * sum| <= 8 * 16 * 128
// fits an int16).
[[nodiscard]] inline int32_t half_sums_word(int lo, int hi) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(8 * lo)) |
                              static_cast<uint32_t>(static_cast<uint16_t>(8 * hi)) << 16);
}

// Which kernel family dot_rows uses on this CPU ("avx2" or "scalar").
[[nodiscard]] const char* kernel_name();
// Which one dot_rows_packed uses: "avx512-vnni" (AVX-512 VNNI present, PAGODA_CPU_ISA not avx2),
// "avx2", or "none" (no repacking on this CPU).
[[nodiscard]] const char* packed_kernel_name();

}  // namespace pagoda::cpu::qdot
