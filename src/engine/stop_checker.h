#pragma once

// Stop strings over streamed text: generated text arrives in pieces (one per token, often
// empty) and a stop string may span several pieces. The checker releases text only when no stop
// string could still begin in it, and on a match returns the text up to the stop string (or
// through it, with include_stop_str_in_output) and reports which one matched.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda::engine {

class StopChecker {
 public:
  StopChecker(std::vector<std::string> stop, bool include_stop_str_in_output);

  struct Result {
    std::string text;                  // newly released text
    std::optional<std::string> match;  // the stop string that ended generation
  };
  // Appends a piece of generated text. After a match, further calls release nothing.
  [[nodiscard]] Result push(std::string_view piece);
  // End of generation without a match: releases whatever was held back.
  [[nodiscard]] std::string finish();

 private:
  std::vector<std::string> stop_;
  bool include_;
  std::string pending_;
  bool stopped_ = false;
  size_t max_len_ = 0;
};

}  // namespace pagoda::engine
