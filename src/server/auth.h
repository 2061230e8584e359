#pragma once

// API key checks for /v1/*: "Authorization: Bearer <key>", compared in constant time so the
// response time says nothing about how much of a guess was right.

#include <string_view>

namespace pagoda::server {

// Whether a == b, in time that depends on the length of b (the secret) only, not on where they differ.
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);

// Whether an Authorization header value (nullptr: none) carries `key` as a Bearer token.
[[nodiscard]] bool authorized(const std::string* authorization, std::string_view key);

}  // namespace pagoda::server
