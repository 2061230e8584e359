// Small decisions of the decoder: the context a config allows, and the Gemma embedding multiplier
// as transformers rounds it to the checkpoint's dtype.

#include <gtest/gtest.h>

#include <cmath>

#include "model/layers/decoder.h"

namespace pagoda::model {
namespace {

ModelConfig config_with(RopeType type, double factor, int64_t max_pos, int64_t orig = 0) {
  ModelConfig c;
  c.max_position_embeddings = max_pos;
  c.rope.type = type;
  c.rope.factor = factor;
  c.rope.original_max_position_embeddings = orig;
  return c;
}

TEST(ContextLength, ScalingAsVllmDerivesIt) {
  EXPECT_EQ(context_length(config_with(RopeType::kDefault, 1.0, 512)), 512);
  EXPECT_EQ(context_length(config_with(RopeType::kDynamic, 2.0, 32)), 64);
  EXPECT_EQ(context_length(config_with(RopeType::kLinear, 4.0, 100)), 400);
  EXPECT_EQ(context_length(config_with(RopeType::kYarn, 4.0, 512, 512)), 2048);
  EXPECT_EQ(context_length(config_with(RopeType::kYarn, 2.0, 8192, 1024)), 8192);
  EXPECT_EQ(context_length(config_with(RopeType::kLlama3, 8.0, 131072, 8192)), 131072);
  EXPECT_EQ(context_length(config_with(RopeType::kLongRope, 32.0, 131072, 4096)), 131072);
  // GGUF's context_length is the final one.
  ModelConfig g = config_with(RopeType::kLinear, 4.0, 100);
  g.format = ConfigFormat::kGguf;
  EXPECT_EQ(context_length(g), 100);
  // Capped, never overflowing.
  EXPECT_EQ(context_length(config_with(RopeType::kDynamic, 1e6, kMaxPositions)), kMaxPositions);
}

TEST(GemmaEmbeddingScale, RoundedToTheCheckpointDtype) {
  ModelConfig c;
  c.hidden_size = 80;
  c.embedding_scale = std::sqrt(80.0);
  c.torch_dtype = "bfloat16";
  EXPECT_EQ(gemma_embedding_scale(c), 8.9375f);
  c.torch_dtype = "float16";
  EXPECT_EQ(gemma_embedding_scale(c), 8.9453125f);
  c.torch_dtype = "float32";
  EXPECT_EQ(gemma_embedding_scale(c), static_cast<float>(std::sqrt(80.0)));
  c.torch_dtype = "bfloat16";
  c.format = ConfigFormat::kGguf;  // llama.cpp multiplies by sqrtf(n_embd)
  EXPECT_EQ(gemma_embedding_scale(c), static_cast<float>(std::sqrt(80.0)));
}

}  // namespace
}  // namespace pagoda::model
