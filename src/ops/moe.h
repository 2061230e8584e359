#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// MoE routing: softmax over gating (tokens, num_experts) f32, then the top k (ties: lower expert
// id first) into topk_weights (tokens, k) f32 and topk_ids (tokens, k) i32, in descending weight;
// with renormalize the k weights sum to 1.
void topk_softmax(Tensor& topk_weights, Tensor& topk_ids, const Tensor& gating, bool renormalize);

// out (tokens, hidden) f32 = sum_j topk_weights[t, j] * expert_{topk_ids[t, j]}(x[t]), expert_e(x)
// = down_e(act(gate_e(x)) * up_e(x)); w_gate_up (E, 2 * I, hidden) (gate rows, then up rows),
// w_down (E, hidden, I), any weight dtype matmul supports. An expert id outside [0, E) is an error.
void moe_experts(Tensor& out, const Tensor& x, const Tensor& w_gate_up, const Tensor& w_down,
                 const Tensor& topk_weights, const Tensor& topk_ids, ActivationKind act);

}  // namespace pagoda::ops
