// CPU norms: rms_norm, fused_add_rms_norm, layer_norm, row by row over the pool.

#include <cmath>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/vec.h"

namespace pagoda::cpu {

namespace {

// Rows per range so that a range holds at least ~16K elements: smaller ones cost more to hand out
// than they save.
int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols));
}

void rms_norm_row(const float* x, const float* w, float* out, int64_t n, float eps, float offset) {
  const float mean_sq = vec::dot(x, x, n) / static_cast<float>(n);
  const float inv = 1.0f / std::sqrt(mean_sq + eps);
  for (int64_t i = 0; i < n; ++i)
    out[i] = x[i] * inv * (w[i] + offset);
}

}  // namespace

void CpuOps::rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps, float weight_offset) {
  const int64_t hidden = x.dim(-1);
  const int64_t rows = x.numel() / hidden;
  const float* px = x.data<float>();
  const float* pw = weight.data<float>();
  float* po = out.data<float>();
  pool_.parallel_for(rows, row_grain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      rms_norm_row(px + r * hidden, pw, po + r * hidden, hidden, eps, weight_offset);
  });
}

void CpuOps::fused_add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps, float weight_offset) {
  const int64_t hidden = x.dim(-1);
  const int64_t rows = x.numel() / hidden;
  float* px = x.data<float>();
  float* pr = residual.data<float>();
  const float* pw = weight.data<float>();
  pool_.parallel_for(rows, row_grain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* xr = px + r * hidden;
      float* rr = pr + r * hidden;
      for (int64_t i = 0; i < hidden; ++i)
        rr[i] += xr[i];
      rms_norm_row(rr, pw, xr, hidden, eps, weight_offset);
    }
  });
}

void CpuOps::layer_norm(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias, float eps) {
  const int64_t hidden = x.dim(-1);
  const int64_t rows = x.numel() / hidden;
  const float* px = x.data<float>();
  const float* pw = weight.data<float>();
  const float* pb = bias != nullptr ? bias->data<float>() : nullptr;
  float* po = out.data<float>();
  pool_.parallel_for(rows, row_grain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = px + r * hidden;
      float* o = po + r * hidden;
      float sum = 0.0f;
      for (int64_t i = 0; i < hidden; ++i)
        sum += xr[i];
      const float mean = sum / static_cast<float>(hidden);
      // Two passes: the variance of the centred values does not cancel catastrophically.
      float var = 0.0f;
      for (int64_t i = 0; i < hidden; ++i)
        var += (xr[i] - mean) * (xr[i] - mean);
      const float inv = 1.0f / std::sqrt(var / static_cast<float>(hidden) + eps);
      for (int64_t i = 0; i < hidden; ++i)
        o[i] = (xr[i] - mean) * inv * pw[i] + (pb != nullptr ? pb[i] : 0.0f);
    }
  });
}

}  // namespace pagoda::cpu
