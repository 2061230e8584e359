// The engine sampler: sampled distributions against exact ones (chi-square), logit processing
// against its formulas, seeds independent of the batch, masking, NaN rows, greedy ties,
// log-probabilities; and SamplingParams::validate.

#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/thread_pool.h"
#include "core/error.h"

namespace pagoda::engine {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInfF = std::numeric_limits<float>::infinity();

Tensor make_logits(const std::vector<std::vector<float>>& rows) {
  const auto vocab = static_cast<int64_t>(rows.at(0).size());
  Tensor t = Tensor::empty({static_cast<int64_t>(rows.size()), vocab}, DType::kF32);
  float* p = t.data<float>();
  for (const auto& row : rows) {
    EXPECT_EQ(static_cast<int64_t>(row.size()), vocab);
    p = std::copy(row.begin(), row.end(), p);
  }
  return t;
}

// Samples one row `draws` times (a one-row batch per draw, as the engine does per step).
std::vector<int64_t> histogram(const std::vector<float>& logits, const SamplingParams& params, uint64_t seed,
                               int draws) {
  Sampler sampler;
  Generator gen(seed);
  const Tensor t = make_logits({logits});
  SampleRow row;
  row.params = &params;
  row.generator = &gen;
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i)
    ++counts.at(static_cast<size_t>(sampler.sample(t, {&row, 1}).at(0).token_id));
  return counts;
}

// The distribution the sampler should draw from, computed independently in long double:
// softmax(logits / T), restricted by min_p, then top_k, then top_p (on the renormalised
// probabilities), renormalised.
std::vector<long double> exact_distribution(const std::vector<float>& logits, double temperature, int64_t top_k,
                                            double top_p, double min_p) {
  const size_t n = logits.size();
  std::vector<long double> p(n);
  long double mx = -std::numeric_limits<long double>::infinity();
  for (float v : logits)
    mx = std::max(mx, static_cast<long double>(v) / temperature);
  long double total = 0;
  for (size_t i = 0; i < n; ++i) {
    p[i] = std::exp(static_cast<long double>(logits[i]) / temperature - mx);
    total += p[i];
  }
  for (auto& v : p)
    v /= total;
  const long double pmax = *std::max_element(p.begin(), p.end());
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  std::vector<bool> keep(n, false);
  size_t kept = 0;
  for (size_t i : order) {
    if (p[i] < min_p * pmax) continue;
    if (top_k > 0 && kept == static_cast<size_t>(top_k)) continue;
    keep[i] = true;
    ++kept;
  }
  long double kept_mass = 0;
  for (size_t i = 0; i < n; ++i)
    kept_mass += keep[i] ? p[i] : 0;
  if (top_p < 1.0) {
    long double mass = 0;
    bool reached = false;
    for (size_t i : order) {
      if (!keep[i]) continue;
      if (reached) {
        keep[i] = false;
        continue;
      }
      mass += p[i] / kept_mass;
      if (mass >= top_p) reached = true;
    }
  }
  std::vector<long double> q(n, 0);
  long double sum = 0;
  for (size_t i = 0; i < n; ++i)
    sum += keep[i] ? p[i] : 0;
  for (size_t i = 0; i < n; ++i)
    q[i] = keep[i] ? p[i] / sum : 0;
  return q;
}

// The 0.999 quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty).
double chi2_quantile_999(int df) {
  const double z = 3.090232306167813;  // the 0.999 quantile of the standard normal
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

struct ChiSquare {
  double statistic = 0;
  int df = 0;
  int64_t impossible = 0;  // draws of tokens with probability 0
  [[nodiscard]] bool passes() const { return impossible == 0 && statistic < chi2_quantile_999(df); }
};

ChiSquare chi_square(const std::vector<int64_t>& counts, const std::vector<long double>& q) {
  ChiSquare r;
  int64_t n = 0;
  for (int64_t c : counts)
    n += c;
  int bins = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    if (q[i] == 0) {
      r.impossible += counts[i];
      continue;
    }
    const double expected = static_cast<double>(q[i]) * static_cast<double>(n);
    const double d = static_cast<double>(counts[i]) - expected;
    r.statistic += d * d / expected;
    ++bins;
  }
  r.df = std::max(1, bins - 1);
  return r;
}

const std::vector<float> kLogits = {1.3f, -0.4f, 2.1f, 0.7f, -1.9f, 0.05f, 1.75f, -0.9f, 0.4f, 2.6f, -2.5f, 1.0f};
constexpr int kDraws = 20000;

TEST(SamplerDistribution, WilsonHilfertyQuantiles) {
  // Tabulated 0.999 quantiles of chi-square: the approximation is within 1.5% (slightly above).
  for (const auto& [df, q] :
       std::vector<std::pair<int, double>>{{4, 18.467}, {5, 20.515}, {11, 31.264}, {30, 59.703}}) {
    EXPECT_NEAR(chi2_quantile_999(df), q, 0.015 * q) << "df " << df;
  }
}

struct Case {
  const char* name;
  double temperature;
  int64_t top_k;
  double top_p;
  double min_p;
  size_t support;  // tokens the exact distribution keeps
};

TEST(SamplerDistribution, MatchesExactDistribution) {
  const std::vector<Case> cases = {
      {"temperature 1", 1.0, 0, 1.0, 0.0, 12},
      {"temperature 0.5", 0.5, 0, 1.0, 0.0, 12},
      {"temperature 2.5", 2.5, -1, 1.0, 0.0, 12},
      {"top_k 5", 1.0, 5, 1.0, 0.0, 5},
      {"top_k 1", 1.0, 1, 1.0, 0.0, 1},
      {"top_k above vocab", 1.0, 100, 1.0, 0.0, 12},
      {"top_p 0.75", 1.0, 0, 0.75, 0.0, 4},
      {"top_p 0.9 at T 1.7", 1.7, 0, 0.9, 0.0, 8},
      {"min_p 0.1", 1.0, 0, 1.0, 0.1, 7},
      {"min_p 0.3 at T 0.8", 0.8, 0, 1.0, 0.3, 3},
      {"top_k 6 + top_p 0.8 at T 0.7", 0.7, 6, 0.8, 0.0, 3},
      {"min_p 0.05 + top_p 0.9 at T 1.3", 1.3, 0, 0.9, 0.05, 7},
      {"all four", 1.2, 7, 0.85, 0.08, 5},
  };
  uint64_t seed = 1000;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SamplingParams params;
    params.temperature = c.temperature;
    params.top_k = c.top_k;
    params.top_p = c.top_p;
    params.min_p = c.min_p;
    params.validate(static_cast<int64_t>(kLogits.size()));
    const auto q = exact_distribution(kLogits, c.temperature, c.top_k, c.top_p, c.min_p);
    const auto support = static_cast<size_t>(std::count_if(q.begin(), q.end(), [](long double v) { return v > 0; }));
    EXPECT_EQ(support, c.support);  // the truncation really cuts (numbers checked by hand)
    const auto counts = histogram(kLogits, params, seed++, kDraws);
    const ChiSquare r = chi_square(counts, q);
    EXPECT_EQ(r.impossible, 0);
    EXPECT_LT(r.statistic, chi2_quantile_999(r.df)) << "df " << r.df;
  }
}

TEST(SamplerDistribution, WrongDistributionsAreRejected) {
  // The test has power: draws at one setting fail against a nearby but different target.
  SamplingParams params;
  params.temperature = 1.0;
  const auto counts = histogram(kLogits, params, 77, kDraws);
  EXPECT_TRUE(chi_square(counts, exact_distribution(kLogits, 1.0, 0, 1.0, 0.0)).passes());
  EXPECT_FALSE(chi_square(counts, exact_distribution(kLogits, 1.15, 0, 1.0, 0.0)).passes());
  EXPECT_FALSE(chi_square(counts, exact_distribution(kLogits, 0.85, 0, 1.0, 0.0)).passes());
  // Truncated targets put zero mass where draws landed.
  EXPECT_GT(chi_square(counts, exact_distribution(kLogits, 1.0, 11, 1.0, 0.0)).impossible, 0);

  params.top_k = 4;
  const auto top4 = histogram(kLogits, params, 78, kDraws);
  EXPECT_TRUE(chi_square(top4, exact_distribution(kLogits, 1.0, 4, 1.0, 0.0)).passes());
  // Softmax over all, never drawing outside the top 4, is not the top-4 renormalised law.
  EXPECT_FALSE(chi_square(top4, exact_distribution(kLogits, 1.0, 5, 1.0, 0.0)).passes());
}

TEST(SamplerDistribution, LargerVocabularyTopPAndTopK) {
  // 4,096 tokens: four likely ones and a nearly flat rest, with top_k and a top_p that cuts deep
  // into the flat part (past the first 256 candidates the sampler sorts before looking further).
  std::vector<float> logits(4096);
  for (size_t i = 0; i < logits.size(); ++i)
    logits[i] = static_cast<float>(std::sin(static_cast<double>(i) * 0.37) * 0.3);
  const std::vector<std::pair<size_t, float>> peaks = {{17, 7.0f}, {4001, 6.6f}, {3, 6.3f}, {777, 6.0f}};
  for (const auto& [i, v] : peaks)
    logits[i] = v;
  SamplingParams params;
  params.top_k = 3000;
  params.top_p = 0.7;
  const auto q = exact_distribution(logits, 1.0, 3000, 0.7, 0.0);
  const auto support = std::count_if(q.begin(), q.end(), [](long double v) { return v > 0; });
  EXPECT_GT(support, 1000);  // 1,164
  EXPECT_LT(support, 2000);
  const auto counts = histogram(logits, params, 5, 2500);
  // Too many tokens for a cell each: peaks keep theirs, the flat tokens pool by id mod 10.
  std::vector<int64_t> pooled_counts(14, 0);
  std::vector<long double> pooled_q(14, 0);
  int64_t impossible = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    size_t cell = 4 + i % 10;
    for (size_t k = 0; k < peaks.size(); ++k)
      cell = peaks[k].first == i ? k : cell;
    if (q[i] == 0) impossible += counts[i];
    pooled_counts[cell] += counts[i];
    pooled_q[cell] += q[i];
  }
  EXPECT_EQ(impossible, 0);
  const ChiSquare r = chi_square(pooled_counts, pooled_q);
  EXPECT_LT(r.statistic, chi2_quantile_999(r.df)) << "df " << r.df;
  EXPECT_EQ(r.df, 13);
}

SampleRow make_row(const SamplingParams& p, Generator* gen, std::span<const int32_t> prompt = {},
                   std::span<const int32_t> output = {}, std::span<const int32_t> eos = {}) {
  SampleRow row;
  row.params = &p;
  row.generator = gen;
  row.prompt_ids = prompt;
  row.output_ids = output;
  row.eos_ids = eos;
  return row;
}

int32_t sample_one(const std::vector<float>& logits, const SampleRow& row) {
  Sampler sampler;
  return sampler.sample(make_logits({logits}), {&row, 1}).at(0).token_id;
}

TEST(SamplerProcessing, PenaltiesAndBiasMatchTheirFormulas) {
  const std::vector<float> logits = {1.5f, -0.75f, 0.0f, 3.25f, -2.0f, 0.5f, 2.0f, -0.125f};
  const std::vector<int32_t> prompt = {1, 1, 3, 9999, -4};  // ids out of range are ignored
  const std::vector<int32_t> output = {0, 3, 3, 4, 0, 3, 1};
  SamplingParams p;
  p.repetition_penalty = 1.3;
  p.frequency_penalty = 0.4;
  p.presence_penalty = -0.7;
  p.logit_bias = {{5, 2.5}, {4, -1.25}, {7, 0.125}};
  const SampleRow row = make_row(p, nullptr, prompt, output);
  std::vector<double> out(logits.size());
  detail::process_row(logits, row, out);

  // Counts of generated tokens: 0 twice, 1 once, 3 three times, 4 once.
  const std::vector<int> count = {2, 1, 0, 3, 1, 0, 0, 0};
  const std::vector<bool> seen = {true, true, false, true, true, false, false, false};  // prompt or output
  const std::vector<double> bias = {0, 0, 0, 0, -1.25, 2.5, 0, 0.125};
  for (size_t i = 0; i < logits.size(); ++i) {
    double v = static_cast<double>(logits[i]) + bias[i];
    if (seen[i]) v = v > 0 ? v / 1.3 : v * 1.3;
    if (count[i] > 0) {
      v -= 0.4 * count[i];
      v -= -0.7;
    }
    EXPECT_EQ(out[i], v) << "token " << i;
  }
}

TEST(SamplerProcessing, DefaultsLeaveTheRowAlone) {
  const std::vector<float> logits = {1.5f, kNaN, -kInfF, 3.0f};
  SamplingParams p;
  const std::vector<int32_t> ids = {0, 1, 2, 3, 3};
  const SampleRow row = make_row(p, nullptr, ids, ids, ids);
  std::vector<double> out(logits.size());
  detail::process_row(logits, row, out);
  EXPECT_EQ(out[0], 1.5);
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(out[2], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(out[3], 3.0);
}

TEST(SamplerProcessing, PenaltiesChangeTheGreedyChoice) {
  const std::vector<float> logits = {2.0f, 1.8f, -1.0f, -1.1f};
  SamplingParams p;
  p.temperature = 0.0;
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr)), 0);
  // Repetition: 2.0 / 1.2 < 1.8 (prompt tokens count too).
  const std::vector<int32_t> zero = {0};
  p.repetition_penalty = 1.2;
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, zero)), 1);
  // 1.1 would keep 2.0 / 1.1 > 1.8.
  p.repetition_penalty = 1.1;
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, zero)), 0);
  // Negative logits are multiplied: -1.0 * 1.2 < -1.1.
  const std::vector<float> negative = {-1.0f, -1.1f};
  p.repetition_penalty = 1.2;
  EXPECT_EQ(sample_one(negative, make_row(p, nullptr, zero)), 1);
  // Frequency and presence count the output only.
  p.repetition_penalty = 1.0;
  p.frequency_penalty = 0.15;
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, zero)), 0);      // prompt only: no effect
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, zero)), 0);  // 2.0 - 0.15 > 1.8
  const std::vector<int32_t> zeros = {0, 0};
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, zeros)), 1);  // 2.0 - 0.3 < 1.8
  p.frequency_penalty = 0.0;
  p.presence_penalty = 0.25;
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, zero)), 1);
  p.presence_penalty = -0.25;  // negative: encourages repeats
  const std::vector<int32_t> one = {1};
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, one)), 1);
}

TEST(SamplerProcessing, LogitBias) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0;
  p.logit_bias = {{2, 2.5}};
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr)), 2);
  p.logit_bias = {{2, 1.5}};
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr)), 0);  // 0 + 1.5 < 2
  // -100 all but bans a token when sampling at random.
  p.temperature = 1.0;
  p.logit_bias = {{0, -100.0}, {1, -100.0}};
  Generator gen(3);
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(sample_one(logits, make_row(p, &gen)), 2);
}

TEST(SamplerMasking, MinTokensMasksEosAndStopTokens) {
  // EOS (3) and a stop token (1) are the most likely.
  const std::vector<float> logits = {0.0f, 5.0f, 1.0f, 6.0f, -1.0f};
  const std::vector<int32_t> eos = {3};
  std::vector<int32_t> output = {4, 4};
  SamplingParams p;
  p.temperature = 0.0;
  p.min_tokens = 3;
  p.stop_token_ids = {1};
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, output, eos)), 2);
  output.push_back(4);  // three generated: no longer masked
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, output, eos)), 3);
  output.pop_back();
  // ignore_eos: EOS is an ordinary token, stop tokens are still masked.
  p.ignore_eos = true;
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, output, eos)), 3);
  p.stop_token_ids = {1, 3};
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, output, eos)), 2);
  // Random draws never pick a masked token.
  p.ignore_eos = false;
  p.temperature = 1.0;
  p.stop_token_ids = {1};
  Generator gen(11);
  const auto row = make_row(p, &gen, {}, output, eos);
  for (int i = 0; i < 500; ++i) {
    const int32_t t = sample_one(logits, row);
    EXPECT_NE(t, 1);
    EXPECT_NE(t, 3);
  }
  // min_tokens 0: nothing is masked.
  p.min_tokens = 0;
  p.temperature = 0.0;
  EXPECT_EQ(sample_one(logits, make_row(p, nullptr, {}, output, eos)), 3);
}

TEST(SamplerMasking, NaNAndInfiniteRows) {
  SamplingParams greedy;
  greedy.temperature = 0.0;
  SamplingParams random;
  Generator gen(5);
  const std::vector<float> nan_row(6, kNaN);
  EXPECT_EQ(sample_one(nan_row, make_row(greedy, nullptr)), 0);
  EXPECT_EQ(sample_one(nan_row, make_row(random, &gen)), 0);
  // NaNs never win; the rest follows the softmax.
  const std::vector<float> some_nan = {kNaN, 0.0f, kNaN, 0.0f, kNaN};
  EXPECT_EQ(sample_one(some_nan, make_row(greedy, nullptr)), 1);
  int ones = 0;
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = sample_one(some_nan, make_row(random, &gen));
    ASSERT_TRUE(t == 1 || t == 3) << t;
    ones += t == 1 ? 1 : 0;
  }
  EXPECT_NEAR(ones / 2000.0, 0.5, 0.05);
  // +inf logits share the mass; -inf have none.
  const std::vector<float> inf_row = {1.0f, kInfF, -kInfF, kInfF, 1e30f};
  EXPECT_EQ(sample_one(inf_row, make_row(greedy, nullptr)), 1);
  int firsts = 0;
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = sample_one(inf_row, make_row(random, &gen));
    ASSERT_TRUE(t == 1 || t == 3) << t;
    firsts += t == 1 ? 1 : 0;
  }
  EXPECT_NEAR(firsts / 2000.0, 0.5, 0.05);
  // Nothing possible: the lowest id that is not NaN.
  const std::vector<float> dead = {kNaN, -kInfF, -kInfF};
  EXPECT_EQ(sample_one(dead, make_row(random, &gen)), 1);
  EXPECT_EQ(sample_one(dead, make_row(greedy, nullptr)), 1);
  // Huge finite logits do not overflow.
  const std::vector<float> huge = {3e38f, -3e38f, 3e38f};
  int zero = 0;
  for (int i = 0; i < 1000; ++i) {
    const int32_t t = sample_one(huge, make_row(random, &gen));
    ASSERT_TRUE(t == 0 || t == 2) << t;
    zero += t == 0 ? 1 : 0;
  }
  EXPECT_NEAR(zero / 1000.0, 0.5, 0.07);
}

TEST(SamplerGreedy, TiesAndTinyTemperature) {
  SamplingParams p;
  p.temperature = 0.0;
  EXPECT_EQ(sample_one({0.5f, 2.0f, 2.0f, 1.0f}, make_row(p, nullptr)), 1);
  EXPECT_EQ(sample_one({-kInfF, -5.0f, -5.0f}, make_row(p, nullptr)), 1);
  p.temperature = 9e-6;  // below vLLM's epsilon: greedy, no generator needed
  EXPECT_EQ(sample_one({0.5f, 2.0f, 2.0f, 1.0f}, make_row(p, nullptr)), 1);
  // Just above it: random (a generator is required), though in practice the argmax.
  p.temperature = 1e-5;
  Generator gen(1);
  EXPECT_EQ(sample_one({0.5f, 2.0f, 1.9f, 1.0f}, make_row(p, &gen)), 1);
  EXPECT_THROW((void)sample_one({0.5f, 2.0f}, make_row(p, nullptr)), Error);
  // top_k 1 and a tiny top_p keep only the most likely (lowest id on ties).
  p.temperature = 1.0;
  p.top_k = 1;
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(sample_one({0.5f, 2.0f, 2.0f, 1.0f}, make_row(p, &gen)), 1);
  p.top_k = 0;
  p.top_p = 1e-9;
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(sample_one({0.5f, 2.0f, 2.0f, 1.0f}, make_row(p, &gen)), 1);
  p.top_p = 1.0;
  p.min_p = 1.0;  // only the largest probability survives
  for (int i = 0; i < 50; ++i) {
    const int32_t t = sample_one({0.5f, 2.0f, 2.0f, 1.0f}, make_row(p, &gen));
    EXPECT_TRUE(t == 1 || t == 2);
  }
}

TEST(SamplerSeeds, SameSeedSameDrawsWhateverTheBatch) {
  // vocab * rows large enough that the sampler uses threads.
  const int64_t vocab = 1 << 17;
  const int rows = 9;
  std::vector<std::vector<float>> base(rows, std::vector<float>(static_cast<size_t>(vocab)));
  for (int r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < vocab; ++i)
      base[static_cast<size_t>(r)][static_cast<size_t>(i)] =
          static_cast<float>(std::sin(static_cast<double>(i * (r + 3)) * 0.001));
    for (int64_t i = r; i < vocab; i += vocab / 50)  // 50 likely tokens per row
      base[static_cast<size_t>(r)][static_cast<size_t>(i)] += 16.0f;
  }
  std::vector<SamplingParams> params(rows);
  for (int r = 0; r < rows; ++r) {
    SamplingParams& p = params[static_cast<size_t>(r)];
    p.temperature = 0.3 + 0.1 * r;
    p.top_k = r % 3 == 0 ? 0 : 50 * r;
    p.top_p = r % 2 == 0 ? 1.0 : 0.6 + 0.03 * r;
    p.min_p = r % 4 == 1 ? 0.02 : 0.0;
    p.presence_penalty = r % 5 == 2 ? 0.5 : 0.0;
    p.logprobs = r % 3 == 1 ? std::optional<int64_t>(2) : std::nullopt;
    p.validate(vocab);
  }
  ASSERT_GE(rows * vocab, kParallelSampleLogits);
  constexpr int kSteps = 4;

  // Runs kSteps steps of the rows in `order` with the given threads; returns each row's draws
  // (by original index), feeding each row's draws back as its output ids.
  // With `pool`, the rows are split over a thread pool's parallel_for, as the engine's CPU
  // backend runs them, rather than over threads of the sampler's own.
  auto run = [&](const std::vector<int>& order, int threads, bool pool = false) {
    cpu::ThreadPool workers(threads);
    Sampler sampler = pool ? Sampler(threads,
                                     [&workers](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
                                       workers.parallel_for(n, 1, fn);
                                     })
                           : Sampler(threads);
    std::vector<Generator> gens;
    for (int r = 0; r < rows; ++r)
      gens.emplace_back(1234 + static_cast<uint64_t>(r));
    std::vector<std::vector<int32_t>> outputs(rows);
    std::vector<std::vector<float>> batch;
    for (int r : order)
      batch.push_back(base[static_cast<size_t>(r)]);
    const Tensor t = make_logits(batch);
    for (int step = 0; step < kSteps; ++step) {
      std::vector<SampleRow> sample_rows;
      for (int r : order) {
        sample_rows.push_back(make_row(params[static_cast<size_t>(r)], &gens[static_cast<size_t>(r)], {},
                                       outputs[static_cast<size_t>(r)]));
      }
      const auto results = sampler.sample(t, sample_rows);
      for (size_t j = 0; j < order.size(); ++j)
        outputs[static_cast<size_t>(order[j])].push_back(results[j].token_id);
    }
    return outputs;
  };

  std::vector<std::vector<int32_t>> alone(rows);
  for (int r = 0; r < rows; ++r)
    alone[static_cast<size_t>(r)] = run({r}, 1)[static_cast<size_t>(r)];
  std::vector<int> order(rows);
  std::iota(order.begin(), order.end(), 0);
  for (int threads : {1, 2, 3, 8}) {
    std::vector<int> shuffled = order;
    std::rotate(shuffled.begin(), shuffled.begin() + threads % rows, shuffled.end());
    std::reverse(shuffled.begin(), shuffled.begin() + 4);
    for (const bool pool : {false, true}) {
      const auto together = run(shuffled, threads, pool);
      for (int r = 0; r < rows; ++r)
        EXPECT_EQ(together[static_cast<size_t>(r)], alone[static_cast<size_t>(r)])
            << "row " << r << " threads " << threads << (pool ? " (a pool's)" : "");
    }
  }
  // And a different seed gives different draws (the rows really are random).
  int distinct_tokens = 0;
  for (int r = 0; r < rows; ++r) {
    auto v = alone[static_cast<size_t>(r)];
    std::sort(v.begin(), v.end());
    distinct_tokens += static_cast<int>(std::unique(v.begin(), v.end()) - v.begin());
  }
  EXPECT_GT(distinct_tokens, rows * 2);
}

// The draw, written out plainly: weights exp((x - max) / T) (through exp_nonpositive, as the
// sampler computes them), one sequential running sum over the ids in order, and the first id whose
// running sum passes u * total. The sampler keeps the running sums and bisects them; the token
// must be the same for every seed, temperature and row (here with -inf and NaN logits in the row).
// Every id a candidate (no masked, NaN or negligible logit, no min_p): the draw goes over the
// weights directly, with no candidate list (sample_row's dense case); with such logits an id
// left out goes back to the list. Both must give the sequential search's token.
void check_draw_against_sequential_search(bool every_id_kept) {
  const int64_t vocab = 3001;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 2.5f);
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (auto& v : logits)
    v = normal(rng);
  if (!every_id_kept) {
    logits[7] = -kInfF;
    logits[100] = kNaN;
    logits[2999] = -1e30f;  // far below the top: weight 0, never drawn
  }
  const Tensor t = make_logits({logits});
  using TempMinP = std::pair<double, double>;
  const std::vector<TempMinP> cases = every_id_kept
                                          ? std::vector<TempMinP>{{1.0, 0.0}, {0.7, 0.0}, {1.9, 0.0}}
                                          : std::vector<TempMinP>{{1.0, 0.0}, {0.7, 0.0}, {1.9, 0.0}, {1.0, 0.05}};
  for (const auto& [temperature, min_p] : cases) {
    SamplingParams p;
    p.temperature = temperature;
    p.min_p = min_p;
    p.validate(vocab);
    double top = -std::numeric_limits<double>::infinity();
    for (float v : logits)
      top = std::isnan(v) ? top : std::max(top, static_cast<double>(v));
    std::vector<double> a(static_cast<size_t>(vocab));
    std::vector<double> w(a.size());
    for (size_t i = 0; i < a.size(); ++i)
      a[i] = (static_cast<double>(logits[i]) - top) / temperature;
    detail::exp_nonpositive(a, w);
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::isnan(logits[i]))
        w[i] = 0.0;
      else if (!(a[i] >= -708.0))
        w[i] = std::exp(a[i]);
      if (w[i] < min_p) w[i] = 0.0;  // min_p against the top's weight, 1
    }
    Sampler sampler;
    int distinct = 0;
    std::vector<bool> seen(static_cast<size_t>(vocab), false);
    for (uint64_t seed = 0; seed < 400; ++seed) {
      Generator g(seed);
      Generator ref(seed);
      const SampleRow row = make_row(p, &g, {}, {});
      const int32_t got = sampler.sample(t, std::span<const SampleRow>(&row, 1))[0].token_id;
      double total = 0.0;
      for (double v : w)
        total += v > 0.0 ? v : 0.0;
      const double target = detail::uniform01(ref) * total;
      double mass = 0.0;
      int32_t want = -1;
      for (size_t i = 0; i < w.size() && want < 0; ++i) {
        if (!(w[i] > 0.0)) continue;
        mass += w[i];
        if (target < mass) want = static_cast<int32_t>(i);
      }
      ASSERT_EQ(got, want) << "temperature " << temperature << " min_p " << min_p << " seed " << seed;
      distinct += seen[static_cast<size_t>(got)] ? 0 : 1;
      seen[static_cast<size_t>(got)] = true;
    }
    EXPECT_GT(distinct, 20) << "temperature " << temperature;  // the draws really spread
  }
}

TEST(SamplerDraw, SameTokenAsASequentialSearch) {
  check_draw_against_sequential_search(false);
}

TEST(SamplerDraw, EveryIdKeptDrawsOverTheWeightsDirectly) {
  check_draw_against_sequential_search(true);
}

TEST(SamplerDraw, MaxIgnoresNaN) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(detail::max_non_nan(std::vector<double>{}), -inf);
  EXPECT_EQ(detail::max_non_nan(std::vector<double>{nan, nan, nan}), -inf);
  std::vector<double> x(37, -3.0);
  x[0] = nan;
  x[35] = 2.5;  // in the scalar tail
  EXPECT_EQ(detail::max_non_nan(x), 2.5);
  x[9] = 4.0;  // in the vector part, lane 1
  x[16] = nan;
  EXPECT_EQ(detail::max_non_nan(x), 4.0);
  x[30] = inf;
  EXPECT_EQ(detail::max_non_nan(x), inf);
  EXPECT_EQ(detail::max_non_nan(std::vector<double>(20, -inf)), -inf);
}

TEST(SamplerSeeds, UniformUsesTheTop53Bits) {
  Generator a(99);
  Generator b(99);
  for (int i = 0; i < 100; ++i) {
    const uint64_t bits = b();
    EXPECT_EQ(detail::uniform01(a), static_cast<double>(bits >> 11) / 9007199254740992.0);
  }
  // Fixed reference draws of mt19937_64 (its 10000th output is specified by the C++ standard).
  Generator c;
  c.discard(9999);
  EXPECT_EQ(c(), 9981545732273789042ull);
}

// The sampler's vectorized exponential against std::exp: within two units in the last place over
// [-708, 0] (the ends, the reduction's half-way points, tiny and subnormal arguments included), 0
// for everything it leaves to the caller.
TEST(SamplerWeights, VectorizedExpMatchesStdExp) {
  std::vector<double> a = {0.0,
                           -0.0,
                           -708.0,
                           -707.9999999,
                           -1e-300,
                           -5e-324,
                           -0.34657359027997264,
                           -0.34657359027997270,
                           -1.0,
                           -745.0 / 2,
                           -std::log(2.0) * 1021};
  std::mt19937_64 rng(5);
  for (int i = 0; i < 200000; ++i)
    a.push_back(-std::uniform_real_distribution<double>(0.0, i % 2 == 0 ? 30.0 : 708.0)(rng));
  std::vector<double> got(a.size());
  detail::exp_nonpositive(a, got);
  for (size_t i = 0; i < a.size(); ++i) {
    const double want = std::exp(a[i]);
    const double ulp = std::nextafter(want, std::numeric_limits<double>::infinity()) - want;
    ASSERT_LE(std::fabs(got[i] - want), 2 * ulp) << "exp(" << a[i] << ")";
  }
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> outside = {
      -708.0000001, -1000.0, -inf, 1e-300, 0.5, inf, std::numeric_limits<double>::quiet_NaN()};
  std::vector<double> zeros(outside.size(), -1.0);
  detail::exp_nonpositive(outside, zeros);
  for (size_t i = 0; i < outside.size(); ++i)
    EXPECT_EQ(zeros[i], 0.0) << outside[i];
  std::vector<double> short_out(1);
  EXPECT_THROW(detail::exp_nonpositive(outside, short_out), Error);
}

std::vector<long double> reference_log_softmax(const std::vector<float>& logits) {
  long double mx = -std::numeric_limits<long double>::infinity();
  for (float v : logits)
    mx = std::max(mx, static_cast<long double>(v));
  long double sum = 0;
  for (float v : logits)
    sum += std::exp(static_cast<long double>(v) - mx);
  std::vector<long double> out;
  for (float v : logits)
    out.push_back(static_cast<long double>(v) - mx - std::log(sum));
  return out;
}

TEST(SamplerLogprobs, LogSoftmaxRanksAndTopOrder) {
  const std::vector<float> logits = {0.25f, 3.5f, -1.0f, 3.5f, 2.0f, -40.0f, 1.0f, 2.0f, 0.0f, 17.0f};
  const auto ref = reference_log_softmax(logits);
  // Ranking by hand: 9, then 1 and 3 (tie: lower id first), 4 and 7, 6, 0, 8, 2, 5.
  const std::vector<int32_t> expected_order = {9, 1, 3, 4, 7, 6, 0, 8, 2, 5};
  for (int32_t t = 0; t < 10; ++t) {
    const PositionLogprobs lp = row_logprobs(logits, t, 4);
    EXPECT_EQ(lp.chosen.token_id, t);
    EXPECT_NEAR(lp.chosen.logprob, static_cast<double>(ref[static_cast<size_t>(t)]),
                1e-6 * std::max(1.0, std::fabs(static_cast<double>(ref[static_cast<size_t>(t)]))));
    const auto pos = std::find(expected_order.begin(), expected_order.end(), t) - expected_order.begin();
    EXPECT_EQ(lp.chosen.rank, pos + 1) << "token " << t;
    ASSERT_EQ(lp.top.size(), 4u);
    for (size_t r = 0; r < 4; ++r) {
      EXPECT_EQ(lp.top[r].token_id, expected_order[r]);
      EXPECT_EQ(lp.top[r].rank, static_cast<int64_t>(r) + 1);
      EXPECT_NEAR(lp.top[r].logprob, static_cast<double>(ref[static_cast<size_t>(expected_order[r])]), 1e-6);
    }
  }
  EXPECT_TRUE(row_logprobs(logits, 0, 0).top.empty());
  EXPECT_EQ(row_logprobs(logits, 0, 100).top.size(), 10u);  // capped at the vocabulary
  EXPECT_THROW((void)row_logprobs(logits, 10, 1), Error);
  EXPECT_THROW((void)row_logprobs(logits, -1, 1), Error);
}

TEST(SamplerLogprobs, LargeRowAndBothSelectionPaths) {
  std::vector<float> logits(30000);
  for (size_t i = 0; i < logits.size(); ++i)
    logits[i] = static_cast<float>(std::cos(static_cast<double>(i) * 0.7) * 6.0 + (i % 7 == 0 ? 1.0 : 0.0));
  logits[123] = logits[456];  // an exact tie
  const auto ref = reference_log_softmax(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  for (int64_t top : {20, 100}) {  // insertion and partial_sort paths
    const PositionLogprobs lp = row_logprobs(logits, order[57], top);
    EXPECT_EQ(lp.chosen.rank, 58);
    ASSERT_EQ(lp.top.size(), static_cast<size_t>(top));
    for (size_t r = 0; r < lp.top.size(); ++r) {
      EXPECT_EQ(lp.top[r].token_id, order[r]);
      EXPECT_NEAR(lp.top[r].logprob, static_cast<double>(ref[static_cast<size_t>(order[r])]), 1e-5);
    }
  }
  const PositionLogprobs tie = row_logprobs(logits, 456, 0);
  const PositionLogprobs tie_low = row_logprobs(logits, 123, 0);
  EXPECT_EQ(tie.chosen.rank, tie_low.chosen.rank + 1);
}

TEST(SamplerLogprobs, RawLogitsWhateverTheSampling) {
  // Logprobs come from the raw row even with penalties, bias and temperature.
  const std::vector<float> logits = {0.5f, 1.5f, -0.5f, 2.5f};
  const auto ref = reference_log_softmax(logits);
  SamplingParams p;
  p.temperature = 0.0;
  p.logprobs = 2;
  p.logit_bias = {{0, 10.0}};
  p.repetition_penalty = 1.7;
  const std::vector<int32_t> prompt = {3};
  const SampleRow row = make_row(p, nullptr, prompt);
  Sampler sampler;
  const auto result = sampler.sample(make_logits({logits}), {&row, 1}).at(0);
  EXPECT_EQ(result.token_id, 0);
  EXPECT_EQ(result.logprobs.chosen.token_id, 0);
  EXPECT_NEAR(result.logprobs.chosen.logprob, static_cast<double>(ref[0]), 1e-6);
  EXPECT_EQ(result.logprobs.chosen.rank, 3);
  ASSERT_EQ(result.logprobs.top.size(), 2u);
  EXPECT_EQ(result.logprobs.top[0].token_id, 3);
  EXPECT_EQ(result.logprobs.top[1].token_id, 1);
  // Without logprobs nothing is filled.
  p.logprobs.reset();
  const auto plain = sampler.sample(make_logits({logits}), {&row, 1}).at(0);
  EXPECT_TRUE(plain.logprobs.top.empty());
}

TEST(SamplerLogprobs, NonFiniteRows) {
  const std::vector<float> with_nan = {0.0f, kNaN, 0.0f};
  const auto lp = row_logprobs(with_nan, 2, 3);
  EXPECT_NEAR(lp.chosen.logprob, -std::log(2.0), 1e-7);
  EXPECT_EQ(lp.chosen.rank, 2);
  EXPECT_EQ(lp.top[2].token_id, 1);  // NaN ranks last
  EXPECT_EQ(lp.top[2].logprob, -kInfF);
  const std::vector<float> with_inf = {kInfF, 1.0f, kInfF};
  EXPECT_NEAR(row_logprobs(with_inf, 2, 0).chosen.logprob, -std::log(2.0), 1e-7);
  EXPECT_EQ(row_logprobs(with_inf, 1, 0).chosen.logprob, -kInfF);
}

TEST(SamplerCall, RefusesMalformedCalls) {
  Sampler sampler;
  SamplingParams p;
  Generator gen(1);
  const SampleRow row = make_row(p, &gen);
  const std::vector<SampleRow> two = {row, row};
  const Tensor t = make_logits({{1.0f, 2.0f}});
  EXPECT_THROW((void)sampler.sample(t, two), Error);  // 1 row of logits, 2 rows
  SampleRow no_params;
  EXPECT_THROW((void)sampler.sample(t, {&no_params, 1}), Error);
  EXPECT_THROW((void)sampler.sample(Tensor::empty({2}, DType::kF32), {&row, 1}), Error);
  EXPECT_THROW((void)sampler.sample(Tensor::empty({1, 2}, DType::kF16), {&row, 1}), Error);
  EXPECT_TRUE(sampler.sample(Tensor::empty({0, 4}, DType::kF32), {}).empty());
  // Rows of a strided view.
  const Tensor wide = make_logits({{0.0f, 9.0f, 1.0f, 5.0f}, {7.0f, 1.0f, 2.0f, 3.0f}});
  SamplingParams greedy;
  greedy.temperature = 0.0;
  const std::vector<SampleRow> greedy_rows = {make_row(greedy, nullptr), make_row(greedy, nullptr)};
  const auto r = sampler.sample(wide.slice(1, 2, 4), greedy_rows);
  EXPECT_EQ(r.at(0).token_id, 1);
  EXPECT_EQ(r.at(1).token_id, 1);
}

// SamplingParams::validate: each boundary accepted, each step past it refused naming the field.
void expect_refused(const std::function<void(SamplingParams&)>& change, const std::string& field, int64_t vocab = 0) {
  SamplingParams p;
  change(p);
  try {
    p.validate(vocab);
    ADD_FAILURE() << field << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

void expect_accepted(const std::function<void(SamplingParams&)>& change, int64_t vocab = 0) {
  SamplingParams p;
  change(p);
  EXPECT_NO_THROW(p.validate(vocab));
}

TEST(SamplingParamsValidate, Boundaries) {
  constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  expect_accepted([](SamplingParams&) {});
  expect_accepted([](SamplingParams& p) { p.n = 128; });
  expect_refused([](SamplingParams& p) { p.n = 0; }, "n must");
  expect_refused([](SamplingParams& p) { p.n = 129; }, "n must");

  for (double v : {-2.0, 2.0}) {
    expect_accepted([v](SamplingParams& p) { p.presence_penalty = v; });
    expect_accepted([v](SamplingParams& p) { p.frequency_penalty = v; });
  }
  for (double v : {-2.0001, 2.0001, kNan}) {
    expect_refused([v](SamplingParams& p) { p.presence_penalty = v; }, "presence_penalty");
    expect_refused([v](SamplingParams& p) { p.frequency_penalty = v; }, "frequency_penalty");
  }
  expect_accepted([](SamplingParams& p) { p.repetition_penalty = 1e-6; });
  expect_accepted([](SamplingParams& p) { p.repetition_penalty = 50.0; });
  for (double v : {0.0, -1.0, kInf, kNan})
    expect_refused([v](SamplingParams& p) { p.repetition_penalty = v; }, "repetition_penalty");

  expect_accepted([](SamplingParams& p) { p.temperature = 0.0; });
  expect_accepted([](SamplingParams& p) { p.temperature = 1e6; });
  for (double v : {-1e-9, kInf, kNan})
    expect_refused([v](SamplingParams& p) { p.temperature = v; }, "temperature");

  expect_accepted([](SamplingParams& p) { p.top_p = 1e-9; });
  for (double v : {0.0, 1.0000001, -0.5, kNan})
    expect_refused([v](SamplingParams& p) { p.top_p = v; }, "top_p");
  {
    SamplingParams p;
    p.top_p = 1.5;
    try {
      p.validate();
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "top_p must be in (0, 1], got 1.5");
    }
  }
  for (int64_t v : {-1, 0, 1, 1000000})
    expect_accepted([v](SamplingParams& p) { p.top_k = v; });
  expect_refused([](SamplingParams& p) { p.top_k = -2; }, "top_k");
  for (double v : {0.0, 1.0})
    expect_accepted([v](SamplingParams& p) { p.min_p = v; });
  for (double v : {-0.01, 1.01, kNan})
    expect_refused([v](SamplingParams& p) { p.min_p = v; }, "min_p");

  expect_accepted([](SamplingParams& p) { p.max_tokens = std::nullopt; });
  expect_accepted([](SamplingParams& p) { p.max_tokens = 1; });
  expect_refused([](SamplingParams& p) { p.max_tokens = 0; }, "max_tokens");
  expect_accepted([](SamplingParams& p) {
    p.max_tokens = 5;
    p.min_tokens = 5;
  });
  expect_accepted([](SamplingParams& p) {
    p.max_tokens = std::nullopt;
    p.min_tokens = 1000;
  });
  expect_refused([](SamplingParams& p) { p.min_tokens = -1; }, "min_tokens");
  expect_refused(
      [](SamplingParams& p) {
        p.max_tokens = 5;
        p.min_tokens = 6;
      },
      "min_tokens");

  for (int64_t v : {0, 20}) {
    expect_accepted([v](SamplingParams& p) { p.logprobs = v; });
    expect_accepted([v](SamplingParams& p) { p.prompt_logprobs = v; });
  }
  for (int64_t v : {-1, 21}) {
    expect_refused([v](SamplingParams& p) { p.logprobs = v; }, "logprobs");
    expect_refused([v](SamplingParams& p) { p.prompt_logprobs = v; }, "prompt_logprobs");
  }

  expect_accepted([](SamplingParams& p) { p.stop = std::vector<std::string>(64, "x"); });
  expect_refused([](SamplingParams& p) { p.stop = std::vector<std::string>(65, "x"); }, "stop");
  expect_accepted([](SamplingParams& p) { p.stop = {std::string(1024, 'a')}; });
  expect_refused([](SamplingParams& p) { p.stop = {std::string(1025, 'a')}; }, "stop");
  expect_refused([](SamplingParams& p) { p.stop = {"a", ""}; }, "stop");
  expect_refused(
      [](SamplingParams& p) {
        p.stop = {"a"};
        p.detokenize = false;
      },
      "stop");

  expect_accepted([](SamplingParams& p) { p.stop_token_ids = std::vector<int32_t>(1024, 7); }, 8);
  expect_refused([](SamplingParams& p) { p.stop_token_ids = std::vector<int32_t>(1025, 7); }, "stop_token_ids");
  expect_accepted([](SamplingParams& p) { p.stop_token_ids = {0, 7}; }, 8);
  expect_accepted([](SamplingParams& p) { p.stop_token_ids = {1 << 30}; }, 0);  // no vocab: not checked
  expect_refused([](SamplingParams& p) { p.stop_token_ids = {8}; }, "stop_token_ids", 8);
  expect_refused([](SamplingParams& p) { p.stop_token_ids = {-1}; }, "stop_token_ids");

  expect_accepted([](SamplingParams& p) { p.logit_bias = {{0, -100.0}, {7, 100.0}}; }, 8);
  expect_refused([](SamplingParams& p) { p.logit_bias = {{8, 1.0}}; }, "logit_bias", 8);
  expect_refused([](SamplingParams& p) { p.logit_bias = {{-1, 1.0}}; }, "logit_bias");
  for (double v : {-100.5, 100.5, kNan, kInf})
    expect_refused([v](SamplingParams& p) { p.logit_bias = {{1, v}}; }, "logit_bias");
  expect_accepted([](SamplingParams& p) {
    for (int32_t i = 0; i < 1024; ++i)
      p.logit_bias[i] = 1.0;
  });
  expect_refused(
      [](SamplingParams& p) {
        for (int32_t i = 0; i < 1025; ++i)
          p.logit_bias[i] = 1.0;
      },
      "logit_bias");
}

TEST(SamplingParamsFinishReason, Names) {
  EXPECT_STREQ(finish_reason_name(FinishReason::kNone), "");
  EXPECT_STREQ(finish_reason_name(FinishReason::kStop), "stop");
  EXPECT_STREQ(finish_reason_name(FinishReason::kLength), "length");
  EXPECT_STREQ(finish_reason_name(FinishReason::kAbort), "abort");
}

}  // namespace
}  // namespace pagoda::engine
