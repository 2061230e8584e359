// The op front ends reject malformed arguments with a pagoda::Error naming the op and the tensor,
// before any backend runs; and the backend registry, device parsing, transfers and the CPU thread
// pool behave as documented.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/thread_pool.h"
#include "ops/ops.h"
#include "ops_test_util.h"

namespace pagoda::test {
namespace {

constexpr ErrorCode kInvalid = ErrorCode::kInvalidArgument;

// Host memory that refuses writes, like a read-only file mapping.
class ReadOnlyStorage final : public Storage {
 public:
  explicit ReadOnlyStorage(uint64_t nbytes) : bytes_(nbytes) {}
  void* data() override { return bytes_.data(); }
  uint64_t nbytes() const override { return bytes_.size(); }
  Device device() const override { return cpu_device(); }
  StorageKind kind() const override { return StorageKind::kMapped; }
  bool writable() const override { return false; }

 private:
  std::vector<uint8_t> bytes_;
};

Tensor f32(const Shape& s) {
  return Tensor::zeros(s, DType::kF32);
}
Tensor i32(const Shape& s) {
  return Tensor::zeros(s, DType::kI32);
}
Tensor i64(const Shape& s) {
  return Tensor::zeros(s, DType::kI64);
}

TEST(OpChecks, Embedding) {
  Tensor out = f32({3, 8});
  EXPECT_PAGODA_ERROR(ops::embedding(out, i32({4}), f32({10, 8})), kInvalid,
                      "embedding: ids has shape [4], expected [3]");
  EXPECT_PAGODA_ERROR(ops::embedding(out, i64({3}), f32({10, 8})), kInvalid,
                      "embedding: ids has dtype i64, expected i32");
  EXPECT_PAGODA_ERROR(ops::embedding(out, i32({3}), f32({10, 9})), kInvalid, "embedding: table has shape [10, 9]");
  Tensor out16 = Tensor::zeros({3, 8}, DType::kF16);
  EXPECT_PAGODA_ERROR(ops::embedding(out16, i32({3}), f32({10, 8})), kInvalid, "out has dtype f16, expected f32");
  Tensor undefined;
  EXPECT_PAGODA_ERROR(ops::embedding(out, undefined, f32({10, 8})), kInvalid, "embedding: ids is undefined");
  // A table type no kernel dequantizes.
  Tensor wide = f32({3, 256});
  EXPECT_PAGODA_ERROR(ops::embedding(wide, i32({3}), Tensor::zeros({10, 256}, DType::kIQ2_XXS)),
                      ErrorCode::kUnsupported, "does not implement embedding for table of dtype iq2_xxs");
}

TEST(OpChecks, Norms) {
  Tensor out = f32({4, 8});
  EXPECT_PAGODA_ERROR(ops::rms_norm(out, f32({4, 8}), f32({7}), 1e-6f), kInvalid,
                      "rms_norm: weight has shape [7], expected [8]");
  EXPECT_PAGODA_ERROR(ops::rms_norm(out, f32({4, 9}), f32({9}), 1e-6f), kInvalid, "rms_norm: out has shape [4, 8]");
  EXPECT_PAGODA_ERROR(ops::rms_norm(out, f32({4, 8}), f32({8}), -1.0f), kInvalid, "rms_norm: eps is -1");
  EXPECT_PAGODA_ERROR(ops::rms_norm(out, Tensor::zeros({4, 8}, DType::kF16), f32({8}), 1e-6f), kInvalid,
                      "rms_norm: x has dtype f16");
  // A strided view is not contiguous.
  const Tensor wide = f32({4, 16});
  EXPECT_PAGODA_ERROR(ops::rms_norm(out, wide.slice(1, 0, 8), f32({8}), 1e-6f), kInvalid,
                      "rms_norm: x (f32[4, 8] cpu) is not contiguous");
  // Partial overlap of out and x.
  Tensor buf = f32({5, 8});
  Tensor a = buf.slice(0, 0, 4);
  EXPECT_PAGODA_ERROR(ops::rms_norm(a, buf.slice(0, 1, 5), f32({8}), 1e-6f), kInvalid, "out partly overlaps x");
  Tensor x = f32({4, 8});
  Tensor res = f32({4, 9});
  EXPECT_PAGODA_ERROR(ops::fused_add_rms_norm(x, res, f32({8}), 1e-6f), kInvalid,
                      "fused_add_rms_norm: residual has shape [4, 9]");
  EXPECT_PAGODA_ERROR(ops::fused_add_rms_norm(x, x, f32({8}), 1e-6f), kInvalid, "x and residual share memory");
  const Tensor bias = f32({9});
  EXPECT_PAGODA_ERROR(ops::layer_norm(out, f32({4, 8}), f32({8}), &bias, 1e-5f), kInvalid,
                      "layer_norm: bias has shape [9], expected [8]");
  Tensor empty_rows = f32({4, 0});
  EXPECT_PAGODA_ERROR(ops::rms_norm(empty_rows, f32({4, 0}), f32({0}), 1e-6f), kInvalid, "dimension is empty");
}

TEST(OpChecks, Rotary) {
  Tensor q = f32({3, 4 * 64});
  Tensor k = f32({3, 2 * 64});
  const Tensor cache = f32({100, 64});
  EXPECT_PAGODA_ERROR(ops::rotary_embedding(i32({4}), q, &k, 64, cache, true), kInvalid,
                      "rotary_embedding: positions has shape [4], expected [3]");
  EXPECT_PAGODA_ERROR(ops::rotary_embedding(i32({3}), q, &k, 32, cache, true), kInvalid,
                      "rotary_dim 64 must be even, > 0 and at most head_size 32");
  EXPECT_PAGODA_ERROR(ops::rotary_embedding(i32({3}), q, &k, 80, f32({100, 64}), true), kInvalid,
                      "query has shape [3, 256], not a whole number of heads of size 80");
  EXPECT_PAGODA_ERROR(ops::rotary_embedding(i32({3}), q, &k, 64, f32({100, 63}), true), kInvalid, "must be even");
  Tensor k_bad = f32({2, 128});
  EXPECT_PAGODA_ERROR(ops::rotary_embedding(i32({3}), q, &k_bad, 64, cache, true), kInvalid,
                      "key has shape [2, 128], expected 3 at axis 0");
  EXPECT_PAGODA_ERROR(ops::rotary_embedding(i32({3}), q, &k, 0, cache, true), kInvalid, "head_size is 0");
}

TEST(OpChecks, Activations) {
  Tensor out = f32({2, 5});
  EXPECT_PAGODA_ERROR(ops::silu_and_mul(out, f32({2, 11})), kInvalid, "the last dimension must be even");
  EXPECT_PAGODA_ERROR(ops::silu_and_mul(out, f32({2, 12})), kInvalid,
                      "act_and_mul: out has shape [2, 5], expected [2, 6]");
  Tensor x = f32({2, 10});
  Tensor overlapping = x.slice(1, 0, 5);  // not contiguous either
  EXPECT_PAGODA_ERROR(ops::gelu_and_mul(overlapping, x), kInvalid, "out (f32[2, 5] cpu) is not contiguous");
  EXPECT_PAGODA_ERROR(ops::activation(out, f32({2, 6}), ActivationKind::kGelu), kInvalid,
                      "activation: out has shape [2, 5], expected [2, 6]");
  EXPECT_PAGODA_ERROR(ops::act_and_mul(out, f32({2, 10}), static_cast<ActivationKind>(9)), kInvalid,
                      "unknown activation 9");
}

TEST(OpChecks, Matmul) {
  Tensor out = f32({3, 5});
  EXPECT_PAGODA_ERROR(ops::matmul(out, f32({3, 7}), f32({5, 8})), kInvalid,
                      "matmul: weight has shape [5, 8], expected 7 at axis 1");
  EXPECT_PAGODA_ERROR(ops::matmul(out, f32({3, 8}), f32({6, 8})), kInvalid,
                      "matmul: out has shape [3, 5], expected [3, 6]");
  const Tensor bias = f32({4});
  EXPECT_PAGODA_ERROR(ops::matmul(out, f32({3, 8}), f32({5, 8}), &bias), kInvalid, "bias has shape [4], expected [5]");
  EXPECT_PAGODA_ERROR(ops::matmul(out, Tensor::zeros({3, 8}, DType::kBF16), f32({5, 8})), kInvalid,
                      "x has dtype bf16, expected f32");
  EXPECT_PAGODA_ERROR(ops::matmul(out, f32({3, 8}), f32({2, 5, 8})), kInvalid, "weight has shape [2, 5, 8]");
  Tensor x = f32({3, 5});
  EXPECT_PAGODA_ERROR(ops::matmul(x, x, f32({5, 5})), kInvalid, "out and x share memory");
  EXPECT_PAGODA_ERROR(ops::quant_matmul(out, f32({3, 8}), f32({5, 8})), kInvalid,
                      "quant_matmul: weight has dtype f32, expected a block-quantized type");
  Tensor wide = f32({3, 256});
  EXPECT_PAGODA_ERROR(ops::matmul(wide, f32({3, 256}), Tensor::zeros({256, 256}, DType::kIQ4_XS)),
                      ErrorCode::kUnsupported,
                      "matmul: the cpu backend does not implement matmul for weight of dtype iq4_xs");
  // Writing into a read-only mapping would crash; it is refused instead.
  Tensor readonly = Tensor::from_storage(std::make_shared<ReadOnlyStorage>(60), 0, {3, 5}, DType::kF32);
  EXPECT_PAGODA_ERROR(ops::matmul(readonly, f32({3, 8}), f32({5, 8})), kInvalid,
                      "matmul: out is not writable (a read-only memory-mapped file)");
}

TEST(OpChecks, Elementwise) {
  Tensor out = f32({2, 3});
  EXPECT_PAGODA_ERROR(ops::add(out, f32({2, 3}), f32({3, 2})), kInvalid, "add: b has shape [3, 2], expected [2, 3]");
  EXPECT_PAGODA_ERROR(ops::add(out, i32({2, 3}), f32({2, 3})), kInvalid, "add: a has dtype i32");
  Tensor x = i32({4});
  EXPECT_PAGODA_ERROR(ops::scale(x, 2.0f), kInvalid, "scale: x has dtype i32, expected f32");
  EXPECT_PAGODA_ERROR(ops::softcap(out, 0.0f), kInvalid, "softcap: cap is 0");
  EXPECT_PAGODA_ERROR(ops::softcap(out, -3.0f), kInvalid, "softcap: cap is -3");
}

TEST(OpChecks, Cache) {
  Tensor kc = Tensor::zeros({4, 2, 16, 64}, DType::kF16);
  Tensor vc = Tensor::zeros({4, 2, 16, 64}, DType::kF16);
  EXPECT_PAGODA_ERROR(ops::reshape_and_cache(f32({3, 2, 64}), f32({3, 2, 64}), kc, vc, i32({3})), kInvalid,
                      "reshape_and_cache: slot_mapping has dtype i32, expected i64");
  EXPECT_PAGODA_ERROR(ops::reshape_and_cache(f32({3, 4, 64}), f32({3, 4, 64}), kc, vc, i64({3})), kInvalid,
                      "reshape_and_cache: key has shape [3, 4, 64], expected [3, 2, 64]");
  Tensor vc32 = Tensor::zeros({4, 2, 16, 64}, DType::kF32);
  EXPECT_PAGODA_ERROR(ops::reshape_and_cache(f32({3, 2, 64}), f32({3, 2, 64}), kc, vc32, i64({3})), kInvalid,
                      "value_cache has dtype f32, expected f16");
  Tensor kc8 = Tensor::zeros({4, 2, 16, 64}, DType::kI8);
  Tensor vc8 = Tensor::zeros({4, 2, 16, 64}, DType::kI8);
  EXPECT_PAGODA_ERROR(ops::reshape_and_cache(f32({3, 2, 64}), f32({3, 2, 64}), kc8, vc8, i64({3})),
                      ErrorCode::kUnsupported, "does not implement reshape_and_cache for key_cache of dtype i8");
  EXPECT_PAGODA_ERROR(ops::reshape_and_cache(f32({3, 2, 64}), f32({3, 2, 64}), kc, kc, i64({3})), kInvalid,
                      "key_cache and value_cache share memory");
  std::vector<Tensor> keys = {kc}, values = {vc, vc};
  EXPECT_PAGODA_ERROR(ops::copy_blocks(keys, values, i64({1, 2})), kInvalid, "1 key caches but 2 value caches");
  values = {vc};
  EXPECT_PAGODA_ERROR(ops::copy_blocks(keys, values, i64({1, 3})), kInvalid, "block_mapping has shape [1, 3]");
  std::vector<Tensor> keys2 = {kc, Tensor::zeros({5, 2, 16, 64}, DType::kF16)};
  std::vector<Tensor> values2 = {vc, Tensor::zeros({5, 2, 16, 64}, DType::kF16)};
  EXPECT_PAGODA_ERROR(ops::copy_blocks(keys2, values2, i64({1, 2})), kInvalid,
                      "key_caches[1] has shape [5, 2, 16, 64], expected 4 at axis 0");
  // An out-of-range block in the mapping is caught by the backend.
  EXPECT_PAGODA_ERROR(ops::copy_blocks(keys, values,
                                       [] {
                                         Tensor m = i64({1, 2});
                                         m.data<int64_t>()[1] = 4;
                                         return m;
                                       }()),
                      kInvalid, "block_mapping[0] = (0, 4)");
  EXPECT_PAGODA_ERROR(ops::swap_blocks(kc, vc32, i64({1, 2})), kInvalid,
                      "swap_blocks: dst has dtype f32, expected f16");
}

TEST(OpChecks, Attention) {
  const Tensor kc = Tensor::zeros({4, 2, 16, 64}, DType::kF16);
  const Tensor vc = Tensor::zeros({4, 2, 16, 64}, DType::kF16);
  Tensor out = f32({3, 8, 64});
  const Tensor q = f32({3, 8, 64});
  const Tensor tables = i32({3, 4});
  const Tensor lens = i32({3});
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 3, tables, lens, 16, 64), kInvalid,
                      "query has 8 heads, not a multiple of num_kv_heads 3");
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 4, tables, lens, 16, 64), kInvalid,
                      "paged_attention: key_cache has shape [4, 2, 16, 64], expected [4, 4, 16, 64]");
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 2, tables, lens, 32, 64), kInvalid,
                      "key_cache has shape [4, 2, 16, 64], expected [4, 2, 32, 64]");
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 2, i32({2, 4}), lens, 16, 64), kInvalid,
                      "block_tables has shape [2, 4], expected 3 at axis 0");
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 2, tables, i64({3}), 16, 64), kInvalid,
                      "seq_lens has dtype i64, expected i32");
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, f32({3, 8, 80}), kc, vc, 2, tables, lens, 16, 64), kInvalid,
                      "out has shape [3, 8, 64], expected [3, 8, 80]");
  const Tensor slopes = f32({4});
  AttentionParams p;
  p.alibi_slopes = &slopes;
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 2, tables, lens, 16, 64, p), kInvalid,
                      "alibi_slopes has shape [4], expected [8]");
  p = {};
  p.sliding_window = -1;
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 2, tables, lens, 16, 64, p), kInvalid,
                      "sliding_window is -1");
  p = {};
  p.logit_softcap = -2.0f;
  EXPECT_PAGODA_ERROR(ops::paged_attention(out, q, kc, vc, 2, tables, lens, 16, 64, p), kInvalid,
                      "logit_softcap is -2");
  EXPECT_PAGODA_ERROR(ops::prefill_attention(out, q, kc, vc, 2, tables, i32({3}), lens, 16, 3), kInvalid,
                      "prefill_attention: cu_query_lens has shape [3], expected [4]");
  EXPECT_PAGODA_ERROR(ops::prefill_attention(out, q, kc, vc, 2, tables, i32({4}), lens, 16, -1), kInvalid,
                      "max_query_len is -1");
  const Tensor kc_q = Tensor::zeros({4, 2, 16, 64}, DType::kQ8_0);
  EXPECT_PAGODA_ERROR(ops::prefill_attention(out, q, kc_q, kc_q, 2, tables, i32({4}), lens, 16, 3),
                      ErrorCode::kUnsupported, "does not implement prefill_attention for key_cache of dtype q8_0");
}

TEST(OpChecks, SamplingMoeGather) {
  Tensor ids = i32({3});
  EXPECT_PAGODA_ERROR(ops::argmax(ids, f32({4, 10})), kInvalid, "argmax: out has shape [3], expected [4]");
  EXPECT_PAGODA_ERROR(ops::argmax(ids, f32({3, 0})), kInvalid, "argmax: logits has shape [3, 0]: empty rows");
  Tensor w = f32({3, 2});
  Tensor topk = i32({3, 2});
  EXPECT_PAGODA_ERROR(ops::topk_softmax(w, topk, f32({3, 1}), true), kInvalid, "k must be 1 to the 1 experts");
  Tensor topk64 = i64({3, 2});
  EXPECT_PAGODA_ERROR(ops::topk_softmax(w, topk64, f32({3, 8}), true), kInvalid, "topk_ids has dtype i64");
  Tensor out = f32({3, 16});
  EXPECT_PAGODA_ERROR(ops::moe_experts(out, f32({3, 16}), f32({4, 12, 16}), f32({4, 16, 5}), f32({3, 2}), i32({3, 2}),
                                       ActivationKind::kSilu),
                      kInvalid, "moe_experts: w_down has shape [4, 16, 5], expected [4, 16, 6]");
  EXPECT_PAGODA_ERROR(ops::moe_experts(out, f32({3, 16}), f32({4, 11, 16}), f32({4, 16, 5}), f32({3, 2}), i32({3, 2}),
                                       ActivationKind::kSilu),
                      kInvalid, "w_gate_up has shape [4, 11, 16]");
  EXPECT_PAGODA_ERROR(ops::moe_experts(out, f32({3, 16}), f32({4, 12, 16}), f32({4, 16, 6}), f32({3, 2}), i32({3, 3}),
                                       ActivationKind::kSilu),
                      kInvalid, "topk_ids has shape [3, 3], expected [3, 2]");
  Tensor g = f32({2, 4});
  EXPECT_PAGODA_ERROR(ops::gather_rows(g, f32({5, 4}), i64({2})), kInvalid, "gather_rows: indices has dtype i64");
  EXPECT_PAGODA_ERROR(ops::gather_rows(g, i32({5, 4}), i32({2})), kInvalid,
                      "gather_rows: out has dtype f32, expected i32");
  EXPECT_PAGODA_ERROR(ops::gather_rows(g, f32({5, 3}), i32({2})), kInvalid, "out has shape [2, 4], expected [2, 3]");
}

TEST(OpNames, EveryOpHasAName) {
  for (int i = 0; i < static_cast<int>(OpKind::kCount); ++i)
    EXPECT_STRNE(op_name(static_cast<OpKind>(i)), "unknown") << i;
  EXPECT_STREQ(op_name(OpKind::kPagedAttention), "paged_attention");
  EXPECT_STREQ(op_name(OpKind::kCount), "unknown");
}

// ---------------------------------------------------------------------------------------------
// registry

TEST(BackendRegistry, ParseDevice) {
  EXPECT_EQ(parse_device("cpu"), (Device{DeviceKind::kCpu, 0}));
  EXPECT_EQ(parse_device("cpu:0"), (Device{DeviceKind::kCpu, 0}));
  EXPECT_EQ(parse_device("xpu"), (Device{DeviceKind::kXpu, 0}));
  EXPECT_EQ(parse_device("xpu:3"), (Device{DeviceKind::kXpu, 3}));
  EXPECT_EQ(parse_device("cuda:12"), (Device{DeviceKind::kCuda, 12}));
  for (const char* bad : {"", "gpu", "CPU", "cuda:", "cuda:-1", "xpu:1a", "xpu:99999", "cpu:0:0", " cpu", "xpu: 1"})
    EXPECT_PAGODA_ERROR((void)parse_device(bad), kInvalid, "device");
  EXPECT_PAGODA_ERROR((void)parse_device(std::string(100, 'x')), kInvalid, "longer than");
}

TEST(BackendRegistry, CpuAlwaysOtherBackendsSaySoWhenAbsent) {
  Backend& cpu = backend_for(cpu_device());
  EXPECT_EQ(cpu.name(), "cpu");
  EXPECT_EQ(cpu.device(), cpu_device());
  EXPECT_EQ(&cpu, &backend_for(parse_device("cpu:0")));
  EXPECT_GT(cpu.total_memory(), 0u);
  EXPECT_PAGODA_ERROR((void)backend_for(Device{DeviceKind::kCpu, 1}), ErrorCode::kNotFound, "no device cpu:1");
#if PAGODA_HAS_XPU
  // Built: an index past the OpenCL devices is not found.
  EXPECT_PAGODA_ERROR((void)backend_for(parse_device("xpu:99")), ErrorCode::kNotFound, "there is no device xpu:99");
#else
  EXPECT_PAGODA_ERROR((void)backend_for(parse_device("xpu:0")), ErrorCode::kUnsupported,
                      "the xpu backend is not implemented in this build yet");
#endif
  EXPECT_PAGODA_ERROR((void)backend_for(parse_device("cuda")), ErrorCode::kUnsupported,
                      "the cuda backend is not implemented in this build yet");
}

TEST(BackendRegistry, CpuSupports) {
  Backend& cpu = backend_for(cpu_device());
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0, DType::kQ4_K, DType::kQ6_K, DType::kQ8_0})
    EXPECT_TRUE(cpu.supports(OpKind::kMatmul, t)) << dtype_name(t);
  EXPECT_FALSE(cpu.supports(OpKind::kMatmul, DType::kIQ2_XXS));
  EXPECT_FALSE(cpu.supports(OpKind::kMatmul, DType::kI32));
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16})
    EXPECT_TRUE(cpu.supports(OpKind::kPagedAttention, t));
  EXPECT_FALSE(cpu.supports(OpKind::kPagedAttention, DType::kQ8_0));
  EXPECT_TRUE(cpu.supports(OpKind::kRmsNorm, DType::kF32));
  EXPECT_FALSE(cpu.supports(OpKind::kRmsNorm, DType::kF16));
}

TEST(BackendRegistry, EmptyOnAndTransfers) {
  Tensor t = empty_on(cpu_device(), {3, 4}, DType::kF32);
  EXPECT_EQ(t.shape(), (Shape{3, 4}));
  EXPECT_EQ(t.device(), cpu_device());
  EXPECT_PAGODA_ERROR((void)empty_on(cpu_device(), {3, 33}, DType::kQ4_0), kInvalid, "whole number of q4_0 blocks");
#if PAGODA_HAS_XPU
  EXPECT_PAGODA_ERROR((void)empty_on(parse_device("xpu:99"), {3}, DType::kF32), ErrorCode::kNotFound, "xpu:99");
#else
  EXPECT_PAGODA_ERROR((void)empty_on(parse_device("xpu"), {3}, DType::kF32), ErrorCode::kUnsupported, "xpu backend");
#endif
  const Tensor h = host_f32({2}, {1.5f, -2.0f});
  EXPECT_EQ(to_device(h, cpu_device()).raw_data(), h.raw_data());  // already there: the same tensor
  EXPECT_EQ(to_host(h).raw_data(), h.raw_data());
  EXPECT_PAGODA_ERROR((void)to_device(h, parse_device("cuda:0")), ErrorCode::kUnsupported, "cuda backend");
  Tensor dst = Tensor::zeros({2}, DType::kF32);
  backend_for(cpu_device()).copy(dst, h);
  EXPECT_EQ(dst.data<float>()[1], -2.0f);
  Tensor wrong = Tensor::zeros({3}, DType::kF32);
  EXPECT_PAGODA_ERROR(backend_for(cpu_device()).copy(wrong, h), kInvalid, "does not match");
}

// ---------------------------------------------------------------------------------------------
// thread pool

TEST(CpuThreadPool, CoversEveryIndexOnce) {
  cpu::ThreadPool pool(4);
  EXPECT_EQ(pool.num_threads(), 4);
  for (int64_t n : {0, 1, 3, 17, 1000, 100003}) {
    for (int64_t grain : {1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
        EXPECT_LT(b, e);
        for (int64_t i = b; i < e; ++i)
          hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n " << n << " grain " << grain << " index " << i;
    }
  }
}

TEST(CpuThreadPool, RethrowsAndStaysUsable) {
  cpu::ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(1000, 1,
                                 [](int64_t b, int64_t e) {
                                   for (int64_t i = b; i < e; ++i) {
                                     if (i == 500) throw std::runtime_error("boom");
                                   }
                                 }),
               std::runtime_error);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(100, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      sum += i;
  });
  EXPECT_EQ(sum.load(), 4950);
}

TEST(CpuThreadPool, NestedCallsRunInline) {
  cpu::ThreadPool pool(3);
  std::atomic<int64_t> count{0};
  pool.parallel_for(10, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      pool.parallel_for(10, 1, [&](int64_t b2, int64_t e2) { count += e2 - b2; });
    }
  });
  EXPECT_EQ(count.load(), 100);
}

TEST(CpuThreadPool, SingleThreadPoolRunsInline) {
  cpu::ThreadPool pool(1);
  int64_t covered = 0;
  pool.parallel_for(50, 1, [&](int64_t b, int64_t e) { covered += e - b; });
  EXPECT_EQ(covered, 50);
}

}  // namespace
}  // namespace pagoda::test
