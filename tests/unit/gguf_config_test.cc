#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "gguf_writer.h"
#include "model/loader/gguf.h"
#include "model/loader/model_config.h"

namespace pagoda::model {
namespace {

using pagoda::testing::GgufWriter;

constexpr uint32_t kF32 = 0;

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A small model of `arch` with the keys llama.cpp's converter always writes.
GgufWriter base(const std::string& arch, uint32_t layers = 4) {
  GgufWriter w;
  w.add_string("general.architecture", arch);
  w.add_string("general.name", "Test Model");
  w.add_u32(arch + ".block_count", layers);
  w.add_u32(arch + ".context_length", 4096);
  w.add_u32(arch + ".embedding_length", 256);
  w.add_u32(arch + ".feed_forward_length", 512);
  w.add_u32(arch + ".attention.head_count", 8);
  w.add_u32(arch + ".attention.head_count_kv", 2);
  if (arch == "gptneox") {
    w.add_f32(arch + ".attention.layer_norm_epsilon", 1e-5f);
  } else {
    w.add_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  }
  std::vector<std::string> tokens;
  for (int i = 0; i < 100; ++i)
    tokens.push_back("t" + std::to_string(i));
  w.add_array("tokenizer.ggml.tokens", GgufWriter::string_array(tokens));
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_tensor("token_embd.weight", {256, 100}, kF32, std::vector<uint8_t>(256 * 100 * 4));
  return w;
}

ModelConfig load(const GgufWriter& w) {
  return config_from_gguf(gguf::File::parse(MappedFile::from_memory("test.gguf", w.bytes())));
}

void expect_error(const GgufWriter& w, ErrorCode code, const std::string& needle) {
  try {
    (void)load(w);
    ADD_FAILURE() << "accepted; expected: " << needle;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), code) << msg;
    EXPECT_NE(msg.find("test.gguf: "), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nexpected: " << needle;
  }
}

TEST(GgufConfig, LlamaKeysAndDefaults) {
  GgufWriter w = base("llama");
  w.add_f32("llama.rope.freq_base", 500000.0f);
  w.add_u32("tokenizer.ggml.eot_token_id", 3);
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_EQ(c.format, ConfigFormat::kGguf);
  EXPECT_EQ(c.name, "Test Model");
  EXPECT_EQ(c.hf_architecture, "llama");
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.intermediate_size, 512);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 32);     // embedding_length / head_count without key_length
  EXPECT_EQ(c.vocab_size, 100);  // from tokenizer.ggml.tokens without llama.vocab_size
  EXPECT_NEAR(c.norm_eps, 1e-6, 1e-12);
  EXPECT_EQ(c.activation, Activation::kSilu);
  EXPECT_EQ(c.rope.style, RopeStyle::kGptj);  // the converter permuted q/k for adjacent pairs
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.rotary_dim, 32);
  EXPECT_TRUE(c.tie_word_embeddings);  // no output.weight
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 3}));
  EXPECT_FALSE(c.has_sliding_layers());
  EXPECT_DOUBLE_EQ(c.attention_scale, 1.0 / std::sqrt(32.0));

  GgufWriter v = base("llama");
  v.add_u32("llama.vocab_size", 120);
  v.add_tensor("output.weight", {256, 120}, kF32, std::vector<uint8_t>(256 * 120 * 4));
  v.add_f32("llama.rope.scaling.factor", 4.0f);  // no type: llama.cpp's default is linear
  ModelConfig d = load(v);
  EXPECT_EQ(d.vocab_size, 120);
  EXPECT_FALSE(d.tie_word_embeddings);
  EXPECT_EQ(d.rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(d.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(d.rope.theta, 10000.0);  // llama.cpp's default freq_base
}

TEST(GgufConfig, Llama3RopeFreqsTensor) {
  GgufWriter w = base("llama");
  std::vector<float> freqs(16);
  for (size_t i = 0; i < freqs.size(); ++i)
    freqs[i] = 1.0f + static_cast<float>(i);
  w.add_tensor("rope_freqs.weight", {16}, kF32, f32_bytes(freqs));
  ModelConfig c = load(w);
  ASSERT_EQ(c.rope.freq_factors.size(), 16u);
  EXPECT_DOUBLE_EQ(c.rope.freq_factors[0], 1.0);
  EXPECT_DOUBLE_EQ(c.rope.freq_factors[15], 16.0);

  GgufWriter bad = base("llama");
  bad.add_tensor("rope_freqs.weight", {8}, kF32, f32_bytes(std::vector<float>(8, 1.0f)));
  expect_error(bad, ErrorCode::kInvalidFile, "tensor 'rope_freqs.weight' must be f32[16], got f32[8]");
  GgufWriter f16 = base("llama");
  f16.add_tensor("rope_freqs.weight", {16}, 1, std::vector<uint8_t>(32));
  expect_error(f16, ErrorCode::kInvalidFile, "tensor 'rope_freqs.weight' must be f32[16], got f16");
  GgufWriter zero = base("llama");
  zero.add_tensor("rope_freqs.weight", {16}, kF32, f32_bytes(std::vector<float>(16, 0.0f)));
  expect_error(zero, ErrorCode::kInvalidFile, "rope.freq_factors must be a finite number");
}

TEST(GgufConfig, MixtralIsLlamaWithExperts) {
  GgufWriter w = base("llama");
  w.add_u32("llama.expert_count", 8);
  w.add_u32("llama.expert_used_count", 2);
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kMixtral);
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe.expert_intermediate_size, 512);
  EXPECT_TRUE(c.moe.norm_topk_prob);
  for (const LayerConfig& l : c.layers)
    EXPECT_TRUE(l.moe);

  GgufWriter bad = base("llama");
  bad.add_u32("llama.expert_count", 4);
  bad.add_u32("llama.expert_used_count", 5);
  expect_error(bad, ErrorCode::kInvalidFile, "metadata 'llama.expert_used_count' must be in [1, 4], got 5");
}

TEST(GgufConfig, Qwen2BiasAndYarn) {
  GgufWriter w = base("qwen2");
  w.add_tensor("blk.0.attn_q.bias", {256}, kF32, std::vector<uint8_t>(1024));
  w.add_string("qwen2.rope.scaling.type", "yarn");
  w.add_f32("qwen2.rope.scaling.factor", 4.0f);
  w.add_u32("qwen2.rope.scaling.original_context_length", 1024);
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.rope.style, RopeStyle::kNeox);
  EXPECT_EQ(c.rope.type, RopeType::kYarn);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 1024);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 32.0);
  EXPECT_NEAR(c.rope.attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-6);

  GgufWriter mul = base("qwen2");
  mul.add_string("qwen2.rope.scaling.type", "yarn");
  mul.add_f32("qwen2.rope.scaling.factor", 4.0f);
  mul.add_f32("qwen2.rope.scaling.yarn_log_multiplier", 0.1f);
  expect_error(mul, ErrorCode::kUnsupported, "'qwen2.rope.scaling.yarn_log_multiplier' is not supported");
  GgufWriter odd = base("qwen2");
  odd.add_string("qwen2.rope.scaling.type", "ntk-by-parts");
  expect_error(odd, ErrorCode::kUnsupported, "rope scaling type 'ntk-by-parts' is not supported");
}

TEST(GgufConfig, Qwen3MoeExperts) {
  GgufWriter w = base("qwen3moe");
  w.add_u32("qwen3moe.attention.key_length", 64);
  w.add_u32("qwen3moe.attention.value_length", 64);
  w.add_u32("qwen3moe.expert_count", 16);
  w.add_u32("qwen3moe.expert_used_count", 4);
  w.add_u32("qwen3moe.expert_feed_forward_length", 128);
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kQwen3Moe);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.moe.expert_intermediate_size, 128);
  EXPECT_TRUE(c.moe.norm_topk_prob);

  GgufWriter no_ffn = base("qwen3moe");
  no_ffn.add_u32("qwen3moe.expert_count", 16);
  no_ffn.add_u32("qwen3moe.expert_used_count", 4);
  expect_error(no_ffn, ErrorCode::kInvalidFile, "missing required metadata 'qwen3moe.expert_feed_forward_length'");
}

TEST(GgufConfig, Gemma2DefaultsFromLlamaCpp) {
  GgufWriter w = base("gemma2", 6);
  w.add_u32("gemma2.attention.key_length", 64);
  w.add_u32("gemma2.attention.value_length", 64);
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kGemma2);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
  EXPECT_DOUBLE_EQ(c.attn_logit_softcap, 50.0);
  EXPECT_DOUBLE_EQ(c.final_logit_softcap, 30.0);
  EXPECT_EQ(c.sliding_window, 4096);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(c.layers[i].sliding_window, i % 2 == 0 ? 4096 : 0);
  EXPECT_DOUBLE_EQ(c.norm_weight_offset, 0.0);  // the converter stored 1 + w
  EXPECT_DOUBLE_EQ(c.embedding_scale, 16.0);
  EXPECT_DOUBLE_EQ(c.attention_scale, 1.0 / 8.0);
}

TEST(GgufConfig, Gemma3LocalRopeAndPattern) {
  GgufWriter w = base("gemma3", 12);
  w.add_u32("gemma3.attention.key_length", 64);
  w.add_u32("gemma3.attention.value_length", 64);
  w.add_f32("gemma3.rope.freq_base", 1000000.0f);
  w.add_u32("gemma3.attention.sliding_window", 512);
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kGemma3);
  EXPECT_TRUE(c.qk_norm);
  ASSERT_TRUE(c.rope_local.has_value());
  EXPECT_DOUBLE_EQ(c.rope_local->theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1000000.0);
  for (size_t i = 0; i < 12; ++i) {
    bool global = (i + 1) % 6 == 0;
    EXPECT_EQ(c.layers[i].sliding_window, global ? 0 : 512) << i;
    EXPECT_EQ(c.layers[i].local_rope, !global) << i;
  }
  EXPECT_EQ(c.final_logit_softcap, 0.0);

  // Newer files may carry the pattern as one flag per layer, and the local base.
  GgufWriter p = base("gemma3", 4);
  p.add_u32("gemma3.attention.sliding_window", 128);
  p.add_f32("gemma3.rope.freq_base_swa", 20000.0f);
  p.add_array("gemma3.attention.sliding_window_pattern", GgufWriter::array_of<uint8_t>(7, {1, 0, 0, 1}));
  ModelConfig q = load(p);
  EXPECT_EQ(q.layers[0].sliding_window, 128);
  EXPECT_EQ(q.layers[1].sliding_window, 0);
  EXPECT_EQ(q.layers[3].sliding_window, 128);
  EXPECT_DOUBLE_EQ(q.rope_local->theta, 20000.0);
  GgufWriter bad = base("gemma3", 4);
  bad.add_u32("gemma3.attention.sliding_window", 128);
  bad.add_array("gemma3.attention.sliding_window_pattern", GgufWriter::array_of<uint8_t>(7, {1, 0}));
  expect_error(bad, ErrorCode::kInvalidFile, "must hold one bool per layer");

  // Without a window every layer is global, as llama.cpp treats it.
  GgufWriter none = base("gemma3", 6);
  ModelConfig n = load(none);
  EXPECT_FALSE(n.has_sliding_layers());
  EXPECT_FALSE(n.rope_local.has_value());
}

TEST(GgufConfig, Phi3LongRopeFromFactorTensors) {
  GgufWriter w = base("phi3");
  w.add_u32("phi3.rope.dimension_count", 24);  // partial rotary
  w.add_u32("phi3.rope.scaling.original_context_length", 1024);
  w.add_f32("phi3.rope.scaling.attn_factor", 1.19f);
  w.add_u32("phi3.attention.sliding_window", 2047);
  std::vector<float> lf(12, 2.0f);
  std::vector<float> sf(12, 1.0f);
  w.add_tensor("rope_factors_long.weight", {12}, kF32, f32_bytes(lf));
  w.add_tensor("rope_factors_short.weight", {12}, kF32, f32_bytes(sf));
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kPhi3);
  EXPECT_EQ(c.rope.rotary_dim, 24);
  EXPECT_EQ(c.rope.type, RopeType::kLongRope);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 1024);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_NEAR(c.rope.attention_factor, 1.19, 1e-6);
  EXPECT_EQ(c.rope.long_factor, std::vector<double>(12, 2.0));
  EXPECT_EQ(c.rope.short_factor, std::vector<double>(12, 1.0));
  EXPECT_EQ(c.sliding_window, 2047);

  GgufWriter half = base("phi3");
  half.add_tensor("rope_factors_long.weight", {16}, kF32, f32_bytes(std::vector<float>(16, 2.0f)));
  expect_error(half, ErrorCode::kInvalidFile, "longrope needs both rope_factors_long and rope_factors_short");
}

TEST(GgufConfig, GptNeoX) {
  GgufWriter w = base("gptneox");
  w.add_u32("gptneox.rope.dimension_count", 8);
  w.add_bool("gptneox.use_parallel_residual", false);
  w.add_tensor("blk.0.attn_qkv.bias", {768}, kF32, std::vector<uint8_t>(768 * 4));
  w.add_tensor("blk.0.attn_output.bias", {256}, kF32, std::vector<uint8_t>(256 * 4));
  w.add_tensor("blk.0.ffn_up.bias", {512}, kF32, std::vector<uint8_t>(512 * 4));
  ModelConfig c = load(w);
  EXPECT_EQ(c.arch, Arch::kGptNeoX);
  EXPECT_EQ(c.norm_kind, NormKind::kLayerNorm);
  EXPECT_EQ(c.activation, Activation::kGelu);
  EXPECT_FALSE(c.gated_mlp);
  EXPECT_FALSE(c.parallel_residual);
  EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
  EXPECT_EQ(c.rope.rotary_dim, 8);
  EXPECT_EQ(c.rope.style, RopeStyle::kNeox);
}

TEST(GgufConfig, MalformedMetadata) {
  GgufWriter bert = base("bert");
  expect_error(bert, ErrorCode::kUnsupported,
               "unsupported architecture 'bert' (supported GGUF architectures: llama, qwen2, qwen3, qwen3moe, "
               "gemma, gemma2, gemma3, phi3, gptneox)");

  GgufWriter no_arch;
  no_arch.add_u32("llama.block_count", 2);
  expect_error(no_arch, ErrorCode::kInvalidFile, "missing metadata 'general.architecture'");
  GgufWriter int_arch;
  int_arch.add_u32("general.architecture", 7);
  expect_error(int_arch, ErrorCode::kInvalidFile, "'general.architecture' must be a string, got uint32");

  GgufWriter no_layers;
  no_layers.add_string("general.architecture", "llama");
  expect_error(no_layers, ErrorCode::kInvalidFile, "missing required metadata 'llama.block_count'");

  GgufWriter string_count = base("qwen3");
  string_count.add_string("qwen3.attention.key_length", "64");
  expect_error(string_count, ErrorCode::kInvalidFile,
               "metadata 'qwen3.attention.key_length' must be an integer, got string");

  GgufWriter kv3;
  kv3.add_string("general.architecture", "llama");
  kv3.add_u32("llama.block_count", 2);
  kv3.add_u32("llama.context_length", 64);
  kv3.add_u32("llama.embedding_length", 96);
  kv3.add_u32("llama.feed_forward_length", 64);
  kv3.add_u32("llama.attention.head_count", 6);
  kv3.add_u32("llama.attention.head_count_kv", 4);
  kv3.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  kv3.add_u32("llama.vocab_size", 10);
  expect_error(kv3, ErrorCode::kInvalidFile,
               "llama.attention.head_count_kv (4) must divide llama.attention.head_count (6)");

  GgufWriter huge = base("llama");
  huge.add_u64("llama.vocab_size", 1ull << 40);
  expect_error(huge, ErrorCode::kInvalidFile, "metadata 'llama.vocab_size' must be in [1, 16777216]");
  GgufWriter overflow = base("llama");
  overflow.add_u64("llama.vocab_size", ~0ull);
  expect_error(overflow, ErrorCode::kInvalidFile, "metadata 'llama.vocab_size' is out of range");

  GgufWriter vdim = base("llama");
  vdim.add_u32("llama.attention.key_length", 32);
  vdim.add_u32("llama.attention.value_length", 16);
  expect_error(vdim, ErrorCode::kUnsupported, "value head size 16 differs from key head size 32");

  GgufWriter eos = base("llama");
  eos.add_u32("tokenizer.ggml.eot_token_id", 500);
  expect_error(eos, ErrorCode::kInvalidFile, "metadata 'tokenizer.ggml.eot_token_id' (500) is outside the vocabulary");

  GgufWriter eps;
  eps.add_string("general.architecture", "qwen2");
  eps.add_u32("qwen2.block_count", 2);
  eps.add_u32("qwen2.context_length", 64);
  eps.add_u32("qwen2.embedding_length", 64);
  eps.add_u32("qwen2.feed_forward_length", 64);
  eps.add_u32("qwen2.attention.head_count", 4);
  eps.add_u32("qwen2.vocab_size", 10);
  expect_error(eps, ErrorCode::kInvalidFile, "missing required metadata 'qwen2.attention.layer_norm_rms_epsilon'");

  GgufWriter no_vocab;
  no_vocab.add_string("general.architecture", "qwen2");
  no_vocab.add_u32("qwen2.block_count", 2);
  no_vocab.add_u32("qwen2.context_length", 64);
  no_vocab.add_u32("qwen2.embedding_length", 64);
  no_vocab.add_u32("qwen2.feed_forward_length", 64);
  no_vocab.add_u32("qwen2.attention.head_count", 4);
  no_vocab.add_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
  expect_error(no_vocab, ErrorCode::kInvalidFile, "gives the vocabulary size");

  // Per-layer arrays are accepted when uniform.
  GgufWriter per_layer;
  per_layer.add_string("general.architecture", "qwen2");
  per_layer.add_u32("qwen2.block_count", 2);
  per_layer.add_u32("qwen2.context_length", 64);
  per_layer.add_u32("qwen2.embedding_length", 64);
  per_layer.add_array("qwen2.feed_forward_length", GgufWriter::array_of<uint32_t>(4, {128, 128}));
  per_layer.add_u32("qwen2.attention.head_count", 4);
  per_layer.add_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
  per_layer.add_u32("qwen2.vocab_size", 10);
  EXPECT_EQ(load(per_layer).intermediate_size, 128);
  GgufWriter mixed = per_layer;
  mixed.add_array("qwen2.attention.head_count_kv", GgufWriter::array_of<uint32_t>(4, {4, 2}));
  expect_error(mixed, ErrorCode::kUnsupported, "'qwen2.attention.head_count_kv' differs between layers");

  GgufWriter theta = base("llama");
  theta.add_string("llama.rope.freq_base", "1e4");
  expect_error(theta, ErrorCode::kInvalidFile, "metadata 'llama.rope.freq_base' must be a number, got string");
  GgufWriter nan = base("llama");
  nan.add_f32("llama.rope.freq_base", std::nanf(""));
  expect_error(nan, ErrorCode::kInvalidFile, "metadata 'llama.rope.freq_base' is not a finite number");
  GgufWriter rot = base("llama");
  rot.add_u32("llama.rope.dimension_count", 7);
  expect_error(rot, ErrorCode::kInvalidFile, "rope.rotary_dim must be even");
}

}  // namespace
}  // namespace pagoda::model
