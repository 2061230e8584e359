#pragma once

// The OpenAI protocol as the server speaks it: JSON bodies read with a nesting cap, requests for
// /v1/completions, /v1/chat/completions, /tokenize and /detokenize checked field by field (each
// bad field gives a 400 naming it), and error objects. Field names, defaults and ranges follow
// OpenAI's API and vLLM's extensions (vllm/entrypoints/openai/protocol.py).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pagoda/sampling_params.h"

namespace pagoda::server {

// An error for the client: the HTTP status and the fields of OpenAI's error object.
class ApiError : public std::exception {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {});
  [[nodiscard]] const char* what() const noexcept override { return message_.c_str(); }
  [[nodiscard]] int status() const { return status_; }
  [[nodiscard]] const std::string& message() const { return message_; }
  [[nodiscard]] const std::string& param() const { return param_; }
  // {"error": {"message", "type", "param", "code"}}
  [[nodiscard]] std::string body() const;

 private:
  int status_;
  std::string message_;
  std::string param_;
  std::string code_;  // empty: the status number
};

// The error object of `status` with no param (404 for an unknown route, 405, 413...).
[[nodiscard]] std::string error_body(int status, std::string_view message, std::string_view code = {});
[[nodiscard]] const char* error_type(int status);

inline constexpr int kMaxJsonDepth = 64;

// Parses a request body: valid UTF-8, nesting at most kMaxJsonDepth (checked before the parser
// recurses), a JSON object. Throws ApiError(400).
[[nodiscard]] nlohmann::json parse_json_body(std::string_view body);
// The deepest nesting of arrays and objects in `text` (strings skipped), or -1 once it exceeds
// `limit`.
[[nodiscard]] int json_depth(std::string_view text, int limit);

struct ProtocolLimits {
  int64_t vocab_size = 0;     // token ids must be below it (0: unchecked)
  int64_t max_model_len = 0;  // prompt + max_tokens must fit (0: unchecked)
  int64_t max_n = 64;
  int64_t max_stop = 16;
  int64_t max_stop_bytes = 1024;
  int64_t max_stop_token_ids = 256;
  int64_t max_logprobs = 20;
  int64_t max_logit_bias = 1024;
  int64_t max_prompts = 256;
  int64_t max_messages = 4096;
};

enum class ApiKind { kCompletion, kChat };

struct PromptSpec {
  std::optional<std::string> text;
  std::vector<int32_t> token_ids;  // when given as ids
};

struct GenerationRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::optional<std::string> model;
  std::vector<PromptSpec> prompts;  // completions
  nlohmann::ordered_json messages;  // chat: [{"role", "content": string}]
  bool add_generation_prompt = true;
  SamplingParams params;
  bool max_tokens_given = false;
  bool stream = false;
  bool include_usage = false;
  bool echo = false;
  bool return_token_ids = false;
  // Completions: the number of top logprobs per token; chat: top_logprobs when logprobs is true.
  std::optional<int64_t> logprobs;
  std::optional<std::string> user;
};

// Throws ApiError(400) naming the first bad field.
[[nodiscard]] GenerationRequest parse_generation_request(const nlohmann::json& body, ApiKind kind,
                                                         const ProtocolLimits& limits);

// Checks one prompt's length against the context once it is tokenized: not empty, token ids in
// the vocabulary, prompt + max_tokens within max_model_len (the message says the numbers).
void check_prompt(const std::vector<int32_t>& ids, const GenerationRequest& request, const ProtocolLimits& limits);

// vLLM's /tokenize: {"prompt", "add_special_tokens"} or {"messages", "add_generation_prompt",
// "add_special_tokens"}.
struct TokenizeRequest {
  std::optional<std::string> model;
  std::optional<std::string> prompt;
  nlohmann::ordered_json messages;  // when chat
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
};
[[nodiscard]] TokenizeRequest parse_tokenize_request(const nlohmann::json& body, const ProtocolLimits& limits);

struct DetokenizeRequest {
  std::optional<std::string> model;
  std::vector<int32_t> tokens;
};
[[nodiscard]] DetokenizeRequest parse_detokenize_request(const nlohmann::json& body, const ProtocolLimits& limits);

}  // namespace pagoda::server
