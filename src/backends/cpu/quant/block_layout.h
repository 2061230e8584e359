#pragma once

// Byte layouts of the GGUF block types (ggml's block_* structs, packed, little-endian) and the
// unaligned reads the dequantizers share. Internal to src/backends/cpu/quant.

#include <cstdint>
#include <cstring>

#include "backends/cpu/quant/float_convert.h"

namespace pagoda::cpu::layout {

inline constexpr int kQK = 32;     // elements in a Q4_0 .. Q8_0 block
inline constexpr int kQK_K = 256;  // elements in a K-quant super-block

// Offsets and sizes in bytes, block by block. Each static_assert in dequantize.cc ties the size
// to src/core/dtype.cc.
namespace q4_0 {  // half d; u8 qs[16] (element j in the low nibble of qs[j], j+16 in the high)
inline constexpr int kD = 0, kQs = 2, kBytes = 18;
}
namespace q4_1 {  // half d; half m; u8 qs[16]
inline constexpr int kD = 0, kM = 2, kQs = 4, kBytes = 20;
}
namespace q5_0 {  // half d; u32 qh (fifth bits); u8 qs[16]
inline constexpr int kD = 0, kQh = 2, kQs = 6, kBytes = 22;
}
namespace q5_1 {  // half d; half m; u32 qh; u8 qs[16]
inline constexpr int kD = 0, kM = 2, kQh = 4, kQs = 8, kBytes = 24;
}
namespace q8_0 {  // half d; i8 qs[32]
inline constexpr int kD = 0, kQs = 2, kBytes = 34;
}
namespace q2_k {  // u8 scales[16] (low nibble scale, high nibble min); u8 qs[64]; half d; half dmin
inline constexpr int kScales = 0, kQs = 16, kD = 80, kDmin = 82, kBytes = 84;
}
namespace q3_k {  // u8 hmask[32]; u8 qs[64]; u8 scales[12] (16 six-bit scales); half d
inline constexpr int kHmask = 0, kQs = 32, kScales = 96, kD = 108, kBytes = 110;
}
namespace q4_k {  // half d; half dmin; u8 scales[12] (8 six-bit scales and mins); u8 qs[128]
inline constexpr int kD = 0, kDmin = 2, kScales = 4, kQs = 16, kBytes = 144;
}
namespace q5_k {  // half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
inline constexpr int kD = 0, kDmin = 2, kScales = 4, kQh = 16, kQs = 48, kBytes = 176;
}
namespace q6_k {  // u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
inline constexpr int kQl = 0, kQh = 128, kScales = 192, kD = 208, kBytes = 210;
}
namespace q8_k {  // f32 d; i8 qs[256]; i16 bsums[16] (sums of 16 quants, unused here)
inline constexpr int kD = 0, kQs = 4, kBytes = 292;
}

[[nodiscard]] inline uint16_t read_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[nodiscard]] inline uint32_t read_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[nodiscard]] inline float read_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[nodiscard]] inline float read_f16(const uint8_t* p) {
  return fp16_to_fp32(read_u16(p));
}

// The 6-bit scale and min of sub-block `j` (0..7) of a Q4_K / Q5_K block, packed in 12 bytes:
// bytes 0-3 hold the low 6 bits of scales 0-3 (top 2 bits: high bits of scales 4-7), bytes 4-7
// likewise for the mins, and bytes 8-11 the low 4 bits of scale (low nibble) and min (high
// nibble) 4-7.
inline void k_scale_min(const uint8_t* scales, int j, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = scales[j] & 0x3f;
    *min = scales[j + 4] & 0x3f;
  } else {
    *scale = static_cast<uint8_t>((scales[j + 4] & 0x0f) | ((scales[j - 4] >> 2) & 0x30));
    *min = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 2) & 0x30));
  }
}

// The signed 6-bit scale (-32..31) of sub-block `j` (0..15) of a Q3_K block: the low nibble comes
// from byte j % 8 (low or high nibble for j < 8 or j >= 8), the high two bits from byte 8 + j % 4
// (bit pair j / 4).
[[nodiscard]] inline int q3_k_scale(const uint8_t* scales, int j) {
  const int low = (scales[j % 8] >> (4 * (j / 8))) & 0x0f;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 0x03;
  return (low | (high << 4)) - 32;
}

}  // namespace pagoda::cpu::layout
