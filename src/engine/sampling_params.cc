// SamplingParams::validate (vLLM's ranges, plus caps on every list since requests are hostile) and
// the names of finish reasons.

#include "pagoda/sampling_params.h"

#include <cmath>

#include "core/error.h"
#include "pagoda/outputs.h"

namespace pagoda {
namespace {

// Caps on what one request may ask for. vLLM has no caps on lists; these bound the per-token cost
// of stop strings (the stop checker works per byte per stop string) and of logit_bias.
constexpr int64_t kMaxN = 128;
constexpr int64_t kMaxLogprobs = 20;  // vLLM's default max_logprobs
constexpr size_t kMaxStopStrings = 64;
constexpr size_t kMaxStopStringBytes = 1024;
constexpr size_t kMaxStopTokenIds = 1024;
constexpr size_t kMaxLogitBias = 1024;
constexpr double kMaxPenalty = 2.0;
constexpr double kMaxBias = 100.0;

[[noreturn]] void refuse(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

// Range checks written so that NaN fails them.
bool in_closed(double v, double lo, double hi) {
  return v >= lo && v <= hi;
}

void check_token_id(const char* field, int64_t id, int64_t vocab_size) {
  if (id < 0) refuse(fmt::format("{} must hold token ids >= 0, got {}", field, id));
  if (vocab_size > 0 && id >= vocab_size) {
    refuse(fmt::format("{} must hold token ids below the vocabulary size {}, got {}", field, vocab_size, id));
  }
}

}  // namespace

void SamplingParams::validate(int64_t vocab_size) const {
  if (n < 1 || n > kMaxN) refuse(fmt::format("n must be in [1, {}], got {}", kMaxN, n));
  if (!in_closed(presence_penalty, -kMaxPenalty, kMaxPenalty)) {
    refuse(fmt::format("presence_penalty must be in [-2, 2], got {}", presence_penalty));
  }
  if (!in_closed(frequency_penalty, -kMaxPenalty, kMaxPenalty)) {
    refuse(fmt::format("frequency_penalty must be in [-2, 2], got {}", frequency_penalty));
  }
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty)) {
    refuse(fmt::format("repetition_penalty must be a finite number > 0, got {}", repetition_penalty));
  }
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) {
    refuse(fmt::format("temperature must be a finite number >= 0, got {}", temperature));
  }
  if (!(top_p > 0.0 && top_p <= 1.0)) refuse(fmt::format("top_p must be in (0, 1], got {}", top_p));
  if (top_k < -1) refuse(fmt::format("top_k must be -1 or 0 (both: off) or positive, got {}", top_k));
  if (!in_closed(min_p, 0.0, 1.0)) refuse(fmt::format("min_p must be in [0, 1], got {}", min_p));
  if (max_tokens && *max_tokens < 1) refuse(fmt::format("max_tokens must be at least 1, got {}", *max_tokens));
  if (min_tokens < 0) refuse(fmt::format("min_tokens must be >= 0, got {}", min_tokens));
  if (max_tokens && min_tokens > *max_tokens) {
    refuse(fmt::format("min_tokens must be <= max_tokens ({}), got {}", *max_tokens, min_tokens));
  }
  if (logprobs && (*logprobs < 0 || *logprobs > kMaxLogprobs)) {
    refuse(fmt::format("logprobs must be in [0, {}], got {}", kMaxLogprobs, *logprobs));
  }
  if (prompt_logprobs && (*prompt_logprobs < 0 || *prompt_logprobs > kMaxLogprobs)) {
    refuse(fmt::format("prompt_logprobs must be in [0, {}], got {}", kMaxLogprobs, *prompt_logprobs));
  }

  if (stop.size() > kMaxStopStrings) {
    refuse(fmt::format("stop may hold at most {} strings, got {}", kMaxStopStrings, stop.size()));
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty()) refuse(fmt::format("stop cannot contain an empty string (entry {})", i));
    if (stop[i].size() > kMaxStopStringBytes) {
      refuse(
          fmt::format("stop strings may be at most {} bytes, entry {} has {}", kMaxStopStringBytes, i, stop[i].size()));
    }
  }
  if (!stop.empty() && !detokenize) refuse("stop strings need detokenize (the text is what they match)");

  if (stop_token_ids.size() > kMaxStopTokenIds) {
    refuse(fmt::format("stop_token_ids may hold at most {} ids, got {}", kMaxStopTokenIds, stop_token_ids.size()));
  }
  for (int32_t id : stop_token_ids)
    check_token_id("stop_token_ids", id, vocab_size);

  if (logit_bias.size() > kMaxLogitBias) {
    refuse(fmt::format("logit_bias may hold at most {} tokens, got {}", kMaxLogitBias, logit_bias.size()));
  }
  for (const auto& [id, bias] : logit_bias) {
    check_token_id("logit_bias", id, vocab_size);
    if (!in_closed(bias, -kMaxBias, kMaxBias)) {
      refuse(fmt::format("logit_bias values must be in [-100, 100], got {} for token {}", bias, id));
    }
  }
}

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
  }
  return "";
}

}  // namespace pagoda
