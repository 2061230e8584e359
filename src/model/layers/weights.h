#pragma once

// Weight loading: one family's tensors, named as in GGUF files ("blk.{i}.attn_q.weight", the names
// pagoda uses internally) or as in Hugging Face checkpoints (through the family's name map),
// checked for shape and type and placed on the model's device. Weights keep their file type
// (f32, f16, bf16 or a GGUF block type): on the CPU they stay zero-copy views of the mapped file.
// Only small vectors (norm weights, biases) are converted, to f32, and tensors whose layout must
// change are rearranged (in their file type): stacked experts, GPT-NeoX's interleaved qkv.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend_ops.h"
#include "core/tensor.h"
#include "model/loader/model_config.h"

namespace pagoda {
class ModelFiles;
}

namespace pagoda::model {

struct Linear {
  Tensor weight;  // (out, in), any type matmul supports
  Tensor bias;    // (out) f32; undefined when the layer has none
};

struct Norm {
  Tensor weight;  // (n) f32
  Tensor bias;    // (n) f32; layer norm only, undefined otherwise
};

// GGUF base name → Hugging Face base name; "{i}" stands for the layer index and "{e}" for the
// expert index. The ".weight" / ".bias" suffix is appended to both.
using HfNames = std::vector<std::pair<std::string_view, std::string>>;

class WeightLoader {
 public:
  // `hf_names` is used for Hugging Face folders; GGUF files use the canonical names directly.
  WeightLoader(const ModelFiles& files, const ModelConfig& config, Device device, HfNames hf_names);

  [[nodiscard]] bool is_gguf() const { return gguf_; }
  [[nodiscard]] const std::string& source() const { return source_; }

  // The file's name for canonical `base` (e.g. "blk.{i}.attn_q") of layer `layer` with `suffix`.
  [[nodiscard]] std::string name(std::string_view base, int64_t layer = -1, std::string_view suffix = "weight",
                                 int64_t expert = -1) const;
  [[nodiscard]] bool has(std::string_view base, int64_t layer = -1, std::string_view suffix = "weight") const;
  [[nodiscard]] bool has_file_tensor(const std::string& file_name) const;

  // A (rows, cols) weight for `op` (matmul, embedding), in its file type.
  [[nodiscard]] Tensor matrix(std::string_view base, int64_t layer, int64_t rows, int64_t cols,
                              OpKind op = OpKind::kMatmul) const;
  // A (n) vector converted to f32 (norm weights, biases).
  [[nodiscard]] Tensor vector_f32(std::string_view base, int64_t layer, int64_t n,
                                  std::string_view suffix = "weight") const;
  // weight (out, in) and, when `bias`, bias (out).
  [[nodiscard]] Linear linear(std::string_view base, int64_t layer, int64_t out, int64_t in, bool bias) const;
  // weight (n) and, when `bias`, bias (n).
  [[nodiscard]] Norm norm(std::string_view base, int64_t layer, int64_t n, bool bias = false) const;

  // Mixture-of-experts weights as moe_experts takes them: gate_up (experts, 2 * inter, hidden),
  // gate rows then up rows per expert, and down (experts, hidden, inter). Sources, by format:
  //  - GGUF: blk.N.ffn_{gate,up,down}_exps (stacked), or the older per-expert blk.N.ffn_gate.E;
  //  - HF: the fused tensors `hf_fused_gate_up` / `hf_fused_down` (newer transformers), or one
  //    tensor per expert through the name map ("blk.{i}.ffn_gate.{e}" → "...experts.{e}.w1").
  struct Experts {
    Tensor gate_up;
    Tensor down;
  };
  [[nodiscard]] Experts experts(int64_t layer, int64_t num_experts, int64_t inter, int64_t hidden,
                                const std::string& hf_fused_gate_up, const std::string& hf_fused_down) const;

  // GPT-NeoX's Hugging Face query_key_value rows interleave the heads ([q k v] of head 0, then of
  // head 1, ...); this returns them as [all q | all k | all v], as llama.cpp's converter stores them.
  [[nodiscard]] Linear neox_qkv(std::string_view base, int64_t layer, int64_t num_heads, int64_t head_dim,
                                int64_t hidden, bool bias) const;

  // Throws Error(kUnsupported) when the device's backend has no `op` for `dtype` (`file_name`
  // names the tensor in the message).
  void check_support(const std::string& file_name, DType dtype, OpKind op) const;

  // The host (mapped) tensor as the file holds it, after a shape check; for callers that
  // rearrange it.
  [[nodiscard]] Tensor host_tensor(const std::string& file_name, const Shape& shape) const;

 private:
  [[nodiscard]] const std::string& hf_base(std::string_view base) const;
  // Concatenates, per expert, the rows of parts[e] (host tensors of one type) into one tensor
  // of `out_shape` (experts, rows, cols) on the device.
  [[nodiscard]] Tensor concat_experts(const std::vector<std::vector<Tensor>>& parts, const Shape& out_shape,
                                      const std::string& what) const;

  const ModelFiles& files_;
  const ModelConfig& config_;
  Device device_;
  bool gguf_;
  std::string source_;
  std::unordered_map<std::string, std::string> hf_names_;
  std::unordered_map<std::string, size_t> index_;  // file tensor name → position in files_.tensors()
};

}  // namespace pagoda::model
