#pragma once

// Stop strings over streamed text: generated text arrives in pieces (one per token, often
// empty) and a stop string may span several pieces. The checker releases text only when no stop
// string could still begin in it, and on a match returns the text up to the stop string (or
// through it, with include_stop_str_in_output) and reports which one matched.
//
// Which match: the first one to be complete as the text grows, i.e. the one that ends earliest
// in the text (generation stops at the token that completes it); among those ending at the same
// byte, the longest (the earliest start), then the first listed. This depends only on the whole
// text, never on how it was split into pieces. Matching is bytewise; with valid UTF-8 stop
// strings, text held back starts with a lead byte, so released text ends on a character boundary
// whenever the pieces do.
//
// Each stop string keeps a Knuth-Morris-Pratt state (the longest suffix of the text that is a
// prefix of it), so a piece costs O(piece length * number of stop strings) amortised, and the
// text held back is the longest such suffix (shorter than the longest stop string).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda::engine {

class StopChecker {
 public:
  // Empty stop strings are ignored (SamplingParams::validate refuses them).
  StopChecker(std::vector<std::string> stop, bool include_stop_str_in_output);

  struct Result {
    std::string text;                  // newly released text
    std::optional<std::string> match;  // the stop string that ended generation
  };
  // Appends a piece of generated text. After a match, further calls release nothing.
  [[nodiscard]] Result push(std::string_view piece);
  // End of generation without a match: releases whatever was held back (nothing after a match).
  // Further pushes release nothing.
  [[nodiscard]] std::string finish();

 private:
  std::vector<std::string> stop_;
  bool include_;
  std::string pending_;
  bool stopped_ = false;
  size_t max_len_ = 0;
  // Per stop string: the KMP failure function (failure_[s][k]: the longest proper border of
  // its first k + 1 bytes) and the current match length.
  std::vector<std::vector<size_t>> failure_;
  std::vector<size_t> state_;
};

}  // namespace pagoda::engine
