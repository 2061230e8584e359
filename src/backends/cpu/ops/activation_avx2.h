#pragma once

// AVX2 versions of the gated activations (activation_fn.h): SiLU and the tanh GELU, through one
// vectorised exp. Both are written as x / (1 + exp(-z)) (for the tanh GELU, 0.5 x (1 + tanh u) =
// x / (1 + exp(-2u))), which avoids tanh's cancellation near zero; the exp is accurate to a few
// ulp, far inside the tolerances the model tests use. Every element goes through the same vector
// code (a row's tail through a padded copy), so an element's value depends only on its input.

#include <cstdint>

#include "backend/backend_ops.h"

namespace pagoda::cpu {

// out[r, i] = act(x[r, i]) * x[r, d + i]. Returns false (and does nothing) when this CPU lacks
// AVX2/FMA or `act` has no vector version (the exact GELU).
[[nodiscard]] bool act_and_mul_rows_avx2(const float* x, float* out, int64_t rows, int64_t d, ActivationKind act);

}  // namespace pagoda::cpu
