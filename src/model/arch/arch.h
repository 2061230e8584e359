#pragma once

// One loader per family of architectures (model/arch/<family>.cc). Each maps its checkpoint's
// tensor names onto the decoder of model/layers/decoder.h and sets the family's switches.

#include <memory>
#include <string>

#include "model/layers/decoder.h"
#include "model/layers/weights.h"
#include "model/loader/model_files.h"
#include "model/model.h"

namespace pagoda::model {

[[nodiscard]] std::unique_ptr<Model> load_llama(const ModelFiles& files, const ModelOptions& options);  // + mistral
[[nodiscard]] std::unique_ptr<Model> load_qwen2(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_qwen3(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_gemma(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_gemma2(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_gemma3(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_phi3(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_mixtral(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_qwen3_moe(const ModelFiles& files, const ModelOptions& options);
[[nodiscard]] std::unique_ptr<Model> load_gpt_neox(const ModelFiles& files, const ModelOptions& options);

// The names of the llama layout that most families share, under `prefix` ("model."): embedding,
// final norm, lm_head, input/post-attention norms, q/k/v/o projections and q/k norms, and the
// gate/up/down MLP.
[[nodiscard]] HfNames llama_hf_names(const std::string& prefix);

// The llama names with Gemma 2's sandwich norms (gemma2.cc; gemma3 too).
[[nodiscard]] HfNames gemma2_hf_names(const std::string& prefix);

// What varies among the families built on the llama layout.
struct LlamaStyle {
  bool fused_qkv = false;       // one blk.N.attn_qkv (phi3)
  bool fused_gate_up = false;   // blk.N.ffn_up holds gate and up rows (phi3)
  bool sandwich_norms = false;  // gemma2, gemma3
  float embedding_scale = 1.0f;
  // Fused expert tensors of newer transformers checkpoints ("{i}" for the layer).
  std::string hf_fused_experts_gate_up;
  std::string hf_fused_experts_down;
};

[[nodiscard]] std::unique_ptr<Model> build_llama_style(const ModelFiles& files, const ModelOptions& options,
                                                       const HfNames& names, const LlamaStyle& style);

}  // namespace pagoda::model
