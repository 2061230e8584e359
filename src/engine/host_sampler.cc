#include "engine/host_sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace pagoda::engine {

void validate(const SamplingOptions& o) {
  if (!std::isfinite(o.temperature) || o.temperature < 0.0) {
    fail(ErrorCode::kInvalidArgument, "temperature must be a finite number >= 0, got {}", o.temperature);
  }
  if (!(o.top_p > 0.0 && o.top_p <= 1.0)) fail(ErrorCode::kInvalidArgument, "top_p must be in (0, 1], got {}", o.top_p);
  if (o.top_k < -1) fail(ErrorCode::kInvalidArgument, "top_k must be -1, 0 (both: off) or positive, got {}", o.top_k);
}

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  bool found = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    if (!found || v > logits[static_cast<size_t>(best)]) {
      best = static_cast<int32_t>(i);
      found = true;
    }
  }
  return best;
}

HostSampler::HostSampler(const SamplingOptions& options, uint64_t seed) : options_(options), rng_(seed) {
  validate(options_);
}

int32_t HostSampler::sample(std::span<const float> logits) {
  if (logits.empty()) fail(ErrorCode::kInvalidArgument, "cannot sample from an empty row of logits");
  if (options_.temperature == 0.0) return argmax(logits);

  // Candidates in descending order of logit (ties: lower id first); NaNs are dropped.
  std::vector<int32_t> order;
  order.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!std::isnan(logits[i])) order.push_back(static_cast<int32_t>(i));
  }
  if (order.empty()) return 0;
  auto by_logit = [&](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)];
    const float lb = logits[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  };
  const auto k = static_cast<size_t>(options_.top_k > 0 ? options_.top_k : 0);
  if (k > 0 && k < order.size()) {
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), by_logit);
    order.resize(k);
  } else {
    std::sort(order.begin(), order.end(), by_logit);
  }

  // Softmax of logit / temperature over the candidates, in double.
  const double max_logit = static_cast<double>(logits[static_cast<size_t>(order[0])]) / options_.temperature;
  std::vector<double> probs(order.size());
  double total = 0.0;
  for (size_t i = 0; i < order.size(); ++i) {
    const double z = static_cast<double>(logits[static_cast<size_t>(order[i])]) / options_.temperature;
    probs[i] = std::isinf(max_logit) ? (z == max_logit ? 1.0 : 0.0) : std::exp(z - max_logit);
    total += probs[i];
  }
  for (double& p : probs)
    p /= total;

  // Top-p: the shortest prefix whose mass reaches p (always at least one token).
  size_t keep = probs.size();
  if (options_.top_p < 1.0) {
    double mass = 0.0;
    for (size_t i = 0; i < probs.size(); ++i) {
      mass += probs[i];
      if (mass >= options_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  const double kept = std::accumulate(probs.begin(), probs.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_) * kept;
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace pagoda::engine
