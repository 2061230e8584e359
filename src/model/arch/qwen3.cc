// Qwen3: the llama layout without biases and with a per-head RMSNorm on queries and keys
// (q_norm, k_norm) before the rotary embedding; head_dim is independent of hidden_size.

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_qwen3(const ModelFiles& files, const ModelOptions& options) {
  return build_llama_style(files, options, llama_hf_names("model."), LlamaStyle{});
}

}  // namespace pagoda::model
