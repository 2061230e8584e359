#pragma once

// How one request is sampled: the fields, names and defaults of vLLM's SamplingParams (which
// follow the OpenAI API). A request's params are checked once, when it is added; every field
// out of range is refused with a message naming it (pagoda::Error, kInvalidArgument).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pagoda {

struct SamplingParams {
  // Parallel samples of one prompt; they share the prompt's KV blocks.
  int64_t n = 1;

  // Penalties. presence and frequency: in [-2, 2], applied to tokens generated so far
  // (logit -= frequency * count + presence * (count > 0)). repetition: > 0, applied to tokens of
  // the prompt and the output (a positive logit is divided by it, a negative one multiplied).
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  double repetition_penalty = 1.0;

  // temperature 0: greedy (the argmax, lowest id on ties). top_p in (0, 1]; top_k 0 or -1: off;
  // min_p in [0, 1]: drop tokens whose probability is below min_p times the largest one.
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  double min_p = 0.0;

  // A per-request generator: the same seed gives the same output whatever else runs in the
  // batch. Without one, the engine's seed and the request's arrival order decide.
  std::optional<uint64_t> seed;

  // Generation stops when the text contains one of `stop` (matched across token boundaries; the
  // stop string is left out of the text unless include_stop_str_in_output) or a token of
  // stop_token_ids is sampled (that token is kept in token_ids, its text too unless special).
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool include_stop_str_in_output = false;
  // Do not stop at the model's end-of-sequence tokens.
  bool ignore_eos = false;

  // Generated tokens: at most max_tokens (nullopt: up to the model's context), and no stop (EOS,
  // stop_token_ids) before min_tokens.
  std::optional<int64_t> max_tokens = 16;
  int64_t min_tokens = 0;

  // Log-probabilities (of the model's logits, before any sampling parameter): for each generated
  // token its own and the `logprobs` most likely; for each prompt token after the first, its own
  // and the `prompt_logprobs` most likely. nullopt: none.
  std::optional<int64_t> logprobs;
  std::optional<int64_t> prompt_logprobs;

  // Added to the logit of each token id before sampling; values in [-100, 100].
  std::map<int32_t, double> logit_bias;

  // Text output.
  bool detokenize = true;
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;

  // Checks every field; throws pagoda::Error(kInvalidArgument) naming the first bad one.
  // vocab_size > 0 also checks token ids (logit_bias, stop_token_ids).
  void validate(int64_t vocab_size = 0) const;
};

}  // namespace pagoda
