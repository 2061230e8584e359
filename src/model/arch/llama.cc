// Llama and Mistral: the llama layout with RMSNorm, silu-gated MLP, optional attention and MLP
// biases (attention_bias, mlp_bias), any rope scaling; Mistral adds a sliding window (per layer in
// the config). llama.cpp writes both (and Mixtral) as GGUF arch "llama" with q/k rows permuted
// for adjacent-pair rotation, which the config's rope style (kGptj) undoes.

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_llama(const ModelFiles& files, const ModelOptions& options) {
  return build_llama_style(files, options, llama_hf_names("model."), LlamaStyle{});
}

}  // namespace pagoda::model
