#pragma once

// One entry point for a model on disk, whatever its format: a GGUF file or an HF folder
// (config.json + safetensors weights + tokenizer files). It maps the weights, reads the config into
// a ModelConfig, and answers the questions `pagoda info` and the model loader ask.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/loader/gguf.h"
#include "model/loader/model_config.h"
#include "model/loader/safetensors.h"

namespace pagoda {

enum class ModelFormat : uint8_t { kGguf, kHfFolder };

struct TensorEntry {
  std::string name;
  Shape shape;
  DType dtype;
  uint64_t nbytes = 0;
};

struct DTypeUsage {
  int64_t tensors = 0;
  int64_t elements = 0;
  uint64_t bytes = 0;
};

class ModelFiles {
 public:
  // `path`: a .gguf file, or a folder holding config.json and safetensors weights.
  [[nodiscard]] static ModelFiles open(const std::string& path);
  // Random weights (`--load-format dummy`): the config of `config_path` (a folder holding
  // config.json, or a config.json) and no weight files. Every weight the model asks for is drawn
  // from a generator seeded by `seed` and the tensor's name, so two loads with the same seed are
  // identical; matrices get `dtype` (nullopt: the config's torch_dtype when it is f32, f16 or
  // bf16, else f16). For benchmarks and tests of speed, never for text.
  [[nodiscard]] static ModelFiles open_dummy(const std::string& config_path, std::optional<DType> dtype, uint64_t seed);

  [[nodiscard]] bool is_dummy() const { return dummy_; }
  [[nodiscard]] DType dummy_dtype() const { return dummy_dtype_; }
  // A (shape) tensor of dummy_dtype() (or f32 when `f32`: vectors such as norm weights) on the
  // host, filled deterministically from the seed and `name`, uniform in [-0.02, 0.02]. The loader
  // asks for one tensor at a time and uploads it, so the host never holds the whole model.
  [[nodiscard]] Tensor dummy_tensor(const std::string& name, const Shape& shape, bool f32) const;

  [[nodiscard]] ModelFormat format() const { return format_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const model::ModelConfig& config() const { return config_; }

  [[nodiscard]] const std::vector<TensorEntry>& tensors() const { return tensors_; }
  [[nodiscard]] Tensor tensor(std::string_view name) const;  // zero-copy; Error(kNotFound) if absent
  [[nodiscard]] int64_t parameter_count() const;
  [[nodiscard]] std::map<DType, DTypeUsage> dtype_mix() const;
  [[nodiscard]] uint64_t weight_bytes() const;  // sum of the weight files' sizes

  // "gpt2 (byte-level BPE)", "llama (SentencePiece BPE)", "BPE (tokenizer.json)", or "none".
  [[nodiscard]] const std::string& tokenizer_kind() const { return tokenizer_kind_; }
  [[nodiscard]] const std::optional<std::string>& chat_template() const { return chat_template_; }

  [[nodiscard]] const gguf::File* gguf_file() const { return gguf_.get(); }
  [[nodiscard]] const safetensors::Checkpoint* checkpoint() const { return checkpoint_.get(); }

 private:
  ModelFiles() = default;
  void open_gguf();
  void open_folder();

  ModelFormat format_ = ModelFormat::kGguf;
  std::string path_;
  model::ModelConfig config_;
  std::vector<TensorEntry> tensors_;
  std::string tokenizer_kind_ = "none";
  std::optional<std::string> chat_template_;
  std::shared_ptr<const gguf::File> gguf_;
  std::shared_ptr<const safetensors::Checkpoint> checkpoint_;
  bool dummy_ = false;
  DType dummy_dtype_ = DType::kF16;
  uint64_t dummy_seed_ = 0;
};

}  // namespace pagoda
