#pragma once

// Scalar activation functions shared by the pointwise ops and the MoE experts.

#include <cmath>
#include <cstdint>

#include "backend/backend_ops.h"
#include "backends/cpu/ops/activation_avx2.h"

namespace pagoda::cpu {

[[nodiscard]] inline float silu(float x) {
  return x / (1.0f + std::exp(-x));
}

// The exact GELU, 0.5 x (1 + erf(x / sqrt 2)).
[[nodiscard]] inline float gelu_erf(float x) {
  return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
}

// The tanh approximation (PyTorch's approximate="tanh", HF's gelu_pytorch_tanh).
[[nodiscard]] inline float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286536f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

[[nodiscard]] inline float apply_activation(ActivationKind act, float x) {
  switch (act) {
    case ActivationKind::kSilu: return silu(x);
    case ActivationKind::kGelu: return gelu_erf(x);
    case ActivationKind::kGeluTanh: return gelu_tanh(x);
  }
  return x;
}

// out[r, i] = act(x[r, i]) * x[r, d + i] for rows of x (rows, 2 * d). The vector version, where
// this CPU has one, computes the same functions to a few ulp.
inline void act_and_mul_rows(const float* x, float* out, int64_t rows, int64_t d, ActivationKind act) {
  if (act_and_mul_rows_avx2(x, out, rows, d, act)) return;
  for (int64_t r = 0; r < rows; ++r) {
    const float* gate = x + r * 2 * d;
    const float* up = gate + d;
    float* o = out + r * d;
    switch (act) {
      case ActivationKind::kSilu:
        for (int64_t i = 0; i < d; ++i)
          o[i] = silu(gate[i]) * up[i];
        break;
      case ActivationKind::kGelu:
        for (int64_t i = 0; i < d; ++i)
          o[i] = gelu_erf(gate[i]) * up[i];
        break;
      case ActivationKind::kGeluTanh:
        for (int64_t i = 0; i < d; ++i)
          o[i] = gelu_tanh(gate[i]) * up[i];
        break;
    }
  }
}

}  // namespace pagoda::cpu
