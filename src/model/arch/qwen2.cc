// Qwen2: the llama layout with biases on the q, k and v projections (none on the output), and
// tied embeddings in the small models.

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_qwen2(const ModelFiles& files, const ModelOptions& options) {
  return build_llama_style(files, options, llama_hf_names("model."), LlamaStyle{});
}

}  // namespace pagoda::model
