#include "server/http.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace pagoda::server {
namespace {

bool is_token_char(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    const std::string_view item = trim(value.substr(0, comma));
    if (lower(item) == token) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

ParseResult error(int status, std::string message) {
  ParseResult r;
  r.status = ParseResult::Status::kError;
  r.http_status = status;
  r.message = std::move(message);
  return r;
}

}  // namespace

const std::string* HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

void RequestParser::reset() {
  scanned_ = 0;
  head_len_ = 0;
  body_len_ = 0;
  head_ = HttpRequest{};
}

ParseResult RequestParser::parse(std::string_view input, HttpRequest& out) {
  if (head_len_ == 0) {
    const size_t from = scanned_ >= 3 ? scanned_ - 3 : 0;
    const size_t end = input.find("\r\n\r\n", from);
    // The request line's length is judged first and from what it is known to be at least, so a
    // head that arrives in pieces gets the same answer as one that arrives whole: a trailing CR
    // may still be the start of the line's CRLF.
    const size_t line_end = input.find("\r\n");
    const size_t line_len = line_end != std::string_view::npos ? line_end
                            : input.ends_with('\r')            ? input.size() - 1
                                                               : input.size();
    if (line_len > limits_.max_request_line) {
      return error(414, fmt::format("request line longer than {} bytes", limits_.max_request_line));
    }
    if (end == std::string_view::npos) {
      scanned_ = input.size();
      if (input.size() > limits_.max_head_bytes) {
        return error(431, fmt::format("request head longer than {} bytes", limits_.max_head_bytes));
      }
      return {};
    }
    const size_t head_len = end + 4;
    if (head_len > limits_.max_head_bytes) {
      return error(431, fmt::format("request head longer than {} bytes", limits_.max_head_bytes));
    }
    ParseResult r = parse_head(input.substr(0, end + 2), head_);
    if (r.status == ParseResult::Status::kError) return r;
    head_len_ = head_len;
  }
  if (input.size() - head_len_ < body_len_) {
    ParseResult r;
    const std::string* expect = head_.header("expect");
    r.expects_continue = expect != nullptr && lower(*expect) == "100-continue";
    return r;
  }
  out = std::move(head_);
  out.body.assign(input.substr(head_len_, body_len_));
  ParseResult r;
  r.status = ParseResult::Status::kComplete;
  r.consumed = head_len_ + body_len_;
  reset();
  return r;
}

// `head` is the request line and header lines, each ending in CRLF.
ParseResult RequestParser::parse_head(std::string_view head, HttpRequest& out) {
  size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  if (line.size() > limits_.max_request_line) {
    return error(414, fmt::format("request line longer than {} bytes", limits_.max_request_line));
  }
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != line.npos) {
    return error(400, "malformed request line");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), [](char c) { return is_token_char(c); })) {
    return error(400, "malformed request method");
  }
  if (target.empty() || target.front() != '/' ||
      !std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return error(400, "malformed request target");
  }
  if (version == "HTTP/1.1") {
    out.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    out.minor_version = 0;
  } else if (version.starts_with("HTTP/")) {
    return error(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  } else {
    return error(400, "malformed HTTP version");
  }
  out.method.assign(method);
  out.target.assign(target);
  out.path.assign(target.substr(0, target.find('?')));

  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool has_transfer_encoding = false;
  size_t pos = line_end + 2;
  while (pos < head.size()) {
    line_end = head.find("\r\n", pos);
    const std::string_view h = head.substr(pos, line_end - pos);
    pos = line_end + 2;
    if (out.headers.size() >= limits_.max_headers) {
      return error(431, fmt::format("more than {} headers", limits_.max_headers));
    }
    const size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return error(400, "malformed header line");
    const std::string_view name = h.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), [](char c) { return is_token_char(c); })) {
      return error(400, "malformed header name");
    }
    const std::string_view value = trim(h.substr(colon + 1));
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && u != '\t') || u == 0x7f) return error(400, "control character in a header value");
    }
    std::string key = lower(name);
    if (key == "content-length") {
      if (value.empty() || value.size() > 19 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return error(400, "malformed Content-Length");
      }
      const uint64_t n = std::stoull(std::string(value));
      if (content_length && *content_length != n) return error(400, "conflicting Content-Length headers");
      content_length = n;
    } else if (key == "transfer-encoding") {
      has_transfer_encoding = true;
      chunked = chunked || has_token(value, "chunked");
    }
    out.headers.emplace_back(std::move(key), std::string(value));
  }
  if (has_transfer_encoding) {
    if (content_length) return error(400, "both Transfer-Encoding and Content-Length");
    if (chunked) return error(411, "chunked request bodies are not supported: send Content-Length");
    return error(501, "unsupported Transfer-Encoding");
  }
  if (content_length && *content_length > limits_.max_body_bytes) {
    return error(413, fmt::format("request body of {} bytes is larger than the limit of {} bytes", *content_length,
                                  limits_.max_body_bytes));
  }
  body_len_ = content_length ? static_cast<size_t>(*content_length) : 0;

  const std::string* connection = out.header("connection");
  if (out.minor_version == 0) {
    out.keep_alive = connection != nullptr && has_token(*connection, "keep-alive");
  } else {
    out.keep_alive = connection == nullptr || !has_token(*connection, "close");
  }
  return {};
}

const char* status_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string format_response(int status, std::string_view content_type, std::string_view body, bool keep_alive,
                            const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  std::string r = fmt::format("HTTP/1.1 {} {}\r\nServer: pagoda\r\nContent-Length: {}\r\nConnection: {}\r\n", status,
                              status_reason(status), body.size(), keep_alive ? "keep-alive" : "close");
  if (!content_type.empty()) r += fmt::format("Content-Type: {}\r\n", content_type);
  for (const auto& [k, v] : extra_headers)
    r += fmt::format("{}: {}\r\n", k, v);
  r += "\r\n";
  r.append(body);
  return r;
}

std::string format_stream_head(int status, std::string_view content_type, bool keep_alive) {
  return fmt::format(
      "HTTP/1.1 {} {}\r\nServer: pagoda\r\nContent-Type: {}\r\nCache-Control: no-cache\r\n"
      "Transfer-Encoding: chunked\r\nConnection: {}\r\n\r\n",
      status, status_reason(status), content_type, keep_alive ? "keep-alive" : "close");
}

std::string format_chunk(std::string_view data) {
  if (data.empty()) return {};  // an empty chunk would end the body
  std::string r = fmt::format("{:x}\r\n", data.size());
  r.append(data);
  r += "\r\n";
  return r;
}

std::string_view format_last_chunk() {
  return "0\r\n\r\n";
}

std::string sse_event(std::string_view data) {
  std::string r = "data: ";
  r.append(data);
  r += "\n\n";
  return r;
}

}  // namespace pagoda::server
