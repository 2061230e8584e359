#pragma once

// A model's forward pass over one step's flat batch: the new tokens of every sequence back to
// back, each sequence's earlier keys and values already in the paged KV cache. One call runs the
// whole batch (prefill chunks and decodes mixed) through every layer; the model never loops over
// sequences.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/loader/model_config.h"

namespace pagoda {
class ModelFiles;
}

namespace pagoda::model {

// One step's batch, on the model's device. The worker builds it and checks every value first.
struct BatchInput {
  Tensor token_ids;       // (tokens) i32
  Tensor positions;       // (tokens) i32
  Tensor slot_mapping;    // (tokens) i64: cache slot of each token (block * block_size + offset)
  Tensor block_tables;    // (num_seqs, max_blocks_per_seq) i32
  Tensor seq_lens;        // (num_seqs) i32: tokens of each sequence in the cache after this step
  Tensor cu_query_lens;   // (num_seqs + 1) i32: offsets of each sequence's tokens in the batch
  Tensor logits_indices;  // (n) i32: the tokens whose next-token logits are wanted
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t max_query_len = 0;
  int64_t max_seq_len = 0;
  // Host copies of the same values, for choices made per step (the rope variants that depend on
  // a sequence's length).
  std::span<const int32_t> host_positions;
  std::span<const int32_t> host_seq_lens;
  std::span<const int32_t> host_cu_query_lens;
  // forward returns the hidden states of the logits_indices tokens (n, hidden_size) f32, before
  // the final norm, instead of their logits; Model::logits turns them into logits. A step run in
  // several passes collects its rows so and computes their logits once.
  bool hidden_rows = false;
};

// The paged KV cache: per layer (num_blocks, num_kv_heads, block_size, head_dim) keys and values.
struct KvCache {
  std::vector<Tensor> keys;
  std::vector<Tensor> values;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
};

struct ModelOptions {
  Device device;
  // The longest sequence the model will run (rotary tables are built for it); 0: the model's
  // context length (context_length()).
  int64_t max_model_len = 0;
};

class Model {
 public:
  virtual ~Model() = default;

  [[nodiscard]] virtual const ModelConfig& config() const = 0;
  [[nodiscard]] virtual Device device() const = 0;
  // The longest sequence this instance runs (ModelOptions::max_model_len resolved).
  [[nodiscard]] virtual int64_t max_model_len() const = 0;

  // A sequence whose cached tokens were computed while it held at most this many tokens, and
  // that grows past it, must be computed again from its first token: its rope frequencies
  // change for the whole sequence (longrope, which transformers' Phi-3 handles by dropping the
  // cache at that point). 0: never.
  [[nodiscard]] virtual int64_t recompute_boundary() const { return 0; }

  // Runs one step: writes the batch's keys and values into `cache` and returns the logits
  // (n, vocab_size) f32, on the model's device, of the tokens in batch.logits_indices (an empty
  // host tensor when n is 0).
  [[nodiscard]] virtual Tensor forward(const BatchInput& batch, KvCache& cache) = 0;

  // The logits (n, vocab_size) f32 of hidden-state rows (n, hidden_size) f32 on the model's
  // device, as forward with BatchInput::hidden_rows returned them.
  [[nodiscard]] virtual Tensor logits(const Tensor& rows) = 0;
};

// The positions a model of this config can address: max_position_embeddings, stretched by the
// factor for dynamic NTK and linear scaling (as vLLM derives its max_model_len) and for yarn
// (original_max_position_embeddings * factor when that is longer).
[[nodiscard]] int64_t context_length(const ModelConfig& config);

// Builds the model of `files` on options.device: maps its weights (no copies of weights in
// their file type, except where the layout must change) and checks every tensor's shape and
// type. Throws Error: kInvalidFile (missing or misshapen tensor), kUnsupported (a tensor type the
// device's backend cannot use), kInvalidArgument (bad options).
[[nodiscard]] std::unique_ptr<Model> load_model(const ModelFiles& files, const ModelOptions& options);

}  // namespace pagoda::model
