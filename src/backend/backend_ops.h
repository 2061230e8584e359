#pragma once

// The op contract, backend side: one virtual function per op, with the signatures of src/ops/.
// The functions in src/ops/ check shapes, dtypes and devices and then call these, so an
// implementation may assume its arguments are valid and live on its own device.
//
// Shapes are written outermost first. "tokens" is the flat batch: the new tokens of every
// sequence of the step, concatenated. Activations are contiguous; weights may be any dtype a
// backend supports, including GGUF block types. Index tensors are i32 unless noted.
//
// Paged KV cache (docs/design/kv-cache.md): per layer, key_cache and value_cache each
//   (num_blocks, num_kv_heads, block_size, head_size)
// in the cache dtype (f32, f16 or bf16). slot = block * block_size + offset.

#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace pagoda {

enum class OpKind : uint8_t {
  kEmbedding,
  kRmsNorm,
  kFusedAddRmsNorm,
  kLayerNorm,
  kRotaryEmbedding,
  kSiluAndMul,
  kGeluAndMul,
  kGeluTanhAndMul,
  kGelu,
  kMatmul,
  kAdd,
  kScale,
  kSoftcap,
  kReshapeAndCache,
  kCopyBlocks,
  kSwapBlocks,
  kPagedAttention,
  kPrefillAttention,
  kArgmax,
  kTopkSoftmax,
  kMoeExperts,
  kGatherRows,
  kCount,
};

[[nodiscard]] const char* op_name(OpKind op);

// Options shared by the attention ops.
struct AttentionParams {
  float scale = 1.0f;                    // multiplier on q.k (1/sqrt(head_size) unless the model says otherwise)
  int64_t sliding_window = 0;            // > 0: a query at position p attends to keys p - window + 1 .. p
  float logit_softcap = 0.0f;            // > 0: scores = cap * tanh(scores / cap) before softmax
  const Tensor* alibi_slopes = nullptr;  // (num_heads) f32, optional
};

enum class ActivationKind : uint8_t { kSilu, kGelu, kGeluTanh };

// One product of a matmul_shared: out = x @ weight^T (+ bias).
struct MatmulPart {
  Tensor* out = nullptr;
  const Tensor* weight = nullptr;
  const Tensor* bias = nullptr;  // optional
};

class BackendOps {
 public:
  virtual ~BackendOps() = default;

  // out (tokens, hidden) f32 = table[ids] dequantized; ids (tokens) i32; table (vocab, hidden).
  virtual void embedding(Tensor& out, const Tensor& ids, const Tensor& table) = 0;

  // out = x / sqrt(mean(x^2) + eps) * (weight + weight_offset); x, out (tokens, hidden); weight
  // (hidden) f32. weight_offset is 1 for the Gemma family's (1 + w) norms.
  virtual void rms_norm(Tensor& out, const Tensor& x, const Tensor& weight, float eps, float weight_offset) = 0;
  // residual += x; x = rms_norm(residual). Both (tokens, hidden), updated in place.
  virtual void fused_add_rms_norm(Tensor& x, Tensor& residual, const Tensor& weight, float eps,
                                  float weight_offset) = 0;
  // out = (x - mean) / sqrt(var + eps) * weight + bias; bias may be null.
  virtual void layer_norm(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias, float eps) = 0;

  // In place on query (tokens, num_heads * head_size) and key (tokens, num_kv_heads * head_size;
  // may be null). positions (tokens) i32. cos_sin_cache (max_positions, rotary_dim) f32: the
  // first rotary_dim/2 columns are cos, the rest sin. Only the first rotary_dim dimensions of
  // each head rotate (partial rotary). is_neox: rotate halves (x[i], x[i + d/2]); else GPT-J
  // style interleaved pairs (x[2i], x[2i+1]).
  virtual void rotary_embedding(const Tensor& positions, Tensor& query, Tensor* key, int64_t head_size,
                                const Tensor& cos_sin_cache, bool is_neox) = 0;

  // x (tokens, 2 * d) = [gate | up]; out (tokens, d) = act(gate) * up.
  virtual void act_and_mul(Tensor& out, const Tensor& x, ActivationKind act) = 0;
  // out = act(x), same shape (gpt_neox's non-gated MLP).
  virtual void activation(Tensor& out, const Tensor& x, ActivationKind act) = 0;

  // out (tokens, n) f32 = x (tokens, k) f32 @ weight^T, weight (n, k) of any supported dtype
  // (f32, f16, bf16, GGUF block types: dequantized in registers, never as a whole copy), plus
  // bias (n) f32 when given.
  virtual void matmul(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) = 0;
  // matmul of one x by several weights (attention's q, k and v; an MLP's gate and up), each part
  // bit for bit what its own matmul gives. A backend may do the work on x once (the CPU's integer
  // path quantizes it once) and run the parts as one job.
  virtual void matmul_shared(const Tensor& x, std::span<const MatmulPart> parts) {
    for (const MatmulPart& p : parts)
      matmul(*p.out, x, *p.weight, p.bias);
  }
  // Whether matmul_shared also writes outputs whose rows are strided: 2-d column ranges of a
  // wider row-major tensor (an MLP's gate and up as the two halves of one (tokens, 2 * inter)
  // buffer, which then needs no interleaving). Where false, outputs must be contiguous.
  [[nodiscard]] virtual bool matmul_shared_writes_strided_rows() const { return false; }

  // out = a + b (same shapes); out may alias a or b.
  virtual void add(Tensor& out, const Tensor& a, const Tensor& b) = 0;
  // x *= s, in place.
  virtual void scale(Tensor& x, float s) = 0;
  // x = cap * tanh(x / cap), in place.
  virtual void softcap(Tensor& x, float cap) = 0;

  // Writes key/value (tokens, num_kv_heads, head_size) f32 into their cache slots; slot_mapping
  // (tokens) i64, a negative slot skips the token (padding).
  virtual void reshape_and_cache(const Tensor& key, const Tensor& value, Tensor& key_cache, Tensor& value_cache,
                                 const Tensor& slot_mapping) = 0;
  // For each (src, dst) row of block_mapping (pairs, 2) i64, copies block src to block dst in
  // every layer's caches (copy-on-write).
  virtual void copy_blocks(std::span<Tensor> key_caches, std::span<Tensor> value_caches,
                           const Tensor& block_mapping) = 0;
  // Copies blocks between two caches of the same shape, on this device and the host (either way).
  virtual void swap_blocks(const Tensor& src, Tensor& dst, const Tensor& block_mapping) = 0;

  // Decode attention: one query token per sequence.
  // out, query (num_seqs, num_heads, head_size) f32; block_tables (num_seqs, max_blocks_per_seq)
  // i32; seq_lens (num_seqs) i32 = tokens in the cache for that sequence (including this one).
  // GQA/MQA: head h reads kv head h / (num_heads / num_kv_heads). max_seq_len bounds seq_lens;
  // backends may use it to split long contexts (v2, split-K).
  virtual void paged_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                               int64_t num_kv_heads, const Tensor& block_tables, const Tensor& seq_lens,
                               int64_t block_size, int64_t max_seq_len, const AttentionParams& params) = 0;

  // Prefill / mixed attention over a flat varlen batch: query (tokens, num_heads, head_size) f32
  // holds the new tokens of every sequence; cu_query_lens (num_seqs + 1) i32 their offsets;
  // seq_lens (num_seqs) i32 the total context of each sequence after this step (earlier tokens
  // already cached, e.g. by prefix caching or an earlier chunk, plus the new ones, which
  // reshape_and_cache has written). Query i of sequence s sits at position
  // seq_lens[s] - query_len(s) + i and attends causally. Flash-style: no full score matrix.
  virtual void prefill_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                                 int64_t num_kv_heads, const Tensor& block_tables, const Tensor& cu_query_lens,
                                 const Tensor& seq_lens, int64_t block_size, int64_t max_query_len,
                                 const AttentionParams& params) = 0;

  // out (rows) i32 = index of the largest of each row of logits (rows, vocab) f32; ties go to
  // the lowest index.
  virtual void argmax(Tensor& out, const Tensor& logits) = 0;

  // MoE routing: gating (tokens, num_experts) f32 → softmax → top k: weights (tokens, k) f32,
  // ids (tokens, k) i32, in descending weight order; renormalize: weights sum to 1 per token.
  virtual void topk_softmax(Tensor& topk_weights, Tensor& topk_ids, const Tensor& gating, bool renormalize) = 0;
  // out (tokens, hidden) f32 = sum_j topk_weights[t, j] * expert_{ids[t, j]}(x[t]) where
  // expert_e(x) = down_e(act(gate_e(x)) * up_e(x)); w_gate_up (E, 2 * I, hidden) holds gate rows
  // then up rows, w_down (E, hidden, I); any weight dtype matmul supports.
  virtual void moe_experts(Tensor& out, const Tensor& x, const Tensor& w_gate_up, const Tensor& w_down,
                           const Tensor& topk_weights, const Tensor& topk_ids, ActivationKind act) = 0;

  // out (n, cols) = x[indices] for indices (n) i32 (rows of x (rows, cols)).
  virtual void gather_rows(Tensor& out, const Tensor& x, const Tensor& indices) = 0;
};

}  // namespace pagoda
