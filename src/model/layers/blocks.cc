#include "model/layers/blocks.h"

#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "ops/ops.h"

namespace pagoda::model {

Tensor Step::empty(const Shape& shape) const {
  return empty_on(device, shape, DType::kF32);
}

void prepare_step(Step& step) {
  const int64_t tokens = step.batch.num_tokens;
  Tensor host = Tensor::empty(Shape{2 * tokens}, DType::kI32);
  auto* idx = host.data<int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    idx[2 * t] = static_cast<int32_t>(t);
    idx[2 * t + 1] = static_cast<int32_t>(tokens + t);
  }
  step.gate_up_interleave = to_device(host, step.device);
  step.staging->push_back(std::move(host));
}

ActivationKind activation_kind(Activation a) {
  switch (a) {
    case Activation::kSilu: return ActivationKind::kSilu;
    case Activation::kGelu: return ActivationKind::kGelu;
    case Activation::kGeluTanh: return ActivationKind::kGeluTanh;
  }
  return ActivationKind::kSilu;
}

void linear(Tensor& out, const Tensor& x, const Linear& l) {
  ops::matmul(out, x, l.weight, l.bias.defined() ? &l.bias : nullptr);
}

void linear_shared(const Tensor& x, std::initializer_list<std::pair<Tensor*, const Linear*>> outs) {
  std::vector<MatmulPart> parts;
  for (const auto& [out, l] : outs)
    parts.push_back({out, &l->weight, l->bias.defined() ? &l->bias : nullptr});
  ops::matmul_shared(x, parts);
}

std::optional<Linear> stack_rows(const Linear& a, const Linear& b) {
  const Tensor& wa = a.weight;
  const Tensor& wb = b.weight;
  if (wa.dtype() != wb.dtype() || wa.ndim() != 2 || wb.ndim() != 2 || wa.dim(1) != wb.dim(1) ||
      wa.device() != wb.device() || a.bias.defined() != b.bias.defined() || !wa.is_contiguous() ||
      !wb.is_contiguous()) {
    return std::nullopt;
  }
  if (a.bias.defined() && (a.bias.dtype() != b.bias.dtype() || a.bias.ndim() != 1 || b.bias.ndim() != 1)) {
    return std::nullopt;
  }
  const int64_t ra = wa.dim(0);
  const int64_t rb = wb.dim(0);
  Backend& backend = backend_for(wa.device());
  Linear out;
  out.weight = empty_on(wa.device(), Shape{ra + rb, wa.dim(1)}, wa.dtype());
  Tensor top = out.weight.slice(0, 0, ra);
  Tensor bottom = out.weight.slice(0, ra, ra + rb);
  backend.copy(top, wa);
  backend.copy(bottom, wb);
  if (a.bias.defined()) {
    out.bias = empty_on(wa.device(), Shape{ra + rb}, a.bias.dtype());
    Tensor bias_top = out.bias.slice(0, 0, ra);
    Tensor bias_bottom = out.bias.slice(0, ra, ra + rb);
    backend.copy(bias_top, a.bias);
    backend.copy(bias_bottom, b.bias);
  }
  return out;
}

AttentionWeights split_qkv(const Linear& qkv, Linear o, int64_t q_rows, int64_t kv_rows) {
  AttentionWeights w;
  auto part = [&](int64_t begin, int64_t end) {
    Linear l;
    l.weight = qkv.weight.slice(0, begin, end);
    if (qkv.bias.defined()) l.bias = qkv.bias.slice(0, begin, end);
    return l;
  };
  w.q = part(0, q_rows);
  w.k = part(q_rows, q_rows + kv_rows);
  w.v = part(q_rows + kv_rows, q_rows + 2 * kv_rows);
  w.o = std::move(o);
  return w;
}

Tensor attention(Step& step, const Tensor& x, const AttentionWeights& w, const AttentionSpec& spec) {
  const BatchInput& b = step.batch;
  const int64_t tokens = b.num_tokens;
  const int64_t hd = spec.head_dim;
  Tensor q = step.empty(Shape{tokens, spec.num_heads * hd});
  Tensor k = step.empty(Shape{tokens, spec.num_kv_heads * hd});
  Tensor v = step.empty(Shape{tokens, spec.num_kv_heads * hd});
  linear_shared(x, {{&q, &w.q}, {&k, &w.k}, {&v, &w.v}});

  Tensor q3 = q.view(Shape{tokens, spec.num_heads, hd});
  Tensor k3 = k.view(Shape{tokens, spec.num_kv_heads, hd});
  Tensor v3 = v.view(Shape{tokens, spec.num_kv_heads, hd});
  if (w.q_norm.defined()) ops::rms_norm(q3, q3, w.q_norm, spec.qk_norm_eps, spec.qk_norm_offset);
  if (w.k_norm.defined()) ops::rms_norm(k3, k3, w.k_norm, spec.qk_norm_eps, spec.qk_norm_offset);

  const RotaryTable& rope = *spec.rope;
  ops::rotary_embedding(rope.step_positions(), q, &k, hd, rope.step_table(), rope.is_neox());

  KvCache& cache = step.cache;
  const auto layer = static_cast<size_t>(spec.layer);
  ops::reshape_and_cache(k3, v3, cache.keys[layer], cache.values[layer], b.slot_mapping);

  Tensor attn = step.empty(Shape{tokens, spec.num_heads, hd});
  ops::prefill_attention(attn, q3, cache.keys[layer], cache.values[layer], spec.num_kv_heads, b.block_tables,
                         b.cu_query_lens, b.seq_lens, cache.block_size, b.max_query_len, spec.params);

  const int64_t hidden = w.o.weight.dim(0);
  Tensor out = step.empty(Shape{tokens, hidden});
  linear(out, attn.view(Shape{tokens, spec.num_heads * hd}), w.o);
  return out;
}

Tensor mlp(Step& step, const Tensor& x, const MlpWeights& w) {
  const int64_t tokens = step.batch.num_tokens;
  const int64_t inter = w.inter;
  Tensor act = step.empty(Shape{tokens, inter});
  if (!w.gated) {
    linear(act, x, w.up);
    ops::activation(act, act, w.act);
  } else if (w.gate_up.weight.defined()) {
    Tensor gate_up = step.empty(Shape{tokens, 2 * inter});
    linear(gate_up, x, w.gate_up);
    ops::act_and_mul(act, gate_up, w.act);
  } else if (backend_for(step.device).ops().matmul_shared_writes_strided_rows()) {
    // Gate and up are two matrices, written straight into the two column halves of the rows of
    // [gate | up] (a backend that writes strided rows: no interleaving pass).
    Tensor gate_up = step.empty(Shape{tokens, 2 * inter});
    Tensor gate = gate_up.slice(1, 0, inter);
    Tensor up = gate_up.slice(1, inter, 2 * inter);
    linear_shared(x, {{&gate, &w.gate}, {&up, &w.up}});
    ops::act_and_mul(act, gate_up, w.act);
  } else {
    // Gate and up are two matrices: their products land in the two halves of one buffer (all
    // gate rows, then all up rows) and one gather interleaves them into rows of [gate | up].
    Tensor stacked = step.empty(Shape{2 * tokens, inter});
    Tensor gate = stacked.slice(0, 0, tokens);
    Tensor up = stacked.slice(0, tokens, 2 * tokens);
    linear_shared(x, {{&gate, &w.gate}, {&up, &w.up}});
    Tensor rows = step.empty(Shape{2 * tokens, inter});
    ops::gather_rows(rows, stacked, step.gate_up_interleave);
    ops::act_and_mul(act, rows.view(Shape{tokens, 2 * inter}), w.act);
  }
  const int64_t hidden = w.down.weight.dim(0);
  Tensor out = step.empty(Shape{tokens, hidden});
  linear(out, act, w.down);
  return out;
}

Tensor moe(Step& step, const Tensor& x, const MoeWeights& w) {
  const int64_t tokens = step.batch.num_tokens;
  Tensor logits = step.empty(Shape{tokens, w.num_experts});
  linear(logits, x, w.router);
  Tensor weights = step.empty(Shape{tokens, w.top_k});
  Tensor ids = empty_on(step.device, Shape{tokens, w.top_k}, DType::kI32);
  ops::topk_softmax(weights, ids, logits, w.renormalize);
  Tensor out = step.empty(Shape{tokens, x.dim(1)});
  ops::moe_experts(out, x, w.gate_up, w.down, weights, ids, w.act);
  return out;
}

}  // namespace pagoda::model
