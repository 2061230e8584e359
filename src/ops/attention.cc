#include "ops/attention.h"

#include <cmath>

#include "backend/backend.h"
#include "ops/check.h"

namespace pagoda::ops {

namespace {

// Shapes shared by both attention ops; returns nothing, fails on the first mismatch.
void check_common(const detail::OpCheck& c, const Tensor& out, const Tensor& query, const Tensor& key_cache,
                  const Tensor& value_cache, int64_t num_kv_heads, const Tensor& block_tables, int64_t num_seqs,
                  int64_t block_size, const AttentionParams& params) {
  c.output("out", out);
  c.input("query", query);
  c.dtype("query", query, DType::kF32);
  c.ndim("query", query, 3);
  c.dtype("out", out, DType::kF32);
  c.shape("out", out, query.shape());
  const int64_t num_heads = query.dim(1);
  const int64_t head_size = query.dim(2);
  if (head_size <= 0) c.fail("query has shape {}: head_size must be > 0", query.shape().str());
  if (num_kv_heads <= 0) c.fail("num_kv_heads is {}, expected > 0", num_kv_heads);
  if (num_heads % num_kv_heads != 0) {
    c.fail("query has {} heads, not a multiple of num_kv_heads {}", num_heads, num_kv_heads);
  }
  if (block_size <= 0) c.fail("block_size is {}, expected > 0", block_size);
  c.input("key_cache", key_cache);
  c.input("value_cache", value_cache);
  c.ndim("key_cache", key_cache, 4);
  c.shape("key_cache", key_cache, Shape{key_cache.dim(0), num_kv_heads, block_size, head_size});
  c.shape("value_cache", value_cache, key_cache.shape());
  c.dtype("value_cache", value_cache, key_cache.dtype());
  c.input("block_tables", block_tables);
  c.dtype("block_tables", block_tables, DType::kI32);
  c.ndim("block_tables", block_tables, 2);
  c.dim("block_tables", block_tables, 0, num_seqs);
  c.disjoint("out", out, "query", query);
  c.disjoint("out", out, "key_cache", key_cache);
  c.disjoint("out", out, "value_cache", value_cache);
  if (!std::isfinite(params.scale)) c.fail("scale is {}, expected a finite value", params.scale);
  if (params.sliding_window < 0) c.fail("sliding_window is {}, expected >= 0", params.sliding_window);
  if (!(params.logit_softcap >= 0.0f) || !std::isfinite(params.logit_softcap)) {
    c.fail("logit_softcap is {}, expected a finite value >= 0", params.logit_softcap);
  }
  if (params.alibi_slopes != nullptr) {
    c.input("alibi_slopes", *params.alibi_slopes);
    c.dtype("alibi_slopes", *params.alibi_slopes, DType::kF32);
    c.shape("alibi_slopes", *params.alibi_slopes, Shape{num_heads});
  }
}

}  // namespace

void paged_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                     int64_t num_kv_heads, const Tensor& block_tables, const Tensor& seq_lens, int64_t block_size,
                     int64_t max_seq_len, const AttentionParams& params) {
  const detail::OpCheck c("paged_attention", out.device());
  c.input("seq_lens", seq_lens);
  c.dtype("seq_lens", seq_lens, DType::kI32);
  c.ndim("seq_lens", seq_lens, 1);
  const int64_t num_seqs = seq_lens.dim(0);
  check_common(c, out, query, key_cache, value_cache, num_kv_heads, block_tables, num_seqs, block_size, params);
  c.dim("query", query, 0, num_seqs);
  if (max_seq_len < 0) c.fail("max_seq_len is {}, expected >= 0", max_seq_len);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kPagedAttention, "key_cache", key_cache.dtype());
  backend.ops().paged_attention(out, query, key_cache, value_cache, num_kv_heads, block_tables, seq_lens, block_size,
                                max_seq_len, params);
}

void prefill_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                       int64_t num_kv_heads, const Tensor& block_tables, const Tensor& cu_query_lens,
                       const Tensor& seq_lens, int64_t block_size, int64_t max_query_len,
                       const AttentionParams& params) {
  const detail::OpCheck c("prefill_attention", out.device());
  c.input("seq_lens", seq_lens);
  c.dtype("seq_lens", seq_lens, DType::kI32);
  c.ndim("seq_lens", seq_lens, 1);
  const int64_t num_seqs = seq_lens.dim(0);
  check_common(c, out, query, key_cache, value_cache, num_kv_heads, block_tables, num_seqs, block_size, params);
  c.input("cu_query_lens", cu_query_lens);
  c.dtype("cu_query_lens", cu_query_lens, DType::kI32);
  c.shape("cu_query_lens", cu_query_lens, Shape{num_seqs + 1});
  if (max_query_len < 0) c.fail("max_query_len is {}, expected >= 0", max_query_len);
  Backend& backend = backend_for(out.device());
  c.supported(backend, OpKind::kPrefillAttention, "key_cache", key_cache.dtype());
  backend.ops().prefill_attention(out, query, key_cache, value_cache, num_kv_heads, block_tables, cu_query_lens,
                                  seq_lens, block_size, max_query_len, params);
}

}  // namespace pagoda::ops
