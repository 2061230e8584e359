#pragma once

#include "backend/backend_ops.h"

namespace pagoda::ops {

// Attention over the paged KV cache; see BackendOps for the full contract. Scores are
// scale * q.k, then the soft-cap (if any), then the ALiBi bias slope[h] * (key_pos - query_pos)
// (if any), then the causal and sliding-window masks; softmax in float32.

// Decode: query, out (num_seqs, num_heads, head_size) f32; one query per sequence, at position
// seq_lens[s] - 1. A sequence with seq_lens 0 gets zeros.
void paged_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                     int64_t num_kv_heads, const Tensor& block_tables, const Tensor& seq_lens, int64_t block_size,
                     int64_t max_seq_len, const AttentionParams& params = {});

// Prefill, chunked prefill and mixed batches: query, out (tokens, num_heads, head_size) f32, the
// new tokens of every sequence back to back (cu_query_lens (num_seqs + 1) i32 their offsets),
// attending causally to everything cached for the sequence (seq_lens (num_seqs) i32).
void prefill_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                       int64_t num_kv_heads, const Tensor& block_tables, const Tensor& cu_query_lens,
                       const Tensor& seq_lens, int64_t block_size, int64_t max_query_len,
                       const AttentionParams& params = {});

}  // namespace pagoda::ops
