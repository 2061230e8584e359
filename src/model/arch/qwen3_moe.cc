// Qwen3-MoE: Qwen3's attention (q/k norms) with a mixture of experts in the layers that
// decoder_sparse_step and mlp_only_layers select (the others keep a dense MLP); the top-k
// weights are renormalised only when norm_topk_prob is set.

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_qwen3_moe(const ModelFiles& files, const ModelOptions& options) {
  HfNames names = llama_hf_names("model.");
  const std::string block = "model.layers.{i}.mlp.";
  names.emplace_back("blk.{i}.ffn_gate_inp", block + "gate");
  names.emplace_back("blk.{i}.ffn_gate.{e}", block + "experts.{e}.gate_proj");
  names.emplace_back("blk.{i}.ffn_up.{e}", block + "experts.{e}.up_proj");
  names.emplace_back("blk.{i}.ffn_down.{e}", block + "experts.{e}.down_proj");
  LlamaStyle style;
  style.hf_fused_experts_gate_up = block + "experts.gate_up_proj";
  style.hf_fused_experts_down = block + "experts.down_proj";
  return build_llama_style(files, options, names, style);
}

}  // namespace pagoda::model
