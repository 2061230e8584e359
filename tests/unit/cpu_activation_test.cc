// The gated activations (vectorised where the CPU allows: SiLU and tanh GELU through a vector
// exp) against the same functions evaluated in double precision. The tanh GELU's reference is
// written x / (1 + exp(-2u)), equal to 0.5 x (1 + tanh u) but free of that form's cancellation
// for negative x (where 1 + tanh u loses all relative accuracy even in double).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "backends/cpu/ops/activation_fn.h"

namespace pagoda::cpu {
namespace {

TEST(CpuActivation, VectorGatedActivationsMatchTheScalarOnes) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> wide(-12.0f, 12.0f);
  const float specials[] = {0.0f,  -0.0f, 1e-8f,  -1e-8f, 1e-3f,  -1e-3f, 0.5f,    -0.5f, 3.0f,
                            -3.0f, 20.0f, -20.0f, 87.0f,  -87.0f, 100.0f, -100.0f, 1e30f, -1e30f};
  for (const int64_t d : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{13}, int64_t{64}}) {
    const int64_t rows = 3;
    std::vector<float> x(static_cast<size_t>(rows * 2 * d));
    for (size_t i = 0; i < x.size(); ++i)
      x[i] = i < std::size(specials) && (i % 2 == 0) ? specials[i] : wide(rng);
    for (const ActivationKind act : {ActivationKind::kSilu, ActivationKind::kGeluTanh}) {
      std::vector<float> out(static_cast<size_t>(rows * d));
      act_and_mul_rows(x.data(), out.data(), rows, d, act);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < d; ++i) {
          const float g = x[static_cast<size_t>(r * 2 * d + i)];
          const float u = x[static_cast<size_t>(r * 2 * d + d + i)];
          const double gd = g;
          const double want =
              (act == ActivationKind::kSilu
                   ? gd / (1.0 + std::exp(-gd))
                   : gd / (1.0 + std::exp(-2.0 * 0.79788456080286536 * (gd + 0.044715 * gd * gd * gd)))) *
              u;
          const double got = out[static_cast<size_t>(r * d + i)];
          EXPECT_NEAR(got, want, 2e-6 * std::abs(want) + 1e-12)
              << (act == ActivationKind::kSilu ? "silu" : "gelu_tanh") << " d " << d << " x " << g;
        }
      }
    }
  }
}

TEST(CpuActivation, NanPropagates) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const ActivationKind act : {ActivationKind::kSilu, ActivationKind::kGeluTanh}) {
    std::vector<float> x = {nan, 1.0f, 2.0f, 3.0f, 1.0f, nan, 1.0f, 1.0f};  // gate 4, up 4
    std::vector<float> out(4);
    act_and_mul_rows(x.data(), out.data(), 1, 4, act);
    EXPECT_TRUE(std::isnan(out[0]));
    EXPECT_TRUE(std::isnan(out[1]));
    EXPECT_FALSE(std::isnan(out[2]));
    EXPECT_FALSE(std::isnan(out[3]));
  }
}

}  // namespace
}  // namespace pagoda::cpu
