#include "engine/sampler.h"

#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <thread>

#include "core/error.h"

namespace pagoda::engine {
namespace {

// Below this temperature a row is greedy (vLLM's _SAMPLING_EPS).
constexpr double kGreedyTemperature = 1e-5;
constexpr double kInf = std::numeric_limits<double>::infinity();

using Scratch = detail::SamplerScratch;

}  // namespace

// One worker's buffers, reused across rows and calls.
struct detail::SamplerScratch {
  std::vector<double> x;  // processed logits
  std::vector<double> a;  // (x - top) / temperature
  std::vector<double> w;  // unnormalised probabilities
  std::vector<int32_t> candidates;
  std::vector<double> chunk_mass;  // the sums of the candidates' weights, kChunk at a time
};

namespace {

bool valid_id(int64_t id, size_t vocab) {
  return id >= 0 && static_cast<uint64_t>(id) < vocab;
}

// The largest value, lowest index on ties; NaNs never win; 0 when all are NaN.
int32_t argmax(std::span<const double> x) {
  int32_t best = 0;
  bool found = false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) continue;
    if (!found || x[i] > x[static_cast<size_t>(best)]) {
      best = static_cast<int32_t>(i);
      found = true;
    }
  }
  return best;
}

// Ids whose probability reaches top_p, with `candidates` (all non-NaN, weight > 0) reordered:
// the kept ones first, most likely first (ties: lower id). Returns how many are kept. Sorts only
// as far as needed: the top m candidates are selected and sorted, m growing until their mass
// reaches the target; the kept prefix is the same whatever m the search stops at.
size_t top_p_keep(std::vector<int32_t>& candidates, std::span<const double> x, std::span<const double> w,
                  double top_p) {
  auto more_likely = [&](int32_t a, int32_t b) {
    const double xa = x[static_cast<size_t>(a)];
    const double xb = x[static_cast<size_t>(b)];
    return xa > xb || (xa == xb && a < b);
  };
  double total = 0.0;
  for (int32_t id : candidates)
    total += w[static_cast<size_t>(id)];
  const double target = top_p * total;
  const size_t n = candidates.size();
  size_t m = std::min<size_t>(n, 256);
  while (true) {
    const auto mid = candidates.begin() + static_cast<std::ptrdiff_t>(m);
    if (m < n) std::nth_element(candidates.begin(), mid, candidates.end(), more_likely);
    std::sort(candidates.begin(), mid, more_likely);
    double mass = 0.0;
    for (size_t j = 0; j < m; ++j) {
      mass += w[static_cast<size_t>(candidates[j])];
      if (mass >= target) return j + 1;
    }
    if (m == n) return n;  // rounding kept the sum just below the target: keep everything
    m = std::min(n, m * 8);
  }
}

// The draw among n candidates, candidate j of weight weight(j) and id id(j): the first candidate
// j whose running sum M_j passes target = u * total, u uniform in [0, 1). The sums go kChunk
// candidates at a time: M_j is P_c + (w of chunk c's candidates up to j, added in order), P_c the
// sum in order of the chunks before c. That is one dependent chain of additions per chunk, eight
// chunks side by side, where one running sum over all the candidates would be a single chain as
// long as the vocabulary. M_j never decreases, and M of a chunk's last candidate is P of the next,
// so "the first j" is well defined, and total is M of the last candidate.
constexpr size_t kChunk = 64;

template <class Weight, class Id>
int32_t draw(size_t n, const Weight& weight, const Id& id, Generator& generator, std::vector<double>& chunk_mass) {
  const size_t chunks = (n + kChunk - 1) / kChunk;
  chunk_mass.assign(chunks, 0.0);
  size_t c = 0;
  for (; (c + 8) * kChunk <= n; c += 8) {
    double m[8] = {};
    for (size_t j = 0; j < kChunk; ++j) {
      for (size_t k = 0; k < 8; ++k)
        m[k] += weight((c + k) * kChunk + j);
    }
    std::copy_n(m, 8, chunk_mass.begin() + static_cast<std::ptrdiff_t>(c));
  }
  for (; c < chunks; ++c) {
    double m = 0.0;
    for (size_t j = c * kChunk; j < std::min(n, (c + 1) * kChunk); ++j)
      m += weight(j);
    chunk_mass[c] = m;
  }
  double total = 0.0;
  for (double m : chunk_mass)
    total += m;
  const double target = detail::uniform01(generator) * total;
  double before = 0.0;  // P_c
  for (c = 0; c < chunks; ++c) {
    const double after = before + chunk_mass[c];
    if (target < after) break;
    before = after;
  }
  if (c == chunks) return id(n - 1);  // rounding: the target reached the total
  double running = 0.0;
  for (size_t j = c * kChunk; j < std::min(n, (c + 1) * kChunk); ++j) {
    running += weight(j);
    if (target < before + running) return id(j);
  }
  return id(std::min(n, (c + 1) * kChunk) - 1);  // not reached: the chunk's last M_j is the P that passed
}

int32_t sample_row(std::span<const float> logits, const SampleRow& row, Scratch& s) {
  const SamplingParams& p = *row.params;
  const size_t vocab = logits.size();
  s.x.resize(vocab);
  detail::process_row(logits, row, s.x);
  const std::span<const double> x = s.x;
  if (p.temperature < kGreedyTemperature) return argmax(x);

  const double top = detail::max_non_nan(x);
  if (top == -kInf) return argmax(x);  // nothing has any probability (or every logit is NaN)

  // Weights relative to the largest (which gets exactly 1), and min_p on them. The exponentials
  // go through the vectorized exp_nonpositive; what it leaves (NaN, an infinite top, arguments
  // below -708) is settled one by one.
  s.a.resize(vocab);
  s.w.resize(vocab);
  s.candidates.resize(vocab);
  size_t kept = 0;
  // While every id so far is kept, the candidates are the ids themselves, 0 .. kept - 1, and are
  // not written (the common case: a row with no masked, NaN or negligible logit keeps them all);
  // the first id left out writes them, and the compressed list goes on from there.
  bool dense = true;
  const auto leave_dense = [&] {
    std::iota(s.candidates.begin(), s.candidates.begin() + static_cast<std::ptrdiff_t>(kept), 0);
    dense = false;
  };
  const auto settle = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      double& w = s.w[i];
      if (!(s.a[i] >= -708.0)) {  // rare: NaN, an infinite top, or far below it
        const double v = x[i];
        if (std::isnan(v)) {
          w = 0.0;
        } else if (top == kInf) {
          w = v == kInf ? 1.0 : 0.0;
        } else {
          w = std::exp(s.a[i]);
        }
      }
      const bool keep = w > 0.0 && !(w < p.min_p);
      if (dense) {
        if (keep) {
          ++kept;
          continue;
        }
        leave_dense();
      }
      // written always, counted when kept: no branch on the weight
      s.candidates[kept] = static_cast<int32_t>(i);
      kept += static_cast<size_t>(keep);
    }
  };
  // A block at a time, so that a block's arguments and weights are still in L1 when they are read
  // again: the arguments a, their exponentials, then which ids are kept.
  constexpr size_t kStretch = 1024;  // a multiple of eight
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const __m512d floor = _mm512_set1_pd(-708.0);
  const __m512d min_p = _mm512_set1_pd(p.min_p);
#endif
  for (size_t b0 = 0; b0 < vocab; b0 += kStretch) {
    const size_t b1 = std::min(vocab, b0 + kStretch);
    if (p.temperature == 1.0) {  // the same values without the division, which does not vectorize as well
      for (size_t i = b0; i < b1; ++i)
        s.a[i] = x[i] - top;
    } else {
      for (size_t i = b0; i < b1; ++i)
        s.a[i] = (x[i] - top) / p.temperature;
    }
    detail::exp_nonpositive(std::span<const double>(s.a).subspan(b0, b1 - b0),
                            std::span<double>(s.w).subspan(b0, b1 - b0));
    size_t i = b0;
#if defined(__AVX512F__) && defined(__AVX512VL__)
    // Eight at a time where none is rare: the kept ids compressed into place (the same ids as the
    // loop above writes and counts).
    __m256i ids =
        _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int32_t>(b0)));
    for (; i + 8 <= b1; i += 8, ids = _mm256_add_epi32(ids, _mm256_set1_epi32(8))) {
      if (_mm512_cmp_pd_mask(_mm512_loadu_pd(s.a.data() + i), floor, _CMP_GE_OQ) != 0xff) {
        settle(i, i + 8);
        continue;
      }
      const __m512d w = _mm512_loadu_pd(s.w.data() + i);
      const __mmask8 keep = static_cast<__mmask8>(_mm512_cmp_pd_mask(w, _mm512_setzero_pd(), _CMP_GT_OQ) &
                                                  _mm512_cmp_pd_mask(w, min_p, _CMP_NLT_UQ));
      if (dense) {
        if (keep == 0xff) {
          kept += 8;
          continue;
        }
        leave_dense();
      }
      _mm256_mask_compressstoreu_epi32(s.candidates.data() + kept, keep, ids);
      kept += static_cast<size_t>(std::popcount(static_cast<unsigned>(keep)));
    }
#endif
    settle(i, b1);
  }
  const std::span<const double> w = s.w;
  const bool truncated = (p.top_k > 0 && static_cast<uint64_t>(p.top_k) < kept) || p.top_p < 1.0;
  if (dense && !truncated) {  // every id a candidate, in order: no list to go through
    return draw(
        kept, [&](size_t j) { return w[j]; }, [](size_t j) { return static_cast<int32_t>(j); }, *row.generator,
        s.chunk_mass);
  }
  if (dense) leave_dense();
  s.candidates.resize(kept);
  std::vector<int32_t>& cand = s.candidates;

  if (p.top_k > 0 && static_cast<uint64_t>(p.top_k) < cand.size()) {
    const auto k = static_cast<std::ptrdiff_t>(p.top_k);
    std::nth_element(cand.begin(), cand.begin() + k - 1, cand.end(), [&](int32_t a, int32_t b) {
      const double xa = x[static_cast<size_t>(a)];
      const double xb = x[static_cast<size_t>(b)];
      return xa > xb || (xa == xb && a < b);
    });
    cand.resize(static_cast<size_t>(k));
    std::sort(cand.begin(), cand.end());  // a canonical order for the draw
  }
  if (p.top_p < 1.0) cand.resize(top_p_keep(cand, x, w, p.top_p));

  return draw(
      cand.size(), [&](size_t j) { return w[static_cast<size_t>(cand[j])]; }, [&](size_t j) { return cand[j]; },
      *row.generator, s.chunk_mass);
}

// Ranking order of row_logprobs: larger logit first, NaN last, ties by lower id.
bool ranks_before(float a, int32_t ia, float b, int32_t ib) {
  const bool an = std::isnan(a);
  const bool bn = std::isnan(b);
  if (an || bn) return an != bn ? bn : ia < ib;
  return a > b || (a == b && ia < ib);
}

}  // namespace

namespace detail {

double uniform01(Generator& generator) {
  static_assert(Generator::min() == 0 && Generator::max() == std::numeric_limits<uint64_t>::max());
  return static_cast<double>(generator() >> 11) * 0x1.0p-53;
}

double max_non_nan(std::span<const double> x) {
  // Eight independent running maxima (a comparison, so NaN never replaces one), merged at the
  // end: the loop vectorizes, and the maximum of a set does not depend on the order.
  double m[8];
  for (double& v : m)
    v = -kInf;
  const size_t n = x.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t j = 0; j < 8; ++j)
      m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  }
  for (; i < n; ++i)
    m[0] = x[i] > m[0] ? x[i] : m[0];
  double top = -kInf;
  for (double v : m)
    top = v > top ? v : top;
  return top;
}

void exp_nonpositive(std::span<const double> a, std::span<double> out) {
  if (out.size() != a.size())
    fail(ErrorCode::kInternal, "exp_nonpositive: {} outputs for {} inputs", out.size(), a.size());
  // exp(a) = 2^n exp(r) with n = round(a / ln 2) and r = a - n ln 2 (|r| <= ln 2 / 2; ln 2 in two
  // parts so that n ln 2 is exact), exp(r) by its Taylor series to r^13 / 13! (the next term is
  // below 2^-56), 2^n built in the exponent bits (n >= -1022 for a >= -708: a normal number).
  constexpr double kLog2e = 0x1.71547652b82fep0;
  constexpr double kLn2Hi = 0x1.62e42fee00000p-1;
  constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
  constexpr double kShift = 0x1.8p52;  // adding it rounds to an integer, kept in the low bits
  constexpr uint64_t kMinBits = std::bit_cast<uint64_t>(-708.0);
  const size_t n = a.size();
  const double* in = a.data();
  double* o = out.data();
  for (size_t i = 0; i < n; ++i) {
    // In range by the bits (integer comparisons, which unlike float ones may be evaluated for every
    // lane: that is what lets the loop vectorize): +0, or a sign bit with a magnitude up to 708.
    const uint64_t bits = std::bit_cast<uint64_t>(in[i]);
    const uint64_t keep = uint64_t{0} - static_cast<uint64_t>((bits == 0) | ((bits >> 63) & (bits <= kMinBits)));
    const double c = std::bit_cast<double>(bits & keep);
    const double t = c * kLog2e + kShift;
    const double k = t - kShift;
    const double r = (c - k * kLn2Hi) - k * kLn2Lo;
    // Horner's rule from 1/13! down (written out: a loop here would keep the compiler from
    // vectorizing the outer one).
    double poly = 1.0 / 6227020800.0;
    poly = poly * r + 1.0 / 479001600.0;
    poly = poly * r + 1.0 / 39916800.0;
    poly = poly * r + 1.0 / 3628800.0;
    poly = poly * r + 1.0 / 362880.0;
    poly = poly * r + 1.0 / 40320.0;
    poly = poly * r + 1.0 / 5040.0;
    poly = poly * r + 1.0 / 720.0;
    poly = poly * r + 1.0 / 120.0;
    poly = poly * r + 1.0 / 24.0;
    poly = poly * r + 1.0 / 6.0;
    poly = poly * r + 0.5;
    poly = poly * r + 1.0;
    poly = poly * r + 1.0;
    const int64_t e = std::bit_cast<int64_t>(t) - std::bit_cast<int64_t>(kShift);
    const double scale = std::bit_cast<double>((e + 1023) << 52);
    o[i] = std::bit_cast<double>(std::bit_cast<uint64_t>(poly * scale) & keep);
  }
}

void process_row(std::span<const float> logits, const SampleRow& row, std::span<double> out) {
  const SamplingParams& p = *row.params;
  const size_t vocab = logits.size();
  if (out.size() != vocab) fail(ErrorCode::kInternal, "process_row: output size {} != vocab {}", out.size(), vocab);
  for (size_t i = 0; i < vocab; ++i)
    out[i] = static_cast<double>(logits[i]);

  for (const auto& [id, bias] : p.logit_bias) {
    if (valid_id(id, vocab)) out[static_cast<size_t>(id)] += bias;
  }

  if (static_cast<int64_t>(row.output_ids.size()) < p.min_tokens) {
    if (!p.ignore_eos) {
      for (int32_t id : row.eos_ids) {
        if (valid_id(id, vocab)) out[static_cast<size_t>(id)] = -kInf;
      }
    }
    for (int32_t id : p.stop_token_ids) {
      if (valid_id(id, vocab)) out[static_cast<size_t>(id)] = -kInf;
    }
  }

  // Token sets and counts come from sorted copies of the id lists, so nothing here costs
  // O(vocab) per row beyond the copy above.
  thread_local std::vector<int32_t> ids;
  if (p.repetition_penalty != 1.0) {
    ids.assign(row.prompt_ids.begin(), row.prompt_ids.end());
    ids.insert(ids.end(), row.output_ids.begin(), row.output_ids.end());
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (int32_t id : ids) {
      if (!valid_id(id, vocab)) continue;
      double& v = out[static_cast<size_t>(id)];
      v = v > 0.0 ? v / p.repetition_penalty : v * p.repetition_penalty;
    }
  }
  if (p.frequency_penalty != 0.0 || p.presence_penalty != 0.0) {
    ids.assign(row.output_ids.begin(), row.output_ids.end());
    std::sort(ids.begin(), ids.end());
    for (size_t i = 0; i < ids.size();) {
      size_t j = i;
      while (j < ids.size() && ids[j] == ids[i])
        ++j;
      if (valid_id(ids[i], vocab)) {
        double& v = out[static_cast<size_t>(ids[i])];
        v -= p.frequency_penalty * static_cast<double>(j - i);
        v -= p.presence_penalty;
      }
      i = j;
    }
  }
}

}  // namespace detail

Sampler::Sampler(int num_threads, ParallelFor parallel)
    : num_threads_(std::max(1, num_threads)), parallel_(std::move(parallel)) {
  for (int t = 0; t < num_threads_; ++t)
    scratch_.push_back(std::make_unique<Scratch>());
}
Sampler::~Sampler() = default;
Sampler::Sampler(Sampler&&) noexcept = default;
Sampler& Sampler::operator=(Sampler&&) noexcept = default;

std::vector<SampleResult> Sampler::sample(const Tensor& logits, std::span<const SampleRow> rows) {
  if (!logits.defined() || logits.dtype() != DType::kF32 || logits.ndim() != 2) {
    fail(ErrorCode::kInvalidArgument, "sampler: logits must be a 2-d f32 tensor, got {}",
         logits.defined() ? logits.str() : std::string("an undefined tensor"));
  }
  if (logits.device().kind != DeviceKind::kCpu)
    fail(ErrorCode::kInvalidArgument, "sampler: logits {} are not on the host", logits.str());
  const int64_t num_rows = logits.dim(0);
  const int64_t vocab = logits.dim(1);
  if (num_rows != static_cast<int64_t>(rows.size())) {
    fail(ErrorCode::kInvalidArgument, "sampler: {} rows of logits for {} sequences", num_rows, rows.size());
  }
  if (vocab < 1 || vocab > std::numeric_limits<int32_t>::max()) {
    fail(ErrorCode::kInvalidArgument, "sampler: vocabulary size {} is out of range", vocab);
  }
  if (vocab > 1 && logits.strides()[1] != 1) {
    fail(ErrorCode::kInvalidArgument, "sampler: logits {} must be contiguous along the vocabulary", logits.str());
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].params == nullptr) fail(ErrorCode::kInvalidArgument, "sampler: row {} has no sampling params", r);
    if (rows[r].generator == nullptr && rows[r].params->temperature >= kGreedyTemperature) {
      fail(ErrorCode::kInvalidArgument, "sampler: row {} samples at random but has no generator", r);
    }
  }
  std::vector<SampleResult> results(rows.size());
  if (rows.empty()) return results;
  const float* base = logits.data<float>();
  const int64_t row_stride = logits.strides()[0];

  auto run = [&](size_t begin, size_t end, Scratch& scratch) {
    for (size_t r = begin; r < end; ++r) {
      const std::span<const float> row(base + static_cast<int64_t>(r) * row_stride, static_cast<size_t>(vocab));
      SampleResult& out = results[r];
      out.token_id = sample_row(row, rows[r], scratch);
      if (rows[r].params->logprobs) out.logprobs = row_logprobs(row, out.token_id, *rows[r].params->logprobs);
    }
  };

  const bool parallel = num_threads_ > 1 && rows.size() > 1 && num_rows * vocab >= kParallelSampleLogits;
  if (!parallel) {
    run(0, rows.size(), *scratch_[0]);
    return results;
  }
  const size_t workers = std::min(static_cast<size_t>(num_threads_), rows.size());
  if (parallel_) {  // part t takes rows [t R / W, (t + 1) R / W) with scratch t
    parallel_(static_cast<int64_t>(workers), [&](int64_t begin, int64_t end) {
      for (auto t = static_cast<size_t>(begin); t < static_cast<size_t>(end); ++t)
        run(rows.size() * t / workers, rows.size() * (t + 1) / workers, *scratch_[t]);
    });
    return results;
  }
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t t = 0; t < workers; ++t) {
    const size_t begin = rows.size() * t / workers;
    const size_t end = rows.size() * (t + 1) / workers;
    threads.emplace_back([&, t, begin, end] {
      try {
        run(begin, end, *scratch_[t]);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  return results;
}

PositionLogprobs row_logprobs(std::span<const float> logits, int32_t token_id, int64_t top) {
  const size_t vocab = logits.size();
  if (vocab == 0 || vocab > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    fail(ErrorCode::kInvalidArgument, "logprobs of a row of {} logits", vocab);
  }
  if (!valid_id(token_id, vocab)) {
    fail(ErrorCode::kInvalidArgument, "logprobs: token id {} is outside the vocabulary of {}", token_id, vocab);
  }

  // log-softmax in double: logprob(v) = v - log(sum exp(v_i)), NaN counted as -inf.
  double top_logit = -kInf;
  size_t num_inf = 0;
  for (float v : logits) {
    if (std::isnan(v)) continue;
    top_logit = std::max(top_logit, static_cast<double>(v));
    num_inf += v == std::numeric_limits<float>::infinity() ? 1 : 0;
  }
  double log_total = kInf;  // only used for a finite top_logit
  if (std::isfinite(top_logit)) {
    double sum = 0.0;
    for (float v : logits) {
      if (!std::isnan(v)) sum += std::exp(static_cast<double>(v) - top_logit);
    }
    log_total = top_logit + std::log(sum);
  }
  auto logprob_of = [&](float v) -> float {
    if (std::isnan(v)) return -std::numeric_limits<float>::infinity();
    if (top_logit == kInf) {
      return v == std::numeric_limits<float>::infinity() ? static_cast<float>(-std::log(static_cast<double>(num_inf)))
                                                         : -std::numeric_limits<float>::infinity();
    }
    if (top_logit == -kInf) return -std::numeric_limits<float>::infinity();
    return static_cast<float>(static_cast<double>(v) - log_total);
  };

  PositionLogprobs result;
  const float chosen = logits[static_cast<size_t>(token_id)];
  int64_t ahead = 0;
  for (size_t i = 0; i < vocab; ++i)
    ahead += ranks_before(logits[i], static_cast<int32_t>(i), chosen, token_id) ? 1 : 0;
  result.chosen = {token_id, logprob_of(chosen), ahead + 1};

  const size_t n = top > 0 ? static_cast<size_t>(std::min<int64_t>(top, static_cast<int64_t>(vocab))) : 0;
  if (n == 0) return result;
  auto before = [&](int32_t a, int32_t b) {
    return ranks_before(logits[static_cast<size_t>(a)], a, logits[static_cast<size_t>(b)], b);
  };
  std::vector<int32_t> best;
  if (n > 64) {
    best.resize(vocab);
    for (size_t i = 0; i < vocab; ++i)
      best[i] = static_cast<int32_t>(i);
    std::partial_sort(best.begin(), best.begin() + static_cast<std::ptrdiff_t>(n), best.end(), before);
    best.resize(n);
  } else {
    // The n best, kept sorted; an id goes in only if it beats the current last.
    best.reserve(n + 1);
    for (size_t i = 0; i < vocab; ++i) {
      const auto id = static_cast<int32_t>(i);
      if (best.size() == n && !before(id, best.back())) continue;
      best.insert(std::upper_bound(best.begin(), best.end(), id, before), id);
      if (best.size() > n) best.pop_back();
    }
  }
  result.top.reserve(n);
  for (size_t r = 0; r < best.size(); ++r) {
    const int32_t id = best[r];
    result.top.push_back({id, logprob_of(logits[static_cast<size_t>(id)]), static_cast<int64_t>(r) + 1});
  }
  return result;
}

}  // namespace pagoda::engine
