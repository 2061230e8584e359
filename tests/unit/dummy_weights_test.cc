// Random weights from a config.json alone (ModelFiles::open_dummy, `--load-format dummy`): the
// same seed gives the same weights and the same logits, another seed other weights, values lie in
// the documented range, and a model built this way runs on the CPU.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cpu/quant/float_convert.h"
#include "core/error.h"
#include "model/loader/model_files.h"
#include "worker/model_runner.h"

namespace pagoda {
namespace {

std::string data(const std::string& rel) {
  return std::string(PAGODA_TEST_DATA_DIR) + "/" + rel;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

TEST(DummyWeights, DeterministicPerSeedAndName) {
  const ModelFiles a = ModelFiles::open_dummy(data("golden/llama/config.json"), DType::kF16, 7);
  const ModelFiles b = ModelFiles::open_dummy(data("golden/llama"), DType::kF16, 7);
  const ModelFiles c = ModelFiles::open_dummy(data("golden/llama"), DType::kF16, 8);
  ASSERT_TRUE(a.is_dummy());
  EXPECT_EQ(a.dummy_dtype(), DType::kF16);
  const Shape shape{300, 64};
  const Tensor ta = a.dummy_tensor("model.layers.0.mlp.up_proj.weight", shape, false);
  EXPECT_EQ(ta.dtype(), DType::kF16);
  EXPECT_TRUE(same_bytes(ta, b.dummy_tensor("model.layers.0.mlp.up_proj.weight", shape, false)));
  EXPECT_FALSE(same_bytes(ta, c.dummy_tensor("model.layers.0.mlp.up_proj.weight", shape, false)));
  EXPECT_FALSE(same_bytes(ta, a.dummy_tensor("model.layers.1.mlp.up_proj.weight", shape, false)));
  // Uniform in [-0.02, 0.02]: bounded, centred, and spread over the range.
  double sum = 0;
  float lo = 1;
  float hi = -1;
  const auto* h = static_cast<const uint16_t*>(ta.raw_data());
  for (int64_t i = 0; i < ta.numel(); ++i) {
    const float v = cpu::fp16_to_fp32(h[i]);
    sum += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GE(lo, -0.0201f);
  EXPECT_LE(hi, 0.0201f);
  EXPECT_LT(lo, -0.019f);
  EXPECT_GT(hi, 0.019f);
  EXPECT_LT(std::abs(sum / static_cast<double>(ta.numel())), 1e-3);
  // Large tensors are filled by several threads; the values do not depend on the split.
  const Shape big{4096, 600};
  const Tensor t1 = a.dummy_tensor("big", big, true);
  const Tensor t2 = b.dummy_tensor("big", big, true);
  EXPECT_EQ(t1.dtype(), DType::kF32);
  EXPECT_TRUE(same_bytes(t1, t2));
  const Tensor small = a.dummy_tensor("big", Shape{64, 600}, true);
  EXPECT_EQ(std::memcmp(small.raw_data(), t1.raw_data(), small.nbytes()), 0);
}

TEST(DummyWeights, DtypeDefaultsToTheConfigAndIsChecked) {
  // The golden llama's config says float32; Llama-3-8B's says bfloat16.
  EXPECT_EQ(ModelFiles::open_dummy(data("golden/llama"), std::nullopt, 0).dummy_dtype(), DType::kF32);
  const ModelFiles l3 = ModelFiles::open_dummy(data("configs/llama3_8b_config.json"), std::nullopt, 0);
  EXPECT_EQ(l3.dummy_dtype(), DType::kBF16);
  EXPECT_EQ(l3.config().num_layers, 32);
  EXPECT_EQ(l3.config().hidden_size, 4096);
  EXPECT_EQ(l3.config().intermediate_size, 14336);
  EXPECT_EQ(l3.config().vocab_size, 128256);
  EXPECT_EQ(l3.config().num_kv_heads, 8);
  EXPECT_THROW((void)ModelFiles::open_dummy(data("golden/llama"), DType::kQ4_0, 0), Error);
  EXPECT_THROW((void)l3.tensor("lm_head.weight"), Error);
}

std::vector<float> first_logits(const ModelFiles& files) {
  worker::RunnerOptions o;
  o.block_size = 4;
  o.num_blocks = 8;
  o.max_model_len = 32;
  worker::ModelRunner runner(files, o);
  worker::StepInput s;
  s.token_ids = {1, 17, 42, 200, 5};
  s.positions = {0, 1, 2, 3, 4};
  s.slot_mapping = {0, 1, 2, 3, 4};
  s.seq_lens = {5};
  s.cu_query_lens = {0, 5};
  s.block_tables = {0, 1};
  s.max_blocks_per_seq = 2;
  s.logits_indices = {4};
  const Tensor logits = runner.execute(s);
  EXPECT_EQ(logits.dim(0), 1);
  EXPECT_EQ(logits.dim(1), files.config().vocab_size);
  return {logits.data<float>(), logits.data<float>() + logits.numel()};
}

TEST(DummyWeights, ModelRunsOnCpuAndRepeats) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const ModelFiles a = ModelFiles::open_dummy(data("golden/llama"), dtype, 3);
    const ModelFiles b = ModelFiles::open_dummy(data("golden/llama"), dtype, 3);
    const ModelFiles c = ModelFiles::open_dummy(data("golden/llama"), dtype, 4);
    const std::vector<float> la = first_logits(a);
    for (float v : la)
      ASSERT_TRUE(std::isfinite(v));
    EXPECT_EQ(la, first_logits(b)) << dtype_name(dtype);
    EXPECT_NE(la, first_logits(c)) << dtype_name(dtype);
  }
}

}  // namespace
}  // namespace pagoda
