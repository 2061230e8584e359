#pragma once

// The layers every family is built from, each a function of one step's flat batch over the op
// contract: attention (projections, optional q/k norm, rotary, cache write, paged attention),
// the gated and the plain MLP, and the mixture-of-experts block. Shapes are (tokens, ...) for the
// tokens of the step.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "backend/backend_ops.h"
#include "core/tensor.h"
#include "model/layers/rope.h"
#include "model/layers/weights.h"
#include "model/model.h"

namespace pagoda::model {

// What the layers of one step share.
struct Step {
  const BatchInput& batch;
  KvCache& cache;
  Device device;
  // (2 * tokens) i32: [0, T, 1, T + 1, ...], turning [all gate rows; all up rows] into rows of
  // [gate | up] for act_and_mul when a family stores gate and up as two matrices.
  Tensor gate_up_interleave;
  // Host sources of asynchronous copies to the device, kept by the model until the next step
  // (the worker synchronizes when it reads the logits back).
  std::vector<Tensor>* staging = nullptr;

  [[nodiscard]] Tensor empty(const Shape& shape) const;  // f32 on the step's device
};

// Builds the per-step values of `step` (call once per forward).
void prepare_step(Step& step);

[[nodiscard]] ActivationKind activation_kind(Activation a);

void linear(Tensor& out, const Tensor& x, const Linear& l);
// linear of one x by several weights (ops::matmul_shared): each out exactly what linear gives it.
void linear_shared(const Tensor& x, std::initializer_list<std::pair<Tensor*, const Linear*>> outs);

struct AttentionWeights {
  Linear q, k, v, o;
  Tensor q_norm, k_norm;  // (head_dim) f32 per-head RMSNorm weights; undefined when absent
};

// One matrix holding a's rows then b's (and their biases), on their device, or nothing when they
// cannot be stacked (different types, widths or bias presence). On a GPU one launch over the
// stacked rows replaces two, and the wider launch streams the weights closer to the device's
// bandwidth; each output row is computed exactly as before.
[[nodiscard]] std::optional<Linear> stack_rows(const Linear& a, const Linear& b);

// q, k and v as row blocks of one fused projection (phi3, gpt_neox): zero-copy views.
[[nodiscard]] AttentionWeights split_qkv(const Linear& qkv, Linear o, int64_t q_rows, int64_t kv_rows);

struct AttentionSpec {
  int64_t layer = 0;  // index into the KV cache
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  AttentionParams params;
  float qk_norm_eps = 1e-6f;
  float qk_norm_offset = 0.0f;
  const RotaryTable* rope = nullptr;
};

// x (tokens, hidden) → (tokens, hidden); writes this step's keys and values to the cache.
[[nodiscard]] Tensor attention(Step& step, const Tensor& x, const AttentionWeights& w, const AttentionSpec& spec);

struct MlpWeights {
  bool gated = true;
  Linear gate, up;  // gated: separate gate and up (up alone when not gated)
  Linear gate_up;   // gated: one fused (2 * inter, hidden) matrix, gate rows first (phi3)
  Linear down;
  int64_t inter = 0;
  ActivationKind act = ActivationKind::kSilu;
};

// x (tokens, hidden) → (tokens, hidden): down(act(gate(x)) * up(x)), or down(act(up(x))).
[[nodiscard]] Tensor mlp(Step& step, const Tensor& x, const MlpWeights& w);

struct MoeWeights {
  Linear router;   // (experts, hidden)
  Tensor gate_up;  // (experts, 2 * inter, hidden)
  Tensor down;     // (experts, hidden, inter)
  int64_t num_experts = 0;
  int64_t top_k = 0;
  bool renormalize = false;
  ActivationKind act = ActivationKind::kSilu;
};

// x (tokens, hidden) → (tokens, hidden): softmax routing over the experts, the top k of them.
[[nodiscard]] Tensor moe(Step& step, const Tensor& x, const MoeWeights& w);

}  // namespace pagoda::model
