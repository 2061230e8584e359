// xpu row ops: embedding, norms, rotary, pointwise, gather, argmax, top-k routing.

#include <algorithm>

#include "backends/xpu/ops/launch.h"
#include "backends/xpu/xpu_backend.h"

namespace pagoda::xpu {

namespace {
constexpr size_t kLinear = 256;  // work-group size of the one-dimensional pointwise kernels
constexpr size_t kRowLws = 256;  // ROW_LWS in kernels/pointwise.cl

int act_code(ActivationKind act) {
  return static_cast<int>(act);  // ActivationKind's order is apply_act's
}
}  // namespace

void XpuOps::embedding(Tensor& out, const Tensor& ids, const Tensor& table) {
  const int64_t tokens = out.dim(0);
  const int64_t hidden = out.dim(1);
  const int64_t vocab = table.dim(0);
  const std::vector<int32_t> host = read_back<int32_t>(rt_, ids);
  for (int64_t t = 0; t < tokens; ++t) {
    if (host[t] < 0 || host[t] >= vocab) {
      fail(ErrorCode::kInvalidArgument, "embedding: ids[{}] = {} is outside the vocabulary of {} rows", t, host[t],
           vocab);
    }
  }
  if (hidden == 0 || tokens == 0) return;
  Launch(rt_, "embedding")
      .tensor(out)
      .tensor(ids)
      .tensor(table)
      .i32(weight_code(table.dtype()))
      .i32(hidden)
      .u64(*dtype_row_bytes(table.dtype(), hidden))
      .i32(vocab)
      .run({static_cast<size_t>((hidden + 31) / 32), static_cast<size_t>(tokens), 1}, {0, 0, 0}, 2);
}

void XpuOps::rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps, float weight_offset) {
  const int64_t hidden = x.dim(-1);
  if (hidden == 0) return;
  const int64_t rows = x.numel() / hidden;
  Launch(rt_, "rms_norm")
      .tensor(out)
      .tensor(x)
      .tensor(x)
      .tensor(weight)
      .i32(hidden)
      .f32(eps)
      .f32(weight_offset)
      .i32(0)
      .run({static_cast<size_t>(rows) * kRowLws, 1, 1}, {kRowLws, 1, 1}, 1);
}

void XpuOps::fused_add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, float weight_offset) {
  const int64_t hidden = x.dim(-1);
  if (hidden == 0) return;
  const int64_t rows = x.numel() / hidden;
  Launch(rt_, "rms_norm")
      .tensor(x)
      .tensor(x)
      .tensor(residual)
      .tensor(weight)
      .i32(hidden)
      .f32(eps)
      .f32(weight_offset)
      .i32(1)
      .run({static_cast<size_t>(rows) * kRowLws, 1, 1}, {kRowLws, 1, 1}, 1);
}

void XpuOps::layer_norm(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias, float eps) {
  const int64_t hidden = x.dim(-1);
  if (hidden == 0) return;
  const int64_t rows = x.numel() / hidden;
  Launch(rt_, "layer_norm")
      .tensor(out)
      .tensor(x)
      .tensor(weight)
      .tensor_or(bias, weight)
      .i32(bias != nullptr ? 1 : 0)
      .i32(hidden)
      .f32(eps)
      .run({static_cast<size_t>(rows) * kRowLws, 1, 1}, {kRowLws, 1, 1}, 1);
}

void XpuOps::rotary_embedding(const Tensor& positions, Tensor& query, Tensor* key, int64_t head_size,
                              const Tensor& cos_sin_cache, bool is_neox) {
  const int64_t tokens = query.dim(0);
  const int64_t max_positions = cos_sin_cache.dim(0);
  const int64_t rotary_dim = cos_sin_cache.dim(1);
  const std::vector<int32_t> pos = read_back<int32_t>(rt_, positions);
  for (int64_t t = 0; t < tokens; ++t) {
    if (pos[t] < 0 || pos[t] >= max_positions) {
      fail(ErrorCode::kInvalidArgument,
           "rotary_embedding: positions[{}] = {} is outside the cos/sin cache of {} positions", t, pos[t],
           max_positions);
    }
  }
  if (tokens == 0 || rotary_dim < 2) return;
  const int64_t q_heads = query.numel() / tokens / head_size;
  const int64_t k_heads = key != nullptr ? key->numel() / tokens / head_size : 0;
  Launch(rt_, "rotary")
      .tensor(positions)
      .tensor(query)
      .tensor_or(key, query)
      .i32(q_heads)
      .i32(k_heads)
      .i32(head_size)
      .tensor(cos_sin_cache)
      .i32(rotary_dim)
      .i32(max_positions)
      .i32(is_neox ? 1 : 0)
      .run({static_cast<size_t>(rotary_dim / 2), static_cast<size_t>(q_heads + k_heads), static_cast<size_t>(tokens)});
}

void XpuOps::act_and_mul(Tensor& out, const Tensor& x, ActivationKind act) {
  const int64_t d = out.dim(-1);
  const int64_t total = out.numel();
  if (d == 0 || total == 0) return;
  Launch(rt_, "act_and_mul")
      .tensor(out)
      .tensor(x)
      .i32(d)
      .i32(act_code(act))
      .i64(total)
      .run({static_cast<size_t>(total), 1, 1}, {kLinear, 1, 1}, 1);
}

void XpuOps::activation(Tensor& out, const Tensor& x, ActivationKind act) {
  const int64_t total = x.numel();
  Launch(rt_, "activation")
      .tensor(out)
      .tensor(x)
      .i32(act_code(act))
      .i64(total)
      .run({static_cast<size_t>(total), 1, 1}, {kLinear, 1, 1}, 1);
}

void XpuOps::add(Tensor& out, const Tensor& a, const Tensor& b) {
  const int64_t total = a.numel();
  Launch(rt_, "add")
      .tensor(out)
      .tensor(a)
      .tensor(b)
      .i64(total)
      .run({static_cast<size_t>(total), 1, 1}, {kLinear, 1, 1}, 1);
}

void XpuOps::scale(Tensor& x, float s) {
  const int64_t total = x.numel();
  Launch(rt_, "scale").tensor(x).f32(s).i64(total).run({static_cast<size_t>(total), 1, 1}, {kLinear, 1, 1}, 1);
}

void XpuOps::softcap(Tensor& x, float cap) {
  const int64_t total = x.numel();
  Launch(rt_, "softcap").tensor(x).f32(cap).i64(total).run({static_cast<size_t>(total), 1, 1}, {kLinear, 1, 1}, 1);
}

void XpuOps::gather_rows(Tensor& out, const Tensor& x, const Tensor& indices) {
  const int64_t n = indices.dim(0);
  const int64_t rows = x.dim(0);
  const std::vector<int32_t> idx = read_back<int32_t>(rt_, indices);
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0 || idx[i] >= rows) {
      fail(ErrorCode::kInvalidArgument, "gather_rows: indices[{}] = {} is outside the {} rows of x", i, idx[i], rows);
    }
  }
  const uint64_t row_bytes = *dtype_row_bytes(x.dtype(), x.dim(1));
  if (n == 0 || row_bytes == 0) return;
  rt_.invalidate_host_copies();  // an op with an integer (or any-dtype) output
  Launch(rt_, "gather_rows")
      .tensor(out)
      .tensor(x)
      .tensor(indices)
      .u64(row_bytes)
      .i32(rows)
      .run({row_bytes, static_cast<size_t>(n), 1}, {0, 0, 0}, 2);
}

void XpuOps::argmax(Tensor& out, const Tensor& logits) {
  rt_.invalidate_host_copies();  // writes integers
  const int64_t rows = logits.dim(0);
  const int64_t vocab = logits.dim(1);
  Launch(rt_, "argmax")
      .tensor(out)
      .tensor(logits)
      .i32(vocab)
      .run({static_cast<size_t>(rows) * kRowLws, 1, 1}, {kRowLws, 1, 1}, 1);
}

void XpuOps::topk_softmax(Tensor& topk_weights, Tensor& topk_ids, const Tensor& gating, bool renormalize) {
  rt_.invalidate_host_copies();  // writes integers
  const int64_t tokens = gating.dim(0);
  const int64_t experts = gating.dim(1);
  const int64_t k = topk_weights.dim(1);
  Launch(rt_, "topk_softmax")
      .tensor(topk_weights)
      .tensor(topk_ids)
      .tensor(gating)
      .i32(experts)
      .i32(k)
      .i32(renormalize ? 1 : 0)
      .run({static_cast<size_t>(tokens), 1, 1}, {0, 0, 0}, 1);
}

}  // namespace pagoda::xpu
