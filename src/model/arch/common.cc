// The llama layout shared by most families, and load_model's dispatch on the architecture.

#include "core/error.h"
#include "model/arch/arch.h"
#include "model/loader/model_files.h"

namespace pagoda::model {

HfNames llama_hf_names(const std::string& p) {
  const std::string l = p + "layers.{i}.";
  return {
      {"token_embd", p + "embed_tokens"},
      {"output_norm", p + "norm"},
      {"output", "lm_head"},
      {"blk.{i}.attn_norm", l + "input_layernorm"},
      {"blk.{i}.attn_q", l + "self_attn.q_proj"},
      {"blk.{i}.attn_k", l + "self_attn.k_proj"},
      {"blk.{i}.attn_v", l + "self_attn.v_proj"},
      {"blk.{i}.attn_output", l + "self_attn.o_proj"},
      {"blk.{i}.attn_q_norm", l + "self_attn.q_norm"},
      {"blk.{i}.attn_k_norm", l + "self_attn.k_norm"},
      {"blk.{i}.ffn_norm", l + "post_attention_layernorm"},
      {"blk.{i}.ffn_gate", l + "mlp.gate_proj"},
      {"blk.{i}.ffn_up", l + "mlp.up_proj"},
      {"blk.{i}.ffn_down", l + "mlp.down_proj"},
  };
}

std::unique_ptr<Model> build_llama_style(const ModelFiles& files, const ModelOptions& options, const HfNames& names,
                                         const LlamaStyle& style) {
  const ModelConfig& c = files.config();
  const WeightLoader w(files, c, options.device, names);
  const int64_t hidden = c.hidden_size;
  const int64_t q_rows = c.q_size();
  const int64_t kv_rows = c.kv_size();
  const ActivationKind act = activation_kind(c.activation);

  DecoderWeights d;
  d.embedding = w.matrix("token_embd", -1, c.vocab_size, hidden, OpKind::kEmbedding);
  d.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    DecoderLayer& layer = d.layers[static_cast<size_t>(i)];
    const LayerConfig& lc = c.layers[static_cast<size_t>(i)];
    layer.attn_norm = w.norm("blk.{i}.attn_norm", i, hidden);
    Linear o = w.linear("blk.{i}.attn_output", i, hidden, q_rows, c.o_bias);
    if (style.fused_qkv) {
      Linear qkv = w.linear("blk.{i}.attn_qkv", i, q_rows + 2 * kv_rows, hidden, c.qkv_bias);
      layer.attn = split_qkv(qkv, std::move(o), q_rows, kv_rows);
    } else {
      layer.attn.q = w.linear("blk.{i}.attn_q", i, q_rows, hidden, c.qkv_bias);
      layer.attn.k = w.linear("blk.{i}.attn_k", i, kv_rows, hidden, c.qkv_bias);
      layer.attn.v = w.linear("blk.{i}.attn_v", i, kv_rows, hidden, c.qkv_bias);
      layer.attn.o = std::move(o);
    }
    if (c.qk_norm) {
      layer.attn.q_norm = w.vector_f32("blk.{i}.attn_q_norm", i, c.head_dim);
      layer.attn.k_norm = w.vector_f32("blk.{i}.attn_k_norm", i, c.head_dim);
    }
    layer.spec = attention_spec(c, i);
    layer.local_rope = lc.local_rope;
    layer.ffn_norm = w.norm("blk.{i}.ffn_norm", i, hidden);
    if (style.sandwich_norms) {
      layer.post_attn_norm = w.norm("blk.{i}.post_attention_norm", i, hidden);
      layer.post_ffn_norm = w.norm("blk.{i}.post_ffw_norm", i, hidden);
    }
    if (lc.moe) {
      const int64_t experts = c.moe.num_experts;
      const int64_t inter = c.moe.expert_intermediate_size;
      layer.ffn = FeedForward::kMoe;
      layer.moe.router = w.linear("blk.{i}.ffn_gate_inp", i, experts, hidden, false);
      WeightLoader::Experts e =
          w.experts(i, experts, inter, hidden, style.hf_fused_experts_gate_up, style.hf_fused_experts_down);
      layer.moe.gate_up = std::move(e.gate_up);
      layer.moe.down = std::move(e.down);
      layer.moe.num_experts = experts;
      layer.moe.top_k = c.moe.num_experts_per_tok;
      layer.moe.renormalize = c.moe.norm_topk_prob;
      layer.moe.act = act;
    } else {
      const int64_t inter = c.intermediate_size;
      MlpWeights& m = layer.mlp;
      m.gated = true;
      m.inter = inter;
      m.act = act;
      if (style.fused_gate_up) {
        m.gate_up = w.linear("blk.{i}.ffn_up", i, 2 * inter, hidden, c.mlp_bias);
      } else {
        m.gate = w.linear("blk.{i}.ffn_gate", i, inter, hidden, c.mlp_bias);
        m.up = w.linear("blk.{i}.ffn_up", i, inter, hidden, c.mlp_bias);
        // On a device the weights are copies anyway: stack gate and up into the fused layout (one
        // matmul, no interleaving gather). On the CPU they stay mapped from the file.
        if (options.device.kind != DeviceKind::kCpu) {
          if (std::optional<Linear> stacked = stack_rows(m.gate, m.up)) {
            m.gate_up = std::move(*stacked);
            m.gate = Linear{};
            m.up = Linear{};
          }
        }
      }
      m.down = w.linear("blk.{i}.ffn_down", i, hidden, inter, c.mlp_bias);
    }
  }
  d.final_norm = w.norm("output_norm", -1, hidden);
  if (c.tie_word_embeddings) {
    w.check_support(w.name("token_embd"), d.embedding.dtype(), OpKind::kMatmul);
    d.lm_head = d.embedding;
  } else {
    d.lm_head = w.matrix("output", -1, c.vocab_size, hidden);
  }

  DecoderOptions opt;
  opt.sandwich_norms = style.sandwich_norms;
  opt.embedding_scale = style.embedding_scale;
  return std::make_unique<DecoderModel>(c, std::move(d), opt, options);
}

std::unique_ptr<Model> load_model(const ModelFiles& files, const ModelOptions& options) {
  if (options.max_model_len < 0) {
    fail(ErrorCode::kInvalidArgument, "maximum sequence length must not be negative, got {}", options.max_model_len);
  }
  switch (files.config().arch) {
    case Arch::kLlama:
    case Arch::kMistral: return load_llama(files, options);
    case Arch::kQwen2: return load_qwen2(files, options);
    case Arch::kQwen3: return load_qwen3(files, options);
    case Arch::kGemma: return load_gemma(files, options);
    case Arch::kGemma2: return load_gemma2(files, options);
    case Arch::kGemma3: return load_gemma3(files, options);
    case Arch::kPhi3: return load_phi3(files, options);
    case Arch::kMixtral: return load_mixtral(files, options);
    case Arch::kQwen3Moe: return load_qwen3_moe(files, options);
    case Arch::kGptNeoX: return load_gpt_neox(files, options);
  }
  fail(ErrorCode::kUnsupported, "{}: no model implementation for this architecture", files.path());
}

}  // namespace pagoda::model
