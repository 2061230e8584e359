#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {

ByteLevelMap::ByteLevelMap() {
  rev_.fill(-1);
  // Printable Latin-1 bytes stand for themselves; the rest are shifted past U+00FF in byte order.
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cp_[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, cp_[b]);
    len_[b] = static_cast<uint8_t>(s.size());
    for (size_t i = 0; i < s.size(); ++i)
      spell_[b][i] = s[i];
    rev_[cp_[b]] = static_cast<int16_t>(b);
  }
}

const ByteLevelMap& ByteLevelMap::get() {
  static const ByteLevelMap map;
  return map;
}

void ByteLevelMap::encode(std::string_view text, std::string& out) const {
  for (char c : text)
    out.append(spelling(static_cast<uint8_t>(c)));
}

bool ByteLevelMap::decode(std::string_view token, std::string& out) const {
  const size_t start = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const char32_t cp = next_code_point(token, pos);
    const int b = byte_of(cp);
    if (b < 0) {
      out.resize(start);
      return false;
    }
    out.push_back(static_cast<char>(b));
  }
  return true;
}

}  // namespace pagoda::tokenizer
