// ModelConfig from GGUF metadata, with llama.cpp's key names and llama.cpp's defaults where a key
// is optional (llama-model.cpp's load_hparams is the reference for what a GGUF file means).
//
// What differs from the same model's HF config, by construction of llama.cpp's converter:
//  - the llama arch's q/k weights are permuted for adjacent-pair rotary (RopeStyle::kGptj);
//  - Gemma norm weights already include the +1 (norm_weight_offset 0);
//  - llama3 rope scaling is baked into a `rope_freqs` tensor and Phi-3's longrope factors into
//    `rope_factors_long` / `rope_factors_short` tensors, read here into the RopeConfig;
//  - Mistral and Mixtral are written as arch `llama` (Mixtral recognised by its experts).

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "core/error.h"
#include "model/loader/gguf.h"
#include "model/loader/model_config.h"

namespace pagoda::model {
namespace {

constexpr std::string_view kGgufArchs = "llama, qwen2, qwen3, qwen3moe, gemma, gemma2, gemma3, phi3, gptneox";

std::string printable(std::string_view s, size_t max_bytes = 100) {
  std::string out;
  for (char ch : s.substr(0, max_bytes)) {
    auto u = static_cast<unsigned char>(ch);
    out += (u < 0x20 || u == 0x7f) ? '?' : ch;
  }
  if (s.size() > max_bytes) out += "...";
  return out;
}

// Typed metadata access whose errors name the file and the key.
class Meta {
 public:
  Meta(const gguf::File& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  [[nodiscard]] const std::string& source() const { return file_.path(); }
  [[nodiscard]] std::string key(std::string_view suffix) const { return arch_ + "." + std::string(suffix); }
  [[nodiscard]] bool has(const std::string& k) const { return file_.find(k) != nullptr; }

  [[noreturn]] void type_error(const std::string& k, std::string_view expected, const gguf::Value& v) const {
    fail(ErrorCode::kInvalidFile, "{}: metadata '{}' must be {}, got {}", source(), k, expected,
         gguf::value_type_name(v.type()));
  }

  [[nodiscard]] std::optional<int64_t> opt_int(const std::string& k) const {
    const gguf::Value* v = file_.find(k);
    if (v == nullptr) return std::nullopt;
    if (v->is_array()) {
      // llama.cpp accepts a per-layer array for some counts; pagoda needs them uniform.
      auto values = v->to_int_array();
      if (!values || values->empty()) type_error(k, "an integer", *v);
      if (std::adjacent_find(values->begin(), values->end(), std::not_equal_to<>()) != values->end()) {
        fail(ErrorCode::kUnsupported, "{}: metadata '{}' differs between layers, which is not supported", source(), k);
      }
      return values->front();
    }
    std::optional<int64_t> i = v->as_int();
    if (!i) {
      if (v->type() == gguf::ValueType::kUint64)
        fail(ErrorCode::kInvalidFile, "{}: metadata '{}' is out of range", source(), k);
      type_error(k, "an integer", *v);
    }
    return i;
  }

  [[nodiscard]] int64_t int_in(const std::string& k, std::optional<int64_t> def, int64_t lo, int64_t hi) const {
    std::optional<int64_t> v = opt_int(k);
    if (!v) {
      if (!def) fail(ErrorCode::kInvalidFile, "{}: missing required metadata '{}'", source(), k);
      return *def;
    }
    if (*v < lo || *v > hi) {
      fail(ErrorCode::kInvalidFile, "{}: metadata '{}' must be in [{}, {}], got {}", source(), k, lo, hi, *v);
    }
    return *v;
  }

  [[nodiscard]] std::optional<double> opt_float(const std::string& k) const {
    const gguf::Value* v = file_.find(k);
    if (v == nullptr) return std::nullopt;
    std::optional<double> d = v->is_array() ? std::nullopt : v->as_float();
    if (!d) type_error(k, "a number", *v);
    if (!std::isfinite(*d)) fail(ErrorCode::kInvalidFile, "{}: metadata '{}' is not a finite number", source(), k);
    return d;
  }

  [[nodiscard]] std::optional<bool> opt_bool(const std::string& k) const {
    const gguf::Value* v = file_.find(k);
    if (v == nullptr) return std::nullopt;
    std::optional<bool> b = v->as_bool();
    if (!b) type_error(k, "a bool", *v);
    return b;
  }

  [[nodiscard]] std::optional<std::string> opt_string(const std::string& k) const {
    const gguf::Value* v = file_.find(k);
    if (v == nullptr) return std::nullopt;
    if (v->as_string() == nullptr) type_error(k, "a string", *v);
    return *v->as_string();
  }

  [[nodiscard]] bool has_tensor(std::string_view name) const { return file_.find_tensor(name) != nullptr; }

  // A small f32 vector tensor (rope factors) as doubles, or nullopt when absent.
  [[nodiscard]] std::optional<std::vector<double>> f32_vector(std::string_view name, int64_t expected) const {
    const gguf::TensorInfo* info = file_.find_tensor(name);
    if (info == nullptr) return std::nullopt;
    if (info->dtype != DType::kF32 || info->shape.ndim() != 1 || info->shape[0] != expected) {
      fail(ErrorCode::kInvalidFile, "{}: tensor '{}' must be f32[{}], got {}{}", source(), name, expected,
           dtype_name(info->dtype), info->shape.str());
    }
    Tensor t = file_.tensor(*info);
    const auto* bytes = static_cast<const uint8_t*>(t.raw_data());
    std::vector<double> out(static_cast<size_t>(expected));
    for (size_t i = 0; i < out.size(); ++i) {
      float f = 0;
      std::memcpy(&f, bytes + i * sizeof(float), sizeof(float));  // the mapping need not be aligned
      out[i] = f;
    }
    return out;
  }

 private:
  const gguf::File& file_;
  std::string arch_;
};

double yarn_mscale(double factor) {
  return factor <= 1.0 ? 1.0 : 0.1 * std::log(factor) + 1.0;
}

void read_rope(const Meta& m, const std::string& arch, ModelConfig& c) {
  RopeConfig& r = c.rope;
  r.style = arch == "llama" ? RopeStyle::kGptj : RopeStyle::kNeox;
  r.theta = m.opt_float(m.key("rope.freq_base")).value_or(10000.0);
  r.rotary_dim = m.int_in(m.key("rope.dimension_count"), c.head_dim, 1, c.head_dim);

  const int64_t orig =
      m.int_in(m.key("rope.scaling.original_context_length"), c.max_position_embeddings, 1, kMaxPositions);
  std::optional<std::string> type = m.opt_string(m.key("rope.scaling.type"));
  double factor = m.opt_float(m.key("rope.scaling.factor")).value_or(0.0);
  if (!m.has(m.key("rope.scaling.factor"))) factor = m.opt_float(m.key("rope.scale_linear")).value_or(0.0);
  std::optional<double> attn_factor = m.opt_float(m.key("rope.scaling.attn_factor"));

  auto long_factor = m.f32_vector("rope_factors_long.weight", r.rotary_dim / 2);
  auto short_factor = m.f32_vector("rope_factors_short.weight", r.rotary_dim / 2);
  if (long_factor || short_factor || type == "longrope") {
    if (!long_factor || !short_factor) {
      fail(ErrorCode::kInvalidFile, "{}: longrope needs both rope_factors_long and rope_factors_short tensors",
           m.source());
    }
    r.type = RopeType::kLongRope;
    r.long_factor = std::move(*long_factor);
    r.short_factor = std::move(*short_factor);
    r.original_max_position_embeddings = orig;
    r.factor = static_cast<double>(c.max_position_embeddings) / static_cast<double>(orig);
    r.attention_factor = attn_factor.value_or(
        r.factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(r.factor) / std::log(static_cast<double>(orig))));
  } else if (!type || *type == "linear" || *type == "none") {
    // llama.cpp's default type is linear, with no factor meaning no scaling.
    if (type != "none" && factor != 0.0 && factor != 1.0) {
      r.type = RopeType::kLinear;
      r.factor = factor;
    }
  } else if (*type == "yarn") {
    for (const char* k :
         {"rope.scaling.yarn_log_multiplier", "rope.scaling.yarn_ext_factor", "rope.scaling.yarn_attn_factor"}) {
      if (m.has(m.key(k))) fail(ErrorCode::kUnsupported, "{}: metadata '{}' is not supported", m.source(), m.key(k));
    }
    r.type = RopeType::kYarn;
    r.factor = factor;
    r.original_max_position_embeddings = orig;
    r.beta_fast = m.opt_float(m.key("rope.scaling.yarn_beta_fast")).value_or(32.0);
    r.beta_slow = m.opt_float(m.key("rope.scaling.yarn_beta_slow")).value_or(1.0);
    // ggml's yarn multiplies the given attention factor by its own 1 + 0.1 ln(factor).
    r.attention_factor = attn_factor.value_or(1.0) * yarn_mscale(factor);
  } else {
    fail(ErrorCode::kUnsupported,
         "{}: rope scaling type '{}' is not supported (supported: none, linear, yarn, "
         "longrope)",
         m.source(), printable(*type));
  }
  if (auto freqs = m.f32_vector("rope_freqs.weight", r.rotary_dim / 2)) r.freq_factors = std::move(*freqs);
}

}  // namespace

ModelConfig config_from_gguf(const gguf::File& file) {
  const std::string& source = file.path();
  const gguf::Value* arch_value = file.find("general.architecture");
  if (arch_value == nullptr) fail(ErrorCode::kInvalidFile, "{}: missing metadata 'general.architecture'", source);
  if (arch_value->as_string() == nullptr) {
    fail(ErrorCode::kInvalidFile, "{}: metadata 'general.architecture' must be a string, got {}", source,
         gguf::value_type_name(arch_value->type()));
  }
  const std::string arch = *arch_value->as_string();
  Meta m(file, arch);

  ModelConfig c;
  c.format = ConfigFormat::kGguf;
  c.hf_architecture = printable(arch, 200);
  c.name = printable(m.opt_string("general.name").value_or(""), 1000);

  const int64_t experts = m.int_in(m.key("expert_count"), 0, 0, kMaxExperts);
  if (arch == "llama") {
    c.arch = experts > 0 ? Arch::kMixtral : Arch::kLlama;
  } else if (arch == "qwen2") {
    c.arch = Arch::kQwen2;
  } else if (arch == "qwen3") {
    c.arch = Arch::kQwen3;
  } else if (arch == "qwen3moe") {
    c.arch = Arch::kQwen3Moe;
  } else if (arch == "gemma") {
    c.arch = Arch::kGemma;
  } else if (arch == "gemma2") {
    c.arch = Arch::kGemma2;
  } else if (arch == "gemma3") {
    c.arch = Arch::kGemma3;
  } else if (arch == "phi3") {
    c.arch = Arch::kPhi3;
  } else if (arch == "gptneox") {
    c.arch = Arch::kGptNeoX;
  } else {
    fail(ErrorCode::kUnsupported, "{}: unsupported architecture '{}' (supported GGUF architectures: {})", source,
         printable(arch), kGgufArchs);
  }

  c.num_layers = m.int_in(m.key("block_count"), std::nullopt, 1, kMaxLayers);
  c.max_position_embeddings = m.int_in(m.key("context_length"), std::nullopt, 1, kMaxPositions);
  c.hidden_size = m.int_in(m.key("embedding_length"), std::nullopt, 1, kMaxHiddenSize);
  c.intermediate_size = m.int_in(m.key("feed_forward_length"), std::nullopt, 1, kMaxIntermediateSize);
  c.num_heads = m.int_in(m.key("attention.head_count"), std::nullopt, 1, kMaxHeads);
  c.num_kv_heads = m.int_in(m.key("attention.head_count_kv"), c.num_heads, 1, c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    fail(ErrorCode::kInvalidFile, "{}: {} ({}) must divide {} ({})", source, m.key("attention.head_count_kv"),
         c.num_kv_heads, m.key("attention.head_count"), c.num_heads);
  }
  const bool has_key_length = m.has(m.key("attention.key_length"));
  if (!has_key_length && c.hidden_size % c.num_heads != 0) {
    fail(ErrorCode::kInvalidFile, "{}: {} ({}) is not a multiple of {} ({}) and {} is absent", source,
         m.key("embedding_length"), c.hidden_size, m.key("attention.head_count"), c.num_heads,
         m.key("attention.key_length"));
  }
  c.head_dim = m.int_in(m.key("attention.key_length"), c.hidden_size / c.num_heads, 1, kMaxHeadDim);
  const int64_t value_dim = m.int_in(m.key("attention.value_length"), c.head_dim, 1, kMaxHeadDim);
  if (value_dim != c.head_dim) {
    fail(ErrorCode::kUnsupported, "{}: value head size {} differs from key head size {}", source, value_dim,
         c.head_dim);
  }

  if (m.has(m.key("vocab_size"))) {
    c.vocab_size = m.int_in(m.key("vocab_size"), std::nullopt, 1, kMaxVocab);
  } else if (const gguf::Value* tokens = file.find("tokenizer.ggml.tokens"); tokens != nullptr) {
    if (tokens->as_string_array() == nullptr) {
      fail(ErrorCode::kInvalidFile, "{}: metadata 'tokenizer.ggml.tokens' must be an array of strings", source);
    }
    c.vocab_size = static_cast<int64_t>(tokens->array_size());
  } else {
    fail(ErrorCode::kInvalidFile, "{}: neither '{}' nor 'tokenizer.ggml.tokens' gives the vocabulary size", source,
         m.key("vocab_size"));
  }

  const bool gemma = c.arch == Arch::kGemma || c.arch == Arch::kGemma2 || c.arch == Arch::kGemma3;
  if (c.arch == Arch::kGptNeoX) {
    c.norm_kind = NormKind::kLayerNorm;
    std::optional<double> eps = m.opt_float(m.key("attention.layer_norm_epsilon"));
    if (!eps) {
      fail(ErrorCode::kInvalidFile, "{}: missing required metadata '{}'", source,
           m.key("attention.layer_norm_epsilon"));
    }
    c.norm_eps = *eps;
    c.activation = Activation::kGelu;
    c.gated_mlp = false;
    c.parallel_residual = m.opt_bool(m.key("use_parallel_residual")).value_or(true);
  } else {
    c.norm_kind = NormKind::kRmsNorm;
    std::optional<double> eps = m.opt_float(m.key("attention.layer_norm_rms_epsilon"));
    if (!eps) {
      fail(ErrorCode::kInvalidFile, "{}: missing required metadata '{}'", source,
           m.key("attention.layer_norm_rms_epsilon"));
    }
    c.norm_eps = *eps;
    c.activation = gemma ? Activation::kGeluTanh : Activation::kSilu;
  }

  // Optional weights are found by name, as llama.cpp loads them.
  c.tie_word_embeddings = !m.has_tensor("output.weight");
  c.qkv_bias = m.has_tensor("blk.0.attn_q.bias") || m.has_tensor("blk.0.attn_qkv.bias");
  c.o_bias = m.has_tensor("blk.0.attn_output.bias");
  c.mlp_bias = m.has_tensor("blk.0.ffn_up.bias") || m.has_tensor("blk.0.ffn_down.bias");
  c.qk_norm = c.arch == Arch::kQwen3 || c.arch == Arch::kQwen3Moe || c.arch == Arch::kGemma3;

  read_rope(m, arch, c);

  // Sliding windows. llama.cpp fixes gemma2's pattern at 2 and gemma3's at 6 (every 6th layer
  // global, the others on a local rope with base 10000 unless the file says otherwise).
  const auto n = static_cast<size_t>(c.num_layers);
  c.layers.assign(n, LayerConfig{});
  const std::string window_key = m.key("attention.sliding_window");
  int64_t window = m.int_in(window_key, c.arch == Arch::kGemma2 ? 4096 : 0, 0, std::numeric_limits<int32_t>::max());
  std::vector<bool> sliding(n, false);
  if (c.arch == Arch::kGemma2) {
    for (size_t i = 0; i < n; ++i)
      sliding[i] = i % 2 == 0;
  } else if (c.arch == Arch::kGemma3 && window > 0) {
    const std::string pattern_key = m.key("attention.sliding_window_pattern");
    const gguf::Value* pattern = file.find(pattern_key);
    if (pattern != nullptr && pattern->is_array()) {
      auto flags = pattern->to_int_array();
      if (!flags || flags->size() != n) {
        fail(ErrorCode::kInvalidFile, "{}: metadata '{}' must hold one bool per layer", source, pattern_key);
      }
      for (size_t i = 0; i < n; ++i)
        sliding[i] = (*flags)[i] != 0;
    } else {
      int64_t every = m.int_in(pattern_key, 6, 1, kMaxLayers);
      for (size_t i = 0; i < n; ++i)
        sliding[i] = (static_cast<int64_t>(i) + 1) % every != 0;
    }
    RopeConfig local = c.rope;
    local.type = RopeType::kDefault;
    local.factor = 1.0;
    local.attention_factor = 1.0;
    local.original_max_position_embeddings = 0;
    local.long_factor.clear();
    local.short_factor.clear();
    local.freq_factors.clear();
    local.theta = m.opt_float(m.key("rope.freq_base_swa")).value_or(10000.0);
    c.rope_local = local;
  } else if (c.arch == Arch::kPhi3 || c.arch == Arch::kMixtral) {
    sliding.assign(n, window > 0);  // as in HF; llama.cpp currently ignores Phi-3's window
  } else {
    window = 0;  // llama.cpp does not apply a window for the other archs
  }
  c.sliding_window = window;
  for (size_t i = 0; i < n; ++i) {
    c.layers[i].sliding_window = sliding[i] ? window : 0;
    c.layers[i].local_rope = c.rope_local.has_value() && sliding[i];
  }

  if (gemma) {
    c.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
    c.norm_weight_offset = 0.0;  // the converter stored 1 + w
  }
  if (c.arch == Arch::kGemma2 || c.arch == Arch::kGemma3) {
    c.attn_logit_softcap = m.opt_float(m.key("attn_logit_softcapping")).value_or(c.arch == Arch::kGemma2 ? 50.0 : 0.0);
    c.final_logit_softcap =
        m.opt_float(m.key("final_logit_softcapping")).value_or(c.arch == Arch::kGemma2 ? 30.0 : 0.0);
    // GGUF does not carry query_pre_attn_scalar; llama.cpp recognises the 27B models, whose scalar
    // is hidden_size / num_heads, by their layer count.
    const bool is_27b =
        (c.arch == Arch::kGemma2 && c.num_layers == 46) || (c.arch == Arch::kGemma3 && c.num_layers == 62);
    const int64_t per_head = c.hidden_size / c.num_heads;  // integer division, as llama.cpp does
    c.query_pre_attn_scalar = static_cast<double>(is_27b ? per_head : c.head_dim);
  }
  if (std::optional<double> scale = m.opt_float(m.key("attention.scale"))) {
    c.attention_scale = *scale;
  } else {
    c.attention_scale =
        1.0 / std::sqrt(c.query_pre_attn_scalar > 0.0 ? c.query_pre_attn_scalar : static_cast<double>(c.head_dim));
  }

  if (c.arch == Arch::kMixtral || c.arch == Arch::kQwen3Moe) {
    if (experts == 0) fail(ErrorCode::kInvalidFile, "{}: missing metadata '{}'", source, m.key("expert_count"));
    c.moe.num_experts = experts;
    c.moe.num_experts_per_tok = m.int_in(m.key("expert_used_count"), std::nullopt, 1, experts);
    c.moe.expert_intermediate_size = m.int_in(
        m.key("expert_feed_forward_length"),
        c.arch == Arch::kMixtral ? std::optional<int64_t>(c.intermediate_size) : std::nullopt, 1, kMaxIntermediateSize);
    c.moe.norm_topk_prob = m.opt_bool(m.key("expert_weights_norm")).value_or(true);
    for (LayerConfig& l : c.layers)
      l.moe = true;
  } else if (experts != 0) {
    fail(ErrorCode::kUnsupported, "{}: experts in a {} model are not supported", source, printable(arch));
  }

  auto token = [&](const char* k) -> std::optional<int64_t> {
    std::optional<int64_t> id = m.opt_int(k);
    if (id && (*id < 0 || *id >= c.vocab_size)) {
      fail(ErrorCode::kInvalidFile, "{}: metadata '{}' ({}) is outside the vocabulary [0, {})", source, k, *id,
           c.vocab_size);
    }
    return id;
  };
  c.bos_token_id = token("tokenizer.ggml.bos_token_id");
  c.pad_token_id = token("tokenizer.ggml.padding_token_id");
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    std::optional<int64_t> id = token(k);
    if (id && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(*id);
    }
  }

  validate_model_config(c, source);
  return c;
}

}  // namespace pagoda::model
