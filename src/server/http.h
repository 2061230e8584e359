#pragma once

// HTTP/1.1 request parsing and response framing for the server. The parser works on a
// connection's unconsumed input and can be called again after every read (one byte at a time
// included): it remembers how far it searched for the end of the head, so a slow client costs
// linear time. Everything a client controls has a cap (request line, head size, header count,
// body size); a violation gives the status the server answers with before closing.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pagoda::server {

struct HttpLimits {
  size_t max_request_line = 8 * 1024;
  size_t max_head_bytes = 64 * 1024;  // request line and headers, with the blank line
  size_t max_headers = 100;
  size_t max_body_bytes = 8u << 20;
};

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // target without the query
  int minor_version = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool keep_alive = true;

  // The first header of that (lower-case) name.
  [[nodiscard]] const std::string* header(std::string_view name) const;
};

struct ParseResult {
  enum class Status { kIncomplete, kComplete, kError };
  Status status = Status::kIncomplete;
  size_t consumed = 0;  // kComplete: bytes of input the request took
  int http_status = 0;  // kError: the status to answer with (400, 411, 413, 414, 431, 501, 505)
  std::string message;  // kError: why
  // kIncomplete: the head is complete and asked for "Expect: 100-continue" (the server answers
  // "100 Continue" once).
  bool expects_continue = false;
};

class RequestParser {
 public:
  explicit RequestParser(HttpLimits limits = {}) : limits_(limits) {}

  // Parses the request at the start of `input`. On kComplete `out` holds it; the caller drops
  // `consumed` bytes and calls reset() before the next request.
  [[nodiscard]] ParseResult parse(std::string_view input, HttpRequest& out);
  void reset();

  [[nodiscard]] const HttpLimits& limits() const { return limits_; }
  // Whether any byte of the current request has been seen (for the read timeout).
  [[nodiscard]] bool head_complete() const { return head_len_ != 0; }

 private:
  ParseResult parse_head(std::string_view head, HttpRequest& out);

  HttpLimits limits_;
  size_t scanned_ = 0;   // bytes already searched for the end of the head
  size_t head_len_ = 0;  // > 0 once the head is parsed
  size_t body_len_ = 0;
  HttpRequest head_;
};

[[nodiscard]] const char* status_reason(int status);

// A complete response with Content-Length.
[[nodiscard]] std::string format_response(int status, std::string_view content_type, std::string_view body,
                                          bool keep_alive,
                                          const std::vector<std::pair<std::string, std::string>>& extra_headers = {});
// The head of a chunked event stream; each event then goes out as format_chunk(), and
// format_last_chunk() ends it.
[[nodiscard]] std::string format_stream_head(int status, std::string_view content_type, bool keep_alive);
[[nodiscard]] std::string format_chunk(std::string_view data);
[[nodiscard]] std::string_view format_last_chunk();

// One server-sent event carrying `data` (which must not contain a newline: JSON dumps don't).
[[nodiscard]] std::string sse_event(std::string_view data);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace pagoda::server
