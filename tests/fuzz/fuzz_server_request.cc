// libFuzzer target: raw bytes as an HTTP connection's input through the request parser (all at
// once, and again split at a point the first byte chooses, which must give the same requests),
// then every complete request's body through the OpenAI protocol layer: JSON with the nesting
// cap, completions / chat / tokenize / detokenize validation and the prompt checks against a
// vocabulary and context size. Anything but ApiError escaping, or a crash, is a finding.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "server/http.h"
#include "server/protocol.h"

namespace {

using pagoda::server::ApiError;
using pagoda::server::ApiKind;
using pagoda::server::HttpLimits;
using pagoda::server::HttpRequest;
using pagoda::server::ParseResult;
using pagoda::server::RequestParser;

struct Parsed {
  std::vector<HttpRequest> requests;
  int error = 0;
};

// Feeds `input` in pieces ending at the given cut points and collects requests.
Parsed run_parser(std::string_view input, const std::vector<size_t>& cuts, const HttpLimits& limits) {
  RequestParser parser(limits);
  Parsed out;
  std::string buf;
  size_t fed = 0;
  auto drain = [&] {
    while (!buf.empty()) {
      HttpRequest req;
      const ParseResult r = parser.parse(buf, req);
      if (r.status == ParseResult::Status::kIncomplete) return true;
      if (r.status == ParseResult::Status::kError) {
        if (r.http_status < 400 || r.http_status > 599) std::abort();
        out.error = r.http_status;
        return false;
      }
      if (r.consumed == 0 || r.consumed > buf.size()) std::abort();
      buf.erase(0, r.consumed);
      out.requests.push_back(std::move(req));
    }
    return true;
  };
  for (size_t cut : cuts) {
    if (cut <= fed || cut > input.size()) continue;
    buf.append(input.substr(fed, cut - fed));
    fed = cut;
    if (!drain()) return out;
  }
  buf.append(input.substr(fed));
  drain();
  return out;
}

void check_body(const std::string& body) {
  pagoda::server::ProtocolLimits limits;
  limits.vocab_size = 49152;
  limits.max_model_len = 2048;
  nlohmann::json j;
  try {
    j = pagoda::server::parse_json_body(body);
  } catch (const ApiError& e) {
    if (e.status() != 400) std::abort();
    return;
  }
  for (ApiKind kind : {ApiKind::kCompletion, ApiKind::kChat}) {
    try {
      const pagoda::server::GenerationRequest r = pagoda::server::parse_generation_request(j, kind, limits);
      for (const pagoda::server::PromptSpec& p : r.prompts) {
        // Stand-in for tokenization: one id per byte of text.
        std::vector<int32_t> ids = p.token_ids;
        if (p.text) {
          for (unsigned char c : *p.text)
            ids.push_back(c);
        }
        pagoda::server::check_prompt(ids, r, limits);
      }
      (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } catch (const ApiError& e) {
      if (e.status() != 400 || e.message().empty()) std::abort();
      (void)e.body();
    }
  }
  try {
    (void)pagoda::server::parse_tokenize_request(j, limits);
  } catch (const ApiError&) {  // NOLINT(bugprone-empty-catch): refusals are expected
  }
  try {
    (void)pagoda::server::parse_detokenize_request(j, limits);
  } catch (const ApiError&) {  // NOLINT(bugprone-empty-catch)
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  HttpLimits limits;
  limits.max_request_line = 1024;
  limits.max_head_bytes = 4096;
  limits.max_headers = 32;
  limits.max_body_bytes = 256 * 1024;

  const Parsed whole = run_parser(input, {}, limits);
  std::vector<size_t> cuts;
  if (size > 0) {
    const size_t step = 1 + data[0] % 7;
    for (size_t c = 1; c < size; c += step)
      cuts.push_back(c);
  }
  const Parsed split = run_parser(input, cuts, limits);
  // Splitting the input must not change what is parsed.
  if (whole.requests.size() != split.requests.size()) std::abort();
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    if (whole.requests[i].body != split.requests[i].body || whole.requests[i].target != split.requests[i].target) {
      std::abort();
    }
  }
  if (whole.error != split.error) std::abort();

  for (const HttpRequest& req : whole.requests)
    check_body(req.body);
  // Bodies without HTTP around them reach the protocol layer too.
  if (!input.starts_with("GET") && !input.starts_with("POST")) check_body(std::string(input));
  return 0;
}
