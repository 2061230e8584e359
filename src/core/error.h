#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace pagoda {

// What went wrong, coarse enough for a caller to choose a reaction (an HTTP status, an exit code).
enum class ErrorCode {
  kInvalidArgument,  // the caller passed something unusable
  kInvalidFile,      // a model, tokenizer or config file is malformed
  kNotFound,         // a file, tensor or key that was asked for does not exist
  kUnsupported,      // well-formed, but pagoda does not implement it
  kOutOfMemory,      // a budget or device memory was exhausted
  kIo,               // the operating system refused a read, map or open
  kInternal,         // a broken invariant inside pagoda
};

std::string_view error_code_name(ErrorCode code);

// The one exception type pagoda throws. The message is complete and human-readable on its own
// ("model.gguf: tensor 'x' extends past the end of the file"), so callers print what() as is.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace pagoda
