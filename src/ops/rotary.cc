#include "ops/rotary.h"

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

namespace {

// query or key: (tokens, heads * head_size) or (tokens, heads, head_size) f32.
void check_heads(const detail::OpCheck& c, const char* name, const Tensor& t, int64_t tokens, int64_t head_size) {
  c.output(name, t);
  c.dtype(name, t, DType::kF32);
  if (t.ndim() != 2 && t.ndim() != 3) {
    c.fail("{} has shape {}, expected (tokens, heads * head_size) or (tokens, heads, head_size)", name,
           t.shape().str());
  }
  c.dim(name, t, 0, tokens);
  if (t.ndim() == 3) c.dim(name, t, 2, head_size);
  if (t.ndim() == 2 && t.dim(1) % head_size != 0) {
    c.fail("{} has shape {}, not a whole number of heads of size {}", name, t.shape().str(), head_size);
  }
}

}  // namespace

void rotary_embedding(const Tensor& positions, Tensor& query, Tensor* key, int64_t head_size,
                      const Tensor& cos_sin_cache, bool is_neox) {
  const detail::OpCheck c("rotary_embedding", query.device());
  if (head_size <= 0) c.fail("head_size is {}, expected > 0", head_size);
  c.input("query", query);
  c.min_ndim("query", query, 1);
  const int64_t tokens = query.dim(0);
  check_heads(c, "query", query, tokens, head_size);
  if (key != nullptr) {
    check_heads(c, "key", *key, tokens, head_size);
    c.disjoint("query", query, "key", *key);
  }
  c.input("positions", positions);
  c.dtype("positions", positions, DType::kI32);
  c.shape("positions", positions, Shape{tokens});
  c.input("cos_sin_cache", cos_sin_cache);
  c.dtype("cos_sin_cache", cos_sin_cache, DType::kF32);
  c.ndim("cos_sin_cache", cos_sin_cache, 2);
  const int64_t rotary_dim = cos_sin_cache.dim(1);
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > head_size) {
    c.fail("cos_sin_cache has shape {}: rotary_dim {} must be even, > 0 and at most head_size {}",
           cos_sin_cache.shape().str(), rotary_dim, head_size);
  }
  c.disjoint("query", query, "cos_sin_cache", cos_sin_cache);
  if (key != nullptr) c.disjoint("key", *key, "cos_sin_cache", cos_sin_cache);
  Backend& backend = backend_for(query.device());
  c.supported(backend, OpKind::kRotaryEmbedding, "query", query.dtype());
  backend.ops().rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox);
}

}  // namespace pagoda::ops
