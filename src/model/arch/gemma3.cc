// Gemma 3 (text): Gemma 2's layout with per-head (1 + w) q/k norms and no soft-caps by default;
// sliding-window ("local") layers use their own rope base (rope_local_base_freq) and no scaling,
// global layers rope_theta with the configured scaling. The text model of a multimodal
// checkpoint (Gemma3ForConditionalGeneration) sits under language_model.

#include <array>

#include "model/arch/arch.h"

namespace pagoda::model {

std::unique_ptr<Model> load_gemma3(const ModelFiles& files, const ModelOptions& options) {
  std::string prefix = "model.";
  if (files.format() == ModelFormat::kHfFolder) {
    // transformers >= 4.52 writes model.language_model.*, earlier versions language_model.model.*.
    constexpr std::array<const char*, 3> kPrefixes = {"model.", "model.language_model.", "language_model.model."};
    for (const char* p : kPrefixes) {
      const std::string name = std::string(p) + "embed_tokens.weight";
      bool found = false;
      for (const TensorEntry& t : files.tensors())
        found = found || t.name == name;
      if (found) {
        prefix = p;
        break;
      }
    }
  }
  HfNames names = gemma2_hf_names(prefix);
  if (prefix == "language_model.model.") {
    for (auto& [gguf_name, hf_name] : names) {
      if (gguf_name == "output") hf_name = "language_model.lm_head";
    }
  }
  LlamaStyle style;
  style.sandwich_norms = true;
  style.embedding_scale = gemma_embedding_scale(files.config());
  return build_llama_style(files, options, names, style);
}

}  // namespace pagoda::model
