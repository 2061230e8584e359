#pragma once

// UTF-8 helpers shared by the tokenizer: decoding one code point, encoding, and repairing invalid
// input the way Python's bytes.decode("utf-8", errors="replace") does (each maximal invalid
// subpart becomes one U+FFFD), which is what a Python caller of HF tokenizers feeds it.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pagoda::tokenizer {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Length of the well-formed UTF-8 sequence at the start of `s` (1..4), or 0 if the bytes there do
// not begin a well-formed sequence (invalid lead byte, bad or missing continuation, overlong form,
// surrogate, or a code point above U+10FFFF).
[[nodiscard]] size_t valid_sequence_length(std::string_view s);

// Number of bytes the next code point occupies in `s`, assuming `s` is valid UTF-8 (1 for empty).
[[nodiscard]] inline size_t char_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at `s[pos]` of valid UTF-8 and advances pos.
[[nodiscard]] char32_t next_code_point(std::string_view s, size_t& pos);

void append_utf8(std::string& out, char32_t cp);

[[nodiscard]] bool is_valid_utf8(std::string_view s);

// `s` with every maximal ill-formed subpart replaced by U+FFFD (Unicode's "substitution of maximal
// subparts", which CPython and Rust's from_utf8_lossy both follow).
[[nodiscard]] std::string sanitize_utf8(std::string_view s);

// Number of code points in valid UTF-8.
[[nodiscard]] size_t count_code_points(std::string_view s);

}  // namespace pagoda::tokenizer
