#pragma once

// A fixed set of sequences run together through a ModelRunner until each finishes: what
// `pagoda generate` and `pagoda logits` need before the engine's scheduler exists. Every step is
// one flat batch holding, for each unfinished sequence, its next prompt chunk or its newest token;
// so prefill chunks of one sequence and decodes of another share steps when prompts differ in
// length. Cache blocks are dealt out round-robin (block j of every sequence before block j + 1 of
// any), so block tables are not contiguous ranges. A sequence that grows past the model's
// recompute boundary (longrope) is fed again from its first token, in one step.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/host_sampler.h"
#include "worker/model_runner.h"

namespace pagoda::worker {

struct GenerateRequest {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;
  engine::SamplingOptions sampling;
  uint64_t seed = 0;
  bool ignore_eos = false;
};

struct GenerateResult {
  std::vector<int32_t> token_ids;  // generated, not counting the prompt
  std::string finish_reason;       // "stop" (an end-of-sequence token) or "length"
};

// Cache blocks for `lengths` (the most tokens each sequence will hold) at `block_size`.
[[nodiscard]] int64_t blocks_needed(const std::vector<int64_t>& lengths, int64_t block_size);

class StaticBatch {
 public:
  // `prefill_chunk` > 0 splits prompts into chunks of that many tokens, one per step.
  StaticBatch(ModelRunner& runner, std::vector<int32_t> eos_ids, int64_t prefill_chunk = 0);

  // Generates for every request; `on_token(index, id)` sees each token as it is chosen.
  [[nodiscard]] std::vector<GenerateResult> generate(const std::vector<GenerateRequest>& requests,
                                                     const std::function<void(size_t, int32_t)>& on_token = {});

  // The next-token logits (vocab_size floats) after each prompt's last token.
  [[nodiscard]] std::vector<std::vector<float>> prompt_logits(const std::vector<std::vector<int32_t>>& prompts);

 private:
  struct Seq;
  // Runs one step over `seqs`; calls on_logits(seq index, row) for every sequence whose newest
  // token was processed. Returns false when no sequence had work left.
  bool step(std::vector<Seq>& seqs, const std::function<void(size_t, std::span<const float>)>& on_logits);
  void assign_blocks(std::vector<Seq>& seqs) const;

  ModelRunner& runner_;
  std::vector<int32_t> eos_ids_;
  int64_t prefill_chunk_;
};

}  // namespace pagoda::worker
