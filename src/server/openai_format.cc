#include "server/openai_format.h"

#include <cmath>

namespace pagoda::server {
namespace {

double clamp_logprob(float lp) {
  if (std::isnan(lp)) return kMinLogprob;
  return std::max(static_cast<double>(lp), kMinLogprob);
}

Json bytes_of(const std::string& s) {
  Json b = Json::array();
  for (char c : s)
    b.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return b;
}

}  // namespace

Json finish_reason_json(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kNone: break;
  }
  return nullptr;
}

Json stop_reason_json(const CompletionOutput& output) {
  if (output.stop_string) return *output.stop_string;
  if (output.stop_token_id) return *output.stop_token_id;
  return nullptr;
}

Json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  Json u;
  u["prompt_tokens"] = prompt_tokens;
  u["total_tokens"] = prompt_tokens + completion_tokens;
  u["completion_tokens"] = completion_tokens;
  return u;
}

size_t code_points(std::string_view text) {
  size_t n = 0;
  for (char c : text)
    n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

Json empty_completion_logprobs() {
  Json j;
  j["text_offset"] = Json::array();
  j["token_logprobs"] = Json::array();
  j["tokens"] = Json::array();
  j["top_logprobs"] = Json::array();
  return j;
}

void append_completion_logprobs(Json& out, const std::vector<int32_t>& ids,
                                const std::vector<std::optional<PositionLogprobs>>& positions, const TokenText& text,
                                size_t& offset) {
  if (out.is_null()) out = empty_completion_logprobs();
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string token = text(ids[i]);
    out["text_offset"].push_back(offset);
    offset += code_points(token);
    out["tokens"].push_back(token);
    const std::optional<PositionLogprobs>& p = i < positions.size() ? positions[i] : std::nullopt;
    if (!p) {
      out["token_logprobs"].push_back(nullptr);
      out["top_logprobs"].push_back(nullptr);
      continue;
    }
    out["token_logprobs"].push_back(clamp_logprob(p->chosen.logprob));
    Json top = Json::object();
    for (const Logprob& l : p->top)
      top[text(l.token_id)] = clamp_logprob(l.logprob);
    if (!top.contains(token)) top[token] = clamp_logprob(p->chosen.logprob);
    out["top_logprobs"].push_back(std::move(top));
  }
}

Json chat_logprobs(const std::vector<PositionLogprobs>& positions, const TokenText& text, int64_t top) {
  Json content = Json::array();
  for (const PositionLogprobs& p : positions) {
    const std::string token = text(p.chosen.token_id);
    Json entry;
    entry["token"] = token;
    entry["logprob"] = clamp_logprob(p.chosen.logprob);
    entry["bytes"] = bytes_of(token);
    Json tops = Json::array();
    for (const Logprob& l : p.top) {
      if (static_cast<int64_t>(tops.size()) >= top) break;
      const std::string t = text(l.token_id);
      tops.push_back({{"token", t}, {"logprob", clamp_logprob(l.logprob)}, {"bytes", bytes_of(t)}});
    }
    entry["top_logprobs"] = std::move(tops);
    content.push_back(std::move(entry));
  }
  return Json{{"content", std::move(content)}};
}

}  // namespace pagoda::server
