// Phi-3 (and Phi-3.5 / Phi-4-mini): the llama layout with one fused qkv projection and one fused
// gate_up projection (gate rows first), longrope scaling and, in Phi-4-mini, a partial rotary
// dimension.

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_phi3(const ModelFiles& files, const ModelOptions& options) {
  HfNames names = llama_hf_names("model.");
  const std::string l = "model.layers.{i}.";
  names.emplace_back("blk.{i}.attn_qkv", l + "self_attn.qkv_proj");
  for (auto& [gguf_name, hf_name] : names) {
    if (gguf_name == "blk.{i}.ffn_up") hf_name = l + "mlp.gate_up_proj";  // llama.cpp's ffn_up holds both
  }
  LlamaStyle style;
  style.fused_qkv = true;
  style.fused_gate_up = true;
  return build_llama_style(files, options, names, style);
}

}  // namespace pagoda::model
