#include "model/loader/model_config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

#include "core/error.h"

namespace pagoda::model {
namespace {

using json = nlohmann::json;

const std::string kSource = "models/x/config.json";

std::string fixture(const std::string& name) {
  return std::string(PAGODA_TEST_DATA_DIR) + "/hf_configs/" + name;
}

ModelConfig parse(const json& config, const json* generation = nullptr) {
  std::string gen_text = generation != nullptr ? generation->dump() : std::string();
  return config_from_hf_json(config.dump(), generation != nullptr ? &gen_text : nullptr, kSource);
}

// The required size fields and a model type; tests add what they exercise.
json minimal(const std::string& model_type) {
  return {{"model_type", model_type},  {"vocab_size", 300000},    {"hidden_size", 1024},
          {"intermediate_size", 2816}, {"num_hidden_layers", 12}, {"num_attention_heads", 32}};
}

json with(json base, const json& patch) {
  base.update(patch);
  return base;
}

// Expects config_from_hf_json to throw pagoda::Error with `code` and a one-line message that names
// the source and contains `needle`.
void expect_text_error(const std::string& text, ErrorCode code, const std::string& needle,
                       const std::string* generation = nullptr) {
  try {
    (void)config_from_hf_json(text, generation, kSource);
    ADD_FAILURE() << "no error for: " << text.substr(0, 200);
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), code) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nexpected: " << needle;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

void expect_error(const json& config, ErrorCode code, const std::string& needle) {
  expect_text_error(config.dump(), code, needle);
}

TEST(ModelConfigNames, ArchitectureNamesRoundTrip) {
  EXPECT_EQ(supported_architectures().size(), 11u);
  for (Arch a : supported_architectures())
    EXPECT_EQ(architecture_from_name(architecture_name(a)), a);
  EXPECT_EQ(architecture_name(Arch::kQwen3Moe), "qwen3_moe");
  EXPECT_EQ(architecture_name(Arch::kGptNeoX), "gpt_neox");
  EXPECT_FALSE(architecture_from_name("bert").has_value());
  EXPECT_EQ(supported_architecture_list(),
            "llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi3, mixtral, qwen3_moe, gpt_neox");
}

TEST(HfConfig, SmolLM2IsLlamaWithTiedEmbeddings) {
  ModelConfig c = load_hf_config(fixture("smollm2-135m-instruct"));
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.hf_architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.name, "smollm2-135m-instruct");
  EXPECT_EQ(c.format, ConfigFormat::kHuggingFace);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_EQ(c.norm_kind, NormKind::kRmsNorm);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.norm_weight_offset, 0.0);
  EXPECT_EQ(c.activation, Activation::kSilu);
  EXPECT_TRUE(c.gated_mlp);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm || c.parallel_residual);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_EQ(c.rope.style, RopeStyle::kNeox);
  EXPECT_DOUBLE_EQ(c.rope.theta, 100000.0);
  EXPECT_EQ(c.rope.rotary_dim, 64);
  EXPECT_FALSE(c.rope_local.has_value());
  ASSERT_EQ(c.layers.size(), 30u);
  EXPECT_FALSE(c.has_sliding_layers());
  EXPECT_FALSE(c.is_moe());
  EXPECT_DOUBLE_EQ(c.attention_scale, 0.125);
  EXPECT_DOUBLE_EQ(c.embedding_scale, 1.0);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.pad_token_id, 2);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(HfConfig, Llama32UsesLlama3RopeAndGenerationConfigEos) {
  ModelConfig c = load_hf_config(fixture("llama-3.2-1b-instruct"));
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
}

TEST(HfConfig, LlamaDefaultsFollowLlamaConfig) {
  ModelConfig c = parse(minimal("llama"));
  EXPECT_EQ(c.num_kv_heads, 32);  // num_key_value_heads defaults to num_attention_heads
  EXPECT_EQ(c.head_dim, 32);      // hidden_size / num_attention_heads
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_EQ(c.torch_dtype, "");

  ModelConfig b = parse(with(minimal("llama"), {{"attention_bias", true}, {"mlp_bias", true}}));
  EXPECT_TRUE(b.qkv_bias && b.o_bias && b.mlp_bias);
  // Explicit nulls: no kv-head override, no tokens.
  ModelConfig n = parse(
      with(minimal("llama"), {{"num_key_value_heads", nullptr}, {"bos_token_id", nullptr}, {"eos_token_id", nullptr}}));
  EXPECT_EQ(n.num_kv_heads, 32);
  EXPECT_FALSE(n.bos_token_id.has_value());
  EXPECT_TRUE(n.eos_token_ids.empty());
}

TEST(HfConfig, ArchitecturesSelectsTheFamilyWithoutModelType) {
  json j = minimal("llama");
  j.erase("model_type");
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["num_key_value_heads"] = 4;
  ModelConfig c = parse(j);
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  // model_type wins when both are known.
  j["model_type"] = "mistral";
  EXPECT_EQ(parse(j).arch, Arch::kMistral);
}

TEST(HfConfig, RopeScalingVariants) {
  ModelConfig linear = parse(with(minimal("llama"), {{"rope_scaling", {{"type", "linear"}, {"factor", 4.0}}}}));
  EXPECT_EQ(linear.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(linear.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(linear.rope.attention_factor, 1.0);

  ModelConfig dynamic = parse(with(minimal("llama"), {{"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2}}}}));
  EXPECT_EQ(dynamic.rope.type, RopeType::kDynamic);
  EXPECT_DOUBLE_EQ(dynamic.rope.factor, 2.0);

  ModelConfig yarn =
      parse(with(minimal("qwen2"),
                 {{"num_key_value_heads", 4},
                  {"max_position_embeddings", 131072},
                  {"rope_scaling", {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}}}}));
  EXPECT_EQ(yarn.rope.type, RopeType::kYarn);
  EXPECT_EQ(yarn.rope.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(yarn.rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(yarn.rope.beta_slow, 1.0);
  EXPECT_TRUE(yarn.rope.truncate);
  EXPECT_NEAR(yarn.rope.attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-12);

  // DeepSeek-style mscale pair; original_max_position_embeddings falls back to the model's.
  ModelConfig mscale = parse(with(minimal("llama"), {{"rope_scaling",
                                                      {{"rope_type", "yarn"},
                                                       {"factor", 40},
                                                       {"mscale", 1.0},
                                                       {"mscale_all_dim", 0.5},
                                                       {"beta_fast", 16},
                                                       {"beta_slow", 0},
                                                       {"truncate", false}}}}));
  EXPECT_EQ(mscale.rope.original_max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(mscale.rope.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(mscale.rope.beta_slow, 1.0);  // 0 means the default, as in transformers
  EXPECT_FALSE(mscale.rope.truncate);
  EXPECT_NEAR(mscale.rope.attention_factor, (0.1 * std::log(40.0) + 1.0) / (0.05 * std::log(40.0) + 1.0), 1e-12);

  ModelConfig explicit_af = parse(
      with(minimal("llama"), {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 2}, {"attention_factor", 1.5}}}}));
  EXPECT_DOUBLE_EQ(explicit_af.rope.attention_factor, 1.5);

  // transformers v5 writes rope_parameters (theta inside); rope_scaling wins when both are present.
  ModelConfig v5 = parse(
      with(minimal("llama"), {{"rope_parameters", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 5e4}}}}));
  EXPECT_EQ(v5.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(v5.rope.theta, 5e4);
  ModelConfig both = parse(with(minimal("llama"), {{"rope_parameters", {{"rope_type", "linear"}, {"factor", 2.0}}},
                                                   {"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 3.0}}}}));
  EXPECT_EQ(both.rope.type, RopeType::kDynamic);

  // A top-level original_max_position_embeddings takes priority over the rope dict's.
  ModelConfig top_orig = parse(with(minimal("llama"), {{"original_max_position_embeddings", 4096},
                                                       {"max_position_embeddings", 65536},
                                                       {"rope_scaling",
                                                        {{"rope_type", "llama3"},
                                                         {"factor", 8},
                                                         {"low_freq_factor", 1},
                                                         {"high_freq_factor", 4},
                                                         {"original_max_position_embeddings", 8192}}}}));
  EXPECT_EQ(top_orig.rope.original_max_position_embeddings, 4096);

  // An empty rope_scaling is no scaling.
  EXPECT_EQ(parse(with(minimal("llama"), {{"rope_scaling", json::object()}})).rope.type, RopeType::kDefault);
}

TEST(HfConfig, RopeScalingErrors) {
  expect_error(with(minimal("llama"), {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}),
               ErrorCode::kInvalidFile, "'rope_scaling.low_freq_factor' is required for rope type 'llama3'");
  expect_error(with(minimal("llama"), {{"rope_scaling", {{"type", "linear"}}}}), ErrorCode::kInvalidFile,
               "'rope_scaling.factor' is required");
  expect_error(with(minimal("llama"), {{"rope_scaling", {{"type", "linear"}, {"factor", "4"}}}}),
               ErrorCode::kInvalidFile, "field 'rope_scaling.factor' must be a number, got string \"4\"");
  expect_error(with(minimal("llama"), {{"rope_scaling", {{"type", "mrope"}, {"factor", 4}}}}), ErrorCode::kUnsupported,
               "rope type 'mrope' is not supported");
  expect_error(with(minimal("llama"), {{"rope_scaling", "linear"}}), ErrorCode::kInvalidFile,
               "field 'rope_scaling' must be an object");
  expect_error(with(minimal("llama"), {{"rope_scaling", {{"type", "linear"}, {"factor", -2}}}}),
               ErrorCode::kInvalidFile, "rope.factor must be a finite number");
  expect_error(with(minimal("llama"),
                    {{"rope_scaling",
                      {{"rope_type", "llama3"}, {"factor", 8}, {"low_freq_factor", 4}, {"high_freq_factor", 4}}}}),
               ErrorCode::kInvalidFile, "high_freq_factor (4) must exceed low_freq_factor (4)");
  expect_error(with(minimal("llama"), {{"rope_theta", 0}}), ErrorCode::kInvalidFile, "rope.theta");
  expect_error(with(minimal("llama"), {{"partial_rotary_factor", 0.5}}), ErrorCode::kUnsupported,
               "partial rotary factor (0.5) is not supported for llama");
  expect_error(with(minimal("phi3"), {{"rope_scaling", {{"type", "dynamic"}, {"factor", 2}}}}), ErrorCode::kUnsupported,
               "phi3 supports rope types default and longrope");
}

TEST(HfConfig, MistralSlidingWindowDefaultsAndNull) {
  ModelConfig v01 = load_hf_config(fixture("mistral-7b-v0.1"));
  EXPECT_EQ(v01.arch, Arch::kMistral);
  EXPECT_EQ(v01.num_kv_heads, 8);
  EXPECT_EQ(v01.sliding_window, 4096);
  for (const LayerConfig& l : v01.layers)
    EXPECT_EQ(l.sliding_window, 4096);

  ModelConfig v03 = load_hf_config(fixture("mistral-7b-instruct-v0.3"));
  EXPECT_EQ(v03.sliding_window, 0);
  EXPECT_FALSE(v03.has_sliding_layers());
  EXPECT_DOUBLE_EQ(v03.rope.theta, 1e6);

  ModelConfig d = parse(minimal("mistral"));  // absent: MistralConfig's default window and kv heads
  EXPECT_EQ(d.sliding_window, 4096);
  EXPECT_EQ(d.num_kv_heads, 8);
  EXPECT_EQ(d.max_position_embeddings, 131072);

  expect_error(with(minimal("mistral"), {{"sliding_window", 0}}), ErrorCode::kInvalidFile,
               "field 'sliding_window' must be positive");
  expect_error(with(minimal("mistral"), {{"sliding_window", -4096}}), ErrorCode::kInvalidFile,
               "field 'sliding_window' must be positive");
}

TEST(HfConfig, Qwen2BiasAndSlidingLayers) {
  ModelConfig c = load_hf_config(fixture("qwen2.5-0.5b-instruct"));
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.has_sliding_layers());  // use_sliding_window is false
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.pad_token_id, 151643);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645, 151643}));

  ModelConfig s = parse(with(
      minimal("qwen2"),
      {{"num_key_value_heads", 4}, {"use_sliding_window", true}, {"sliding_window", 4096}, {"max_window_layers", 9}}));
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(s.layers[static_cast<size_t>(i)].sliding_window, i >= 9 ? 4096 : 0) << i;

  ModelConfig d = parse(minimal("qwen2"));
  EXPECT_EQ(d.num_kv_heads, 32);  // Qwen2Config's default, not num_attention_heads
  EXPECT_FALSE(d.bos_token_id.has_value());
  EXPECT_TRUE(d.eos_token_ids.empty());
  EXPECT_EQ(d.max_position_embeddings, 32768);
}

TEST(HfConfig, Qwen3HeadDimQkNormAndLayerTypes) {
  ModelConfig c = load_hf_config(fixture("qwen3-0.6b"));
  EXPECT_EQ(c.arch, Arch::kQwen3);
  EXPECT_EQ(c.head_dim, 128);  // not hidden_size / heads = 64
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.q_size(), 2048);
  EXPECT_EQ(c.kv_size(), 1024);

  EXPECT_EQ(parse(minimal("qwen3")).head_dim, 128);  // Qwen3Config's default
  ModelConfig t = parse(with(
      minimal("qwen3"),
      {{"use_sliding_window", true},
       {"sliding_window", 256},
       {"layer_types", json::array({"sliding_attention", "full_attention", "sliding_attention", "full_attention",
                                    "sliding_attention", "full_attention", "sliding_attention", "full_attention",
                                    "sliding_attention", "full_attention", "sliding_attention", "full_attention"})}}));
  for (size_t i = 0; i < 12; ++i)
    EXPECT_EQ(t.layers[i].sliding_window, i % 2 == 0 ? 256 : 0);

  expect_error(with(minimal("qwen3"), {{"layer_types", json::array({"full_attention"})}}), ErrorCode::kInvalidFile,
               "'layer_types' has 1 entries for 12 layers");
  json bad_types = json::array();
  for (int i = 0; i < 12; ++i)
    bad_types.push_back("chunked_attention");
  expect_error(with(minimal("qwen3"), {{"layer_types", bad_types}}), ErrorCode::kUnsupported,
               "layer type 'chunked_attention'");
}

TEST(HfConfig, GemmaScalesAndLegacyGelu) {
  ModelConfig c = load_hf_config(fixture("gemma-2b"));
  EXPECT_EQ(c.arch, Arch::kGemma);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);  // "gelu" in Gemma configs means the tanh form
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.norm_weight_offset, 1.0);
  EXPECT_DOUBLE_EQ(c.embedding_scale, std::sqrt(2048.0));
  EXPECT_DOUBLE_EQ(c.attention_scale, 1.0 / 16.0);
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(c.pad_token_id, 0);

  ModelConfig d = parse(minimal("gemma"));
  EXPECT_EQ(d.num_kv_heads, 16);
  EXPECT_EQ(d.head_dim, 256);
  EXPECT_EQ(d.activation, Activation::kGeluTanh);
}

TEST(HfConfig, Gemma2SoftcapsAndAlternatingWindows) {
  ModelConfig c = load_hf_config(fixture("gemma-2-2b-it"));
  EXPECT_EQ(c.arch, Arch::kGemma2);
  EXPECT_DOUBLE_EQ(c.attn_logit_softcap, 50.0);
  EXPECT_DOUBLE_EQ(c.final_logit_softcap, 30.0);
  EXPECT_DOUBLE_EQ(c.query_pre_attn_scalar, 256.0);
  EXPECT_EQ(c.sliding_window, 4096);
  for (size_t i = 0; i < c.layers.size(); ++i)
    EXPECT_EQ(c.layers[i].sliding_window, i % 2 == 0 ? 4096 : 0) << i;
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 107}));
  EXPECT_EQ(c.torch_dtype, "float32");

  // Absent fields take Gemma2Config's defaults; null turns a cap off.
  ModelConfig d = parse(minimal("gemma2"));
  EXPECT_DOUBLE_EQ(d.attn_logit_softcap, 50.0);
  EXPECT_DOUBLE_EQ(d.final_logit_softcap, 30.0);
  EXPECT_EQ(d.num_kv_heads, 4);
  EXPECT_EQ(d.sliding_window, 4096);
  ModelConfig off = parse(with(
      minimal("gemma2"),
      {{"attn_logit_softcapping", nullptr}, {"final_logit_softcapping", nullptr}, {"query_pre_attn_scalar", 144}}));
  EXPECT_EQ(off.attn_logit_softcap, 0.0);
  EXPECT_EQ(off.final_logit_softcap, 0.0);
  EXPECT_DOUBLE_EQ(off.attention_scale, 1.0 / 12.0);

  expect_error(with(minimal("gemma2"), {{"use_bidirectional_attention", true}}), ErrorCode::kUnsupported,
               "bidirectional attention");
  expect_error(with(minimal("gemma2"), {{"attn_logit_softcapping", -1.0}}), ErrorCode::kInvalidFile,
               "'attn_logit_softcapping' must not be negative");
}

TEST(HfConfig, Gemma3TextLocalRopeAndLayerTypes) {
  ModelConfig c = load_hf_config(fixture("gemma-3-270m"));
  EXPECT_EQ(c.arch, Arch::kGemma3);
  EXPECT_EQ(c.hf_architecture, "Gemma3ForCausalLM");
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.attn_logit_softcap, 0.0);
  EXPECT_EQ(c.final_logit_softcap, 0.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  ASSERT_TRUE(c.rope_local.has_value());
  EXPECT_DOUBLE_EQ(c.rope_local->theta, 1e4);
  EXPECT_EQ(c.rope_local->type, RopeType::kDefault);
  for (size_t i = 0; i < c.layers.size(); ++i) {
    bool global = (i + 1) % 6 == 0;
    EXPECT_EQ(c.layers[i].sliding_window, global ? 0 : 512) << i;
    EXPECT_EQ(c.layers[i].local_rope, !global) << i;
  }
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));  // generation_config.json

  // Without layer_types, sliding_window_pattern (default 6) places the global layers.
  ModelConfig p = parse(with(minimal("gemma3_text"), {{"sliding_window_pattern", 4},
                                                      {"rope_local_base_freq", 20000.0},
                                                      {"rope_scaling", {{"rope_type", "linear"}, {"factor", 8.0}}}}));
  for (size_t i = 0; i < p.layers.size(); ++i)
    EXPECT_EQ(p.layers[i].local_rope, (i + 1) % 4 != 0) << i;
  EXPECT_EQ(p.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(p.rope.factor, 8.0);
  EXPECT_EQ(p.rope_local->type, RopeType::kDefault);  // scaling applies to global layers only
  EXPECT_DOUBLE_EQ(p.rope_local->theta, 20000.0);
}

TEST(HfConfig, Gemma3MultimodalReadsTextConfigWithDefaults) {
  ModelConfig c = load_hf_config(fixture("gemma-3-4b-it"));
  EXPECT_EQ(c.arch, Arch::kGemma3);
  EXPECT_EQ(c.hf_architecture, "Gemma3ForConditionalGeneration");
  EXPECT_EQ(c.hidden_size, 2560);
  EXPECT_EQ(c.num_layers, 34);
  EXPECT_EQ(c.vocab_size, 262208);  // Gemma3TextConfig defaults for what text_config omits
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rope_local->theta, 1e4);
  EXPECT_EQ(c.sliding_window, 1024);
  EXPECT_EQ(c.layers[5].sliding_window, 0);
  EXPECT_EQ(c.layers[4].sliding_window, 1024);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));  // top level beats the text default
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");

  expect_error(json{{"model_type", "gemma3"}, {"text_config", {{"hidden_size", "big"}}}}, ErrorCode::kInvalidFile,
               "field 'text_config.hidden_size' must be an integer");
  expect_error(json{{"model_type", "gemma3"}, {"text_config", 5}}, ErrorCode::kInvalidFile,
               "field 'text_config' must be an object");
}

TEST(HfConfig, Phi3SlidingWindowAndLongRope) {
  ModelConfig s = load_hf_config(fixture("phi-3-mini-4k-instruct"));
  EXPECT_EQ(s.arch, Arch::kPhi3);
  EXPECT_EQ(s.name, "Phi-3-mini-4k-instruct");
  EXPECT_EQ(s.head_dim, 96);
  EXPECT_EQ(s.rope.rotary_dim, 96);
  EXPECT_EQ(s.sliding_window, 2047);
  EXPECT_EQ(s.rope.type, RopeType::kDefault);
  EXPECT_EQ(s.eos_token_ids, (std::vector<int64_t>{32000, 32001, 32007}));

  ModelConfig l = load_hf_config(fixture("phi-3-mini-128k-instruct"));
  EXPECT_EQ(l.rope.type, RopeType::kLongRope);
  EXPECT_EQ(l.rope.original_max_position_embeddings, 4096);
  ASSERT_EQ(l.rope.long_factor.size(), 48u);
  ASSERT_EQ(l.rope.short_factor.size(), 48u);
  EXPECT_DOUBLE_EQ(l.rope.long_factor[0], 1.08);
  EXPECT_DOUBLE_EQ(l.rope.short_factor[0], 1.0);
  EXPECT_DOUBLE_EQ(l.rope.factor, 32.0);  // max_position_embeddings / original
  EXPECT_NEAR(l.rope.attention_factor, std::sqrt(1.0 + std::log(32.0) / std::log(4096.0)), 1e-12);

  ModelConfig p = load_hf_config(fixture("phi-4-mini-instruct"));
  EXPECT_EQ(p.head_dim, 128);
  EXPECT_EQ(p.rope.rotary_dim, 96);  // partial_rotary_factor 0.75
  EXPECT_TRUE(p.tie_word_embeddings);
  EXPECT_EQ(p.num_kv_heads, 8);

  // The older "su" spelling is longrope; factor lists must cover rotary_dim / 2.
  json su = with(minimal("phi3"), {{"max_position_embeddings", 131072},
                                   {"rope_scaling",
                                    {{"type", "su"},
                                     {"long_factor", std::vector<double>(16, 2.0)},
                                     {"short_factor", std::vector<double>(16, 1.0)}}}});
  ModelConfig u = parse(su);
  EXPECT_EQ(u.rope.type, RopeType::kLongRope);
  EXPECT_EQ(u.rope.original_max_position_embeddings, 4096);  // Phi3Config's default
  su["rope_scaling"]["long_factor"] = std::vector<double>(15, 2.0);
  expect_error(su, ErrorCode::kInvalidFile, "rope.long_factor must have rotary_dim / 2 = 16 entries, got 15");
  su["rope_scaling"].erase("long_factor");
  expect_error(su, ErrorCode::kInvalidFile, "are required for rope type 'longrope'");
  su["rope_scaling"]["long_factor"] = json::array({1, 2, "x"});
  expect_error(su, ErrorCode::kInvalidFile, "field 'rope_scaling.long_factor' must be a number");

  ModelConfig d = parse(minimal("phi3"));
  EXPECT_EQ(d.num_kv_heads, 32);
  EXPECT_DOUBLE_EQ(d.norm_eps, 1e-5);
  EXPECT_EQ(d.eos_token_ids, std::vector<int64_t>{32000});
  EXPECT_EQ(d.sliding_window, 0);
}

TEST(HfConfig, MixtralExperts) {
  ModelConfig c = load_hf_config(fixture("mixtral-8x7b-instruct-v0.1"));
  EXPECT_EQ(c.arch, Arch::kMixtral);
  EXPECT_TRUE(c.is_moe());
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe.expert_intermediate_size, 14336);
  EXPECT_TRUE(c.moe.norm_topk_prob);
  for (const LayerConfig& l : c.layers)
    EXPECT_TRUE(l.moe);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.sliding_window, 0);

  ModelConfig d = parse(minimal("mixtral"));
  EXPECT_DOUBLE_EQ(d.rope.theta, 1e6);  // MixtralConfig's default_theta
  EXPECT_DOUBLE_EQ(d.norm_eps, 1e-5);
  EXPECT_EQ(d.moe.num_experts, 8);
  EXPECT_EQ(parse(with(minimal("mixtral"), {{"num_experts", 4}})).moe.num_experts, 4);  // attribute_map alias

  expect_error(with(minimal("mixtral"), {{"num_experts_per_tok", 9}}), ErrorCode::kInvalidFile,
               "num_experts_per_tok must be in [1, 8], got 9");
}

TEST(HfConfig, Qwen3MoeSparseLayers) {
  ModelConfig c = load_hf_config(fixture("qwen3-30b-a3b"));
  EXPECT_EQ(c.arch, Arch::kQwen3Moe);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.moe.num_experts, 128);
  EXPECT_EQ(c.moe.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe.expert_intermediate_size, 768);
  EXPECT_TRUE(c.moe.norm_topk_prob);
  for (const LayerConfig& l : c.layers)
    EXPECT_TRUE(l.moe);

  ModelConfig s = parse(
      with(minimal("qwen3_moe"),
           {{"num_experts", 16}, {"num_experts_per_tok", 4}, {"decoder_sparse_step", 2}, {"mlp_only_layers", {3, 7}}}));
  for (size_t i = 0; i < 12; ++i) {
    bool expect = (i + 1) % 2 == 0 && i != 3 && i != 7;
    EXPECT_EQ(s.layers[i].moe, expect) << i;
  }
  EXPECT_FALSE(s.moe.norm_topk_prob);  // Qwen3MoeConfig's default
  EXPECT_EQ(s.head_dim, 32);           // no head_dim field in Qwen3MoeConfig: hidden / heads

  ModelConfig dense = parse(with(minimal("qwen3_moe"), {{"num_experts", 0}}));
  EXPECT_FALSE(dense.is_moe());
  for (const LayerConfig& l : dense.layers)
    EXPECT_FALSE(l.moe);

  expect_error(with(minimal("qwen3_moe"), {{"decoder_sparse_step", 0}}), ErrorCode::kInvalidFile,
               "field 'decoder_sparse_step' must be in [1, 1024], got 0");
  expect_error(with(minimal("qwen3_moe"), {{"mlp_only_layers", {12}}}), ErrorCode::kInvalidFile,
               "'mlp_only_layers' names layer 12 of 12");
}

TEST(HfConfig, GptNeoXPartialRotaryParallelResidual) {
  ModelConfig c = load_hf_config(fixture("pythia-70m"));
  EXPECT_EQ(c.arch, Arch::kGptNeoX);
  EXPECT_EQ(c.norm_kind, NormKind::kLayerNorm);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.activation, Activation::kGelu);
  EXPECT_FALSE(c.gated_mlp);
  EXPECT_TRUE(c.parallel_residual);
  EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope.rotary_dim, 16);  // rotary_pct 0.25
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{0});

  ModelConfig d = parse(with(minimal("gpt_neox"), {{"rotary_emb_base", 20000}, {"use_parallel_residual", false}}));
  EXPECT_EQ(d.rope.rotary_dim, 8);  // rotary_pct defaults to 0.25 of head_dim 32
  EXPECT_DOUBLE_EQ(d.rope.theta, 20000.0);
  EXPECT_FALSE(d.parallel_residual);
  EXPECT_EQ(d.eos_token_ids, std::vector<int64_t>{2});
}

TEST(HfConfig, GenerationConfigOverridesTokens) {
  json gen = {{"bos_token_id", 5}, {"eos_token_id", {7, 8, 7}}, {"pad_token_id", 9}, {"temperature", 0.7}};
  ModelConfig c = parse(minimal("llama"), &gen);
  EXPECT_EQ(c.bos_token_id, 5);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{7, 8}));  // duplicates dropped
  EXPECT_EQ(c.pad_token_id, 9);
  json null_gen = {{"eos_token_id", nullptr}};
  EXPECT_EQ(parse(minimal("llama"), &null_gen).eos_token_ids, std::vector<int64_t>{2});

  std::string bad_gen = "{\"eos_token_id\": [1, \"two\"]}";
  expect_text_error(minimal("llama").dump(), ErrorCode::kInvalidFile,
                    "models/x/generation_config.json: field 'eos_token_id' must be an integer", &bad_gen);
  std::string broken_gen = "{\"eos_token_id\": ";
  expect_text_error(minimal("llama").dump(), ErrorCode::kInvalidFile, "models/x/generation_config.json: invalid JSON",
                    &broken_gen);
  // Old LLaMA conversions write pad_token_id -1 for "none".
  EXPECT_FALSE(parse(with(minimal("llama"), {{"pad_token_id", -1}})).pad_token_id.has_value());
  expect_error(with(minimal("llama"), {{"eos_token_id", 300000}}), ErrorCode::kInvalidFile,
               "eos_token_id 300000 is outside the vocabulary [0, 300000)");
  expect_error(with(minimal("llama"), {{"bos_token_id", {1, 2}}}), ErrorCode::kInvalidFile,
               "field 'bos_token_id' must be a single integer");
  json many = json::array();
  for (int i = 0; i < 65; ++i)
    many.push_back(i);
  expect_error(with(minimal("llama"), {{"eos_token_id", many}}), ErrorCode::kInvalidFile, "lists 65 ids");
}

TEST(HfConfig, UnknownArchitectureListsSupportedOnes) {
  json bert = {{"architectures", {"BertForMaskedLM"}}, {"model_type", "bert"}, {"hidden_size", 768}};
  expect_error(bert, ErrorCode::kUnsupported,
               "models/x/config.json: unsupported architecture 'BertForMaskedLM' (model_type 'bert'; supported: "
               "llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi3, mixtral, qwen3_moe, gpt_neox)");
  expect_error(json{{"model_type", "falcon"}}, ErrorCode::kUnsupported,
               "unsupported architecture 'falcon' (supported: llama,");
  expect_error(json{{"hidden_size", 8}}, ErrorCode::kInvalidFile,
               "neither 'model_type' nor 'architectures' names the model family");
  expect_error(json{{"architectures", "LlamaForCausalLM"}}, ErrorCode::kInvalidFile,
               "field 'architectures' must be an array");
  expect_error(json{{"architectures", {42}}}, ErrorCode::kInvalidFile,
               "field 'architectures' must be an array of strings");
  // Control characters in hostile names do not reach the one-line message.
  expect_error(json{{"model_type", "evil\nline"}}, ErrorCode::kUnsupported, "'evil?line'");
}

TEST(HfConfig, MalformedInputs) {
  // Wrong types name the field.
  expect_error(with(minimal("llama"), {{"num_attention_heads", "8"}}), ErrorCode::kInvalidFile,
               "models/x/config.json: field 'num_attention_heads' must be an integer, got string \"8\"");
  expect_error(with(minimal("llama"), {{"hidden_size", 576.5}}), ErrorCode::kInvalidFile,
               "field 'hidden_size' must be an integer, got number 576.5");
  expect_error(with(minimal("llama"), {{"tie_word_embeddings", "true"}}), ErrorCode::kInvalidFile,
               "field 'tie_word_embeddings' must be true or false");
  expect_error(with(minimal("llama"), {{"rms_norm_eps", "1e-5"}}), ErrorCode::kInvalidFile,
               "field 'rms_norm_eps' must be a number");
  expect_error(with(minimal("llama"), {{"hidden_act", 3}}), ErrorCode::kInvalidFile,
               "field 'hidden_act' must be a string");
  expect_error(with(minimal("llama"), {{"hidden_act", "relu"}}), ErrorCode::kUnsupported,
               "activation 'relu' in field 'hidden_act' is not supported");
  expect_error(with(minimal("llama"), {{"torch_dtype", {{"a", 1}}}}), ErrorCode::kInvalidFile,
               "field 'torch_dtype' must be a string, got an object");
  // Negative, zero and missing sizes.
  expect_error(with(minimal("llama"), {{"hidden_size", -576}}), ErrorCode::kInvalidFile,
               "field 'hidden_size' must be in [1, 1048576], got -576");
  expect_error(with(minimal("llama"), {{"num_hidden_layers", 0}}), ErrorCode::kInvalidFile,
               "field 'num_hidden_layers' must be in [1, 1024], got 0");
  json no_hidden = minimal("llama");
  no_hidden.erase("hidden_size");
  expect_error(no_hidden, ErrorCode::kInvalidFile, "missing required field 'hidden_size'");
  expect_error(with(minimal("llama"), {{"vocab_size", nullptr}}), ErrorCode::kInvalidFile,
               "missing required field 'vocab_size'");
  // Head arithmetic.
  expect_error(with(minimal("llama"), {{"hidden_size", 1000}, {"num_attention_heads", 48}}), ErrorCode::kInvalidFile,
               "hidden_size (1000) is not a multiple of num_attention_heads (48) and head_dim is not given");
  EXPECT_EQ(
      parse(with(minimal("llama"), {{"hidden_size", 1000}, {"num_attention_heads", 8}, {"head_dim", 128}})).head_dim,
      128);
  expect_error(with(minimal("llama"), {{"num_key_value_heads", 5}}), ErrorCode::kInvalidFile,
               "num_key_value_heads (5) must divide num_attention_heads (32)");
  expect_error(with(minimal("llama"), {{"num_key_value_heads", 64}}), ErrorCode::kInvalidFile,
               "num_key_value_heads (64) must divide num_attention_heads (32)");
  expect_error(with(minimal("llama"), {{"head_dim", 0}}), ErrorCode::kInvalidFile, "field 'head_dim' must be in");
  // Huge values.
  expect_error(with(minimal("llama"), {{"vocab_size", int64_t{1} << 40}}), ErrorCode::kInvalidFile,
               "field 'vocab_size' must be in [1, 16777216]");
  expect_error(with(minimal("llama"), {{"num_hidden_layers", 100000}}), ErrorCode::kInvalidFile,
               "field 'num_hidden_layers' must be in [1, 1024]");
  expect_text_error(R"({"model_type": "llama", "vocab_size": 18446744073709551615})", ErrorCode::kInvalidFile,
                    "field 'vocab_size' is out of range: 18446744073709551615");
  expect_text_error(R"({"model_type": "llama", "vocab_size": 1e300})", ErrorCode::kInvalidFile,
                    "field 'vocab_size' must be an integer");
  expect_text_error(R"({"model_type": "llama", "vocab_size": 100000000000000000000000000})", ErrorCode::kInvalidFile,
                    "field 'vocab_size' must be an integer");
  expect_error(with(minimal("llama"), {{"rope_theta", 1e300}}), ErrorCode::kInvalidFile, "rope.theta must be");
  expect_text_error(R"({"model_type": "llama", "rope_theta": 1e999})", ErrorCode::kInvalidFile, "number overflow");
  expect_error(with(minimal("llama"), {{"max_position_embeddings", int64_t{1} << 40}}), ErrorCode::kInvalidFile,
               "field 'max_position_embeddings' must be in");
  expect_error(with(minimal("llama"), {{"rms_norm_eps", 0.0}}), ErrorCode::kInvalidFile, "norm epsilon");
  // Not a JSON object, or not JSON.
  expect_text_error("", ErrorCode::kInvalidFile, "models/x/config.json: invalid JSON");
  expect_text_error("{\"model_type\": \"llama\",}", ErrorCode::kInvalidFile, "invalid JSON");
  expect_text_error("{\"model_type\": \"llama\"} trailing", ErrorCode::kInvalidFile, "invalid JSON");
  expect_text_error("{\"rope_theta\": NaN}", ErrorCode::kInvalidFile, "invalid JSON");
  expect_text_error("[1, 2, 3]", ErrorCode::kInvalidFile, "expected a JSON object at the top level, got an array");
  expect_text_error("\"llama\"", ErrorCode::kInvalidFile, "expected a JSON object at the top level, got string");
  expect_text_error(std::string("{\"model_type\": \"llama\x01\xff\"}"), ErrorCode::kInvalidFile, "invalid JSON");
}

TEST(HfConfig, DeepNestingAndOversizedInputAreRefused) {
  std::string deep = R"({"model_type": "llama", "extra": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_text_error(deep, ErrorCode::kInvalidFile, "JSON nested deeper than 64 levels");
  std::string deep_objects = std::string(5000, '{');
  expect_text_error(deep_objects, ErrorCode::kInvalidFile, "nested deeper");
  // Brackets inside strings are not nesting.
  json brackets = with(minimal("llama"), {{"note", std::string(1000, '[')}});
  EXPECT_EQ(parse(brackets).arch, Arch::kLlama);
  std::string big(kMaxConfigBytes + 1, ' ');
  expect_text_error(big, ErrorCode::kInvalidFile, "over the 16777216 byte limit");
}

TEST(HfConfig, LoadFolderErrors) {
  try {
    (void)load_hf_config(std::string(PAGODA_TEST_DATA_DIR) + "/no-such-model");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("no-such-model: no such file or folder"), std::string::npos) << e.what();
  }
  try {
    (void)load_hf_config(std::string(PAGODA_TEST_DATA_DIR) + "/hf_configs");  // a folder without config.json
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("hf_configs/config.json: no such file"), std::string::npos) << e.what();
  }
  // A path to config.json itself works like its folder.
  ModelConfig c = load_hf_config(fixture("qwen3-0.6b") + "/config.json");
  EXPECT_EQ(c.name, "qwen3-0.6b");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
}

TEST(ModelConfigJson, CarriesEveryFamilyField) {
  ModelConfig c = load_hf_config(fixture("gemma-3-270m"));
  json j = json::parse(model_config_to_json(c));
  EXPECT_EQ(j["architecture"], "gemma3");
  EXPECT_EQ(j["format"], "hf");
  EXPECT_EQ(j["num_kv_heads"], 1);
  EXPECT_EQ(j["rope"]["theta"], 1e6);
  EXPECT_EQ(j["rope_local"]["theta"], 1e4);
  EXPECT_EQ(j["layer_sliding_window"].size(), 18u);
  EXPECT_EQ(j["layer_sliding_window"][5], 0);
  EXPECT_EQ(j["layer_sliding_window"][0], 512);
  EXPECT_EQ(j["eos_token_ids"], json::array({1, 106}));
  EXPECT_EQ(j["bos_token_id"], 2);
  EXPECT_EQ(j["activation"], "gelu_tanh");
  ModelConfig l = load_hf_config(fixture("llama-3.2-1b-instruct"));
  json lj = json::parse(model_config_to_json(l));
  EXPECT_EQ(lj["rope"]["type"], "llama3");
  EXPECT_EQ(lj["rope_local"], nullptr);
  EXPECT_EQ(lj["pad_token_id"], nullptr);
}

TEST(ModelConfigValidate, RejectsInconsistentConfigs) {
  ModelConfig c = load_hf_config(fixture("smollm2-135m-instruct"));
  EXPECT_NO_THROW(validate_model_config(c, "x"));
  ModelConfig bad = c;
  bad.layers.pop_back();
  EXPECT_THROW(validate_model_config(bad, "x"), Error);
  bad = c;
  bad.rope.rotary_dim = 63;
  EXPECT_THROW(validate_model_config(bad, "x"), Error);
  bad = c;
  bad.layers[3].local_rope = true;  // no rope_local configured
  EXPECT_THROW(validate_model_config(bad, "x"), Error);
  bad = c;
  bad.layers[0].moe = true;  // no experts
  EXPECT_THROW(validate_model_config(bad, "x"), Error);
  bad = c;
  bad.rope.freq_factors = {1.0, 2.0};  // must be rotary_dim / 2 long
  EXPECT_THROW(validate_model_config(bad, "x"), Error);
  bad = c;
  bad.attention_scale = std::nan("");
  EXPECT_THROW(validate_model_config(bad, "x"), Error);
}

}  // namespace
}  // namespace pagoda::model
