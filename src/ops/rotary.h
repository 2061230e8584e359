#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// Rotates query (tokens, num_heads * head_size) or (tokens, num_heads, head_size) and key (the
// same with num_kv_heads; may be null) in place by the angles of positions (tokens) i32, read
// from cos_sin_cache (max_positions, rotary_dim) f32 ([cos | sin], rotary_dim even and at most
// head_size). See BackendOps::rotary_embedding. A position outside the cache is an error.
void rotary_embedding(const Tensor& positions, Tensor& query, Tensor* key, int64_t head_size,
                      const Tensor& cos_sin_cache, bool is_neox);

}  // namespace pagoda::ops
