#pragma once

// Choosing the next token from one row of logits on the host, with vLLM's sampling parameters and
// their order: temperature (0: greedy), then top-k, then top-p, then a draw from the softmax of
// what is left. Enough for `pagoda generate`; the engine's batched sampler builds on the same
// semantics.

#include <cstdint>
#include <random>
#include <span>

namespace pagoda::engine {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax, the lowest id on ties)
  double top_p = 1.0;        // in (0, 1]: keep the most likely tokens whose probabilities sum to p
  int64_t top_k = 0;         // > 0: keep the k most likely tokens; 0 or -1: all
};

// Throws Error(kInvalidArgument) naming the first option out of range.
void validate(const SamplingOptions& options);

class HostSampler {
 public:
  HostSampler(const SamplingOptions& options, uint64_t seed);

  // The id of the chosen token. `logits` must be non-empty; NaNs never win (a row of NaNs gives 0).
  [[nodiscard]] int32_t sample(std::span<const float> logits);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

// The index of the largest finite-or-infinite value, the lowest on ties; 0 for an all-NaN row.
[[nodiscard]] int32_t argmax(std::span<const float> logits);

}  // namespace pagoda::engine
