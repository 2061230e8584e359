// The host sampler: greedy ties and NaNs, top-k / top-p truncation, the sampled distribution, and
// option validation.

#include "engine/host_sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace pagoda::engine {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(HostSampler, ArgmaxTiesAndNaNs) {
  EXPECT_EQ(argmax(std::vector<float>{1, 3, 3, 2}), 1);
  EXPECT_EQ(argmax(std::vector<float>{kNaN, -1, kNaN, 5}), 3);
  EXPECT_EQ(argmax(std::vector<float>{kNaN, kNaN}), 0);
  EXPECT_EQ(argmax(std::vector<float>{-std::numeric_limits<float>::infinity(), -5}), 1);
}

TEST(HostSampler, TemperatureZeroIsGreedy) {
  HostSampler s({0.0, 1.0, 0}, 1);
  const std::vector<float> logits = {0.1f, 2.0f, 2.0f, -1.0f};
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(s.sample(logits), 1);
}

TEST(HostSampler, TopKOneAndTinyTopPAreGreedy) {
  const std::vector<float> logits = {0.5f, 0.4f, 0.45f, 0.1f};
  HostSampler k1({1.0, 1.0, 1}, 123);
  HostSampler p0({1.0, 1e-6, 0}, 123);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(k1.sample(logits), 0);
    EXPECT_EQ(p0.sample(logits), 0);
  }
}

double frequency_of(HostSampler& s, const std::vector<float>& logits, int32_t id, int n) {
  int hits = 0;
  for (int i = 0; i < n; ++i)
    hits += s.sample(logits) == id ? 1 : 0;
  return static_cast<double>(hits) / n;
}

TEST(HostSampler, SamplesTheSoftmax) {
  const std::vector<float> logits = {0.0f, std::log(3.0f)};
  HostSampler t1({1.0, 1.0, 0}, 42);
  EXPECT_NEAR(frequency_of(t1, logits, 1, 20000), 0.75, 0.015);
  // Temperature 2 halves the logits: probabilities 1 : sqrt(3).
  HostSampler t2({2.0, 1.0, 0}, 42);
  EXPECT_NEAR(frequency_of(t2, logits, 1, 20000), std::sqrt(3.0) / (1.0 + std::sqrt(3.0)), 0.015);
}

TEST(HostSampler, TopKAndTopPTruncate) {
  // Probabilities 0.5, 0.3, 0.2 (logits are their logs).
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  HostSampler k2({1.0, 1.0, 2}, 7);
  EXPECT_EQ(frequency_of(k2, logits, 2, 5000), 0.0);
  HostSampler k2b({1.0, 1.0, 2}, 7);
  EXPECT_NEAR(frequency_of(k2b, logits, 0, 20000), 0.5 / 0.8, 0.015);
  // top_p 0.75 keeps the first two (0.5 < 0.75 <= 0.8).
  HostSampler p({1.0, 0.75, 0}, 9);
  EXPECT_EQ(frequency_of(p, logits, 2, 5000), 0.0);
  // top_p 0.5 keeps only the first.
  HostSampler p5({1.0, 0.5, 0}, 9);
  EXPECT_EQ(frequency_of(p5, logits, 0, 2000), 1.0);
}

TEST(HostSampler, SeedsRepeat) {
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  HostSampler a({1.0, 1.0, 0}, 5), b({1.0, 1.0, 0}, 5);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(a.sample(logits), b.sample(logits));
}

TEST(HostSampler, NaNsNeverSampledAndEmptyRowsRejected) {
  const std::vector<float> logits = {kNaN, 0.0f, kNaN, 0.0f};
  HostSampler s({1.0, 1.0, 0}, 3);
  for (int i = 0; i < 200; ++i) {
    const int32_t id = s.sample(logits);
    EXPECT_TRUE(id == 1 || id == 3);
  }
  EXPECT_THROW((void)s.sample(std::vector<float>{}), Error);
}

TEST(HostSampler, ValidatesOptions) {
  EXPECT_THROW(validate({-0.1, 1.0, 0}), Error);
  EXPECT_THROW(validate({std::nan(""), 1.0, 0}), Error);
  EXPECT_THROW(validate({1.0, 0.0, 0}), Error);
  EXPECT_THROW(validate({1.0, 1.5, 0}), Error);
  EXPECT_THROW(validate({1.0, 1.0, -2}), Error);
  EXPECT_NO_THROW(validate({0.0, 1.0, -1}));
  EXPECT_NO_THROW(validate({0.7, 0.9, 50}));
}

}  // namespace
}  // namespace pagoda::engine
