#pragma once

// Unicode helpers for Python's str semantics over UTF-8 bytes: templates index, slice, strip and
// case-map by code point, as Python does.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/utf8.h"

namespace pagoda::jinja::text {

// Whether `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
[[nodiscard]] bool valid_utf8(std::string_view s);

// Work done by string operations that no single evaluation step pays for (scanning, comparing,
// decoding long strings). The interpreter adds it to its step budget, so that repeating a cheap-looking
// operation on a huge string runs out of budget instead of running for hours.
void add_work(uint64_t units);
[[nodiscard]] uint64_t take_work();

// Linear-time substring search (two-way, via memmem): the first occurrence at or after `from`, and the
// last occurrence that ends at or before `end`; npos when there is none.
[[nodiscard]] size_t find(std::string_view hay, std::string_view needle, size_t from = 0);
[[nodiscard]] size_t rfind(std::string_view hay, std::string_view needle, size_t end = std::string_view::npos);

// Decodes well-formed UTF-8 (callers validate first; bad bytes decode as U+FFFD).
[[nodiscard]] std::vector<char32_t> decode(std::string_view s);
using tokenizer::append_utf8;  // UTF-8 encoding of one code point (src/tokenizer/utf8.h)
[[nodiscard]] std::string encode(const std::vector<char32_t>& cps);
[[nodiscard]] std::string encode(const char32_t* begin, const char32_t* end);
// Decodes the code point at s[pos] and advances pos.
[[nodiscard]] char32_t next_code_point(std::string_view s, size_t& pos);
// Number of code points.
[[nodiscard]] size_t length(std::string_view s);

// Python's str.isspace() for one code point (also what `\s` matches in Python's re).
[[nodiscard]] bool is_space(char32_t c);
// Python's str.isprintable() for one code point, approximated by Unicode block: control, format,
// separator (other than ' '), surrogate and private-use code points are not printable.
[[nodiscard]] bool is_printable(char32_t c);
// Letters with case: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic are mapped; other scripts
// are treated as uncased.
[[nodiscard]] char32_t to_upper(char32_t c);
[[nodiscard]] char32_t to_lower(char32_t c);
[[nodiscard]] bool is_upper(char32_t c);
[[nodiscard]] bool is_lower(char32_t c);
// Python's str.isalpha()/isdigit()/isalnum() approximations (non-ASCII letters: anything that is
// not punctuation, symbol, space or digit in the common blocks).
[[nodiscard]] bool is_alpha(char32_t c);
[[nodiscard]] bool is_digit(char32_t c);
[[nodiscard]] bool is_alnum(char32_t c);
// What Python's re `\w` matches.
[[nodiscard]] bool is_word(char32_t c);

// str.upper() / str.lower() (including 'ß'.upper() == 'SS').
[[nodiscard]] std::string upper(std::string_view s);
[[nodiscard]] std::string lower(std::string_view s);

// Python whitespace stripping; `chars` (when given) is the set of code points to strip instead.
[[nodiscard]] std::string strip(std::string_view s, bool left, bool right, const std::string* chars);

// Python's str.splitlines() (keepends=False): \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028/9.
[[nodiscard]] std::vector<std::string> splitlines(std::string_view s);

}  // namespace pagoda::jinja::text
