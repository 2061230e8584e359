#include "tokenizer/pipeline.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {

void SequenceNormalizer::normalize(std::string& s, std::string& scratch) const {
  for (const auto& n : items_)
    n->normalize(s, scratch);
}

void PrependNormalizer::normalize(std::string& s, std::string& /*scratch*/) const {
  if (!s.empty()) s.insert(0, prepend_);
}

void replace_all(std::string_view s, std::string_view literal, const Regex* regex, std::string_view content,
                 std::string& out) {
  out.clear();
  if (regex != nullptr) {
    thread_local std::vector<Match> matches;
    matches.clear();
    regex->find_all(s, matches);
    size_t prev = 0;
    for (const Match& m : matches) {
      out.append(s.substr(prev, m.begin - prev));
      out.append(content);
      prev = m.end;
    }
    out.append(s.substr(prev));
    return;
  }
  if (literal.empty()) {
    out.assign(s);
    return;
  }
  size_t prev = 0;
  while (true) {
    const size_t at = s.find(literal, prev);
    if (at == std::string_view::npos) break;
    out.append(s.substr(prev, at - prev));
    out.append(content);
    prev = at + literal.size();
  }
  out.append(s.substr(prev));
}

void ReplaceNormalizer::normalize(std::string& s, std::string& scratch) const {
  if (regex_ == nullptr && s.find(literal_) == std::string::npos) return;
  replace_all(s, literal_, regex_.get(), content_, scratch);
  s.swap(scratch);
}

void StripNormalizer::normalize(std::string& s, std::string& /*scratch*/) const {
  size_t begin = 0;
  size_t end = s.size();
  if (left_) {
    while (begin < end) {
      size_t pos = begin;
      if (!is_white_space(next_code_point(s, pos))) break;
      begin = pos;
    }
  }
  if (right_) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
        --start;
      size_t pos = start;
      if (!is_white_space(next_code_point(s, pos))) break;
      end = start;
    }
  }
  s = s.substr(begin, end - begin);
}

void UnicodeNormalizer::normalize(std::string& s, std::string& scratch) const {
  bool ascii = true;
  for (char c : s)
    ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) return;  // every form leaves ASCII unchanged
  unicode_normalize(s, form_, scratch);
  s.swap(scratch);
}

void LowercaseNormalizer::normalize(std::string& s, std::string& scratch) const {
  unicode_lowercase(s, scratch);
  s.swap(scratch);
}

}  // namespace pagoda::tokenizer
