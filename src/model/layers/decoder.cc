#include "model/layers/decoder.h"

#include <algorithm>
#include <cmath>

#include "backend/backend.h"
#include "backends/cpu/quant/dequantize.h"
#include "core/error.h"
#include "ops/ops.h"

namespace pagoda::model {

int64_t context_length(const ModelConfig& config) {
  const RopeConfig& r = config.rope;
  double n = static_cast<double>(config.max_position_embeddings);
  if (config.format == ConfigFormat::kHuggingFace) {
    // vLLM's derivation of max_model_len from rope scaling; GGUF's context_length is final.
    if (r.type == RopeType::kLinear || r.type == RopeType::kDynamic) {
      n *= r.factor;
    } else if (r.type == RopeType::kYarn) {
      n = std::max(n, static_cast<double>(r.original_max_position_embeddings) * r.factor);
    }
  }
  return static_cast<int64_t>(std::min(std::floor(n), static_cast<double>(kMaxPositions)));
}

float gemma_embedding_scale(const ModelConfig& config) {
  const auto scale = static_cast<float>(config.embedding_scale);
  if (config.format != ConfigFormat::kHuggingFace) return scale;
  uint16_t half = 0;
  float rounded = scale;
  if (config.torch_dtype == "bfloat16") {
    cpu::quantize_row_bf16(&scale, &half, 1);
    cpu::dequantize_row_bf16(&half, &rounded, 1);
  } else if (config.torch_dtype == "float16") {
    cpu::quantize_row_f16(&scale, &half, 1);
    cpu::dequantize_row_f16(&half, &rounded, 1);
  }
  return rounded;
}

AttentionSpec attention_spec(const ModelConfig& config, int64_t layer) {
  AttentionSpec s;
  s.layer = layer;
  s.num_heads = config.num_heads;
  s.num_kv_heads = config.num_kv_heads;
  s.head_dim = config.head_dim;
  s.params.scale = static_cast<float>(config.attention_scale);
  s.params.sliding_window = config.layers[static_cast<size_t>(layer)].sliding_window;
  s.params.logit_softcap = static_cast<float>(config.attn_logit_softcap);
  s.qk_norm_eps = static_cast<float>(config.norm_eps);
  s.qk_norm_offset = static_cast<float>(config.norm_weight_offset);
  return s;
}

DecoderModel::DecoderModel(const ModelConfig& config, DecoderWeights weights, const DecoderOptions& decoder,
                           const ModelOptions& options)
    : config_(config), w_(std::move(weights)), opt_(decoder), device_(options.device) {
  const int64_t limit = context_length(config_);
  max_model_len_ = options.max_model_len > 0 ? options.max_model_len : limit;
  if (max_model_len_ > limit) {
    fail(ErrorCode::kInvalidArgument, "a maximum sequence length of {} tokens is more than the model's context of {}",
         max_model_len_, limit);
  }
  rope_ = std::make_unique<RotaryTable>(config_.rope, config_.max_position_embeddings, max_model_len_, device_);
  if (config_.rope_local) {
    rope_local_ =
        std::make_unique<RotaryTable>(*config_.rope_local, config_.max_position_embeddings, max_model_len_, device_);
  }
  for (DecoderLayer& layer : w_.layers)
    layer.spec.rope = layer.local_rope && rope_local_ ? rope_local_.get() : rope_.get();
}

void DecoderModel::norm(Tensor& out, const Tensor& x, const Norm& n) const {
  const auto eps = static_cast<float>(config_.norm_eps);
  if (config_.norm_kind == NormKind::kLayerNorm) {
    ops::layer_norm(out, x, n.weight, n.bias.defined() ? &n.bias : nullptr, eps);
  } else {
    ops::rms_norm(out, x, n.weight, eps, static_cast<float>(config_.norm_weight_offset));
  }
}

Tensor DecoderModel::feed_forward(Step& step, const Tensor& x, const DecoderLayer& layer) const {
  return layer.ffn == FeedForward::kMoe ? moe(step, x, layer.moe) : mlp(step, x, layer.mlp);
}

Tensor DecoderModel::forward(const BatchInput& batch, KvCache& cache) {
  if (cache.keys.size() != w_.layers.size() || cache.values.size() != w_.layers.size()) {
    fail(ErrorCode::kInvalidArgument, "the KV cache has {} layers, the model {}", cache.keys.size(), w_.layers.size());
  }
  staging_.clear();
  Step step{batch, cache, device_, {}, &staging_};
  prepare_step(step);
  rope_->prepare(batch.host_positions, batch.host_seq_lens, batch.host_cu_query_lens, batch.positions);
  if (rope_local_) {
    rope_local_->prepare(batch.host_positions, batch.host_seq_lens, batch.host_cu_query_lens, batch.positions);
  }

  const int64_t tokens = batch.num_tokens;
  const int64_t hidden = config_.hidden_size;
  Tensor h = step.empty(Shape{tokens, hidden});  // the residual stream
  ops::embedding(h, batch.token_ids, w_.embedding);
  if (opt_.embedding_scale != 1.0f) ops::scale(h, opt_.embedding_scale);

  Tensor x = step.empty(Shape{tokens, hidden});
  const bool layer_norm = config_.norm_kind == NormKind::kLayerNorm;
  for (const DecoderLayer& layer : w_.layers) {
    norm(x, h, layer.attn_norm);
    Tensor a = attention(step, x, layer.attn, layer.spec);
    if (layer_norm) {
      if (opt_.parallel_residual) {
        norm(x, h, layer.ffn_norm);
        Tensor m = feed_forward(step, x, layer);
        ops::add(h, h, a);
        ops::add(h, h, m);
      } else {
        ops::add(h, h, a);
        norm(x, h, layer.ffn_norm);
        Tensor m = feed_forward(step, x, layer);
        ops::add(h, h, m);
      }
      continue;
    }
    const auto eps = static_cast<float>(config_.norm_eps);
    const auto offset = static_cast<float>(config_.norm_weight_offset);
    if (opt_.sandwich_norms) ops::rms_norm(a, a, layer.post_attn_norm.weight, eps, offset);
    ops::fused_add_rms_norm(a, h, layer.ffn_norm.weight, eps, offset);  // h += a; a = norm(h)
    Tensor m = feed_forward(step, a, layer);
    if (opt_.sandwich_norms) ops::rms_norm(m, m, layer.post_ffn_norm.weight, eps, offset);
    ops::add(h, h, m);
  }

  // Only the rows whose logits are wanted go through the final norm and the output projection.
  const int64_t n = batch.logits_indices.dim(0);
  if (n == 0) return Tensor::empty(Shape{0, config_.vocab_size}, DType::kF32);
  Tensor last = step.empty(Shape{n, hidden});
  ops::gather_rows(last, h, batch.logits_indices);
  if (batch.hidden_rows) return last;
  return final_logits(step, last, last);
}

Tensor DecoderModel::final_logits(const Step& step, const Tensor& rows, Tensor& normed) const {
  norm(normed, rows, w_.final_norm);
  Tensor logits = step.empty(Shape{rows.dim(0), config_.vocab_size});
  ops::matmul(logits, normed, w_.lm_head);
  if (config_.final_logit_softcap > 0.0) ops::softcap(logits, static_cast<float>(config_.final_logit_softcap));
  return logits;
}

Tensor DecoderModel::logits(const Tensor& rows) {
  if (rows.ndim() != 2 || rows.dim(1) != config_.hidden_size || rows.dtype() != DType::kF32) {
    fail(ErrorCode::kInvalidArgument, "hidden rows must be (n, {}) f32", config_.hidden_size);
  }
  if (rows.dim(0) == 0) return Tensor::empty(Shape{0, config_.vocab_size}, DType::kF32);
  const BatchInput none;
  KvCache no_cache;
  const Step step{none, no_cache, device_, {}, nullptr};
  Tensor normed = step.empty(rows.shape());
  return final_logits(step, rows, normed);
}

}  // namespace pagoda::model
