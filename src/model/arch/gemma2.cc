// Gemma 2: Gemma with sandwich norms (a norm after attention and one after the MLP, besides the
// pre-norms), soft-capped attention scores and final logits, sliding-window attention on every
// other layer, and query_pre_attn_scalar setting the attention scale.

#include "model/arch/arch.h"

namespace pagoda::model {

HfNames gemma2_hf_names(const std::string& prefix) {
  HfNames names = llama_hf_names(prefix);
  const std::string l = prefix + "layers.{i}.";
  for (auto& [gguf_name, hf_name] : names) {
    // HF's post_attention_layernorm is the post-attention norm here, not the pre-MLP one.
    if (gguf_name == "blk.{i}.ffn_norm") hf_name = l + "pre_feedforward_layernorm";
  }
  names.emplace_back("blk.{i}.post_attention_norm", l + "post_attention_layernorm");
  names.emplace_back("blk.{i}.post_ffw_norm", l + "post_feedforward_layernorm");
  return names;
}

std::unique_ptr<Model> load_gemma2(const ModelFiles& files, const ModelOptions& options) {
  LlamaStyle style;
  style.sandwich_norms = true;
  style.embedding_scale = gemma_embedding_scale(files.config());
  return build_llama_style(files, options, gemma2_hf_names("model."), style);
}

}  // namespace pagoda::model
