#pragma once

// What the engine returns for a request, as vLLM's RequestOutput / CompletionOutput.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pagoda {

// Log-probabilities at one position: the chosen (or prompt) token's, then the most likely ones.
struct Logprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
  int64_t rank = 0;  // 1: the most likely token
};
struct PositionLogprobs {
  Logprob chosen;
  std::vector<Logprob> top;  // most likely first
};

// "stop" (EOS, a stop token or a stop string), "length" (max_tokens or the context), "abort".
enum class FinishReason { kNone, kStop, kLength, kAbort };
[[nodiscard]] const char* finish_reason_name(FinishReason reason);  // "", "stop", "length", "abort"

struct CompletionOutput {
  int64_t index = 0;  // which of the request's n samples
  std::string text;   // everything generated so far (not only the newest piece)
  std::vector<int32_t> token_ids;
  std::vector<PositionLogprobs> logprobs;  // per token when asked for
  FinishReason finish_reason = FinishReason::kNone;
  // The stop string or stop token id that ended it.
  std::optional<std::string> stop_string;
  std::optional<int32_t> stop_token_id;
  [[nodiscard]] bool finished() const { return finish_reason != FinishReason::kNone; }
};

// Timings in seconds on a steady clock.
struct RequestMetrics {
  double arrival_time = 0.0;
  double first_scheduled_time = 0.0;
  double first_token_time = 0.0;  // 0 until the first token
  double last_token_time = 0.0;
  double finished_time = 0.0;
  int64_t num_cached_prompt_tokens = 0;  // prompt tokens found in the prefix cache
};

struct RequestOutput {
  std::string request_id;
  std::vector<int32_t> prompt_token_ids;
  std::optional<std::string> prompt;
  std::vector<std::optional<PositionLogprobs>> prompt_logprobs;  // first is nullopt
  std::vector<CompletionOutput> outputs;
  bool finished = false;
  RequestMetrics metrics;
};

}  // namespace pagoda
