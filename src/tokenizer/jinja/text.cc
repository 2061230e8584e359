#include "tokenizer/jinja/text.h"

#include <string.h>

#include <algorithm>

namespace pagoda::jinja::text {

namespace {
thread_local uint64_t t_work = 0;
}  // namespace

void add_work(uint64_t units) {
  t_work += units;
}

uint64_t take_work() {
  uint64_t w = t_work;
  t_work = 0;
  return w;
}

size_t find(std::string_view hay, std::string_view needle, size_t from) {
  if (from > hay.size()) return std::string_view::npos;
  if (needle.empty()) return from;
  const void* hit = memmem(hay.data() + from, hay.size() - from, needle.data(), needle.size());
  size_t pos =
      hit == nullptr ? std::string_view::npos : static_cast<size_t>(static_cast<const char*>(hit) - hay.data());
  // Pays for the bytes scanned (two-way search is linear in them).
  add_work(((pos == std::string_view::npos ? hay.size() : pos + needle.size()) - from) / 32 + 1);
  return pos;
}

size_t rfind(std::string_view hay, std::string_view needle, size_t end) {
  end = std::min(end, hay.size());
  if (needle.size() > end) return std::string_view::npos;
  if (needle.empty()) return end;
  add_work(end / 16 + 1);
  // The last occurrence is the first one in the reversed strings.
  std::string rh(hay.substr(0, end));
  std::string rn(needle);
  std::reverse(rh.begin(), rh.end());
  std::reverse(rn.begin(), rn.end());
  const void* hit = memmem(rh.data(), rh.size(), rn.data(), rn.size());
  if (hit == nullptr) return std::string_view::npos;
  auto pos = static_cast<size_t>(static_cast<const char*>(hit) - rh.data());
  return end - pos - needle.size();
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    char32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += len;
  }
  return true;
}

char32_t next_code_point(std::string_view s, size_t& pos) {
  auto c = static_cast<unsigned char>(s[pos]);
  if (c < 0x80) {
    ++pos;
    return c;
  }
  size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if (len == 1 || pos + len > s.size()) {
    ++pos;
    return 0xFFFD;
  }
  char32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < len; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
  pos += len;
  return cp;
}

std::vector<char32_t> decode(std::string_view s) {
  add_work(s.size() / 32);
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size())
    out.push_back(next_code_point(s, pos));
  return out;
}

size_t length(std::string_view s) {
  add_work(s.size() / 64);
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

std::string encode(const char32_t* begin, const char32_t* end) {
  std::string out;
  out.reserve(static_cast<size_t>(end - begin));
  for (const char32_t* p = begin; p != end; ++p)
    append_utf8(out, *p);
  return out;
}

std::string encode(const std::vector<char32_t>& cps) {
  return encode(cps.data(), cps.data() + cps.size());
}

bool is_space(char32_t c) {
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return true;
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_printable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0)) return false;
  if (c < 0x7F) return true;
  if (c == 0xAD) return false;  // soft hyphen (Cf)
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F))
    return false;
  if (c == 0x3000 || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB)) return false;
  if (c >= 0xD800 && c <= 0xF8FF) return false;  // surrogates and private use
  if (c >= 0xF0000) return false;                // supplementary private use
  if (c == 0x061C || c == 0x180E || (c >= 0x0600 && c <= 0x0605) || c == 0x06DD || c == 0x08E2) return false;
  if (c >= 0xE0000 && c <= 0xE007F) return false;  // tags
  return true;
}

namespace {

// Simple one-to-one case pairs for the scripts pagoda maps.
char32_t upper_simple(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if (c == 0xB5) return 0x39C;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 0) ? c - 1 : c;
    if (c == 0x130 || c == 0x138 || c == 0x149) return c;
    return (c % 2 == 1) ? c - 1 : c;
  }
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  if (((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) && c % 2 == 1) return c - 1;
  return c;
}

char32_t lower_simple(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) && c % 2 == 0) return c + 1;
  return c;
}

}  // namespace

char32_t to_upper(char32_t c) {
  return upper_simple(c);
}
char32_t to_lower(char32_t c) {
  return lower_simple(c);
}
bool is_upper(char32_t c) {
  return lower_simple(c) != c || c == 0x130;
}
bool is_lower(char32_t c) {
  return upper_simple(c) != c || c == 0xDF || c == 0x138 || c == 0x149;
}

bool is_digit(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 0x660 && c <= 0x669) || (c >= 0xFF10 && c <= 0xFF19);
}

bool is_alpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (c < 0xC0) return c == 0xAA || c == 0xB5 || c == 0xBA;
  if (c == 0xD7 || c == 0xF7) return false;
  if (is_space(c) || !is_printable(c) || is_digit(c)) return false;
  if (c >= 0x2000 && c <= 0x2BFF) return false;    // punctuation, symbols, arrows, box drawing
  if (c >= 0x3000 && c <= 0x303F) return false;    // CJK punctuation
  if (c >= 0xFF00 && c <= 0xFF20) return false;    // fullwidth punctuation
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji and pictographs
  if (c >= 0x300 && c <= 0x36F) return false;      // combining marks
  return true;
}

bool is_alnum(char32_t c) {
  return is_alpha(c) || is_digit(c);
}
bool is_word(char32_t c) {
  return is_alnum(c) || c == '_';
}

std::string upper(std::string_view s) {
  add_work(s.size() / 32);
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c = next_code_point(s, pos);
    if (c == 0xDF) {
      out += "SS";
    } else {
      append_utf8(out, upper_simple(c));
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  add_work(s.size() / 32);
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size())
    append_utf8(out, lower_simple(next_code_point(s, pos)));
  return out;
}

std::string strip(std::string_view s, bool left, bool right, const std::string* chars) {
  std::vector<char32_t> cps = decode(s);
  std::vector<char32_t> set;
  if (chars != nullptr) set = decode(*chars);
  std::sort(set.begin(), set.end());
  auto strip_it = [&](char32_t c) {
    if (chars == nullptr) return is_space(c);
    return std::binary_search(set.begin(), set.end(), c);
  };
  size_t b = 0;
  size_t e = cps.size();
  if (left) {
    while (b < e && strip_it(cps[b]))
      ++b;
  }
  if (right) {
    while (e > b && strip_it(cps[e - 1]))
      --e;
  }
  return encode(cps.data() + b, cps.data() + e);
}

std::vector<std::string> splitlines(std::string_view s) {
  std::vector<std::string> lines;
  std::string cur;
  size_t pos = 0;
  bool pending = false;
  while (pos < s.size()) {
    size_t start = pos;
    char32_t c = next_code_point(s, pos);
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
               c == 0x2028 || c == 0x2029;
    if (brk) {
      if (c == '\r' && pos < s.size() && s[pos] == '\n') ++pos;
      lines.push_back(std::move(cur));
      cur.clear();
      pending = false;
    } else {
      cur.append(s.substr(start, pos - start));
      pending = true;
    }
  }
  if (pending) lines.push_back(std::move(cur));
  return lines;
}

}  // namespace pagoda::jinja::text
