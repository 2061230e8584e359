#include "tokenizer/unicode.h"

#include <algorithm>
#include <vector>

#include "tokenizer/pipeline.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

constexpr char32_t kSBase = 0xAC00;
constexpr char32_t kLBase = 0x1100;
constexpr char32_t kVBase = 0x1161;
constexpr char32_t kTBase = 0x11A7;
constexpr char32_t kLCount = 19;
constexpr char32_t kVCount = 21;
constexpr char32_t kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount;
constexpr char32_t kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t cp) {
  const uint32_t* begin = tables::kCccCodePoints;
  const uint32_t* end = begin + tables::kCccCodePoints_size;
  const uint32_t* it = std::lower_bound(begin, end, static_cast<uint32_t>(cp));
  if (it == end || *it != cp) return 0;
  return tables::kCccValues[it - begin];
}

const tables::DecompEntry* find_entry(const tables::DecompEntry* index, size_t size, char32_t cp) {
  const tables::DecompEntry* end = index + size;
  const tables::DecompEntry* it =
      std::lower_bound(index, end, cp, [](const tables::DecompEntry& e, char32_t c) { return e.cp < c; });
  if (it == end || it->cp != cp) return nullptr;
  return it;
}

void decompose(char32_t cp, bool compat, std::vector<char32_t>& out, int depth = 0) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const tables::DecompEntry* e = find_entry(tables::kDecompIndex, tables::kDecompIndex_size, cp);
  if (e == nullptr || (e->compat != 0 && !compat) || depth > 16) {
    out.push_back(cp);
    return;
  }
  for (uint32_t i = 0; i < e->length; ++i)
    decompose(tables::kDecompData[e->offset + i], compat, out, depth + 1);
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const tables::Composition* begin = tables::kCompositions;
  const tables::Composition* end = begin + tables::kCompositions_size;
  const tables::Composition* it =
      std::lower_bound(begin, end, std::pair<char32_t, char32_t>(a, b),
                       [](const tables::Composition& c, std::pair<char32_t, char32_t> k) {
                         return c.first < k.first || (c.first == k.first && c.second < k.second);
                       });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

void unicode_normalize(std::string_view s, UnicodeForm form, std::string& out) {
  const bool compat = form == UnicodeForm::kNfkc || form == UnicodeForm::kNfkd;
  const bool compose = form == UnicodeForm::kNfc || form == UnicodeForm::kNfkc;
  std::vector<char32_t> cps;
  cps.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    const char32_t cp = next_code_point(s, pos);
    if (cp < 0x80) {
      cps.push_back(cp);
    } else {
      decompose(cp, compat, cps);
    }
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0)
      ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i), cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  if (compose && !cps.empty()) {
    size_t starter = 0;
    bool have_starter = combining_class(cps[0]) == 0;
    int last_cc = have_starter ? 0 : 256;
    size_t w = 1;
    for (size_t i = 1; i < cps.size(); ++i) {
      const char32_t c = cps[i];
      const int cc = combining_class(c);
      if (have_starter && (last_cc < cc || (last_cc == 0 && w == starter + 1))) {
        const char32_t composite = compose_pair(cps[starter], c);
        if (composite != 0) {
          cps[starter] = composite;
          continue;
        }
      }
      if (cc == 0) {
        starter = w;
        have_starter = true;
        last_cc = 0;
      } else {
        last_cc = cc;
      }
      cps[w++] = c;
    }
    cps.resize(w);
  }
  out.clear();
  for (char32_t cp : cps)
    append_utf8(out, cp);
}

void unicode_lowercase(std::string_view s, std::string& out) {
  out.clear();
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const char32_t cp = next_code_point(s, pos);
    if (cp < 0x80) {
      out.push_back(cp >= 'A' && cp <= 'Z' ? static_cast<char>(cp + 32) : static_cast<char>(cp));
      continue;
    }
    const tables::DecompEntry* e = find_entry(tables::kLowerIndex, tables::kLowerIndex_size, cp);
    if (e == nullptr) {
      out.append(s.substr(start, pos - start));
      continue;
    }
    for (uint32_t i = 0; i < e->length; ++i)
      append_utf8(out, tables::kLowerData[e->offset + i]);
  }
}

bool is_white_space(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace pagoda::tokenizer
