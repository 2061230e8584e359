#pragma once

// A compiled PCRE2 pattern (UTF + UCP) with match limits, used for pre-tokenizer splits and
// Replace normalizers/decoders. Patterns come from untrusted tokenizer files, so compilation
// errors are reported as pagoda::Error and every match runs under a match and depth limit: a
// pathological pattern fails the request instead of hanging it.
//
// HF tokenizers uses Oniguruma, whose Unicode \s also matches U+0085 (NEXT LINE); PCRE2's does
// not, so \s and \S are rewritten to include it.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda::tokenizer {

struct Match {
  size_t begin = 0;
  size_t end = 0;
};

class Regex {
 public:
  // Throws Error(kInvalidArgument) naming the pattern's error and offset.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  [[nodiscard]] const std::string& pattern() const { return pattern_; }

  // All non-overlapping matches in `subject` (valid UTF-8), left to right, empty matches included
  // (the scan then moves on by one character). Appends to `out`. Throws Error(kInvalidArgument)
  // when a match limit is hit.
  void find_all(std::string_view subject, std::vector<Match>& out) const;

  // Whether the pattern matches anywhere in `subject`.
  [[nodiscard]] bool search(std::string_view subject) const;

  // Longest pattern length accepted (bytes) and caps applied during matching.
  static constexpr size_t kMaxPatternBytes = 64 * 1024;
  static constexpr uint32_t kMatchLimit = 10'000'000;
  static constexpr uint32_t kDepthLimit = 10'000;

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

// The pattern with every metacharacter escaped, so it matches `literal` exactly.
[[nodiscard]] std::string regex_escape(std::string_view literal);

}  // namespace pagoda::tokenizer
