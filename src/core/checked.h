#pragma once

// Overflow-checked size arithmetic for everything derived from untrusted input (file headers,
// request fields). Each helper returns std::nullopt on overflow so the caller can name the field.

#include <cstdint>
#include <optional>
#include <span>

namespace pagoda {

[[nodiscard]] inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

[[nodiscard]] inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Product of all values; the empty product is 1.
[[nodiscard]] inline std::optional<uint64_t> checked_product(std::span<const int64_t> values) {
  uint64_t r = 1;
  for (int64_t v : values) {
    if (v < 0) return std::nullopt;
    auto next = checked_mul(r, static_cast<uint64_t>(v));
    if (!next) return std::nullopt;
    r = *next;
  }
  return r;
}

// Smallest multiple of `alignment` (> 0) not below `value`.
[[nodiscard]] inline std::optional<uint64_t> checked_align_up(uint64_t value, uint64_t alignment) {
  if (alignment == 0) return std::nullopt;
  uint64_t rem = value % alignment;
  if (rem == 0) return value;
  return checked_add(value, alignment - rem);
}

}  // namespace pagoda
