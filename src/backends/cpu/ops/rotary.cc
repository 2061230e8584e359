// CPU rotary position embedding (NeoX and GPT-J pairings, partial rotary), token by token.

#include "backends/cpu/cpu_backend.h"
#include "core/error.h"

namespace pagoda::cpu {

namespace {

// Rotates the first rotary_dim dimensions of each of `heads` vectors of head_size at x.
void rotate_heads(float* x, int64_t heads, int64_t head_size, const float* cos, const float* sin, int64_t half,
                  bool is_neox) {
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_size;
    if (is_neox) {
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i];
        const float b = v[i + half];
        v[i] = a * cos[i] - b * sin[i];
        v[i + half] = b * cos[i] + a * sin[i];
      }
    } else {
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i];
        const float b = v[2 * i + 1];
        v[2 * i] = a * cos[i] - b * sin[i];
        v[2 * i + 1] = b * cos[i] + a * sin[i];
      }
    }
  }
}

}  // namespace

void CpuOps::rotary_embedding(const Tensor& positions, Tensor& query, Tensor* key, int64_t head_size,
                              const Tensor& cos_sin_cache, bool is_neox) {
  const int64_t tokens = query.dim(0);
  const int64_t max_positions = cos_sin_cache.dim(0);
  const int64_t rotary_dim = cos_sin_cache.dim(1);
  const int64_t half = rotary_dim / 2;
  const int32_t* pos = positions.data<int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    if (pos[t] < 0 || pos[t] >= max_positions) {
      fail(ErrorCode::kInvalidArgument,
           "rotary_embedding: positions[{}] = {} is outside the cos/sin cache of {} positions", t, pos[t],
           max_positions);
    }
  }
  const int64_t q_heads = query.numel() / std::max<int64_t>(1, tokens) / head_size;
  const int64_t k_heads = key != nullptr ? key->numel() / std::max<int64_t>(1, tokens) / head_size : 0;
  float* q = query.data<float>();
  float* k = key != nullptr ? key->data<float>() : nullptr;
  const float* cache = cos_sin_cache.data<float>();
  const int64_t per_token = (q_heads + k_heads) * head_size;
  pool_.parallel_for(tokens, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, per_token)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* cos = cache + static_cast<int64_t>(pos[t]) * rotary_dim;
      const float* sin = cos + half;
      rotate_heads(q + t * q_heads * head_size, q_heads, head_size, cos, sin, half, is_neox);
      if (k != nullptr) rotate_heads(k + t * k_heads * head_size, k_heads, head_size, cos, sin, half, is_neox);
    }
  });
}

}  // namespace pagoda::cpu
