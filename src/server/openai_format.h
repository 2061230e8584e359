#pragma once

// Pieces of OpenAI's response objects built from engine outputs: finish and stop reasons, usage,
// and log-probabilities in the completions shape ({tokens, token_logprobs, top_logprobs,
// text_offset}) and the chat shape ({content: [{token, logprob, bytes, top_logprobs}]}).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pagoda/outputs.h"

namespace pagoda::server {

using Json = nlohmann::ordered_json;
// The text of one token id, as vLLM shows it (the id decoded on its own).
using TokenText = std::function<std::string(int32_t)>;

// JSON has no -inf: vLLM's stand-in.
inline constexpr double kMinLogprob = -9999.0;

[[nodiscard]] Json finish_reason_json(FinishReason reason);  // null while running
[[nodiscard]] Json stop_reason_json(const CompletionOutput& output);
[[nodiscard]] Json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

// Number of code points in UTF-8 text (Python's len(), which text_offset counts in).
[[nodiscard]] size_t code_points(std::string_view text);

// Appends to a completions logprobs object (creating its arrays when empty). `ids` are the
// tokens at those positions; a missing position (the first prompt token) gets nulls. `offset`
// is the text_offset of the first token and moves past the ones appended.
void append_completion_logprobs(Json& out, const std::vector<int32_t>& ids,
                                const std::vector<std::optional<PositionLogprobs>>& positions, const TokenText& text,
                                size_t& offset);
[[nodiscard]] Json empty_completion_logprobs();

// The chat logprobs object for generated positions; `top` entries of top_logprobs at most.
[[nodiscard]] Json chat_logprobs(const std::vector<PositionLogprobs>& positions, const TokenText& text, int64_t top);

}  // namespace pagoda::server
