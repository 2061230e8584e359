#pragma once

// The engine's sampler: one pass over a step's logits (one row per sequence that samples),
// each row with its own request's SamplingParams, in vLLM's order:
//   logit_bias; min_tokens (EOS and stop_token_ids masked while fewer than min_tokens were
//   generated); repetition, frequency and presence penalties; then temperature 0: the argmax
//   (lowest id on ties), else divide by temperature, min_p, top_k, top_p, and a draw from the
//   softmax of what is left with the row's own generator.
// Log-probabilities are those of the model's logits (log-softmax of the raw row, before any of
// the above), as vLLM reports them by default.
//
// Precisely: the processing and the softmax run in double. Greedy when temperature < 1e-5 (vLLM's
// epsilon). min_p drops tokens whose probability is below min_p times the largest; top_k keeps
// the k most likely (ties: lower id); top_p keeps the smallest set of most likely tokens (ties:
// lower id) whose probability, renormalised over what min_p and top_k left, sums to >= top_p
// (always at least one). The draw takes one 53-bit uniform from the top bits of one generator
// output, so draws are the same with every standard library. NaN logits are never chosen;
// +inf logits share the probability equally; a row with nothing to choose gives the lowest id
// that is not NaN (0 for a row of NaNs).

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "pagoda/outputs.h"
#include "pagoda/sampling_params.h"

namespace pagoda::engine {

// A sequence's random generator. Seeded per request (or from the engine's seed), so a
// sequence's draws never depend on the other rows of the batch.
using Generator = std::mt19937_64;

struct SampleRow {
  const SamplingParams* params = nullptr;
  std::span<const int32_t> prompt_ids;  // for the repetition penalty
  std::span<const int32_t> output_ids;  // generated so far (all penalties, min_tokens)
  std::span<const int32_t> eos_ids;     // masked before min_tokens unless ignore_eos
  Generator* generator = nullptr;
};

struct SampleResult {
  int32_t token_id = 0;
  // Filled when params->logprobs is set: the chosen token's and the `logprobs` most likely.
  PositionLogprobs logprobs;
};

// Several rows are split over threads only when rows * vocab reaches this many logits.
inline constexpr int64_t kParallelSampleLogits = int64_t{1} << 20;

namespace detail {
struct SamplerScratch;  // one worker's vocabulary-sized buffers
}

class Sampler {
 public:
  // Runs fn over the parts [0, n) in parallel and returns when all are done (rethrowing the first
  // exception): an existing pool's parallel_for. A part is never run by two threads at once.
  using ParallelFor = std::function<void(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn)>;

  // Threads used for large batches (rows are independent; the result never depends on it): new
  // threads per call, or `parallel` (the CPU backend's pool, whose threads wait idle while the
  // host samples) where given. One object serves one caller at a time (its buffers are shared by
  // its calls).
  explicit Sampler(int num_threads = 1, ParallelFor parallel = nullptr);
  ~Sampler();
  Sampler(Sampler&&) noexcept;
  Sampler& operator=(Sampler&&) noexcept;

  // `logits` is (rows.size(), vocab) f32 on the host (rows may be strided, the vocab dimension
  // contiguous). Never fails for valid params (validated when the request was added); a row of
  // NaNs samples token 0. Token ids out of range in a row's lists are ignored. Throws
  // kInvalidArgument for a malformed call (shape, null params, no generator for a random row).
  [[nodiscard]] std::vector<SampleResult> sample(const Tensor& logits, std::span<const SampleRow> rows);

 private:
  int num_threads_;
  ParallelFor parallel_;
  // Per worker, kept across calls: the workers are new threads each call, and buffers allocated
  // (and faulted in) per call cost about as much as a row's sampling.
  std::vector<std::unique_ptr<detail::SamplerScratch>> scratch_;
};

// The log-probability of `token_id` in `logits` and the `top` most likely tokens (log-softmax
// of the row; ties ranked by lower id). For prompt_logprobs and for tests.
// NaN logits count as -inf; a row whose largest logit is +inf spreads the mass over its +inf
// logits; a row with no logit above -inf gives -inf everywhere.
[[nodiscard]] PositionLogprobs row_logprobs(std::span<const float> logits, int32_t token_id, int64_t top);

namespace detail {
// The steps before temperature: logit_bias, the min_tokens mask, then the repetition, frequency
// and presence penalties, written into `out` (same size as `logits`) in double.
void process_row(std::span<const float> logits, const SampleRow& row, std::span<double> out);
// The largest value that is not NaN; -inf when there is none.
[[nodiscard]] double max_non_nan(std::span<const double> x);
// One uniform number in [0, 1) from the top 53 bits of one generator output.
[[nodiscard]] double uniform01(Generator& generator);
// out[i] = exp(a[i]) for every a[i] in [-708, 0], within two units in the last place of
// std::exp, in a loop the compiler vectorizes; 0 for anything else (NaN, below -708, above 0),
// which the caller handles.
void exp_nonpositive(std::span<const double> a, std::span<double> out);
}  // namespace detail

}  // namespace pagoda::engine
