#pragma once

// The worker's model runner: it owns one model on one device and its paged KV cache, and runs one
// step of a flat batch (the new tokens of every sequence of the step, back to back) through a
// single forward pass, returning the logits of the tokens the caller asked for.
//
// Every value of a step is checked before anything runs (token ids against the vocabulary,
// positions against the context, slots and block tables against the cache, the batch's shape),
// so that a bad request fails with Error(kInvalidArgument) and a message naming the value, never
// inside a kernel.

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "model/loader/model_config.h"
#include "model/model.h"

namespace pagoda {
class ModelFiles;
}

namespace pagoda::worker {

struct RunnerOptions {
  Device device;
  // Tokens per cache block.
  int64_t block_size = 16;
  // Cache blocks per layer; 0: enough for one sequence of max_model_len tokens.
  int64_t num_blocks = 0;
  // The longest sequence (prompt and generated tokens); 0: the model's context length.
  int64_t max_model_len = 0;
  // f32, f16 or bf16.
  DType cache_dtype = DType::kF32;
  // Most tokens one forward pass takes on the CPU: a longer step runs as consecutive passes of
  // this many tokens (a sequence split between two takes its first part's keys and values from
  // the cache, as a prompt in chunks does), the logits of all its rows computed once at the end.
  // -1: sized to the model (micro_batch_tokens), or PAGODA_CPU_MICRO_BATCH where set; 0: one
  // pass per step. Devices always run a step in one pass.
  int64_t micro_batch = -1;
};

// The CPU's tokens per forward pass for a model: its widest per-token activation (the gate and
// up projections side by side, or q, k and v) times this many rows is about 3 MiB, which stays
// in the caches between one op and the next, multiple of 16 in [64, 1024]. A 2,048-token pass
// wrote and read back each matmul's output through memory: SmolLM2-135M's 32 prompts of 128
// tokens ran 21 % faster in passes of 256 (its size here) than in one. 0 (one pass) for the
// models that must not be split: mixtures of experts, whose every pass reads each chosen
// expert's weights, and those whose rope depends on a sequence's length (recompute_boundary).
[[nodiscard]] int64_t micro_batch_tokens(const model::ModelConfig& config, int64_t recompute_boundary);

// One step, on the host. Sequence s owns tokens [cu_query_lens[s], cu_query_lens[s + 1]) of the
// flat arrays; they sit at positions seq_lens[s] - query_len(s) ... seq_lens[s] - 1 (the earlier
// ones are already in the cache) and are written to the given slots.
struct StepInput {
  std::vector<int32_t> token_ids;      // (tokens)
  std::vector<int32_t> positions;      // (tokens)
  std::vector<int64_t> slot_mapping;   // (tokens): block * block_size + offset; negative: not cached
  std::vector<int32_t> seq_lens;       // (num_seqs)
  std::vector<int32_t> cu_query_lens;  // (num_seqs + 1), starting at 0
  // (num_seqs, max_blocks_per_seq) row-major: the cache blocks of each sequence in order; entries
  // past a sequence's last block are ignored.
  std::vector<int32_t> block_tables;
  int64_t max_blocks_per_seq = 0;
  // Indices into the flat arrays of the tokens whose next-token logits are wanted (may be empty:
  // a step of prompt chunks only fills the cache).
  std::vector<int32_t> logits_indices;
};

class ModelRunner {
 public:
  ModelRunner(const ModelFiles& files, const RunnerOptions& options);
  ~ModelRunner();
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  [[nodiscard]] const model::ModelConfig& config() const { return model_->config(); }
  [[nodiscard]] int64_t max_model_len() const { return model_->max_model_len(); }
  [[nodiscard]] int64_t block_size() const { return cache_.block_size; }
  [[nodiscard]] int64_t num_blocks() const { return cache_.num_blocks; }
  [[nodiscard]] Device device() const { return model_->device(); }
  // See model::Model::recompute_boundary.
  [[nodiscard]] int64_t recompute_boundary() const { return model_->recompute_boundary(); }

  // Runs the step and returns the logits (logits_indices.size(), vocab_size) f32 on the host.
  [[nodiscard]] Tensor execute(const StepInput& step);

  // Tokens per forward pass (RunnerOptions::micro_batch resolved); 0: one pass per step.
  [[nodiscard]] int64_t micro_batch() const { return micro_batch_; }

  // Throws Error(kInvalidArgument) naming the first value of `step` that is wrong.
  void validate(const StepInput& step) const;

  // Copies cache block src over block dst in every layer, for each (src, dst) pair in order
  // (copy-on-write before a step).
  void copy_blocks(std::span<const std::pair<int32_t, int32_t>> pairs);

  // Bytes of one cache block over all layers, keys and values, for a model config and cache type.
  [[nodiscard]] static int64_t block_bytes(const model::ModelConfig& config, int64_t block_size, DType cache_dtype);
  [[nodiscard]] int64_t cache_bytes() const { return cache_bytes_; }

 private:
  Tensor forward(const StepInput& step, bool hidden_rows);  // one pass, the step already checked
  Tensor forward_in_parts(const StepInput& step);

  std::unique_ptr<model::Model> model_;
  int64_t micro_batch_ = 0;
  model::KvCache cache_;
  int64_t cache_bytes_ = 0;
};

}  // namespace pagoda::worker
