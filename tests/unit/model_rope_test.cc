// Rope tables: each scaling's frequencies from its definition (transformers' modeling_rope_utils.py),
// the cos/sin layout the rotary_embedding op reads, and the per-step choice of rows for the
// variants that depend on a sequence's length.

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/layers/rope.h"

namespace pagoda::model {
namespace {

RopeConfig base_rope(int64_t dim, double theta = 10000.0) {
  RopeConfig r;
  r.rotary_dim = dim;
  r.theta = theta;
  return r;
}

double plain_inv(double theta, int64_t i, int64_t dim) {
  return 1.0 / std::pow(theta, 2.0 * static_cast<double>(i) / static_cast<double>(dim));
}

TEST(RopeFrequencies, DefaultAndLinear) {
  RopeConfig r = base_rope(16);
  std::vector<float> inv = rope_inv_freq(r, 512, 512);
  ASSERT_EQ(inv.size(), 8u);
  for (int64_t i = 0; i < 8; ++i)
    EXPECT_NEAR(inv[static_cast<size_t>(i)], plain_inv(1e4, i, 16), 1e-7 * plain_inv(1e4, i, 16)) << i;
  r.type = RopeType::kLinear;
  r.factor = 4.0;
  std::vector<float> lin = rope_inv_freq(r, 512, 512);
  for (size_t i = 0; i < 8; ++i)
    EXPECT_FLOAT_EQ(lin[i], inv[i] / 4.0f);
}

TEST(RopeFrequencies, Llama3Bands) {
  RopeConfig r = base_rope(16, 500000.0);
  r.type = RopeType::kLlama3;
  r.factor = 8.0;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  r.original_max_position_embeddings = 64;
  const std::vector<float> plain = rope_inv_freq(base_rope(16, 500000.0), 512, 512);
  const std::vector<float> inv = rope_inv_freq(r, 512, 512);
  int seen_high = 0, seen_low = 0, seen_mid = 0;
  for (size_t i = 0; i < inv.size(); ++i) {
    const double wavelen = 2.0 * std::numbers::pi / plain[i];
    if (wavelen < 64.0 / 4.0) {
      EXPECT_FLOAT_EQ(inv[i], plain[i]) << i;  // short wavelengths are kept
      ++seen_high;
    } else if (wavelen > 64.0) {
      EXPECT_NEAR(inv[i], plain[i] / 8.0, 1e-7 * plain[i]) << i;  // long ones divided by the factor
      ++seen_low;
    } else {
      const double smooth = (64.0 / wavelen - 1.0) / 3.0;
      EXPECT_NEAR(inv[i], (1 - smooth) * plain[i] / 8.0 + smooth * plain[i], 1e-6 * plain[i]) << i;
      ++seen_mid;
    }
  }
  EXPECT_GT(seen_high, 0);
  EXPECT_GT(seen_low, 0);
  EXPECT_GT(seen_mid, 0);
}

TEST(RopeFrequencies, YarnRampsFromExtrapolationToInterpolation) {
  RopeConfig r = base_rope(16);
  r.type = RopeType::kYarn;
  r.factor = 4.0;
  r.original_max_position_embeddings = 512;
  const std::vector<float> plain = rope_inv_freq(base_rope(16), 512, 512);
  const std::vector<float> inv = rope_inv_freq(r, 512, 512);
  // Correction range for beta_fast 32, beta_slow 1: floor(0.81) = 0 .. ceil(3.82) = 4.
  EXPECT_FLOAT_EQ(inv[0], plain[0]);  // ramp 0: pure extrapolation
  for (size_t i = 4; i < inv.size(); ++i)
    EXPECT_NEAR(inv[i], plain[i] / 4.0, 1e-6 * plain[i]) << i;  // ramp 1: pure interpolation
  for (size_t i = 1; i < 4; ++i) {
    const double ramp = static_cast<double>(i) / 4.0;
    EXPECT_NEAR(inv[i], plain[i] / 4.0 * ramp + plain[i] * (1 - ramp), 1e-6 * plain[i]) << i;
  }
}

TEST(RopeFrequencies, DynamicStretchesOnlyPastTheLimit) {
  RopeConfig r = base_rope(16);
  r.type = RopeType::kDynamic;
  r.factor = 2.0;
  const std::vector<float> plain = rope_inv_freq(base_rope(16), 32, 32);
  EXPECT_EQ(rope_inv_freq(r, 32, 20), plain);
  EXPECT_EQ(rope_inv_freq(r, 32, 32), plain);
  const std::vector<float> stretched = rope_inv_freq(r, 32, 64);
  const double base = 1e4 * std::pow(2.0 * 64.0 / 32.0 - 1.0, 16.0 / 14.0);
  for (int64_t i = 0; i < 8; ++i) {
    EXPECT_NEAR(stretched[static_cast<size_t>(i)], plain_inv(base, i, 16), 1e-6 * plain_inv(base, i, 16)) << i;
  }
}

TEST(RopeFrequencies, LongropeFactorsBySequenceLength) {
  RopeConfig r = base_rope(8);
  r.type = RopeType::kLongRope;
  r.original_max_position_embeddings = 48;
  r.short_factor = {1.0, 1.5, 2.0, 2.5};
  r.long_factor = {3.0, 4.0, 5.0, 6.0};
  const std::vector<float> plain = rope_inv_freq(base_rope(8), 128, 128);
  const std::vector<float> short_inv = rope_inv_freq(r, 128, 48);
  const std::vector<float> long_inv = rope_inv_freq(r, 128, 49);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(short_inv[i], plain[i] / r.short_factor[i], 1e-6 * plain[i]);
    EXPECT_NEAR(long_inv[i], plain[i] / r.long_factor[i], 1e-6 * plain[i]);
  }
}

TEST(RopeFrequencies, GgufFreqFactorsDivide) {
  RopeConfig r = base_rope(8);
  r.freq_factors = {1.0, 2.0, 4.0, 8.0};
  const std::vector<float> plain = rope_inv_freq(base_rope(8), 64, 64);
  const std::vector<float> inv = rope_inv_freq(r, 64, 64);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_FLOAT_EQ(inv[i], plain[i] / static_cast<float>(r.freq_factors[i]));
}

TEST(RopeTable, CosThenSinTimesAttentionFactor) {
  const std::vector<float> inv = {1.0f, 0.5f};
  std::vector<float> rows(3 * 4);
  fill_cos_sin(rows, inv, 2.0f, 0, 3);
  for (int p = 0; p < 3; ++p) {
    for (int i = 0; i < 2; ++i) {
      const double angle = p * inv[static_cast<size_t>(i)];
      EXPECT_NEAR(rows[static_cast<size_t>(p * 4 + i)], 2.0 * std::cos(angle), 1e-6);
      EXPECT_NEAR(rows[static_cast<size_t>(p * 4 + 2 + i)], 2.0 * std::sin(angle), 1e-6);
    }
  }
  std::vector<float> wrong(5);
  EXPECT_THROW(fill_cos_sin(wrong, inv, 1.0f, 0, 1), Error);
}

Tensor positions_tensor(const std::vector<int32_t>& p) {
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(p.size())}, DType::kI32);
  std::copy(p.begin(), p.end(), t.data<int32_t>());
  return t;
}

std::vector<int32_t> as_vector(const Tensor& t) {
  return {t.data<int32_t>(), t.data<int32_t>() + t.numel()};
}

TEST(RopeTable, LongropeRowsPerSequence) {
  RopeConfig r = base_rope(8);
  r.type = RopeType::kLongRope;
  r.original_max_position_embeddings = 4;
  r.short_factor = {1, 1, 1, 1};
  r.long_factor = {2, 2, 2, 2};
  RotaryTable table(r, 16, 16, cpu_device());
  EXPECT_EQ(table.step_table().dim(0), 32);  // short rows, then long rows

  // Sequence 0: 3 new tokens ending at length 3 (short); sequence 1: 2 new tokens ending at 6 (long).
  const std::vector<int32_t> positions = {0, 1, 2, 4, 5};
  const std::vector<int32_t> seq_lens = {3, 6};
  const std::vector<int32_t> cu = {0, 3, 5};
  Tensor device_positions = positions_tensor(positions);
  table.prepare(positions, seq_lens, cu, device_positions);
  EXPECT_EQ(as_vector(table.step_positions()), (std::vector<int32_t>{0, 1, 2, 20, 21}));
  EXPECT_EQ(table.step_table().dim(0), 32);

  // All short: the batch's own positions.
  const std::vector<int32_t> short_lens = {3, 4};
  table.prepare(std::vector<int32_t>{0, 1, 2, 2, 3}, short_lens, cu, device_positions);
  EXPECT_EQ(table.step_positions().storage(), device_positions.storage());
}

TEST(RopeTable, DynamicRowsForStretchedSequences) {
  RopeConfig r = base_rope(8);
  r.type = RopeType::kDynamic;
  r.factor = 2.0;
  RotaryTable table(r, 8, 16, cpu_device());
  const std::vector<int32_t> positions = {3, 9};
  const std::vector<int32_t> seq_lens = {4, 10};
  const std::vector<int32_t> cu = {0, 1, 2};
  table.prepare(positions, seq_lens, cu, positions_tensor(positions));
  ASSERT_EQ(table.step_table().dim(0), 2);
  EXPECT_EQ(as_vector(table.step_positions()), (std::vector<int32_t>{0, 1}));
  const float* rows = table.step_table().data<float>();
  std::vector<float> expect0(8), expect1(8);
  fill_cos_sin(expect0, rope_inv_freq(r, 8, 8), 1.0f, 3, 1);
  fill_cos_sin(expect1, rope_inv_freq(r, 8, 10), 1.0f, 9, 1);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_FLOAT_EQ(rows[i], expect0[i]) << i;
    EXPECT_FLOAT_EQ(rows[8 + i], expect1[i]) << i;
  }
}

TEST(RopeTable, RefusesHugeTables) {
  RopeConfig r = base_rope(4096);
  try {
    RotaryTable table(r, 1 << 26, 1 << 26, cpu_device());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfMemory);
    EXPECT_NE(std::string(e.what()).find("shorter maximum sequence length"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pagoda::model
