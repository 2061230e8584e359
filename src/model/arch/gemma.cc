// Gemma: the llama layout with (1 + w) RMSNorms (Hugging Face stores w; llama.cpp stores 1 + w,
// which the config's norm_weight_offset accounts for), embeddings scaled by sqrt(hidden_size),
// a gelu_tanh-gated MLP and tied embeddings.

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_gemma(const ModelFiles& files, const ModelOptions& options) {
  LlamaStyle style;
  style.embedding_scale = gemma_embedding_scale(files.config());
  return build_llama_style(files, options, llama_hf_names("model."), style);
}

}  // namespace pagoda::model
