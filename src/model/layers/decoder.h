#pragma once

// The decoder-only transformer every supported family is an instance of. Families differ in
// their weights' names (model/arch/<family>.cc maps them) and in a few switches:
//   pre-norm (llama, mistral, qwen2, qwen3, phi3, mixtral, qwen3_moe, gemma):
//     h += attn(norm(h)); h += ffn(norm(h))
//   sandwich norms (gemma2, gemma3):
//     h += post_attn_norm(attn(norm(h))); h += post_ffn_norm(ffn(pre_ffn_norm(h)))
//   layer norm, parallel or sequential residual (gpt_neox):
//     h += attn(ln1(h)) + mlp(ln2(h))   or   h += attn(ln1(h)); h += mlp(ln2(h))
// with the feed-forward block of each layer a gated MLP, a plain MLP or a mixture of experts.

#include <cstdint>
#include <memory>
#include <vector>

#include "model/layers/blocks.h"
#include "model/layers/rope.h"
#include "model/layers/weights.h"
#include "model/model.h"

namespace pagoda::model {

enum class FeedForward : uint8_t { kMlp, kMoe };

struct DecoderLayer {
  Norm attn_norm;
  AttentionWeights attn;
  AttentionSpec spec;  // spec.rope is set by the model
  bool local_rope = false;
  Norm post_attn_norm;  // sandwich only
  Norm ffn_norm;
  Norm post_ffn_norm;  // sandwich only
  FeedForward ffn = FeedForward::kMlp;
  MlpWeights mlp;
  MoeWeights moe;
};

struct DecoderWeights {
  Tensor embedding;  // (vocab, hidden)
  std::vector<DecoderLayer> layers;
  Norm final_norm;
  Tensor lm_head;  // (vocab, hidden); the embedding itself when tied
};

struct DecoderOptions {
  bool sandwich_norms = false;
  bool parallel_residual = false;
  float embedding_scale = 1.0f;  // 1: none
};

class DecoderModel final : public Model {
 public:
  DecoderModel(const ModelConfig& config, DecoderWeights weights, const DecoderOptions& decoder,
               const ModelOptions& options);

  [[nodiscard]] const ModelConfig& config() const override { return config_; }
  [[nodiscard]] Device device() const override { return device_; }
  [[nodiscard]] int64_t max_model_len() const override { return max_model_len_; }
  [[nodiscard]] int64_t recompute_boundary() const override {
    return config_.rope.type == RopeType::kLongRope ? config_.rope.original_max_position_embeddings : 0;
  }
  [[nodiscard]] Tensor forward(const BatchInput& batch, KvCache& cache) override;
  [[nodiscard]] Tensor logits(const Tensor& rows) override;

 private:
  void norm(Tensor& out, const Tensor& x, const Norm& n) const;
  [[nodiscard]] Tensor feed_forward(Step& step, const Tensor& x, const DecoderLayer& layer) const;
  // The final norm of rows into normed (which may be rows), the output projection and the
  // soft-cap.
  [[nodiscard]] Tensor final_logits(const Step& step, const Tensor& rows, Tensor& normed) const;

  ModelConfig config_;
  DecoderWeights w_;
  DecoderOptions opt_;
  Device device_;
  int64_t max_model_len_;
  std::unique_ptr<RotaryTable> rope_;
  std::unique_ptr<RotaryTable> rope_local_;
  std::vector<Tensor> staging_;
};

// Common attention settings of layer `i` from the config (heads, scale, window, soft-cap, q/k
// norm eps and offset).
[[nodiscard]] AttentionSpec attention_spec(const ModelConfig& config, int64_t layer);

// The embedding multiplier of the Gemma family: sqrt(hidden_size), which transformers rounds to
// the checkpoint's dtype (bf16 or f16) before it multiplies; llama.cpp (GGUF) keeps it in f32.
[[nodiscard]] float gemma_embedding_scale(const ModelConfig& config);

}  // namespace pagoda::model
