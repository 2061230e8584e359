#include "ops/moe.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

void topk_softmax(Tensor& topk_weights, Tensor& topk_ids, const Tensor& gating, bool renormalize) {
  const detail::OpCheck c("topk_softmax", topk_weights.device());
  c.output("topk_weights", topk_weights);
  c.output("topk_ids", topk_ids);
  c.input("gating", gating);
  c.dtype("gating", gating, DType::kF32);
  c.ndim("gating", gating, 2);
  c.dtype("topk_weights", topk_weights, DType::kF32);
  c.ndim("topk_weights", topk_weights, 2);
  c.dim("topk_weights", topk_weights, 0, gating.dim(0));
  const int64_t k = topk_weights.dim(1);
  if (k <= 0 || k > gating.dim(1)) {
    c.fail("topk_weights has shape {}: k must be 1 to the {} experts of gating", topk_weights.shape().str(),
           gating.dim(1));
  }
  c.dtype("topk_ids", topk_ids, DType::kI32);
  c.shape("topk_ids", topk_ids, topk_weights.shape());
  c.disjoint("topk_weights", topk_weights, "topk_ids", topk_ids);
  c.disjoint("topk_weights", topk_weights, "gating", gating);
  c.disjoint("topk_ids", topk_ids, "gating", gating);
  Backend& backend = backend_for(topk_weights.device());
  c.supported(backend, OpKind::kTopkSoftmax, "gating", gating.dtype());
  backend.ops().topk_softmax(topk_weights, topk_ids, gating, renormalize);
}

void moe_experts(Tensor& out, const Tensor& x, const Tensor& w_gate_up, const Tensor& w_down,
                 const Tensor& topk_weights, const Tensor& topk_ids, ActivationKind act) {
  const detail::OpCheck c("moe_experts", out.device());
  if (act != ActivationKind::kSilu && act != ActivationKind::kGelu && act != ActivationKind::kGeluTanh) {
    c.fail("unknown activation {}", static_cast<int>(act));
  }
  c.output("out", out);
  c.input("x", x);
  c.input("w_gate_up", w_gate_up);
  c.input("w_down", w_down);
  c.input("topk_weights", topk_weights);
  c.input("topk_ids", topk_ids);
  c.dtype("x", x, DType::kF32);
  c.ndim("x", x, 2);
  c.dtype("out", out, DType::kF32);
  c.shape("out", out, x.shape());
  const int64_t tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  c.ndim("w_gate_up", w_gate_up, 3);
  const int64_t experts = w_gate_up.dim(0);
  const int64_t two_i = w_gate_up.dim(1);
  if (experts <= 0 || two_i <= 0 || two_i % 2 != 0) {
    c.fail("w_gate_up has shape {}, expected (experts > 0, 2 * intermediate > 0, hidden)", w_gate_up.shape().str());
  }
  c.dim("w_gate_up", w_gate_up, 2, hidden);
  c.shape("w_down", w_down, Shape{experts, hidden, two_i / 2});
  c.dtype("topk_weights", topk_weights, DType::kF32);
  c.ndim("topk_weights", topk_weights, 2);
  c.dim("topk_weights", topk_weights, 0, tokens);
  c.dtype("topk_ids", topk_ids, DType::kI32);
  c.shape("topk_ids", topk_ids, topk_weights.shape());
  c.disjoint("out", out, "x", x);
  c.disjoint("out", out, "w_gate_up", w_gate_up);
  c.disjoint("out", out, "w_down", w_down);
  c.disjoint("out", out, "topk_weights", topk_weights);
  c.disjoint("out", out, "topk_ids", topk_ids);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kMoeExperts, "w_gate_up", w_gate_up.dtype());
  c.supported(backend, OpKind::kMoeExperts, "w_down", w_down.dtype());
  backend.ops().moe_experts(out, x, w_gate_up, w_down, topk_weights, topk_ids, act);
}

}  // namespace pagoda::ops
