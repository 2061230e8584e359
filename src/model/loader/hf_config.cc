// ModelConfig from a Hugging Face config.json (+ generation_config.json).
//
// Defaults follow each architecture's configuration_<arch>.py in transformers: a field that is
// absent takes that class's default, and `null` means "not set" where the class allows None. The
// size fields that HF always writes at the top level (vocab_size, hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads) are required there: a config without them is not one HF
// wrote, and silently taking a 7B default would only fail later against the weights. Nested
// sub-configs (gemma3's text_config) are written as a diff against the class defaults, so there
// every field may be absent.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/loader/model_config.h"

namespace pagoda::model {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxStringBytes = 4096;
constexpr size_t kMaxArrayElements = 1 << 16;

// One line, printable, bounded: parts of hostile input end up in error messages.
std::string printable(std::string_view s, size_t max_bytes = 160) {
  std::string out;
  for (char ch : s.substr(0, max_bytes)) {
    auto u = static_cast<unsigned char>(ch);
    out += (u < 0x20 || u == 0x7f) ? '?' : ch;
  }
  if (s.size() > max_bytes) out += "...";
  return out;
}

std::string describe(const json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return "an array";
  return fmt::format("{} {}", v.type_name(), printable(v.dump(-1, ' ', false, json::error_handler_t::replace), 40));
}

// nlohmann's parser is iterative, but every later walk of a value (copy, destruction, dump) is not
// bounded by us; refuse deep nesting before parsing.
int nesting_depth(std::string_view text, int cap) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > cap) return max_depth;
    } else if (ch == ']' || ch == '}') {
      depth = std::max(0, depth - 1);
    }
  }
  return max_depth;
}

json parse_json_object(const std::string& text, const std::string& source) {
  if (text.size() > kMaxConfigBytes) {
    fail(ErrorCode::kInvalidFile, "{}: {} bytes is over the {} byte limit for a config file", source, text.size(),
         kMaxConfigBytes);
  }
  if (nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    fail(ErrorCode::kInvalidFile, "{}: JSON nested deeper than {} levels", source, kMaxJsonDepth);
  }
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    fail(ErrorCode::kInvalidFile, "{}: invalid JSON: {}", source, printable(e.what(), 300));
  }
  if (!root.is_object())
    fail(ErrorCode::kInvalidFile, "{}: expected a JSON object at the top level, got {}", source, describe(root));
  return root;
}

// Typed access to the fields of one JSON object, with errors that name the file and the field.
class Fields {
 public:
  Fields(const json& object, std::string source, std::string prefix)
      : obj_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

  [[nodiscard]] const std::string& source() const { return source_; }
  [[nodiscard]] std::string name(std::string_view key) const { return prefix_ + std::string(key); }
  [[nodiscard]] bool has(std::string_view key) const { return obj_.contains(key); }

  // The value, or nullptr when absent or null.
  [[nodiscard]] const json* get(std::string_view key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  [[noreturn]] void type_error(std::string_view key, std::string_view expected, const json& got) const {
    fail(ErrorCode::kInvalidFile, "{}: field '{}' must be {}, got {}", source_, name(key), expected, describe(got));
  }

  [[nodiscard]] std::optional<int64_t> opt_int(std::string_view key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    return to_int(key, *v);
  }

  // An integer in [lo, hi]; `def` when absent or null (nullopt: the field is required).
  [[nodiscard]] int64_t int_in(std::string_view key, std::optional<int64_t> def, int64_t lo, int64_t hi) const {
    std::optional<int64_t> v = opt_int(key);
    if (!v) {
      if (!def) fail(ErrorCode::kInvalidFile, "{}: missing required field '{}'", source_, name(key));
      return *def;
    }
    if (*v < lo || *v > hi) {
      fail(ErrorCode::kInvalidFile, "{}: field '{}' must be in [{}, {}], got {}", source_, name(key), lo, hi, *v);
    }
    return *v;
  }

  [[nodiscard]] std::optional<double> opt_float(std::string_view key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    return to_float(key, *v);
  }

  [[nodiscard]] std::optional<bool> opt_bool(std::string_view key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) type_error(key, "true or false", *v);
    return v->get<bool>();
  }

  [[nodiscard]] bool bool_or(std::string_view key, bool def) const { return opt_bool(key).value_or(def); }

  [[nodiscard]] std::optional<std::string> opt_string(std::string_view key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) type_error(key, "a string", *v);
    const auto& s = v->get_ref<const std::string&>();
    if (s.size() > kMaxStringBytes) {
      fail(ErrorCode::kInvalidFile, "{}: field '{}' is longer than {} bytes", source_, name(key), kMaxStringBytes);
    }
    return s;
  }

  [[nodiscard]] const json* opt_object(std::string_view key) const {
    const json* v = get(key);
    if (v != nullptr && !v->is_object()) type_error(key, "an object", *v);
    return v;
  }

  [[nodiscard]] const json* opt_array(std::string_view key) const {
    const json* v = get(key);
    if (v == nullptr) return nullptr;
    if (!v->is_array()) type_error(key, "an array", *v);
    if (v->size() > kMaxArrayElements) {
      fail(ErrorCode::kInvalidFile, "{}: field '{}' has {} elements (at most {})", source_, name(key), v->size(),
           kMaxArrayElements);
    }
    return v;
  }

  [[nodiscard]] std::optional<std::vector<double>> opt_float_list(std::string_view key) const {
    const json* a = opt_array(key);
    if (a == nullptr) return std::nullopt;
    std::vector<double> out;
    out.reserve(a->size());
    for (const json& e : *a)
      out.push_back(to_float(key, e));
    return out;
  }

  [[nodiscard]] std::optional<std::vector<int64_t>> opt_int_list(std::string_view key) const {
    const json* a = opt_array(key);
    if (a == nullptr) return std::nullopt;
    std::vector<int64_t> out;
    out.reserve(a->size());
    for (const json& e : *a)
      out.push_back(to_int(key, e));
    return out;
  }

  [[nodiscard]] std::optional<std::vector<std::string>> opt_string_list(std::string_view key) const {
    const json* a = opt_array(key);
    if (a == nullptr) return std::nullopt;
    std::vector<std::string> out;
    out.reserve(a->size());
    for (const json& e : *a) {
      if (!e.is_string()) type_error(key, "an array of strings", e);
      out.push_back(e.get<std::string>());
      if (out.back().size() > kMaxStringBytes) {
        fail(ErrorCode::kInvalidFile, "{}: an entry of '{}' is longer than {} bytes", source_, name(key),
             kMaxStringBytes);
      }
    }
    return out;
  }

  // An int or a list of ints (eos_token_id); nullopt when absent or null.
  [[nodiscard]] std::optional<std::vector<int64_t>> opt_int_or_list(std::string_view key) const {
    const json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_array()) {
      if (v->size() > kMaxEosTokens) {
        fail(ErrorCode::kInvalidFile, "{}: field '{}' lists {} ids (at most {})", source_, name(key), v->size(),
             kMaxEosTokens);
      }
      return opt_int_list(key);
    }
    return std::vector<int64_t>{to_int(key, *v)};
  }

 private:
  int64_t to_int(std::string_view key, const json& v) const {
    if (v.is_number_unsigned()) {
      auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(ErrorCode::kInvalidFile, "{}: field '{}' is out of range: {}", source_, name(key), u);
      }
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    type_error(key, "an integer", v);
  }

  double to_float(std::string_view key, const json& v) const {
    if (!v.is_number()) type_error(key, "a number", v);
    double d = v.get<double>();
    if (!std::isfinite(d)) fail(ErrorCode::kInvalidFile, "{}: field '{}' is not a finite number", source_, name(key));
    return d;
  }

  const json& obj_;
  std::string source_;
  std::string prefix_;
};

// Per-architecture defaults from transformers' configuration classes.
struct ArchDefaults {
  int64_t num_kv_heads;  // 0: equal to num_attention_heads
  int64_t head_dim;      // 0: hidden_size / num_attention_heads
  int64_t max_position_embeddings;
  double norm_eps;
  bool tie_word_embeddings;
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::optional<int64_t> pad;
  double rope_theta;
};

ArchDefaults arch_defaults(Arch arch) {
  switch (arch) {
    case Arch::kLlama: return {0, 0, 2048, 1e-6, false, 1, 2, std::nullopt, 10000.0};
    case Arch::kMistral: return {8, 0, 131072, 1e-6, false, 1, 2, std::nullopt, 10000.0};
    case Arch::kQwen2: return {32, 0, 32768, 1e-6, false, std::nullopt, std::nullopt, std::nullopt, 10000.0};
    case Arch::kQwen3: return {32, 128, 32768, 1e-6, false, std::nullopt, std::nullopt, std::nullopt, 10000.0};
    case Arch::kGemma: return {16, 256, 8192, 1e-6, true, 2, 1, 0, 10000.0};
    case Arch::kGemma2: return {4, 256, 8192, 1e-6, true, 2, 1, 0, 10000.0};
    case Arch::kGemma3: return {4, 256, 131072, 1e-6, true, 2, 1, 0, 1000000.0};
    case Arch::kPhi3: return {0, 0, 4096, 1e-5, false, 1, 32000, 32000, 10000.0};
    case Arch::kMixtral: return {8, 0, 131072, 1e-5, false, 1, 2, std::nullopt, 1000000.0};
    case Arch::kQwen3Moe: return {4, 0, 32768, 1e-6, false, std::nullopt, std::nullopt, std::nullopt, 10000.0};
    case Arch::kGptNeoX: return {0, 0, 2048, 1e-5, false, 0, 2, std::nullopt, 10000.0};
  }
  return {};
}

// Gemma3TextConfig's defaults for the size fields a nested text_config may omit.
struct NestedSizes {
  int64_t vocab = 262208;
  int64_t hidden = 2304;
  int64_t intermediate = 9216;
  int64_t layers = 26;
  int64_t heads = 8;
};

struct ClassName {
  std::string_view name;
  Arch arch;
  bool nested_text_config;
};

constexpr ClassName kClassNames[] = {
    {"LlamaForCausalLM", Arch::kLlama, false},       {"MistralForCausalLM", Arch::kMistral, false},
    {"Qwen2ForCausalLM", Arch::kQwen2, false},       {"Qwen3ForCausalLM", Arch::kQwen3, false},
    {"GemmaForCausalLM", Arch::kGemma, false},       {"Gemma2ForCausalLM", Arch::kGemma2, false},
    {"Gemma3ForCausalLM", Arch::kGemma3, false},     {"Gemma3ForConditionalGeneration", Arch::kGemma3, true},
    {"Phi3ForCausalLM", Arch::kPhi3, false},         {"MixtralForCausalLM", Arch::kMixtral, false},
    {"Qwen3MoeForCausalLM", Arch::kQwen3Moe, false}, {"GPTNeoXForCausalLM", Arch::kGptNeoX, false},
};

struct Family {
  Arch arch;
  bool nested_text_config;  // gemma3: the text model is under text_config
};

std::optional<Family> family_from_model_type(std::string_view model_type) {
  if (model_type == "gemma3_text") return Family{Arch::kGemma3, false};
  if (model_type == "gemma3") return Family{Arch::kGemma3, true};
  if (auto a = architecture_from_name(model_type)) return Family{*a, false};
  return std::nullopt;
}

Family select_family(const Fields& root) {
  std::optional<std::string> model_type = root.opt_string("model_type");
  std::optional<std::string> class_name;
  if (const json* a = root.opt_array("architectures"); a != nullptr && !a->empty()) {
    if (!(*a)[0].is_string()) root.type_error("architectures", "an array of strings", (*a)[0]);
    class_name = (*a)[0].get<std::string>();
  }
  if (model_type) {
    if (auto f = family_from_model_type(*model_type)) return *f;
  }
  if (class_name) {
    for (const ClassName& c : kClassNames) {
      if (c.name == *class_name) return {c.arch, c.nested_text_config};
    }
  }
  if (!model_type && !class_name) {
    fail(ErrorCode::kInvalidFile, "{}: neither 'model_type' nor 'architectures' names the model family", root.source());
  }
  std::string what = class_name ? fmt::format("'{}' (", printable(*class_name, 100))
                                : fmt::format("'{}' (", printable(*model_type, 100));
  if (class_name && model_type) what += fmt::format("model_type '{}'; ", printable(*model_type, 100));
  fail(ErrorCode::kUnsupported, "{}: unsupported architecture {}supported: {})", root.source(), what,
       supported_architecture_list());
}

Activation parse_activation(const Fields& f, std::string_view key, const std::string& value) {
  if (value == "silu" || value == "swish") return Activation::kSilu;
  if (value == "gelu") return Activation::kGelu;
  // All four compute 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  if (value == "gelu_pytorch_tanh" || value == "gelu_new" || value == "gelu_fast" || value == "gelu_accurate") {
    return Activation::kGeluTanh;
  }
  fail(ErrorCode::kUnsupported,
       "{}: activation '{}' in field '{}' is not supported (supported: silu, swish, gelu, gelu_pytorch_tanh, "
       "gelu_new, gelu_fast, gelu_accurate)",
       f.source(), printable(value, 60), f.name(key));
}

double yarn_mscale(double scale, double m) {
  return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
}

// Inputs to one rope: the parameter dict (v4 rope_scaling or v5 rope_parameters, may be null) and
// the values that apply when the dict does not set them.
struct RopeInputs {
  const json* dict = nullptr;
  std::string dict_name;  // for messages: "rope_scaling", "rope_parameters.full_attention", ...
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  bool partial_allowed = false;  // only phi3 and gpt_neox apply a partial rotary dimension
  // A top-level original_max_position_embeddings overrides the dict's (transformers'
  // standardize_rope_params gives it priority).
  std::optional<int64_t> top_level_original_max;
};

RopeConfig parse_rope(const Fields& top, const RopeInputs& in, Arch arch, int64_t head_dim, int64_t max_positions) {
  RopeConfig r;
  const json empty = json::object();
  Fields d(in.dict != nullptr ? *in.dict : empty, top.source(), in.dict_name + ".");
  r.theta = d.opt_float("rope_theta").value_or(in.theta);
  double partial = d.opt_float("partial_rotary_factor").value_or(in.partial_rotary_factor);
  if (!(partial > 0.0 && partial <= 1.0)) {
    fail(ErrorCode::kInvalidFile, "{}: partial rotary factor must be in (0, 1], got {}", top.source(), partial);
  }
  if (partial != 1.0 && !in.partial_allowed) {
    fail(ErrorCode::kUnsupported, "{}: a partial rotary factor ({}) is not supported for {}", top.source(), partial,
         architecture_name(arch));
  }
  r.rotary_dim = static_cast<int64_t>(std::floor(static_cast<double>(head_dim) * partial));

  std::string type = d.opt_string("rope_type").value_or(d.opt_string("type").value_or("default"));
  if (arch == Arch::kPhi3 && (type == "su" || type == "yarn")) type = "longrope";  // Phi3Config's mapping
  auto require_float = [&](std::string_view key) {
    std::optional<double> v = d.opt_float(key);
    if (!v) {
      fail(ErrorCode::kInvalidFile, "{}: field '{}' is required for rope type '{}'", top.source(), d.name(key), type);
    }
    return *v;
  };
  auto original_max = [&]() -> int64_t {
    if (in.top_level_original_max) return *in.top_level_original_max;
    return d.int_in("original_max_position_embeddings", max_positions, 1, kMaxPositions);
  };

  if (type == "default") {
    r.type = RopeType::kDefault;
  } else if (type == "linear" || type == "dynamic") {
    r.type = type == "linear" ? RopeType::kLinear : RopeType::kDynamic;
    r.factor = require_float("factor");
  } else if (type == "llama3") {
    r.type = RopeType::kLlama3;
    r.factor = require_float("factor");
    r.low_freq_factor = require_float("low_freq_factor");
    r.high_freq_factor = require_float("high_freq_factor");
    r.original_max_position_embeddings = original_max();
  } else if (type == "yarn") {
    r.type = RopeType::kYarn;
    r.factor = require_float("factor");
    r.original_max_position_embeddings = original_max();
    r.mscale = d.opt_float("mscale").value_or(0.0);
    r.mscale_all_dim = d.opt_float("mscale_all_dim").value_or(0.0);
    // transformers reads these with `or`, so an explicit 0 also means the default.
    double beta_fast = d.opt_float("beta_fast").value_or(0.0);
    double beta_slow = d.opt_float("beta_slow").value_or(0.0);
    r.beta_fast = beta_fast != 0.0 ? beta_fast : 32.0;
    r.beta_slow = beta_slow != 0.0 ? beta_slow : 1.0;
    r.truncate = d.bool_or("truncate", true);
    if (std::optional<double> af = d.opt_float("attention_factor")) {
      r.attention_factor = *af;
    } else if (r.mscale != 0.0 && r.mscale_all_dim != 0.0) {
      r.attention_factor = yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim);
    } else {
      r.attention_factor = yarn_mscale(r.factor, 1.0);
    }
  } else if (type == "longrope") {
    r.type = RopeType::kLongRope;
    auto long_factor = d.opt_float_list("long_factor");
    auto short_factor = d.opt_float_list("short_factor");
    if (!long_factor || !short_factor) {
      fail(ErrorCode::kInvalidFile, "{}: fields '{}' and '{}' are required for rope type 'longrope'", top.source(),
           d.name("long_factor"), d.name("short_factor"));
    }
    r.long_factor = std::move(*long_factor);
    r.short_factor = std::move(*short_factor);
    r.original_max_position_embeddings = original_max();
    r.factor = d.opt_float("factor").value_or(static_cast<double>(max_positions) /
                                              static_cast<double>(r.original_max_position_embeddings));
    if (std::optional<double> af = d.opt_float("attention_factor")) {
      r.attention_factor = *af;
    } else if (r.factor <= 1.0) {
      r.attention_factor = 1.0;
    } else {
      r.attention_factor =
          std::sqrt(1.0 + std::log(r.factor) / std::log(static_cast<double>(r.original_max_position_embeddings)));
    }
  } else {
    fail(ErrorCode::kUnsupported,
         "{}: rope type '{}' is not supported (supported: default, linear, dynamic, yarn, llama3, longrope)",
         top.source(), printable(type, 60));
  }
  if (arch == Arch::kPhi3 && r.type != RopeType::kDefault && r.type != RopeType::kLongRope) {
    fail(ErrorCode::kUnsupported, "{}: phi3 supports rope types default and longrope, got '{}'", top.source(),
         printable(type, 60));
  }
  return r;
}

// Non-empty object or nullptr: transformers treats an empty rope_scaling like an absent one.
const json* non_empty_object(const Fields& f, std::string_view key) {
  const json* v = f.opt_object(key);
  return (v != nullptr && !v->empty()) ? v : nullptr;
}

void parse_ropes(const Fields& f, Arch arch, ModelConfig& c, double default_theta) {
  RopeInputs in;
  in.theta = f.opt_float("rope_theta").value_or(default_theta);
  in.top_level_original_max = f.opt_int("original_max_position_embeddings");
  if (in.top_level_original_max && (*in.top_level_original_max < 1 || *in.top_level_original_max > kMaxPositions)) {
    fail(ErrorCode::kInvalidFile, "{}: field '{}' must be in [1, {}], got {}", f.source(),
         f.name("original_max_position_embeddings"), kMaxPositions, *in.top_level_original_max);
  }
  in.partial_rotary_factor = f.opt_float("partial_rotary_factor").value_or(1.0);
  if (arch == Arch::kPhi3) {
    in.partial_allowed = true;
    // Phi3Config declares original_max_position_embeddings (default 4096), so it always wins.
    if (!in.top_level_original_max) in.top_level_original_max = 4096;
  }
  if (arch == Arch::kGptNeoX) {
    in.partial_allowed = true;
    in.theta = f.opt_float("rotary_emb_base").value_or(in.theta);
    in.partial_rotary_factor = f.opt_float("rotary_pct").value_or(f.opt_float("partial_rotary_factor").value_or(0.25));
  }
  const json* scaling = non_empty_object(f, "rope_scaling");
  const json* params = non_empty_object(f, "rope_parameters");

  if (arch != Arch::kGemma3) {
    in.dict = scaling != nullptr ? scaling : params;
    in.dict_name = f.name(scaling != nullptr ? "rope_scaling" : "rope_parameters");
    c.rope = parse_rope(f, in, arch, c.head_dim, c.max_position_embeddings);
    return;
  }

  // Gemma3: global layers use rope_theta (+ rope_scaling); sliding layers use rope_local_base_freq
  // without scaling. transformers v5 writes both as rope_parameters.{full,sliding}_attention.
  json full = json::object();
  json local = json::object();
  std::string full_name = f.name("rope_scaling");
  if (params != nullptr) {
    Fields p(*params, f.source(), f.name("rope_parameters."));
    if (p.has("full_attention") || p.has("sliding_attention")) {
      if (const json* v = p.opt_object("full_attention")) full = *v;
      if (const json* v = p.opt_object("sliding_attention")) local = *v;
    } else {
      full = *params;
    }
    full_name = f.name("rope_parameters.full_attention");
  }
  if (scaling != nullptr) {
    full.update(*scaling);
    full_name = f.name("rope_scaling");
  }
  in.dict = &full;
  in.dict_name = full_name;
  c.rope = parse_rope(f, in, arch, c.head_dim, c.max_position_embeddings);
  RopeInputs local_in = in;
  local_in.dict = &local;
  local_in.dict_name = f.name("rope_parameters.sliding_attention");
  local_in.theta = f.opt_float("rope_local_base_freq").value_or(10000.0);
  c.rope_local = parse_rope(f, local_in, arch, c.head_dim, c.max_position_embeddings);
}

// The sliding window as configured: `def` when absent, none when null; > 0 when set.
int64_t window_field(const Fields& f, std::optional<int64_t> def) {
  if (!f.has("sliding_window")) return def.value_or(0);
  std::optional<int64_t> w = f.opt_int("sliding_window");
  if (!w) return 0;
  if (*w < 1 || *w > std::numeric_limits<int32_t>::max()) {
    fail(ErrorCode::kInvalidFile, "{}: field '{}' must be positive (or null for none), got {}", f.source(),
         f.name("sliding_window"), *w);
  }
  return *w;
}

// layer_types as a sliding flag per layer, or nullopt when absent.
std::optional<std::vector<bool>> layer_types(const Fields& f, int64_t num_layers) {
  auto types = f.opt_string_list("layer_types");
  if (!types) return std::nullopt;
  if (static_cast<int64_t>(types->size()) != num_layers) {
    fail(ErrorCode::kInvalidFile, "{}: field '{}' has {} entries for {} layers", f.source(), f.name("layer_types"),
         types->size(), num_layers);
  }
  std::vector<bool> sliding;
  for (const std::string& t : *types) {
    if (t == "sliding_attention") {
      sliding.push_back(true);
    } else if (t == "full_attention") {
      sliding.push_back(false);
    } else {
      fail(ErrorCode::kUnsupported,
           "{}: layer type '{}' in '{}' is not supported (supported: full_attention, "
           "sliding_attention)",
           f.source(), printable(t, 60), f.name("layer_types"));
    }
  }
  return sliding;
}

void parse_layers(const Fields& f, Arch arch, ModelConfig& c) {
  const auto n = static_cast<size_t>(c.num_layers);
  std::vector<bool> sliding(n, false);
  int64_t window = 0;
  switch (arch) {
    case Arch::kLlama:
    case Arch::kGemma:
    case Arch::kGptNeoX: break;
    case Arch::kMistral:
      window = window_field(f, 4096);
      sliding.assign(n, true);
      break;
    case Arch::kMixtral:
    case Arch::kPhi3:
      window = window_field(f, std::nullopt);
      sliding.assign(n, true);
      break;
    case Arch::kQwen2:
    case Arch::kQwen3: {
      bool use = f.bool_or("use_sliding_window", false);
      window = use ? window_field(f, 4096) : 0;
      if (auto types = layer_types(f, c.num_layers)) {
        sliding = *types;
      } else {
        int64_t max_window_layers = f.int_in("max_window_layers", 28, 0, kMaxLayers);
        for (size_t i = 0; i < n; ++i)
          sliding[i] = static_cast<int64_t>(i) >= max_window_layers;
      }
      break;
    }
    case Arch::kQwen3Moe: {
      bool use = f.bool_or("use_sliding_window", false);
      window = use ? window_field(f, 4096) : 0;
      sliding.assign(n, true);
      break;
    }
    case Arch::kGemma2:
      window = window_field(f, 4096);
      if (auto types = layer_types(f, c.num_layers)) {
        sliding = *types;
      } else {
        for (size_t i = 0; i < n; ++i)
          sliding[i] = (i + 1) % 2 != 0;
      }
      break;
    case Arch::kGemma3:
      window = window_field(f, 4096);
      if (auto types = layer_types(f, c.num_layers)) {
        sliding = *types;
      } else {
        int64_t pattern = f.int_in("sliding_window_pattern", 6, 1, kMaxLayers);
        for (size_t i = 0; i < n; ++i)
          sliding[i] = (static_cast<int64_t>(i) + 1) % pattern != 0;
      }
      break;
  }
  c.sliding_window = window;
  c.layers.assign(n, LayerConfig{});
  for (size_t i = 0; i < n; ++i) {
    c.layers[i].sliding_window = sliding[i] ? window : 0;
    // Gemma3 picks the rope by layer type, whether or not a window is set.
    c.layers[i].local_rope = arch == Arch::kGemma3 && sliding[i];
  }
}

void parse_moe(const Fields& f, Arch arch, ModelConfig& c) {
  if (arch == Arch::kMixtral) {
    c.moe.num_experts = f.has("num_local_experts") ? f.int_in("num_local_experts", 8, 0, kMaxExperts)
                                                   : f.int_in("num_experts", 8, 0, kMaxExperts);
    c.moe.num_experts_per_tok = f.int_in("num_experts_per_tok", 2, 0, kMaxExperts);
    c.moe.expert_intermediate_size = c.intermediate_size;
    c.moe.norm_topk_prob = true;  // Mixtral always renormalises the top-k weights
  } else if (arch == Arch::kQwen3Moe) {
    c.moe.num_experts = f.has("num_experts") ? f.int_in("num_experts", 128, 0, kMaxExperts)
                                             : f.int_in("num_local_experts", 128, 0, kMaxExperts);
    c.moe.num_experts_per_tok = f.int_in("num_experts_per_tok", 8, 0, kMaxExperts);
    c.moe.expert_intermediate_size = f.int_in("moe_intermediate_size", 768, 1, kMaxIntermediateSize);
    c.moe.norm_topk_prob = f.bool_or("norm_topk_prob", false);
    c.moe.decoder_sparse_step = f.int_in("decoder_sparse_step", 1, 1, kMaxLayers);
    c.moe.mlp_only_layers = f.opt_int_list("mlp_only_layers").value_or(std::vector<int64_t>{});
    for (int64_t l : c.moe.mlp_only_layers) {
      if (l < 0 || l >= c.num_layers) {
        fail(ErrorCode::kInvalidFile, "{}: field '{}' names layer {} of {}", f.source(), f.name("mlp_only_layers"), l,
             c.num_layers);
      }
    }
  } else {
    return;
  }
  if (c.moe.num_experts == 0) {  // a dense model in MoE clothing
    c.moe = MoeConfig{};
    return;
  }
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const auto layer = static_cast<int64_t>(i);
    bool mlp_only =
        std::find(c.moe.mlp_only_layers.begin(), c.moe.mlp_only_layers.end(), layer) != c.moe.mlp_only_layers.end();
    c.layers[i].moe = !mlp_only && (layer + 1) % c.moe.decoder_sparse_step == 0;
  }
}

// Token ids: an explicit value in `primary` (generation_config.json), then in `outer` (gemma3's
// top level), then in `f`, then the architecture default. An explicit null means "none".
struct TokenSources {
  const Fields* generation = nullptr;
  const Fields* outer = nullptr;
  const Fields* text = nullptr;
};

std::optional<std::vector<int64_t>> token_ids(const TokenSources& s, std::string_view key, std::optional<int64_t> def) {
  if (s.generation != nullptr) {
    if (auto v = s.generation->opt_int_or_list(key)) return v;
  }
  for (const Fields* f : {s.outer, s.text}) {
    if (f != nullptr && f->has(key)) return f->opt_int_or_list(key);
  }
  if (def) return std::vector<int64_t>{*def};
  return std::nullopt;
}

std::optional<int64_t> single_token(const TokenSources& s, std::string_view key, std::optional<int64_t> def) {
  auto ids = token_ids(s, key, def);
  if (!ids || ids->empty()) return std::nullopt;
  if (ids->size() != 1) {
    const Fields& f = s.generation != nullptr ? *s.generation : *s.text;
    fail(ErrorCode::kInvalidFile, "{}: field '{}' must be a single integer", f.source(), f.name(key));
  }
  return ids->front();
}

ModelConfig parse_model(const Fields& root, const Fields& f, Family family, const Fields* generation) {
  const Arch arch = family.arch;
  const ArchDefaults def = arch_defaults(arch);
  const bool nested = family.nested_text_config;
  const NestedSizes nested_sizes;
  auto size_default = [&](int64_t v) { return nested ? std::optional<int64_t>(v) : std::nullopt; };

  ModelConfig c;
  c.arch = arch;
  c.format = ConfigFormat::kHuggingFace;
  c.name = root.opt_string("_name_or_path").value_or("");
  if (const json* a = root.opt_array("architectures"); a != nullptr && !a->empty() && (*a)[0].is_string()) {
    c.hf_architecture = printable((*a)[0].get_ref<const std::string&>(), 200);
  }
  c.torch_dtype = root.opt_string("torch_dtype").value_or(root.opt_string("dtype").value_or(""));
  if (c.torch_dtype.empty() && nested) {
    c.torch_dtype = f.opt_string("torch_dtype").value_or(f.opt_string("dtype").value_or(""));
  }
  if (c.torch_dtype.size() > 64) fail(ErrorCode::kInvalidFile, "{}: torch_dtype is too long", root.source());

  c.vocab_size = f.int_in("vocab_size", size_default(nested_sizes.vocab), 1, kMaxVocab);
  c.hidden_size = f.int_in("hidden_size", size_default(nested_sizes.hidden), 1, kMaxHiddenSize);
  c.intermediate_size = f.int_in("intermediate_size", size_default(nested_sizes.intermediate), 1, kMaxIntermediateSize);
  c.num_layers = f.int_in("num_hidden_layers", size_default(nested_sizes.layers), 1, kMaxLayers);
  c.num_heads = f.int_in("num_attention_heads", size_default(nested_sizes.heads), 1, kMaxHeads);

  if (arch == Arch::kGptNeoX) {
    c.num_kv_heads = c.num_heads;  // GPT-NeoX has no grouped-query attention
  } else if (!f.has("num_key_value_heads")) {
    c.num_kv_heads = def.num_kv_heads != 0 ? def.num_kv_heads : c.num_heads;
  } else {
    c.num_kv_heads = f.int_in("num_key_value_heads", c.num_heads, 1, kMaxHeads);
  }
  if (c.num_kv_heads > c.num_heads || c.num_heads % c.num_kv_heads != 0) {
    fail(ErrorCode::kInvalidFile, "{}: num_key_value_heads ({}) must divide num_attention_heads ({})", f.source(),
         c.num_kv_heads, c.num_heads);
  }

  std::optional<int64_t> head_dim;
  if (arch != Arch::kGptNeoX) {
    head_dim = f.opt_int("head_dim");
    if (!head_dim && !f.has("head_dim") && def.head_dim != 0) head_dim = def.head_dim;
  }
  if (head_dim) {
    if (*head_dim < 1 || *head_dim > kMaxHeadDim) {
      fail(ErrorCode::kInvalidFile, "{}: field '{}' must be in [1, {}], got {}", f.source(), f.name("head_dim"),
           kMaxHeadDim, *head_dim);
    }
    c.head_dim = *head_dim;
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      fail(ErrorCode::kInvalidFile,
           "{}: hidden_size ({}) is not a multiple of num_attention_heads ({}) and head_dim is not given", f.source(),
           c.hidden_size, c.num_heads);
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }

  c.max_position_embeddings = f.int_in("max_position_embeddings", def.max_position_embeddings, 1, kMaxPositions);

  if (arch == Arch::kGptNeoX) {
    c.norm_kind = NormKind::kLayerNorm;
    c.norm_eps = f.opt_float("layer_norm_eps").value_or(def.norm_eps);
  } else {
    c.norm_kind = NormKind::kRmsNorm;
    c.norm_eps = f.opt_float("rms_norm_eps").value_or(def.norm_eps);
  }

  switch (arch) {
    case Arch::kGemma: {
      // GemmaConfig reads hidden_act and maps the legacy "gelu" to the tanh approximation.
      std::string act = f.opt_string("hidden_act").value_or("gelu_pytorch_tanh");
      c.activation = act == "gelu" ? Activation::kGeluTanh : parse_activation(f, "hidden_act", act);
      break;
    }
    case Arch::kGemma2:
    case Arch::kGemma3:
      c.activation =
          parse_activation(f, "hidden_activation", f.opt_string("hidden_activation").value_or("gelu_pytorch_tanh"));
      break;
    case Arch::kGptNeoX:
      c.activation = parse_activation(f, "hidden_act", f.opt_string("hidden_act").value_or("gelu"));
      break;
    default: c.activation = parse_activation(f, "hidden_act", f.opt_string("hidden_act").value_or("silu")); break;
  }
  c.gated_mlp = arch != Arch::kGptNeoX;

  if (nested && root.opt_bool("tie_word_embeddings")) {
    c.tie_word_embeddings = *root.opt_bool("tie_word_embeddings");
  } else {
    c.tie_word_embeddings = f.bool_or("tie_word_embeddings", def.tie_word_embeddings);
  }

  switch (arch) {
    case Arch::kLlama:
      c.qkv_bias = c.o_bias = f.bool_or("attention_bias", false);
      c.mlp_bias = f.bool_or("mlp_bias", false);
      break;
    case Arch::kQwen2:
      c.qkv_bias = true;  // Qwen2 always has q/k/v biases and no output bias
      break;
    case Arch::kQwen3:
    case Arch::kQwen3Moe:
    case Arch::kGemma:
    case Arch::kGemma2:
    case Arch::kGemma3: c.qkv_bias = c.o_bias = f.bool_or("attention_bias", false); break;
    case Arch::kGptNeoX:
      c.qkv_bias = c.o_bias = f.bool_or("attention_bias", true);
      c.mlp_bias = true;
      c.parallel_residual = f.bool_or("use_parallel_residual", true);
      break;
    case Arch::kMistral:
    case Arch::kMixtral:
    case Arch::kPhi3: break;
  }
  c.qk_norm = arch == Arch::kQwen3 || arch == Arch::kQwen3Moe || arch == Arch::kGemma3;

  parse_ropes(f, arch, c, def.rope_theta);
  parse_layers(f, arch, c);
  parse_moe(f, arch, c);

  const bool gemma = arch == Arch::kGemma || arch == Arch::kGemma2 || arch == Arch::kGemma3;
  if (gemma) {
    if (f.bool_or("use_bidirectional_attention", false)) {
      fail(ErrorCode::kUnsupported, "{}: bidirectional attention (an embedding model) is not supported", f.source());
    }
    c.norm_weight_offset = 1.0;
    c.embedding_scale = std::sqrt(static_cast<double>(c.hidden_size));
  }
  if (arch == Arch::kGemma2 || arch == Arch::kGemma3) {
    const double attn_cap_default = arch == Arch::kGemma2 ? 50.0 : 0.0;
    const double final_cap_default = arch == Arch::kGemma2 ? 30.0 : 0.0;
    auto cap = [&](std::string_view key, double d) {
      if (!f.has(key)) return d;
      double v = f.opt_float(key).value_or(0.0);
      if (v < 0.0) fail(ErrorCode::kInvalidFile, "{}: field '{}' must not be negative", f.source(), f.name(key));
      return v;
    };
    c.attn_logit_softcap = cap("attn_logit_softcapping", attn_cap_default);
    c.final_logit_softcap = cap("final_logit_softcapping", final_cap_default);
    c.query_pre_attn_scalar = f.opt_float("query_pre_attn_scalar").value_or(256.0);
    if (!(c.query_pre_attn_scalar > 0.0)) {
      fail(ErrorCode::kInvalidFile, "{}: field '{}' must be positive", f.source(), f.name("query_pre_attn_scalar"));
    }
  }
  c.attention_scale =
      1.0 / std::sqrt(c.query_pre_attn_scalar > 0.0 ? c.query_pre_attn_scalar : static_cast<double>(c.head_dim));

  TokenSources tokens{generation, nested ? &root : nullptr, &f};
  c.bos_token_id = single_token(tokens, "bos_token_id", def.bos);
  c.pad_token_id = single_token(tokens, "pad_token_id", def.pad);
  // pad only matters for batching helpers; old LLaMA conversions write -1 for "none".
  if (c.pad_token_id && (*c.pad_token_id < 0 || *c.pad_token_id >= c.vocab_size)) c.pad_token_id.reset();
  for (int64_t id : token_ids(tokens, "eos_token_id", def.eos).value_or(std::vector<int64_t>{})) {
    if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(id);
    }
  }
  return c;
}

std::string generation_source(const std::string& source) {
  std::filesystem::path p(source);
  if (p.filename() == "config.json") return (p.parent_path() / "generation_config.json").string();
  return source + " (generation config)";
}

}  // namespace

ModelConfig config_from_hf_json(const std::string& config_json_text, const std::string* generation_config_text,
                                const std::string& source_name) {
  json root_json = parse_json_object(config_json_text, source_name);
  json generation_json;
  std::optional<Fields> generation;
  const std::string gen_source = generation_source(source_name);
  if (generation_config_text != nullptr) {
    generation_json = parse_json_object(*generation_config_text, gen_source);
    generation.emplace(generation_json, gen_source, "");
  }
  try {
    Fields root(root_json, source_name, "");
    Family family = select_family(root);
    ModelConfig c;
    if (family.nested_text_config) {
      const json empty = json::object();
      const json* text = root.opt_object("text_config");
      Fields f(text != nullptr ? *text : empty, source_name, "text_config.");
      c = parse_model(root, f, family, generation ? &*generation : nullptr);
    } else {
      c = parse_model(root, root, family, generation ? &*generation : nullptr);
    }
    validate_model_config(c, source_name);
    return c;
  } catch (const json::exception& e) {
    // Every access above is type-checked first; this is a second line of defence.
    fail(ErrorCode::kInvalidFile, "{}: unexpected JSON content: {}", source_name, printable(e.what(), 300));
  }
}

ModelConfig load_hf_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path config_path(path);
  if (!fs::exists(config_path, ec)) fail(ErrorCode::kNotFound, "{}: no such file or folder", path);
  if (fs::is_directory(config_path, ec)) config_path /= "config.json";
  if (!fs::exists(config_path, ec)) fail(ErrorCode::kNotFound, "{}: no such file", config_path.string());
  std::string text = read_text_file(config_path.string(), kMaxConfigBytes);
  fs::path generation_path = config_path.parent_path() / "generation_config.json";
  std::optional<std::string> generation;
  if (fs::exists(generation_path, ec)) generation = read_text_file(generation_path.string(), kMaxConfigBytes);
  ModelConfig c = config_from_hf_json(text, generation ? &*generation : nullptr, config_path.string());
  if (c.name.empty()) {
    fs::path dir = config_path.parent_path();
    c.name = dir.empty() ? std::string() : fs::absolute(dir, ec).filename().string();
  }
  return c;
}

}  // namespace pagoda::model
