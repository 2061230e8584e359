#pragma once

// Bit-exact conversions between float32 and the 16-bit float formats stored in model files.
// Done with integer arithmetic rather than the F16C instructions because those quiet signalling
// NaNs, while numpy (the reference the dequantizers are checked against) keeps every payload bit.

#include <bit>
#include <cstdint>

namespace pagoda::cpu {

// IEEE binary16 -> binary32. Exact for every input: subnormals become normal floats, infinities
// stay infinite and a NaN keeps its sign and payload (shifted into the top mantissa bits), so a
// signalling NaN stays signalling.
[[nodiscard]] constexpr float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Subnormal or zero: mantissa * 2^-24, an exact product of normal floats (no subnormal operand,
  // so it holds even with denormals-are-zero set).
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign != 0 ? -magnitude : magnitude;
}

// binary32 -> binary16 with round-to-nearest-even, overflow to infinity and gradual underflow,
// as numpy's astype(np.float16) does. A NaN keeps its sign and the top ten payload bits, and
// stays a NaN when those bits are all zero.
[[nodiscard]] constexpr uint16_t fp32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {
    if (abs == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
    uint32_t payload = (abs & 0x7fffffu) >> 13;
    if (payload == 0) payload = 1;
    return static_cast<uint16_t>(sign | 0x7c00u | payload);
  }
  // 65520 = largest half (65504) plus half an ulp: it and everything above rounds to infinity.
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (abs >= 0x38800000u) {  // normal half (>= 2^-14)
    const uint32_t mantissa = abs & 0x7fffffu;
    const uint32_t exponent = (abs >> 23) - 112u;
    uint32_t h = (exponent << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0)) ++h;  // may carry into the exponent
    return static_cast<uint16_t>(sign | h);
  }
  if (abs < 0x33000000u) return sign;  // below half the smallest subnormal (2^-25): zero
  // Subnormal half: value / 2^-24 rounded to an integer, with the implicit bit made explicit.
  const uint32_t exponent = abs >> 23;                      // 102 .. 112
  const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;  // 24 significant bits
  const uint32_t shift = 126u - exponent;                   // 14 .. 24
  uint32_t h = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rest > half || (rest == half && (h & 1u) != 0)) ++h;  // may round up to the smallest normal
  return static_cast<uint16_t>(sign | h);
}

// bfloat16 is the top half of a binary32, so widening is a shift.
[[nodiscard]] constexpr float bf16_to_fp32(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

// binary32 -> bfloat16 as ggml (and the gguf package) round: to nearest even, and a NaN is made
// quiet by setting the top mantissa bit so that truncating its payload cannot make it infinite.
[[nodiscard]] constexpr uint16_t fp32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((static_cast<uint64_t>(x) + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace pagoda::cpu
