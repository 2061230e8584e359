#include "server/auth.h"

#include <cctype>
#include <cstdint>
#include <string>

namespace pagoda::server {

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Walk the expected value's length whatever the guess's length, so a short guess does not end
  // the loop early.
  volatile uint8_t diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const auto x = static_cast<uint8_t>(i < a.size() ? a[i] : 0);
    diff = static_cast<uint8_t>(diff | (x ^ static_cast<uint8_t>(b[i])));
  }
  return diff == 0;
}

bool authorized(const std::string* authorization, std::string_view key) {
  if (authorization == nullptr) return false;
  std::string_view v = *authorization;
  constexpr std::string_view kScheme = "bearer ";
  if (v.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(v[i])) != kScheme[i]) return false;
  }
  v.remove_prefix(kScheme.size());
  while (!v.empty() && v.front() == ' ')
    v.remove_prefix(1);
  // The guess goes first: the loop runs over the key's length.
  return constant_time_equal(v, key);
}

}  // namespace pagoda::server
