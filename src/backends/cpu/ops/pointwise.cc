// CPU pointwise ops: gated and plain activations, add, scale, soft-cap.

#include <cmath>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/ops/activation_fn.h"
#include "backends/cpu/vec.h"

namespace pagoda::cpu {

namespace {
constexpr int64_t kGrain = 16384;  // elements per range
}

void CpuOps::act_and_mul(Tensor& out, const Tensor& x, ActivationKind act) {
  const int64_t d = out.dim(-1);
  if (d == 0) return;
  const int64_t rows = out.numel() / d;
  const float* px = x.data<float>();
  float* po = out.data<float>();
  pool_.parallel_for(rows, std::max<int64_t>(1, kGrain / d), [&](int64_t begin, int64_t end) {
    act_and_mul_rows(px + begin * 2 * d, po + begin * d, end - begin, d, act);
  });
}

void CpuOps::activation(Tensor& out, const Tensor& x, ActivationKind act) {
  const float* px = x.data<float>();
  float* po = out.data<float>();
  pool_.parallel_for(x.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      po[i] = apply_activation(act, px[i]);
  });
}

void CpuOps::add(Tensor& out, const Tensor& a, const Tensor& b) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  pool_.parallel_for(a.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      po[i] = pa[i] + pb[i];
  });
}

void CpuOps::scale(Tensor& x, float s) {
  float* px = x.data<float>();
  pool_.parallel_for(x.numel(), kGrain, [&](int64_t begin, int64_t end) { vec::scale(px + begin, s, end - begin); });
}

void CpuOps::softcap(Tensor& x, float cap) {
  float* px = x.data<float>();
  pool_.parallel_for(x.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      px[i] = cap * std::tanh(px[i] / cap);
  });
}

}  // namespace pagoda::cpu
