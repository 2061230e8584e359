#pragma once

// AVX2 inner loops of the CPU attention (attention.cc): the scores of one query against a run of
// keys, their exponentials, and the weighted sum of the values. They replace per-key calls of
// vec::dot / std::exp / vec::axpy; every query goes through them the same way, decode or prefill,
// so a query's result still depends only on its own keys.

#include <cstdint>

namespace pagoda::cpu::attn {

// Whether the functions below may be called (AVX2 and FMA on this CPU).
[[nodiscard]] bool available();
// Whether the f16 overloads may be called too (F16C as well).
[[nodiscard]] bool available_f16();

// out[j] = scale * dot(q, keys + j * hs) for j < n.
void scores(const float* q, const float* keys, int64_t n, int64_t hs, float scale, float* out);
// The same over f16 keys, converted in registers (exactly, as the f16 dequantizer converts them),
// so the scores are bit for bit those of converting the keys first.
void scores(const float* q, const uint16_t* keys, int64_t n, int64_t hs, float scale, float* out);

// p[j] = exp(p[j] - max) for j < n; returns the sum of the p[j], added in order.
float exp_sum(float* p, int64_t n, float max);

// acc[d] += sum over j < n of p[j] * values[j * hs + d], the keys added in order for each d.
void accumulate(const float* p, const float* values, int64_t n, int64_t hs, float* acc);
// The same over f16 values, converted in registers.
void accumulate(const float* p, const uint16_t* values, int64_t n, int64_t hs, float* acc);

}  // namespace pagoda::cpu::attn
