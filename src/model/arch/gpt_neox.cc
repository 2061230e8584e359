// GPT-NeoX (Pythia): LayerNorm with biases, one fused qkv projection with biases (Hugging Face
// interleaves it per head; llama.cpp's converter regroups it as [q | k | v]), partial rotary
// (rotary_pct of each head, NeoX style), a plain gelu MLP with biases, and a parallel residual
// (h + attn(ln1(h)) + mlp(ln2(h))) unless use_parallel_residual is false.

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_gpt_neox(const ModelFiles& files, const ModelOptions& options) {
  const ModelConfig& c = files.config();
  const std::string l = "gpt_neox.layers.{i}.";
  HfNames names = {
      {"token_embd", "gpt_neox.embed_in"},
      {"output_norm", "gpt_neox.final_layer_norm"},
      {"output", "embed_out"},
      {"blk.{i}.attn_norm", l + "input_layernorm"},
      {"blk.{i}.attn_qkv", l + "attention.query_key_value"},
      {"blk.{i}.attn_output", l + "attention.dense"},
      {"blk.{i}.ffn_norm", l + "post_attention_layernorm"},
      {"blk.{i}.ffn_up", l + "mlp.dense_h_to_4h"},
      {"blk.{i}.ffn_down", l + "mlp.dense_4h_to_h"},
  };
  const WeightLoader w(files, c, options.device, std::move(names));
  const int64_t hidden = c.hidden_size;
  const int64_t q_rows = c.q_size();

  DecoderWeights d;
  d.embedding = w.matrix("token_embd", -1, c.vocab_size, hidden, OpKind::kEmbedding);
  d.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    DecoderLayer& layer = d.layers[static_cast<size_t>(i)];
    layer.attn_norm = w.norm("blk.{i}.attn_norm", i, hidden, true);
    Linear qkv = w.neox_qkv("blk.{i}.attn_qkv", i, c.num_heads, c.head_dim, hidden, c.qkv_bias);
    Linear o = w.linear("blk.{i}.attn_output", i, hidden, q_rows, c.o_bias);
    layer.attn = split_qkv(qkv, std::move(o), q_rows, c.kv_size());
    layer.spec = attention_spec(c, i);
    layer.ffn_norm = w.norm("blk.{i}.ffn_norm", i, hidden, true);
    MlpWeights& m = layer.mlp;
    m.gated = false;
    m.inter = c.intermediate_size;
    m.act = activation_kind(c.activation);
    m.up = w.linear("blk.{i}.ffn_up", i, c.intermediate_size, hidden, c.mlp_bias);
    m.down = w.linear("blk.{i}.ffn_down", i, hidden, c.intermediate_size, c.mlp_bias);
  }
  d.final_norm = w.norm("output_norm", -1, hidden, true);
  if (c.tie_word_embeddings) {
    w.check_support(w.name("token_embd"), d.embedding.dtype(), OpKind::kMatmul);
    d.lm_head = d.embedding;
  } else {
    d.lm_head = w.matrix("output", -1, c.vocab_size, hidden);
  }

  DecoderOptions opt;
  opt.parallel_residual = c.parallel_residual;
  return std::make_unique<DecoderModel>(c, std::move(d), opt, options);
}

}  // namespace pagoda::model
