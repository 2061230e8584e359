#include "engine/stop_checker.h"

#include <algorithm>
#include <utility>

namespace pagoda::engine {

StopChecker::StopChecker(std::vector<std::string> stop, bool include_stop_str_in_output)
    : include_(include_stop_str_in_output) {
  for (std::string& s : stop) {
    if (!s.empty()) stop_.push_back(std::move(s));
  }
  failure_.reserve(stop_.size());
  for (const std::string& s : stop_) {
    max_len_ = std::max(max_len_, s.size());
    std::vector<size_t> f(s.size(), 0);
    size_t k = 0;
    for (size_t i = 1; i < s.size(); ++i) {
      while (k > 0 && s[i] != s[k])
        k = f[k - 1];
      if (s[i] == s[k]) ++k;
      f[i] = k;
    }
    failure_.push_back(std::move(f));
  }
  state_.assign(stop_.size(), 0);
}

StopChecker::Result StopChecker::push(std::string_view piece) {
  Result result;
  if (stopped_) return result;
  const size_t first_new = pending_.size();
  pending_.append(piece);
  for (size_t i = first_new; i < pending_.size(); ++i) {
    const char c = pending_[i];
    size_t best = stop_.size();
    for (size_t s = 0; s < stop_.size(); ++s) {
      const std::string& t = stop_[s];
      size_t k = state_[s];
      while (k > 0 && t[k] != c)
        k = failure_[s][k - 1];
      if (t[k] == c) ++k;
      if (k == t.size()) {
        if (best == stop_.size() || t.size() > stop_[best].size()) best = s;
        k = failure_[s][k - 1];
      }
      state_[s] = k;
    }
    if (best != stop_.size()) {
      // The match began inside pending_: its first len - 1 bytes were a live prefix, held back.
      const size_t end = i + 1;
      const size_t start = end - stop_[best].size();
      result.text = pending_.substr(0, include_ ? end : start);
      result.match = stop_[best];
      stopped_ = true;
      pending_.clear();
      return result;
    }
  }
  // Hold back the longest suffix that may still grow into a stop string.
  size_t hold = 0;
  for (size_t k : state_)
    hold = std::max(hold, k);
  const size_t release = pending_.size() - hold;
  result.text = pending_.substr(0, release);
  pending_.erase(0, release);
  return result;
}

std::string StopChecker::finish() {
  if (stopped_) return {};
  stopped_ = true;
  return std::exchange(pending_, {});
}

}  // namespace pagoda::engine
