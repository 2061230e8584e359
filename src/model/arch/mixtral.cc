// Mixtral: Mistral's attention with a mixture of silu-gated experts in every layer (softmax over
// the router's logits, the top k renormalised). Hub checkpoints name the block block_sparse_moe
// with experts.E.w1 (gate), w3 (up) and w2 (down); newer transformers save mlp.gate and fused
// mlp.experts.gate_up_proj / down_proj instead. GGUF stacks the experts (ffn_*_exps).

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_mixtral(const ModelFiles& files, const ModelOptions& options) {
  HfNames names = llama_hf_names("model.");
  bool legacy = false;
  for (const TensorEntry& t : files.tensors())
    legacy = legacy || t.name.find(".block_sparse_moe.") != std::string::npos;
  const std::string block = legacy ? "model.layers.{i}.block_sparse_moe." : "model.layers.{i}.mlp.";
  names.emplace_back("blk.{i}.ffn_gate_inp", block + "gate");
  names.emplace_back("blk.{i}.ffn_gate.{e}", block + "experts.{e}.w1");
  names.emplace_back("blk.{i}.ffn_up.{e}", block + "experts.{e}.w3");
  names.emplace_back("blk.{i}.ffn_down.{e}", block + "experts.{e}.w2");
  LlamaStyle style;
  style.hf_fused_experts_gate_up = block + "experts.gate_up_proj";
  style.hf_fused_experts_down = block + "experts.down_proj";
  return build_llama_style(files, options, names, style);
}

}  // namespace pagoda::model
