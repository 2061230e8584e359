// CPU mixture-of-experts: top-k routing and the expert MLPs. Tokens are grouped by expert so each
// expert's weights are read once per step for all the tokens routed to it.

#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/ops/activation_fn.h"
#include "backends/cpu/ops/matmul.h"
#include "core/error.h"

namespace pagoda::cpu {

void CpuOps::topk_softmax(Tensor& topk_weights, Tensor& topk_ids, const Tensor& gating, bool renormalize) {
  const int64_t tokens = gating.dim(0);
  const int64_t experts = gating.dim(1);
  const int64_t k = topk_weights.dim(1);
  const float* pg = gating.data<float>();
  float* pw = topk_weights.data<float>();
  int32_t* pi = topk_ids.data<int32_t>();
  pool_.parallel_for(tokens, std::max<int64_t>(1, 4096 / experts), [&](int64_t b, int64_t e) {
    std::vector<float> probs(static_cast<size_t>(experts));
    std::vector<char> taken(static_cast<size_t>(experts));
    for (int64_t t = b; t < e; ++t) {
      const float* g = pg + t * experts;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < experts; ++i)
        mx = std::max(mx, g[i]);
      float sum = 0.0f;
      for (int64_t i = 0; i < experts; ++i) {
        probs[static_cast<size_t>(i)] = std::exp(g[i] - mx);
        sum += probs[static_cast<size_t>(i)];
      }
      std::fill(taken.begin(), taken.end(), 0);
      float selected = 0.0f;
      // Selection by repeated scans (k is small): strictly greater keeps the lower id on ties,
      // and a NaN can never compare its way into an inconsistent order.
      for (int64_t j = 0; j < k; ++j) {
        int64_t best = -1;
        for (int64_t i = 0; i < experts; ++i) {
          if (taken[static_cast<size_t>(i)] != 0) continue;
          if (best < 0 || probs[static_cast<size_t>(i)] > probs[static_cast<size_t>(best)]) best = i;
        }
        taken[static_cast<size_t>(best)] = 1;
        const float p = probs[static_cast<size_t>(best)] / sum;
        pw[t * k + j] = p;
        pi[t * k + j] = static_cast<int32_t>(best);
        selected += p;
      }
      if (renormalize && selected > 0.0f) {
        for (int64_t j = 0; j < k; ++j)
          pw[t * k + j] /= selected;
      }
    }
  });
}

void CpuOps::moe_experts(Tensor& out, const Tensor& x, const Tensor& w_gate_up, const Tensor& w_down,
                         const Tensor& topk_weights, const Tensor& topk_ids, ActivationKind act) {
  const int64_t tokens = x.dim(0);
  const int64_t hidden = x.dim(1);
  const int64_t experts = w_gate_up.dim(0);
  const int64_t inter = w_gate_up.dim(1) / 2;
  const int64_t k = topk_ids.dim(1);
  const int32_t* ids = topk_ids.data<int32_t>();
  const float* tw = topk_weights.data<float>();
  // Routes: for each expert, the (token, slot) pairs it serves, in token order.
  std::vector<std::vector<int64_t>> routes(static_cast<size_t>(experts));
  for (int64_t i = 0; i < tokens * k; ++i) {
    if (ids[i] < 0 || ids[i] >= experts) {
      fail(ErrorCode::kInvalidArgument, "moe_experts: topk_ids[{}][{}] = {} is outside the {} experts", i / k, i % k,
           ids[i], experts);
    }
    routes[static_cast<size_t>(ids[i])].push_back(i);
  }
  const float* px = x.data<float>();
  float* po = out.data<float>();
  std::fill(po, po + tokens * hidden, 0.0f);
  const uint64_t gate_up_bytes = *dtype_row_bytes(w_gate_up.dtype(), hidden) * static_cast<uint64_t>(2 * inter);
  const uint64_t down_bytes = *dtype_row_bytes(w_down.dtype(), inter) * static_cast<uint64_t>(hidden);
  const auto* gate_up_base = static_cast<const uint8_t*>(w_gate_up.raw_data());
  const auto* down_base = static_cast<const uint8_t*>(w_down.raw_data());
  std::vector<float> xs, gate_up, h, y;
  for (int64_t e = 0; e < experts; ++e) {
    const auto& route = routes[static_cast<size_t>(e)];
    if (route.empty()) continue;
    const auto count = static_cast<int64_t>(route.size());
    xs.resize(static_cast<size_t>(count * hidden));
    for (int64_t r = 0; r < count; ++r) {
      const int64_t t = route[static_cast<size_t>(r)] / k;
      std::copy(px + t * hidden, px + (t + 1) * hidden, xs.begin() + r * hidden);
    }
    gate_up.resize(static_cast<size_t>(count * 2 * inter));
    gemm(pool_, xs.data(), hidden, count, gate_up_base + static_cast<uint64_t>(e) * gate_up_bytes, w_gate_up.dtype(),
         2 * inter, hidden, nullptr, gate_up.data(), 2 * inter, quantize_activations_);
    h.resize(static_cast<size_t>(count * inter));
    act_and_mul_rows(gate_up.data(), h.data(), count, inter, act);
    y.resize(static_cast<size_t>(count * hidden));
    gemm(pool_, h.data(), inter, count, down_base + static_cast<uint64_t>(e) * down_bytes, w_down.dtype(), hidden,
         inter, nullptr, y.data(), hidden, quantize_activations_);
    for (int64_t r = 0; r < count; ++r) {
      const int64_t slot = route[static_cast<size_t>(r)];
      const float weight = tw[slot];
      float* o = po + (slot / k) * hidden;
      const float* yr = y.data() + r * hidden;
      for (int64_t i = 0; i < hidden; ++i)
        o[i] += weight * yr[i];
    }
  }
}

}  // namespace pagoda::cpu
