#pragma once

// bf16 weights against activations rounded to bf16, on CPUs that multiply bf16 pairs in hardware:
// AMX-BF16 tiles (`tdpbf16ps`) or, without AMX, AVX512-BF16 (`vdpbf16ps`). This is the
// reduced-precision matmul mode's path for bf16 weights (CpuBackend::set_quantized_activations),
// as the int8 kernels are for the GGUF block types; the float path stays the reference.
//
// A weight is repacked once (PackedWeights) into groups of 16 rows, each a run of chunks of 32
// elements of k (k padded with zeros to a multiple of 32). A chunk is 1 KiB: 16 lines, line p holding
// elements 2p and 2p + 1 of each of the 16 rows, row j in 32-bit lane j. That is an AMX B tile as it
// is loaded, and for AVX512-BF16 one vector per pair p whose lanes are the 16 weight rows.
//
// Both kernels add each output's element pairs into one float in k order, the rounding of each
// pair step done by the hardware, so a row's result depends on that row and the weight only.
// Activation rows are rounded to nearest even, once per call, into a zero-padded buffer.

#include <cstdint>

namespace pagoda::cpu::bf16dot {

inline constexpr int64_t kGroupRows = 16;  // weight rows per packed group
inline constexpr int64_t kChunk = 32;      // elements of k per chunk

// k rounded up to a multiple of kChunk.
[[nodiscard]] constexpr int64_t padded_k(int64_t k) {
  return (k + kChunk - 1) / kChunk * kChunk;
}
// Bytes of one packed group of 16 rows.
[[nodiscard]] constexpr uint64_t packed_group_bytes(int64_t k) {
  return static_cast<uint64_t>(kGroupRows * padded_k(k)) * 2;
}
// Activation rows the buffer for m rows must hold (m rounded up to a multiple of 16, as an AMX A
// tile reads 16 rows).
[[nodiscard]] constexpr int64_t padded_rows(int64_t m) {
  return (m + kGroupRows - 1) / kGroupRows * kGroupRows;
}

// Repacks n rows of k bf16 values (row j starts at byte w + j * row_bytes, little-endian, any
// alignment) into ceil(n / 16) groups of packed_group_bytes(k); missing rows and the k padding are
// zeros.
void pack_rows16(const uint8_t* w, uint64_t row_bytes, int64_t n, int64_t k, uint8_t* out);

// The bf16 values of packed element (row j, column c), for tests.
[[nodiscard]] uint16_t packed_at(const uint8_t* packed, int64_t k, int64_t j, int64_t c);

// Rounds m rows of k floats (row i at x + i * ldx) to bf16, nearest even, into out: row i at
// out + i * padded_k(k), zero-padded to padded_k(k).
void round_rows(const float* x, int64_t ldx, int64_t m, int64_t k, uint16_t* out);

// out[i * ldo + j] = sum over c of x[i][c] * w[j][c] for i < m, j < n, with packed as
// pack_rows16 made it and x as round_rows made it. The buffer must hold padded_rows(m) rows (an
// AMX tile reads 16 at a time); the results of rows past m are not stored.
// Only when kernel_name() is not "none".
void dot_rows_packed(const uint8_t* packed, int64_t n, int64_t k, const uint16_t* x, int64_t m, float* out,
                     int64_t ldo);

// The kernel this CPU runs: "amx-bf16", "avx512-bf16", or "none" (the float path is used).
// PAGODA_CPU_ISA=avx512 keeps AVX512-BF16 without AMX; PAGODA_CPU_ISA=avx2 turns both off.
[[nodiscard]] const char* kernel_name();
[[nodiscard]] bool available();

}  // namespace pagoda::cpu::bf16dot
