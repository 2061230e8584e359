#include "tokenizer/byte_level.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {

void SequenceDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (const auto& d : items_)
    d->decode_chain(tokens);
}

void ByteLevelDecoder::decode_chain(std::vector<std::string>& tokens) const {
  // All tokens become one byte string first: a character may be split across tokens.
  const ByteLevelMap& map = ByteLevelMap::get();
  std::string bytes;
  for (const std::string& t : tokens) {
    if (!map.decode(t, bytes)) bytes.append(t);  // a token outside the alphabet stands for itself
  }
  tokens.clear();
  tokens.push_back(sanitize_utf8(bytes));
}

void MetaspaceDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t.find(replacement_) == std::string::npos) continue;
    out.clear();
    size_t pos = 0;
    while (pos < t.size()) {
      if (!replacement_.empty() && t.compare(pos, replacement_.size(), replacement_) == 0) {
        // HF drops every replacement character of the first token when a prefix was prepended.
        if (!(i == 0 && scheme_ != PrependScheme::kNever)) out.push_back(' ');
        pos += replacement_.size();
      } else {
        out.push_back(t[pos++]);
      }
    }
    tokens[i].swap(out);
  }
}

int ByteFallbackDecoder::byte_token_value(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  // Rust's u8::from_str_radix, which HF uses, also accepts a leading '+'.
  if (t[3] == '+') return hex(t[4]);
  const int hi = hex(t[3]);
  const int lo = hex(t[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

void ByteFallbackDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string pending;
  auto flush = [&] {
    if (pending.empty()) return;
    if (is_valid_utf8(pending)) {
      out.push_back(pending);
    } else {
      // A run of bytes that is not valid UTF-8 becomes one U+FFFD per byte.
      for (size_t i = 0; i < pending.size(); ++i)
        out.emplace_back(kReplacementUtf8);
    }
    pending.clear();
  };
  for (std::string& t : tokens) {
    const int b = byte_token_value(t);
    if (b >= 0) {
      pending.push_back(static_cast<char>(b));
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  tokens.swap(out);
}

void FuseDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::string all;
  for (const std::string& t : tokens)
    all += t;
  tokens.clear();
  tokens.push_back(std::move(all));
}

void StripDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (std::string& t : tokens) {
    // Work in code points, as HF does.
    std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
    size_t pos = 0;
    while (pos < t.size()) {
      const size_t at = pos;
      chars.emplace_back(at, next_code_point(t, pos));
    }
    size_t start_cut = 0;
    for (size_t i = 0; i < start_ && i < chars.size(); ++i) {
      if (chars[i].second != content_) break;
      start_cut = i + 1;
    }
    size_t stop_cut = chars.size();
    for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
      const size_t index = chars.size() - i - 1;
      if (chars[index].second != content_) break;
      stop_cut = index;
    }
    if (stop_cut < start_cut) stop_cut = start_cut;
    const size_t b = start_cut < chars.size() ? chars[start_cut].first : t.size();
    const size_t e = stop_cut < chars.size() ? chars[stop_cut].first : t.size();
    t = t.substr(b, e - b);
  }
}

void ReplaceDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::string out;
  for (std::string& t : tokens) {
    if (regex_ == nullptr && (literal_.empty() || t.find(literal_) == std::string::npos)) continue;
    replace_all(t, literal_, regex_.get(), content_, out);
    t.swap(out);
  }
}

bool ReplaceDecoder::single_char_literal() const {
  return regex_ == nullptr && count_code_points(literal_) == 1;
}

void BpeSuffixDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string replacement = i + 1 == tokens.size() ? "" : " ";
    std::string out;
    replace_all(tokens[i], suffix_, nullptr, replacement, out);
    tokens[i].swap(out);
  }
}

}  // namespace pagoda::tokenizer
