#include "model/layers/rope.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numbers>

#include "backend/backend.h"
#include "core/checked.h"
#include "core/error.h"

namespace pagoda::model {
namespace {

constexpr uint64_t kMaxTableBytes = uint64_t{2} << 30;

// transformers builds base ** (arange(0, dim, 2) / dim) in float32 with a float32 base.
float power_f32(double base, int64_t i, int64_t dim) {
  const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
  return static_cast<float>(std::pow(static_cast<double>(static_cast<float>(base)), static_cast<double>(exponent)));
}

std::vector<float> default_inv_freq(double base, int64_t dim) {
  std::vector<float> inv(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i)
    inv[static_cast<size_t>(i)] = 1.0f / power_f32(base, i, dim);
  return inv;
}

// Dynamic NTK (transformers' _compute_dynamic_ntk_parameters): the base grows with the length
// once it passes max_position_embeddings.
std::vector<float> dynamic_inv_freq(const RopeConfig& r, int64_t max_pos, int64_t seq_len) {
  const auto dim = static_cast<double>(r.rotary_dim);
  const double len = static_cast<double>(std::max(seq_len, max_pos));
  const double stretch = r.factor * len / static_cast<double>(max_pos) - (r.factor - 1.0);
  const double base = r.theta * std::pow(stretch, dim / (dim - 2.0));
  return default_inv_freq(base, r.rotary_dim);
}

// Llama 3.1 (transformers' _compute_llama3_parameters): long wavelengths divided by the factor,
// short ones kept, a smooth blend between.
void apply_llama3(const RopeConfig& r, std::vector<float>& inv) {
  const auto old_len = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / r.low_freq_factor;
  const double high_freq_wavelen = old_len / r.high_freq_factor;
  for (float& f : inv) {
    const double freq = f;
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double out = freq;
    if (wavelen > low_freq_wavelen) {
      out = freq / r.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      out = (1.0 - smooth) * freq / r.factor + smooth * freq;
    }
    f = static_cast<float>(out);
  }
}

// YaRN (transformers' _compute_yarn_parameters): interpolate the low frequencies, extrapolate the
// high ones, with a linear ramp between the correction dimensions.
std::vector<float> yarn_inv_freq(const RopeConfig& r) {
  const int64_t dim = r.rotary_dim;
  const double base = r.theta;
  const auto orig = static_cast<double>(r.original_max_position_embeddings);
  auto correction_dim = [&](double rotations) {
    return static_cast<double>(dim) * std::log(orig / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
  };
  double low = correction_dim(r.beta_fast);
  double high = correction_dim(r.beta_slow);
  if (r.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // as transformers, against a zero-width ramp
  std::vector<float> inv(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double pos_freq = power_f32(base, i, dim);
    const double extrapolation = 1.0 / pos_freq;
    const double interpolation = 1.0 / (r.factor * pos_freq);
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation_factor = 1.0 - ramp;
    inv[static_cast<size_t>(i)] =
        static_cast<float>(interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor);
  }
  return inv;
}

std::vector<float> longrope_inv_freq(const RopeConfig& r, int64_t seq_len) {
  const std::vector<double>& ext = seq_len > r.original_max_position_embeddings ? r.long_factor : r.short_factor;
  std::vector<float> inv(static_cast<size_t>(r.rotary_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    const float scaled = static_cast<float>(ext[i]) * power_f32(r.theta, static_cast<int64_t>(i), r.rotary_dim);
    inv[i] = 1.0f / scaled;
  }
  return inv;
}

template <typename T>
Tensor host_tensor(std::span<const T> data, const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  if (!data.empty()) std::memcpy(t.raw_data(), data.data(), data.size_bytes());
  return t;
}

}  // namespace

std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t max_position_embeddings, int64_t seq_len) {
  std::vector<float> inv;
  switch (rope.type) {
    case RopeType::kDefault: inv = default_inv_freq(rope.theta, rope.rotary_dim); break;
    case RopeType::kLinear:
      inv = default_inv_freq(rope.theta, rope.rotary_dim);
      for (float& f : inv)
        f /= static_cast<float>(rope.factor);
      break;
    case RopeType::kDynamic: inv = dynamic_inv_freq(rope, max_position_embeddings, seq_len); break;
    case RopeType::kLlama3:
      inv = default_inv_freq(rope.theta, rope.rotary_dim);
      apply_llama3(rope, inv);
      break;
    case RopeType::kYarn: inv = yarn_inv_freq(rope); break;
    case RopeType::kLongRope: inv = longrope_inv_freq(rope, seq_len); break;
  }
  // GGUF's rope_freqs: llama.cpp divides each frequency by its factor.
  if (!rope.freq_factors.empty()) {
    for (size_t i = 0; i < inv.size(); ++i)
      inv[i] = static_cast<float>(static_cast<double>(inv[i]) / rope.freq_factors[i]);
  }
  return inv;
}

void fill_cos_sin(std::span<float> out, std::span<const float> inv_freq, float attention_factor, int64_t first_position,
                  int64_t count) {
  const size_t half = inv_freq.size();
  if (out.size() != static_cast<size_t>(count) * 2 * half) {
    fail(ErrorCode::kInternal, "fill_cos_sin: {} floats for {} rows of {}", out.size(), count, 2 * half);
  }
  for (int64_t r = 0; r < count; ++r) {
    const auto pos = static_cast<float>(first_position + r);
    float* row = out.data() + static_cast<size_t>(r) * 2 * half;
    for (size_t i = 0; i < half; ++i) {
      const float angle = inv_freq[i] * pos;
      row[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_factor;
      row[half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_factor;
    }
  }
}

RotaryTable::RotaryTable(const RopeConfig& rope, int64_t max_position_embeddings, int64_t max_positions, Device device)
    : rope_(rope), max_position_embeddings_(max_position_embeddings), max_positions_(max_positions), device_(device) {
  if (max_positions < 1) fail(ErrorCode::kInvalidArgument, "rotary table: {} positions", max_positions);
  const int64_t dim = rope_.rotary_dim;
  const auto attention_factor = static_cast<float>(rope_.attention_factor);
  const bool longrope = rope_.type == RopeType::kLongRope;
  const int64_t rows = longrope ? 2 * max_positions : max_positions;
  // Both factors come from the model file: refuse a table no real model needs before allocating.
  const auto bytes = checked_product(std::array<int64_t, 3>{rows, dim, int64_t{sizeof(float)}});
  if (!bytes || *bytes > kMaxTableBytes) {
    fail(ErrorCode::kOutOfMemory,
         "a rotary table for {} positions of {} dimensions is over the {} MiB limit; ask for a shorter maximum "
         "sequence length",
         max_positions, dim, kMaxTableBytes >> 20);
  }
  host_table_.assign(static_cast<size_t>(rows * dim), 0.0f);
  const auto row_span = [&](int64_t first, int64_t count) {
    return std::span<float>(host_table_).subspan(static_cast<size_t>(first * dim), static_cast<size_t>(count * dim));
  };
  if (longrope) {
    const int64_t orig = rope_.original_max_position_embeddings;
    fill_cos_sin(row_span(0, max_positions), rope_inv_freq(rope_, max_position_embeddings, orig), attention_factor, 0,
                 max_positions);
    fill_cos_sin(row_span(max_positions, max_positions), rope_inv_freq(rope_, max_position_embeddings, orig + 1),
                 attention_factor, 0, max_positions);
  } else {
    fill_cos_sin(row_span(0, max_positions), rope_inv_freq(rope_, max_position_embeddings, max_position_embeddings),
                 attention_factor, 0, max_positions);
  }
  fixed_staging_ = host_tensor<float>(host_table_, Shape{rows, dim}, DType::kF32);
  table_ = to_device(fixed_staging_, device_);
  step_table_ = &table_;
}

void RotaryTable::prepare(std::span<const int32_t> positions, std::span<const int32_t> seq_lens,
                          std::span<const int32_t> cu_query_lens, const Tensor& device_positions) {
  step_table_ = &table_;
  step_positions_ = device_positions;
  const size_t num_seqs = seq_lens.size();
  if (cu_query_lens.size() != num_seqs + 1) fail(ErrorCode::kInternal, "rotary table: batch shape mismatch");
  const auto tokens_of = [&](size_t s) {
    return std::pair<size_t, size_t>(static_cast<size_t>(cu_query_lens[s]), static_cast<size_t>(cu_query_lens[s + 1]));
  };

  if (rope_.type == RopeType::kLongRope) {
    const int64_t orig = rope_.original_max_position_embeddings;
    if (std::none_of(seq_lens.begin(), seq_lens.end(), [&](int32_t n) { return n > orig; })) return;
    std::vector<int32_t> rows(positions.begin(), positions.end());
    for (size_t s = 0; s < num_seqs; ++s) {
      if (seq_lens[s] <= orig) continue;
      auto [begin, end] = tokens_of(s);
      for (size_t t = begin; t < end; ++t)
        rows[t] += static_cast<int32_t>(max_positions_);
    }
    staged_positions_ = host_tensor<int32_t>(rows, Shape{static_cast<int64_t>(rows.size())}, DType::kI32);
    step_positions_ = to_device(staged_positions_, device_);
    return;
  }

  if (rope_.type == RopeType::kDynamic) {
    const int64_t max_pos = max_position_embeddings_;
    if (std::none_of(seq_lens.begin(), seq_lens.end(), [&](int32_t n) { return n > max_pos; })) return;
    const int64_t dim = rope_.rotary_dim;
    const auto n = static_cast<int64_t>(positions.size());
    std::vector<float> table(static_cast<size_t>(n * dim));
    const auto attention_factor = static_cast<float>(rope_.attention_factor);
    for (size_t s = 0; s < num_seqs; ++s) {
      auto [begin, end] = tokens_of(s);
      const bool stretched = seq_lens[s] > max_pos;
      std::vector<float> inv;
      if (stretched) inv = rope_inv_freq(rope_, max_pos, seq_lens[s]);
      for (size_t t = begin; t < end; ++t) {
        std::span<float> row(table.data() + t * static_cast<size_t>(dim), static_cast<size_t>(dim));
        if (stretched) {
          fill_cos_sin(row, inv, attention_factor, positions[t], 1);
        } else {
          std::memcpy(row.data(), host_table_.data() + static_cast<size_t>(positions[t]) * static_cast<size_t>(dim),
                      row.size_bytes());
        }
      }
    }
    std::vector<int32_t> rows(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t)
      rows[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    staged_table_ = host_tensor<float>(table, Shape{n, dim}, DType::kF32);
    staged_positions_ = host_tensor<int32_t>(rows, Shape{n}, DType::kI32);
    step_table_storage_ = to_device(staged_table_, device_);
    step_positions_ = to_device(staged_positions_, device_);
    step_table_ = &step_table_storage_;
  }
}

}  // namespace pagoda::model
