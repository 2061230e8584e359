#include "model/loader/model_config.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace pagoda::model {
namespace {

struct ArchName {
  Arch arch;
  std::string_view name;
};

constexpr std::array<ArchName, 11> kArchNames = {{
    {Arch::kLlama, "llama"},
    {Arch::kMistral, "mistral"},
    {Arch::kQwen2, "qwen2"},
    {Arch::kQwen3, "qwen3"},
    {Arch::kGemma, "gemma"},
    {Arch::kGemma2, "gemma2"},
    {Arch::kGemma3, "gemma3"},
    {Arch::kPhi3, "phi3"},
    {Arch::kMixtral, "mixtral"},
    {Arch::kQwen3Moe, "qwen3_moe"},
    {Arch::kGptNeoX, "gpt_neox"},
}};

constexpr std::array<Arch, 11> kArchs = {Arch::kLlama,   Arch::kMistral,  Arch::kQwen2,  Arch::kQwen3,
                                         Arch::kGemma,   Arch::kGemma2,   Arch::kGemma3, Arch::kPhi3,
                                         Arch::kMixtral, Arch::kQwen3Moe, Arch::kGptNeoX};

void check_range(const std::string& source, std::string_view field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi)
    fail(ErrorCode::kInvalidFile, "{}: {} must be in [{}, {}], got {}", source, field, lo, hi, value);
}

void check_positive_finite(const std::string& source, std::string_view field, double value, double hi) {
  if (!std::isfinite(value) || value <= 0.0 || value > hi) {
    fail(ErrorCode::kInvalidFile, "{}: {} must be a finite number in (0, {}], got {}", source, field, hi, value);
  }
}

void check_factors(const std::string& source, std::string_view field, const std::vector<double>& factors,
                   int64_t rotary_dim, bool may_be_empty) {
  if (factors.empty() && may_be_empty) return;
  if (static_cast<int64_t>(factors.size()) != rotary_dim / 2) {
    fail(ErrorCode::kInvalidFile, "{}: {} must have rotary_dim / 2 = {} entries, got {}", source, field, rotary_dim / 2,
         factors.size());
  }
  for (double f : factors)
    check_positive_finite(source, field, f, 1e12);
}

void validate_rope(const RopeConfig& rope, const ModelConfig& c, const std::string& source, std::string_view name) {
  const std::string field = std::string(name);
  check_positive_finite(source, field + ".theta", rope.theta, 1e15);
  if (rope.rotary_dim < 2 || rope.rotary_dim > c.head_dim || rope.rotary_dim % 2 != 0) {
    fail(ErrorCode::kInvalidFile, "{}: {}.rotary_dim must be even and in [2, head_dim = {}], got {}", source, field,
         c.head_dim, rope.rotary_dim);
  }
  check_positive_finite(source, field + ".factor", rope.factor, 1e6);
  check_positive_finite(source, field + ".attention_factor", rope.attention_factor, 1e6);
  switch (rope.type) {
    case RopeType::kDefault:
    case RopeType::kLinear:
    case RopeType::kDynamic: break;
    case RopeType::kLlama3:
      check_range(source, field + ".original_max_position_embeddings", rope.original_max_position_embeddings, 1,
                  kMaxPositions);
      check_positive_finite(source, field + ".low_freq_factor", rope.low_freq_factor, 1e6);
      check_positive_finite(source, field + ".high_freq_factor", rope.high_freq_factor, 1e6);
      // The smoothing between the two bands divides by their difference.
      if (!(rope.high_freq_factor > rope.low_freq_factor)) {
        fail(ErrorCode::kInvalidFile, "{}: {}.high_freq_factor ({}) must exceed low_freq_factor ({})", source, field,
             rope.high_freq_factor, rope.low_freq_factor);
      }
      break;
    case RopeType::kYarn:
      check_range(source, field + ".original_max_position_embeddings", rope.original_max_position_embeddings, 1,
                  kMaxPositions);
      check_positive_finite(source, field + ".beta_fast", rope.beta_fast, 1e6);
      check_positive_finite(source, field + ".beta_slow", rope.beta_slow, 1e6);
      break;
    case RopeType::kLongRope:
      check_range(source, field + ".original_max_position_embeddings", rope.original_max_position_embeddings, 1,
                  kMaxPositions);
      check_factors(source, field + ".long_factor", rope.long_factor, rope.rotary_dim, false);
      check_factors(source, field + ".short_factor", rope.short_factor, rope.rotary_dim, false);
      break;
  }
  check_factors(source, field + ".freq_factors", rope.freq_factors, rope.rotary_dim, true);
}

void check_token(const std::string& source, std::string_view field, int64_t id, int64_t vocab) {
  if (id < 0 || id >= vocab)
    fail(ErrorCode::kInvalidFile, "{}: {} {} is outside the vocabulary [0, {})", source, field, id, vocab);
}

nlohmann::ordered_json rope_json(const RopeConfig& r) {
  nlohmann::ordered_json j;
  j["type"] = rope_type_name(r.type);
  j["style"] = rope_style_name(r.style);
  j["theta"] = r.theta;
  j["rotary_dim"] = r.rotary_dim;
  j["factor"] = r.factor;
  j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  j["low_freq_factor"] = r.low_freq_factor;
  j["high_freq_factor"] = r.high_freq_factor;
  j["beta_fast"] = r.beta_fast;
  j["beta_slow"] = r.beta_slow;
  j["mscale"] = r.mscale;
  j["mscale_all_dim"] = r.mscale_all_dim;
  j["truncate"] = r.truncate;
  j["attention_factor"] = r.attention_factor;
  j["long_factor"] = r.long_factor;
  j["short_factor"] = r.short_factor;
  j["freq_factors"] = r.freq_factors;
  return j;
}

}  // namespace

std::string_view architecture_name(Arch arch) {
  for (const ArchName& a : kArchNames) {
    if (a.arch == arch) return a.name;
  }
  return "unknown";
}

std::span<const Arch> supported_architectures() {
  return kArchs;
}

std::string supported_architecture_list() {
  std::string out;
  for (Arch a : kArchs) {
    if (!out.empty()) out += ", ";
    out += architecture_name(a);
  }
  return out;
}

std::optional<Arch> architecture_from_name(std::string_view name) {
  for (const ArchName& a : kArchNames) {
    if (a.name == name) return a.arch;
  }
  return std::nullopt;
}

std::string_view config_format_name(ConfigFormat f) {
  return f == ConfigFormat::kGguf ? "gguf" : "hf";
}

std::string_view norm_kind_name(NormKind k) {
  return k == NormKind::kLayerNorm ? "layer_norm" : "rms_norm";
}

std::string_view activation_name(Activation a) {
  switch (a) {
    case Activation::kSilu: return "silu";
    case Activation::kGelu: return "gelu";
    case Activation::kGeluTanh: return "gelu_tanh";
  }
  return "unknown";
}

std::string_view rope_type_name(RopeType t) {
  switch (t) {
    case RopeType::kDefault: return "default";
    case RopeType::kLinear: return "linear";
    case RopeType::kDynamic: return "dynamic";
    case RopeType::kYarn: return "yarn";
    case RopeType::kLlama3: return "llama3";
    case RopeType::kLongRope: return "longrope";
  }
  return "unknown";
}

std::string_view rope_style_name(RopeStyle s) {
  return s == RopeStyle::kGptj ? "gptj" : "neox";
}

bool ModelConfig::has_sliding_layers() const {
  for (const LayerConfig& l : layers) {
    if (l.sliding_window > 0) return true;
  }
  return false;
}

void validate_model_config(const ModelConfig& c, const std::string& source) {
  check_range(source, "vocab_size", c.vocab_size, 1, kMaxVocab);
  check_range(source, "hidden_size", c.hidden_size, 1, kMaxHiddenSize);
  check_range(source, "intermediate_size", c.intermediate_size, 1, kMaxIntermediateSize);
  check_range(source, "num_layers", c.num_layers, 1, kMaxLayers);
  check_range(source, "num_heads", c.num_heads, 1, kMaxHeads);
  check_range(source, "num_kv_heads", c.num_kv_heads, 1, c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    fail(ErrorCode::kInvalidFile, "{}: num_kv_heads ({}) must divide num_heads ({})", source, c.num_kv_heads,
         c.num_heads);
  }
  check_range(source, "head_dim", c.head_dim, 1, kMaxHeadDim);
  check_range(source, "num_heads * head_dim", c.num_heads * c.head_dim, 1, kMaxHiddenSize);
  check_range(source, "max_position_embeddings", c.max_position_embeddings, 1, kMaxPositions);
  if (!std::isfinite(c.norm_eps) || c.norm_eps <= 0.0 || c.norm_eps >= 1.0) {
    fail(ErrorCode::kInvalidFile, "{}: norm epsilon must be in (0, 1), got {}", source, c.norm_eps);
  }
  if (!std::isfinite(c.norm_weight_offset))
    fail(ErrorCode::kInvalidFile, "{}: norm_weight_offset is not finite", source);

  validate_rope(c.rope, c, source, "rope");
  if (c.rope_local) validate_rope(*c.rope_local, c, source, "rope_local");

  if (static_cast<int64_t>(c.layers.size()) != c.num_layers) {
    fail(ErrorCode::kInvalidFile, "{}: {} layer descriptions for {} layers", source, c.layers.size(), c.num_layers);
  }
  check_range(source, "sliding_window", c.sliding_window, 0, std::numeric_limits<int32_t>::max());
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const LayerConfig& l = c.layers[i];
    check_range(source, fmt::format("layer {} sliding_window", i), l.sliding_window, 0,
                std::numeric_limits<int32_t>::max());
    if (l.local_rope && !c.rope_local) {
      fail(ErrorCode::kInvalidFile, "{}: layer {} uses a local rope that is not configured", source, i);
    }
    if (l.moe && c.moe.num_experts == 0)
      fail(ErrorCode::kInvalidFile, "{}: layer {} is MoE without experts", source, i);
  }

  for (auto [field, value] : {std::pair<std::string_view, double>{"attn_logit_softcapping", c.attn_logit_softcap},
                              {"final_logit_softcapping", c.final_logit_softcap},
                              {"query_pre_attn_scalar", c.query_pre_attn_scalar}}) {
    if (!std::isfinite(value) || value < 0.0 || value > 1e9) {
      fail(ErrorCode::kInvalidFile, "{}: {} must be a finite number in [0, 1e9], got {}", source, field, value);
    }
  }
  check_positive_finite(source, "attention_scale", c.attention_scale, 1e6);
  check_positive_finite(source, "embedding_scale", c.embedding_scale, 1e6);

  if (c.moe.num_experts != 0) {
    check_range(source, "num_experts", c.moe.num_experts, 1, kMaxExperts);
    check_range(source, "num_experts_per_tok", c.moe.num_experts_per_tok, 1, c.moe.num_experts);
    check_range(source, "expert intermediate size", c.moe.expert_intermediate_size, 1, kMaxIntermediateSize);
  }
  check_range(source, "decoder_sparse_step", c.moe.decoder_sparse_step, 1, kMaxLayers);
  for (int64_t l : c.moe.mlp_only_layers)
    check_range(source, "mlp_only_layers entry", l, 0, c.num_layers - 1);

  if (c.bos_token_id) check_token(source, "bos_token_id", *c.bos_token_id, c.vocab_size);
  if (c.pad_token_id) check_token(source, "pad_token_id", *c.pad_token_id, c.vocab_size);
  if (c.eos_token_ids.size() > kMaxEosTokens) {
    fail(ErrorCode::kInvalidFile, "{}: {} eos token ids (at most {})", source, c.eos_token_ids.size(), kMaxEosTokens);
  }
  for (int64_t id : c.eos_token_ids)
    check_token(source, "eos_token_id", id, c.vocab_size);
}

std::string model_config_to_json(const ModelConfig& c, int indent) {
  nlohmann::ordered_json j;
  j["architecture"] = architecture_name(c.arch);
  j["name"] = c.name;
  j["hf_architecture"] = c.hf_architecture;
  j["format"] = config_format_name(c.format);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_layers"] = c.num_layers;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["norm"] = norm_kind_name(c.norm_kind);
  j["norm_eps"] = c.norm_eps;
  j["norm_weight_offset"] = c.norm_weight_offset;
  j["activation"] = activation_name(c.activation);
  j["gated_mlp"] = c.gated_mlp;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["qkv_bias"] = c.qkv_bias;
  j["o_bias"] = c.o_bias;
  j["mlp_bias"] = c.mlp_bias;
  j["qk_norm"] = c.qk_norm;
  j["parallel_residual"] = c.parallel_residual;
  j["rope"] = rope_json(c.rope);
  j["rope_local"] = c.rope_local ? rope_json(*c.rope_local) : nlohmann::ordered_json(nullptr);
  j["sliding_window"] = c.sliding_window;
  std::vector<int64_t> windows;
  std::vector<bool> local_rope;
  std::vector<bool> moe_layers;
  for (const LayerConfig& l : c.layers) {
    windows.push_back(l.sliding_window);
    local_rope.push_back(l.local_rope);
    moe_layers.push_back(l.moe);
  }
  j["layer_sliding_window"] = windows;
  j["layer_local_rope"] = local_rope;
  j["layer_moe"] = moe_layers;
  j["attn_logit_softcap"] = c.attn_logit_softcap;
  j["final_logit_softcap"] = c.final_logit_softcap;
  j["query_pre_attn_scalar"] = c.query_pre_attn_scalar;
  j["attention_scale"] = c.attention_scale;
  j["embedding_scale"] = c.embedding_scale;
  nlohmann::ordered_json moe;
  moe["num_experts"] = c.moe.num_experts;
  moe["num_experts_per_tok"] = c.moe.num_experts_per_tok;
  moe["expert_intermediate_size"] = c.moe.expert_intermediate_size;
  moe["norm_topk_prob"] = c.moe.norm_topk_prob;
  moe["decoder_sparse_step"] = c.moe.decoder_sparse_step;
  moe["mlp_only_layers"] = c.moe.mlp_only_layers;
  j["moe"] = moe;
  j["bos_token_id"] = c.bos_token_id ? nlohmann::ordered_json(*c.bos_token_id) : nlohmann::ordered_json(nullptr);
  j["eos_token_ids"] = c.eos_token_ids;
  j["pad_token_id"] = c.pad_token_id ? nlohmann::ordered_json(*c.pad_token_id) : nlohmann::ordered_json(nullptr);
  j["torch_dtype"] = c.torch_dtype;
  // Names inside the config are untrusted bytes; replace invalid UTF-8 rather than throw.
  return j.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace pagoda::model
