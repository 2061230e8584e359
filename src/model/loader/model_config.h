#pragma once

// The one description of a model's architecture that the forward pass reads. It is filled from a
// Hugging Face config.json (+ generation_config.json) or from GGUF metadata, with every default and
// derived value resolved here, so model code never looks at raw config text again.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda {
namespace gguf {
class File;
}

namespace model {

// Families of architectures, named after Hugging Face `model_type`.
enum class Arch : uint8_t {
  kLlama,
  kMistral,
  kQwen2,
  kQwen3,
  kGemma,
  kGemma2,
  kGemma3,  // the text model of gemma3_text and of gemma3 (text_config)
  kPhi3,
  kMixtral,
  kQwen3Moe,
  kGptNeoX,
};

// "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "mixtral", "qwen3_moe",
// "gpt_neox".
[[nodiscard]] std::string_view architecture_name(Arch arch);
[[nodiscard]] std::span<const Arch> supported_architectures();
// "llama, mistral, ..." for error messages.
[[nodiscard]] std::string supported_architecture_list();
// Inverse of architecture_name; nullopt for anything else.
[[nodiscard]] std::optional<Arch> architecture_from_name(std::string_view name);

enum class ConfigFormat : uint8_t { kHuggingFace, kGguf };
enum class NormKind : uint8_t { kRmsNorm, kLayerNorm };
enum class Activation : uint8_t { kSilu, kGelu, kGeluTanh };  // gelu is the exact (erf) form

// How cos/sin frequencies are derived (HF `rope_type`; see transformers' modeling_rope_utils.py).
enum class RopeType : uint8_t { kDefault, kLinear, kDynamic, kYarn, kLlama3, kLongRope };

// Which dimensions rotate together. kNeox rotates (x[i], x[i + d/2]) ("rotate_half", what HF code
// does); kGptj rotates adjacent pairs (x[2i], x[2i+1]), which llama.cpp uses for the llama GGUF
// arch because its converter permutes the q/k weights to match.
enum class RopeStyle : uint8_t { kNeox, kGptj };

[[nodiscard]] std::string_view config_format_name(ConfigFormat f);  // "hf", "gguf"
[[nodiscard]] std::string_view norm_kind_name(NormKind k);          // "rms_norm", "layer_norm"
[[nodiscard]] std::string_view activation_name(Activation a);       // "silu", "gelu", "gelu_tanh"
[[nodiscard]] std::string_view rope_type_name(RopeType t);          // HF spellings: "default", "llama3", ...
[[nodiscard]] std::string_view rope_style_name(RopeStyle s);        // "neox", "gptj"

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  RopeStyle style = RopeStyle::kNeox;
  double theta = 10000.0;
  int64_t rotary_dim = 0;  // leading dimensions of each head that rotate (even, <= head_dim)

  // kLinear / kDynamic / kYarn / kLlama3 / kLongRope: the context extension factor.
  double factor = 1.0;
  // kLlama3 / kYarn / kLongRope: the pre-extension context length; 0 for other types.
  int64_t original_max_position_embeddings = 0;
  // kLlama3.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // kYarn.
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;  // 0: absent
  double mscale_all_dim = 0.0;
  bool truncate = true;
  // Multiplier on cos and sin (kYarn, kLongRope), resolved from the defaults of each type; 1 otherwise.
  double attention_factor = 1.0;
  // kLongRope: per-frequency divisors, rotary_dim / 2 each; long applies past
  // original_max_position_embeddings.
  std::vector<double> long_factor;
  std::vector<double> short_factor;
  // GGUF `rope_freqs` tensor (llama3 scaling baked in by the converter): per-frequency divisors,
  // rotary_dim / 2 of them, applied on top of `type`; empty when absent.
  std::vector<double> freq_factors;

  friend bool operator==(const RopeConfig&, const RopeConfig&) = default;
};

struct LayerConfig {
  int64_t sliding_window = 0;  // a query at position p sees keys p - w + 1 .. p; 0: the whole context
  bool local_rope = false;     // uses ModelConfig::rope_local instead of ModelConfig::rope (gemma3)
  bool moe = false;            // the feed-forward block is a mixture of experts

  friend bool operator==(const LayerConfig&, const LayerConfig&) = default;
};

struct MoeConfig {
  int64_t num_experts = 0;  // 0: dense model
  int64_t num_experts_per_tok = 0;
  int64_t expert_intermediate_size = 0;
  bool norm_topk_prob = false;  // renormalise the selected experts' softmax weights to sum to 1
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;

  friend bool operator==(const MoeConfig&, const MoeConfig&) = default;
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string name;             // model name (HF _name_or_path or folder, GGUF general.name)
  std::string hf_architecture;  // HF architectures[0] ("LlamaForCausalLM"), or the GGUF arch string
  ConfigFormat format = ConfigFormat::kHuggingFace;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense feed-forward width
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;

  NormKind norm_kind = NormKind::kRmsNorm;
  double norm_eps = 1e-6;
  // Added to every norm weight before use: Gemma's HF checkpoints store w - 1 (the model computes
  // x * (1 + w)); llama.cpp's converter adds the 1 into the GGUF tensor, so GGUF gives 0.
  double norm_weight_offset = 0.0;

  Activation activation = Activation::kSilu;
  bool gated_mlp = true;  // act(gate(x)) * up(x); false: act(up(x)) (gpt_neox)
  bool tie_word_embeddings = false;
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;
  bool qk_norm = false;            // per-head RMSNorm on q and k before rotary (qwen3, gemma3)
  bool parallel_residual = false;  // gpt_neox: x + attn(ln1(x)) + mlp(ln2(x))

  RopeConfig rope;
  std::optional<RopeConfig> rope_local;  // gemma3 sliding-window layers
  std::vector<LayerConfig> layers;       // num_layers entries
  int64_t sliding_window = 0;            // the configured window (0: none); per layer in `layers`

  double attn_logit_softcap = 0.0;     // 0: off; else scores = cap * tanh(scores / cap)
  double final_logit_softcap = 0.0;    // 0: off
  double query_pre_attn_scalar = 0.0;  // gemma2/3; 0: not set
  double attention_scale = 0.0;        // multiplier on q.k: 1/sqrt(head_dim) or 1/sqrt(query_pre_attn_scalar)
  // Multiplier on token embeddings (gemma: sqrt(hidden_size), which HF rounds to the weight dtype).
  double embedding_scale = 1.0;

  MoeConfig moe;

  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // any of these ends generation
  std::optional<int64_t> pad_token_id;
  std::string torch_dtype;  // HF torch_dtype / dtype ("bfloat16"); empty when absent or GGUF

  [[nodiscard]] int64_t q_size() const { return num_heads * head_dim; }
  [[nodiscard]] int64_t kv_size() const { return num_kv_heads * head_dim; }
  [[nodiscard]] bool is_moe() const { return moe.num_experts > 0; }
  [[nodiscard]] bool has_sliding_layers() const;

  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

// Caps on untrusted sizes. Real models are far below each.
inline constexpr int64_t kMaxLayers = 1024;
inline constexpr int64_t kMaxVocab = int64_t{1} << 24;
inline constexpr int64_t kMaxHiddenSize = int64_t{1} << 20;
inline constexpr int64_t kMaxIntermediateSize = int64_t{1} << 22;
inline constexpr int64_t kMaxHeads = 4096;
inline constexpr int64_t kMaxHeadDim = 4096;
inline constexpr int64_t kMaxPositions = int64_t{1} << 26;
inline constexpr int64_t kMaxExperts = 4096;
inline constexpr size_t kMaxEosTokens = 64;
inline constexpr uint64_t kMaxConfigBytes = 16ull << 20;
inline constexpr int kMaxJsonDepth = 64;

// Checks every field (positive sizes, caps, head arithmetic, rope parameters, per-layer vectors,
// token ids) and throws Error(kInvalidFile, "<source>: ...") naming the first field that is wrong.
void validate_model_config(const ModelConfig& config, const std::string& source);

// The whole config as JSON (the `pagoda config --json` output).
[[nodiscard]] std::string model_config_to_json(const ModelConfig& config, int indent = 2);

// Hugging Face: the text of config.json and, optionally, of generation_config.json (whose token ids
// take precedence). `source_name` names config.json in error messages. Throws Error: kInvalidFile
// for malformed input, kUnsupported for an architecture or feature pagoda does not implement.
[[nodiscard]] ModelConfig config_from_hf_json(const std::string& config_json_text,
                                              const std::string* generation_config_text,
                                              const std::string& source_name);
// `path` is a model folder holding config.json (generation_config.json is read when present) or
// the path of a config.json itself.
[[nodiscard]] ModelConfig load_hf_config(const std::string& path);

// GGUF metadata (llama.cpp key names). Reads the small rope factor tensors when present.
[[nodiscard]] ModelConfig config_from_gguf(const gguf::File& file);

}  // namespace model
}  // namespace pagoda
