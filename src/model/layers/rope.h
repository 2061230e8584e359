#pragma once

// Rotary position embedding tables: the cos/sin cache of the rotary_embedding op for every rope
// variant of ModelConfig (transformers' modeling_rope_utils.py is the reference), and the choice,
// per step, of which table row each token reads.
//
// Most variants give each position one fixed rotation, so one table (max_positions, rotary_dim)
// serves every step. Two depend on the length of the sequence, as transformers computes them:
//  - dynamic NTK: a sequence longer than max_position_embeddings rotates its new tokens with the
//    base stretched for its current length (transformers recomputes the frequencies whenever the
//    longest position of a forward pass grows past it; keys already in the cache keep their
//    rotation, which a paged cache reproduces exactly);
//  - longrope: a sequence longer than original_max_position_embeddings rotates its new tokens
//    with the long factors, otherwise with the short ones (Phi-3).
// Both decide per sequence, from its length after the step, so a batch may mix them.

#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "model/loader/model_config.h"

namespace pagoda::model {

// Inverse frequencies (rotary_dim / 2 of them, rounded to float32 as transformers holds them) of
// `rope` for a sequence of `seq_len` tokens; seq_len only matters for kDynamic and kLongRope.
// `max_position_embeddings` is the model's (kDynamic stretches past it).
[[nodiscard]] std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t max_position_embeddings,
                                               int64_t seq_len);

// Writes rows [first_position, first_position + count) of the cos/sin table for `inv_freq`:
// out (count, 2 * inv_freq.size()) f32, cos in the first half of each row and sin in the second,
// both multiplied by `attention_factor`. The angle is position * inv_freq in float32, as in
// transformers.
void fill_cos_sin(std::span<float> out, std::span<const float> inv_freq, float attention_factor, int64_t first_position,
                  int64_t count);

// The rows a model's positions need: `max_positions` is the longest sequence it will run.
class RotaryTable {
 public:
  RotaryTable(const RopeConfig& rope, int64_t max_position_embeddings, int64_t max_positions, Device device);

  [[nodiscard]] const RopeConfig& rope() const { return rope_; }
  [[nodiscard]] int64_t rotary_dim() const { return rope_.rotary_dim; }
  [[nodiscard]] bool is_neox() const { return rope_.style == RopeStyle::kNeox; }

  // Chooses the rows for one step. positions (tokens) and seq_lens / cu_query_lens (per
  // sequence) are the host copies of the batch; `device_positions` the same positions on the
  // device, used as they are when every token reads its own position's row.
  void prepare(std::span<const int32_t> positions, std::span<const int32_t> seq_lens,
               std::span<const int32_t> cu_query_lens, const Tensor& device_positions);

  // The positions and table for the rotary_embedding op in this step.
  [[nodiscard]] const Tensor& step_positions() const { return step_positions_; }
  [[nodiscard]] const Tensor& step_table() const { return *step_table_; }

 private:
  RopeConfig rope_;
  int64_t max_position_embeddings_;
  int64_t max_positions_;
  Device device_;
  std::vector<float> host_table_;  // (rows, rotary_dim): the fixed rows (longrope: short, then long)
  Tensor table_;                   // host_table_ on the device
  Tensor step_table_storage_;      // dynamic NTK: this step's rows, one per token
  Tensor step_positions_;
  // Host sources of the latest copies to the device, alive until the step has run (device copies
  // are asynchronous).
  Tensor fixed_staging_;
  Tensor staged_table_;
  Tensor staged_positions_;
  const Tensor* step_table_ = nullptr;
};

}  // namespace pagoda::model
