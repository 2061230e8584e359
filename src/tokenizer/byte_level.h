#pragma once

// GPT-2's reversible byte <-> character mapping: every byte gets a printable code point, so a
// byte-level BPE vocabulary is written in ordinary (UTF-8) strings.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace pagoda::tokenizer {

class ByteLevelMap {
 public:
  [[nodiscard]] static const ByteLevelMap& get();

  // UTF-8 spelling of the character that stands for `byte`.
  [[nodiscard]] std::string_view spelling(uint8_t byte) const { return {spell_[byte].data(), len_[byte]}; }
  [[nodiscard]] char32_t code_point(uint8_t byte) const { return cp_[byte]; }
  // The byte a code point stands for, or -1 when it is not in the alphabet.
  [[nodiscard]] int byte_of(char32_t cp) const { return cp < rev_.size() ? rev_[cp] : -1; }

  // Appends the byte-level spelling of every byte of `text`.
  void encode(std::string_view text, std::string& out) const;
  // Bytes that `token` stands for if every character is in the alphabet; false (out untouched
  // beyond what was appended) otherwise.
  [[nodiscard]] bool decode(std::string_view token, std::string& out) const;

 private:
  ByteLevelMap();
  std::array<char32_t, 256> cp_{};
  std::array<std::array<char, 2>, 256> spell_{};
  std::array<uint8_t, 256> len_{};
  std::array<int16_t, 324> rev_{};
};

}  // namespace pagoda::tokenizer
