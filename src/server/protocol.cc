#include "server/protocol.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "tokenizer/utf8.h"

namespace pagoda::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

// The field, or nullptr when absent or null (OpenAI treats null as "not given").
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<int64_t> as_int(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return static_cast<int64_t>(u);
    return std::nullopt;
  }
  if (v.is_number_float()) {
    // Pydantic accepts 2.0 for an integer field.
    const double d = v.get<double>();
    if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9.0e18) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

int64_t get_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  if (!v.is_number()) bad(name, fmt::format("{} must be an integer, got {}", name, v.type_name()));
  const std::optional<int64_t> i = as_int(v);
  if (!i) {
    if (v.is_number_float() && std::isfinite(v.get<double>()) && std::trunc(v.get<double>()) != v.get<double>()) {
      bad(name, fmt::format("{} must be an integer, got {}", name, v.dump()));
    }
    bad(name, fmt::format("{} must be in [{}, {}], got {}", name, lo, hi, v.dump()));
  }
  if (*i < lo || *i > hi) bad(name, fmt::format("{} must be in [{}, {}], got {}", name, lo, hi, *i));
  return *i;
}

double get_double(const json& v, const std::string& name) {
  if (!v.is_number()) bad(name, fmt::format("{} must be a number, got {}", name, v.type_name()));
  const double d = v.get<double>();
  if (!std::isfinite(d)) bad(name, fmt::format("{} must be a finite number", name));
  return d;
}

double get_double_in(const json& v, const std::string& name, double lo, double hi) {
  const double d = get_double(v, name);
  if (d < lo || d > hi) bad(name, fmt::format("{} must be in [{}, {}], got {}", name, lo, hi, d));
  return d;
}

bool get_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) bad(name, fmt::format("{} must be a boolean, got {}", name, v.type_name()));
  return v.get<bool>();
}

std::string get_string(const json& v, const std::string& name) {
  if (!v.is_string()) bad(name, fmt::format("{} must be a string, got {}", name, v.type_name()));
  return v.get<std::string>();
}

int32_t get_token_id(const json& v, const std::string& name, const ProtocolLimits& limits) {
  const int64_t hi = limits.vocab_size > 0 ? limits.vocab_size - 1 : std::numeric_limits<int32_t>::max();
  if (!v.is_number()) bad(name, fmt::format("{} must hold token ids (integers), got {}", name, v.type_name()));
  const std::optional<int64_t> i = as_int(v);
  if (!i || *i < 0 || *i > hi) {
    bad(name, fmt::format("{} holds token id {}, outside the vocabulary [0, {}]", name, v.dump(), hi));
  }
  return static_cast<int32_t>(*i);
}

std::vector<int32_t> get_token_ids(const json& v, const std::string& name, const ProtocolLimits& limits) {
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const json& e : v)
    ids.push_back(get_token_id(e, name, limits));
  return ids;
}

// Completions' prompt: a string, strings, token ids, or lists of token ids.
std::vector<PromptSpec> parse_prompt(const json& v, const ProtocolLimits& limits) {
  const std::string name = "prompt";
  std::vector<PromptSpec> prompts;
  if (v.is_string()) {
    prompts.push_back({v.get<std::string>(), {}});
  } else if (v.is_array()) {
    if (v.empty()) bad(name, "prompt must not be empty");
    if (v.front().is_string()) {
      if (static_cast<int64_t>(v.size()) > limits.max_prompts) {
        bad(name, fmt::format("at most {} prompts per request, got {}", limits.max_prompts, v.size()));
      }
      for (const json& e : v)
        prompts.push_back({get_string(e, name), {}});
    } else if (v.front().is_array()) {
      if (static_cast<int64_t>(v.size()) > limits.max_prompts) {
        bad(name, fmt::format("at most {} prompts per request, got {}", limits.max_prompts, v.size()));
      }
      for (const json& e : v) {
        if (!e.is_array()) bad(name, fmt::format("prompt must be a list of token id lists, found a {}", e.type_name()));
        prompts.push_back({std::nullopt, get_token_ids(e, name, limits)});
      }
    } else if (v.front().is_number()) {
      prompts.push_back({std::nullopt, get_token_ids(v, name, limits)});
    } else {
      bad(name, fmt::format("prompt must be a string, a list of strings or token ids, found a list of {}",
                            v.front().type_name()));
    }
  } else {
    bad(name, fmt::format("prompt must be a string, a list of strings or token ids, got {}", v.type_name()));
  }
  for (const PromptSpec& p : prompts) {
    if (p.text ? p.text->empty() : p.token_ids.empty()) bad(name, "prompt must not be empty");
  }
  return prompts;
}

// Chat messages, with content flattened to a string (text parts joined by newlines, as vLLM does).
nlohmann::ordered_json parse_messages(const json& v, const ProtocolLimits& limits) {
  const std::string name = "messages";
  if (!v.is_array()) bad(name, fmt::format("messages must be a list, got {}", v.type_name()));
  if (v.empty()) bad(name, "messages must not be empty");
  if (static_cast<int64_t>(v.size()) > limits.max_messages) {
    bad(name, fmt::format("at most {} messages per request, got {}", limits.max_messages, v.size()));
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < v.size(); ++i) {
    const json& m = v[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(name, fmt::format("{} must be an object, got {}", where, m.type_name()));
    const json* role = field(m, "role");
    if (role == nullptr) bad(name, fmt::format("{} has no role", where));
    const std::string r = get_string(*role, where + ".role");
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer") {
      bad(name, fmt::format("{}.role must be one of system, user, assistant, tool, developer; got '{}'", where, r));
    }
    std::string content;
    if (const json* c = field(m, "content"); c != nullptr) {
      if (c->is_string()) {
        content = c->get<std::string>();
      } else if (c->is_array()) {
        bool first = true;
        for (const json& part : *c) {
          if (!part.is_object()) bad(name, fmt::format("{}.content parts must be objects", where));
          const json* type = field(part, "type");
          if (type == nullptr || !type->is_string() || type->get<std::string>() != "text") {
            bad(name, fmt::format("{}.content: only parts of type 'text' are supported", where));
          }
          const json* text = field(part, "text");
          if (text == nullptr) bad(name, fmt::format("{}.content: a text part has no text", where));
          if (!first) content += "\n";
          content += get_string(*text, where + ".content.text");
          first = false;
        }
      } else {
        bad(name, fmt::format("{}.content must be a string or a list of parts, got {}", where, c->type_name()));
      }
    } else if (r != "assistant") {
      bad(name, fmt::format("{} has no content", where));
    }
    out.push_back({{"role", r}, {"content", std::move(content)}});
  }
  return out;
}

void parse_stop(const json& v, SamplingParams& p, const ProtocolLimits& limits) {
  const std::string name = "stop";
  std::vector<std::string> stops;
  if (v.is_string()) {
    stops.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (static_cast<int64_t>(v.size()) > limits.max_stop) {
      bad(name, fmt::format("at most {} stop sequences, got {}", limits.max_stop, v.size()));
    }
    for (const json& e : v)
      stops.push_back(get_string(e, name));
  } else {
    bad(name, fmt::format("stop must be a string or a list of strings, got {}", v.type_name()));
  }
  for (const std::string& s : stops) {
    if (s.empty()) bad(name, "stop sequences must not be empty");
    if (static_cast<int64_t>(s.size()) > limits.max_stop_bytes) {
      bad(name, fmt::format("stop sequences must be at most {} bytes, got {}", limits.max_stop_bytes, s.size()));
    }
  }
  p.stop = std::move(stops);
}

void parse_sampling(const json& body, GenerationRequest& r, const ProtocolLimits& limits) {
  SamplingParams& p = r.params;
  if (const json* v = field(body, "n")) p.n = get_int(*v, "n", 1, limits.max_n);
  if (const json* v = field(body, "temperature")) p.temperature = get_double_in(*v, "temperature", 0.0, 100.0);
  if (const json* v = field(body, "top_p")) {
    p.top_p = get_double(*v, "top_p");
    if (p.top_p <= 0.0 || p.top_p > 1.0) bad("top_p", fmt::format("top_p must be in (0, 1], got {}", p.top_p));
  }
  if (const json* v = field(body, "top_k")) p.top_k = get_int(*v, "top_k", -1, std::numeric_limits<int32_t>::max());
  if (const json* v = field(body, "min_p")) p.min_p = get_double_in(*v, "min_p", 0.0, 1.0);
  if (const json* v = field(body, "presence_penalty"))
    p.presence_penalty = get_double_in(*v, "presence_penalty", -2, 2);
  if (const json* v = field(body, "frequency_penalty")) {
    p.frequency_penalty = get_double_in(*v, "frequency_penalty", -2, 2);
  }
  if (const json* v = field(body, "repetition_penalty")) {
    p.repetition_penalty = get_double(*v, "repetition_penalty");
    if (p.repetition_penalty <= 0.0 || p.repetition_penalty > 100.0) {
      bad("repetition_penalty", fmt::format("repetition_penalty must be in (0, 100], got {}", p.repetition_penalty));
    }
  }
  if (const json* v = field(body, "seed")) {
    if (!v->is_number()) bad("seed", fmt::format("seed must be an integer, got {}", v->type_name()));
    if (v->is_number_unsigned()) {
      p.seed = v->get<uint64_t>();
    } else {
      p.seed = static_cast<uint64_t>(
          get_int(*v, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
    }
  }
  if (const json* v = field(body, "stop")) parse_stop(*v, p, limits);
  if (const json* v = field(body, "stop_token_ids")) {
    if (!v->is_array()) bad("stop_token_ids", fmt::format("stop_token_ids must be a list, got {}", v->type_name()));
    if (static_cast<int64_t>(v->size()) > limits.max_stop_token_ids) {
      bad("stop_token_ids", fmt::format("at most {} stop_token_ids, got {}", limits.max_stop_token_ids, v->size()));
    }
    p.stop_token_ids = get_token_ids(*v, "stop_token_ids", limits);
  }
  if (const json* v = field(body, "logit_bias")) {
    if (!v->is_object()) bad("logit_bias", fmt::format("logit_bias must be an object, got {}", v->type_name()));
    if (static_cast<int64_t>(v->size()) > limits.max_logit_bias) {
      bad("logit_bias", fmt::format("at most {} logit_bias entries, got {}", limits.max_logit_bias, v->size()));
    }
    const int64_t hi = limits.vocab_size > 0 ? limits.vocab_size - 1 : std::numeric_limits<int32_t>::max();
    for (const auto& [key, value] : v->items()) {
      int64_t id = -1;
      const bool digits = !key.empty() && key.size() <= 10 && key.find_first_not_of("0123456789") == std::string::npos;
      if (digits) id = std::stoll(key);
      if (!digits || id > hi) {
        bad("logit_bias", fmt::format("logit_bias key '{}' is not a token id in [0, {}]", key, hi));
      }
      p.logit_bias[static_cast<int32_t>(id)] = get_double_in(value, "logit_bias", -100.0, 100.0);
    }
  }

  // max_completion_tokens replaces max_tokens in chat.
  const json* max_tokens = field(body, "max_tokens");
  if (r.kind == ApiKind::kChat) {
    if (const json* v = field(body, "max_completion_tokens")) max_tokens = v;
  }
  const char* max_name = max_tokens != nullptr && max_tokens == field(body, "max_completion_tokens")
                             ? "max_completion_tokens"
                             : "max_tokens";
  if (max_tokens != nullptr) {
    p.max_tokens = get_int(*max_tokens, max_name, 1, std::numeric_limits<int32_t>::max());
    r.max_tokens_given = true;
  } else {
    // OpenAI's defaults: 16 for completions; chat runs to the end of the context.
    p.max_tokens = r.kind == ApiKind::kCompletion ? std::optional<int64_t>(16) : std::nullopt;
  }
  if (const json* v = field(body, "min_tokens")) {
    p.min_tokens = get_int(*v, "min_tokens", 0, std::numeric_limits<int32_t>::max());
    if (p.max_tokens && p.min_tokens > *p.max_tokens) {
      bad("min_tokens", fmt::format("min_tokens ({}) must not exceed {} ({})", p.min_tokens, max_name, *p.max_tokens));
    }
  }
  if (const json* v = field(body, "ignore_eos")) p.ignore_eos = get_bool(*v, "ignore_eos");
  if (const json* v = field(body, "include_stop_str_in_output")) {
    p.include_stop_str_in_output = get_bool(*v, "include_stop_str_in_output");
  }
  if (const json* v = field(body, "skip_special_tokens")) p.skip_special_tokens = get_bool(*v, "skip_special_tokens");
  if (const json* v = field(body, "spaces_between_special_tokens")) {
    p.spaces_between_special_tokens = get_bool(*v, "spaces_between_special_tokens");
  }
}

std::optional<std::string> parse_model(const json& body) {
  if (const json* v = field(body, "model")) return get_string(*v, "model");
  return std::nullopt;
}

}  // namespace

ApiError::ApiError(int status, std::string message, std::string param, std::string code)
    : status_(status), message_(std::move(message)), param_(std::move(param)), code_(std::move(code)) {}

const char* error_type(int status) {
  switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 404: return "NotFoundError";
    case 405: return "MethodNotAllowedError";
    case 408: return "RequestTimeoutError";
    case 411: return "LengthRequiredError";
    case 413: return "RequestTooLargeError";
    case 503: return "ServiceUnavailableError";
    default: return status >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

std::string ApiError::body() const {
  json e = {{"message", message_}, {"type", error_type(status_)}};
  e["param"] = param_.empty() ? json(nullptr) : json(param_);
  e["code"] = code_.empty() ? json(status_) : json(code_);
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_body(int status, std::string_view message, std::string_view code) {
  return ApiError(status, std::string(message), {}, std::string(code)).body();
}

int json_depth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return -1;
      deepest = std::max(deepest, depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

nlohmann::json parse_json_body(std::string_view body) {
  if (body.empty()) throw ApiError(400, "the request body is empty: expected a JSON object");
  if (!tokenizer::is_valid_utf8(body)) throw ApiError(400, "the request body is not valid UTF-8");
  if (json_depth(body, kMaxJsonDepth) < 0) {
    throw ApiError(400, fmt::format("the request body nests JSON deeper than {} levels", kMaxJsonDepth));
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) throw ApiError(400, fmt::format("the request body must be a JSON object, got {}", j.type_name()));
  return j;
}

GenerationRequest parse_generation_request(const nlohmann::json& body, ApiKind kind, const ProtocolLimits& limits) {
  GenerationRequest r;
  r.kind = kind;
  r.model = parse_model(body);
  if (kind == ApiKind::kCompletion) {
    const json* prompt = field(body, "prompt");
    if (prompt == nullptr) bad("prompt", "prompt is required");
    r.prompts = parse_prompt(*prompt, limits);
    if (const json* v = field(body, "echo")) r.echo = get_bool(*v, "echo");
    if (const json* v = field(body, "logprobs")) {
      if (v->is_boolean()) bad("logprobs", "logprobs must be an integer (the number of top tokens), got boolean");
      r.logprobs = get_int(*v, "logprobs", 0, limits.max_logprobs);
    }
    if (const json* v = field(body, "suffix")) {
      if (!v->is_string() || !v->get<std::string>().empty()) bad("suffix", "suffix is not supported");
    }
  } else {
    const json* messages = field(body, "messages");
    if (messages == nullptr) bad("messages", "messages is required");
    r.messages = parse_messages(*messages, limits);
    if (const json* v = field(body, "add_generation_prompt")) {
      r.add_generation_prompt = get_bool(*v, "add_generation_prompt");
    }
    bool want = false;
    if (const json* v = field(body, "logprobs")) want = get_bool(*v, "logprobs");
    if (const json* v = field(body, "top_logprobs")) {
      const int64_t top = get_int(*v, "top_logprobs", 0, limits.max_logprobs);
      if (!want && top > 0) bad("top_logprobs", "top_logprobs needs logprobs set to true");
      r.logprobs = top;
    }
    if (want && !r.logprobs) r.logprobs = 0;
    if (!want) r.logprobs.reset();
  }
  parse_sampling(body, r, limits);
  r.params.logprobs = r.logprobs;
  if (r.kind == ApiKind::kCompletion && r.echo && r.logprobs) r.params.prompt_logprobs = r.logprobs;

  if (const json* v = field(body, "stream")) r.stream = get_bool(*v, "stream");
  if (const json* v = field(body, "stream_options")) {
    if (!v->is_object()) bad("stream_options", fmt::format("stream_options must be an object, got {}", v->type_name()));
    if (!r.stream) bad("stream_options", "stream_options is only allowed when stream is true");
    if (const json* u = field(*v, "include_usage")) r.include_usage = get_bool(*u, "stream_options.include_usage");
  }
  if (const json* v = field(body, "return_token_ids")) r.return_token_ids = get_bool(*v, "return_token_ids");
  if (const json* v = field(body, "user")) r.user = get_string(*v, "user");
  return r;
}

void check_prompt(const std::vector<int32_t>& ids, const GenerationRequest& request, const ProtocolLimits& limits) {
  const char* param = request.kind == ApiKind::kChat ? "messages" : "prompt";
  if (ids.empty()) bad(param, "the prompt is empty");
  if (limits.vocab_size > 0) {
    for (int32_t id : ids) {
      if (id < 0 || id >= limits.vocab_size) {
        bad(param, fmt::format("token id {} is outside the vocabulary [0, {})", id, limits.vocab_size));
      }
    }
  }
  if (limits.max_model_len <= 0) return;
  const auto n = static_cast<int64_t>(ids.size());
  const char* where = request.kind == ApiKind::kChat ? "messages" : "prompt";
  if (request.params.max_tokens && request.max_tokens_given) {
    const int64_t total = n + *request.params.max_tokens;
    if (total > limits.max_model_len) {
      bad(request.kind == ApiKind::kChat ? "max_completion_tokens" : "max_tokens",
          fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the "
                      "{}, {} in the completion). Please reduce the length of the {} or completion.",
                      limits.max_model_len, total, n, where, *request.params.max_tokens, where));
    }
  } else if (n >= limits.max_model_len) {
    bad(param, fmt::format("This model's maximum context length is {} tokens. However, your {} has {} tokens, "
                           "leaving no room for the completion. Please reduce the length of the {}.",
                           limits.max_model_len, where, n, where));
  }
}

TokenizeRequest parse_tokenize_request(const nlohmann::json& body, const ProtocolLimits& limits) {
  TokenizeRequest r;
  r.model = parse_model(body);
  if (const json* m = field(body, "messages")) {
    r.messages = parse_messages(*m, limits);
    r.add_special_tokens = false;
    if (const json* v = field(body, "add_generation_prompt")) {
      r.add_generation_prompt = get_bool(*v, "add_generation_prompt");
    }
  } else {
    const json* p = field(body, "prompt");
    if (p == nullptr) bad("prompt", "prompt (or messages) is required");
    r.prompt = get_string(*p, "prompt");
  }
  if (const json* v = field(body, "add_special_tokens")) r.add_special_tokens = get_bool(*v, "add_special_tokens");
  return r;
}

DetokenizeRequest parse_detokenize_request(const nlohmann::json& body, const ProtocolLimits& limits) {
  DetokenizeRequest r;
  r.model = parse_model(body);
  const json* t = field(body, "tokens");
  if (t == nullptr) bad("tokens", "tokens is required");
  if (!t->is_array()) bad("tokens", fmt::format("tokens must be a list of token ids, got {}", t->type_name()));
  r.tokens = get_token_ids(*t, "tokens", limits);
  return r;
}

}  // namespace pagoda::server
