// The xpu runtime beyond the op contract: device numbering, the on-disk kernel cache, memory
// accounting and transfers. The ops themselves are covered by ops_test.cc and
// ops_attention_test.cc, which run on xpu:0 too.

#include <gtest/gtest.h>

#if PAGODA_HAS_XPU

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/device_list.h"
#include "backends/cpu/quant/float_convert.h"
#include "backends/xpu/onednn_matmul.h"
#include "backends/xpu/xpu_backend.h"
#include "backends/xpu/xpu_runtime.h"
#include "core/error.h"
#include "ops/ops.h"

namespace pagoda::test {
namespace {

bool have_device() {
  return !xpu::ordered_devices().empty();
}

TEST(XpuRuntime, ListingAndBackendAgreeOnNumbering) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  const auto backends = list_backends();
  const BackendReport* report = nullptr;
  for (const auto& b : backends) {
    if (b.name == "xpu") report = &b;
  }
  ASSERT_NE(report, nullptr);
  ASSERT_FALSE(report->devices.empty());
  EXPECT_EQ(report->devices[0].id, "xpu:0");
  Backend& b = backend_for(parse_device("xpu"));
  EXPECT_EQ(b.name(), "xpu:0 (" + report->devices[0].name + ")");
  EXPECT_EQ(b.total_memory(), report->devices[0].global_memory);
  const auto n = static_cast<int>(report->devices.size());
  EXPECT_THROW((void)backend_for(Device{DeviceKind::kXpu, n}), Error);
}

TEST(XpuRuntime, KernelCacheIsWrittenThenUsed) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("pagoda_kernel_cache_test_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  const char* old = std::getenv("PAGODA_KERNEL_CACHE");
  const std::string saved = old != nullptr ? old : "";
  setenv("PAGODA_KERNEL_CACHE", dir.c_str(), 1);
  {
    xpu::XpuRuntime first(0);
    EXPECT_EQ(first.program_origin(), "compiled");
  }
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().extension(), ".bin");
    EXPECT_GT(std::filesystem::file_size(e.path()), 0u);
    ++files;
  }
  EXPECT_EQ(files, 1);
  {
    xpu::XpuRuntime second(0);
    EXPECT_EQ(second.program_origin().rfind("cached binary", 0), 0u) << second.program_origin();
    (void)second.kernel("matmul");  // the cached program has the kernels
  }
  // A corrupt cache file falls back to compiling.
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::FILE* f = std::fopen(e.path().c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not a program", f);
    std::fclose(f);
  }
  {
    xpu::XpuRuntime third(0);
    EXPECT_EQ(third.program_origin(), "compiled");
  }
  if (old != nullptr) {
    setenv("PAGODA_KERNEL_CACHE", saved.c_str(), 1);
  } else {
    unsetenv("PAGODA_KERNEL_CACHE");
  }
  std::filesystem::remove_all(dir);
}

TEST(XpuRuntime, MemoryAccountingAndRoundTrip) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  Backend& b = backend_for(parse_device("xpu:0"));
  xpu::XpuRuntime& rt = dynamic_cast<xpu::XpuBackend&>(b).runtime();
  rt.release_idle_buffers();
  const uint64_t before = b.free_memory();
  // 4000 bytes take the 4096-byte size class, which stays held (idle, pooled) after the tensor dies.
  constexpr uint64_t kClass = 4096;
  ASSERT_EQ(xpu::BufferPool::size_class(4000), kClass);
  cl_mem first = nullptr;
  {
    Tensor t = empty_on(b.device(), Shape{1000}, DType::kF32);
    first = xpu::mem_of(t);
    EXPECT_EQ(t.storage_kind(), StorageKind::kDevice);
    EXPECT_EQ(t.storage()->nbytes(), 4000u);
    EXPECT_EQ(b.free_memory(), before - kClass);
    Tensor h = Tensor::empty(Shape{1000}, DType::kF32);
    for (int i = 0; i < 1000; ++i)
      h.data<float>()[i] = static_cast<float>(i) * 0.5f;
    b.copy(t, h);
    Tensor back = to_host(t.slice(0, 10, 20));
    for (int i = 0; i < 10; ++i)
      EXPECT_EQ(back.data<float>()[i], static_cast<float>(i + 10) * 0.5f);
    EXPECT_THROW((void)t.raw_data(), Error);  // device memory is not host-addressable
  }
  EXPECT_EQ(b.free_memory(), before - kClass);
  EXPECT_EQ(rt.pool().idle(), kClass);
  {
    // The same size class again is served by the idle buffer.
    const uint64_t hits = rt.pool().hits();
    Tensor t = empty_on(b.device(), Shape{990}, DType::kF32);
    EXPECT_EQ(xpu::mem_of(t), first);
    EXPECT_EQ(rt.pool().hits(), hits + 1);
    EXPECT_EQ(rt.pool().idle(), 0u);
    EXPECT_EQ(b.free_memory(), before - kClass);
  }
  rt.release_idle_buffers();
  EXPECT_EQ(b.free_memory(), before);
  EXPECT_TRUE(b.supports(OpKind::kMatmul, DType::kQ4_K));
  EXPECT_TRUE(b.supports(OpKind::kMatmul, DType::kBF16));
  EXPECT_FALSE(b.supports(OpKind::kMatmul, DType::kIQ2_XXS));
  EXPECT_FALSE(b.supports(OpKind::kPagedAttention, DType::kQ8_0));
}

// Host-to-device writes of a megabyte or more go through the pinned staging buffers in chunks:
// a write spanning several chunks, at an offset, from a host buffer that is gone before anyone
// reads the device copy, must land exactly; small writes around it stay intact.
TEST(XpuRuntime, StagedWritesLandExactly) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  Backend& b = backend_for(parse_device("xpu:0"));
  const auto chunk = static_cast<int64_t>(xpu::XpuRuntime::kStagingChunk);
  const int64_t n = (2 * chunk + chunk / 3 + 4) / 4;  // floats: two chunks and a third, odd tail
  Tensor dev = empty_on(b.device(), Shape{n + 64}, DType::kF32);
  std::mt19937 rng(7);
  std::vector<float> want(static_cast<size_t>(n + 64));
  for (float& v : want)
    v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  {
    Tensor head = Tensor::empty(Shape{16}, DType::kF32);
    std::memcpy(head.raw_data(), want.data(), 16 * sizeof(float));
    Tensor dst = dev.slice(0, 0, 16);
    b.copy(dst, head);  // small: a plain write
  }
  for (int round = 0; round < 2; ++round) {  // twice, so both staging buffers are reused
    if (round == 1) {
      for (size_t i = 16; i < want.size(); ++i)
        want[i] = -want[i];
    }
    auto body = std::make_unique<Tensor>(Tensor::empty(Shape{n + 48}, DType::kF32));
    std::memcpy(body->raw_data(), want.data() + 16, static_cast<size_t>(n + 48) * sizeof(float));
    Tensor dst = dev.slice(0, 16, n + 64);
    b.copy(dst, *body);
    std::memset(body->raw_data(), 0xff, static_cast<size_t>(n + 48) * sizeof(float));  // the host side may be reused
    body.reset();
  }
  const Tensor back = to_host(dev);
  EXPECT_EQ(std::memcmp(back.raw_data(), want.data(), want.size() * sizeof(float)), 0);
}

// oneDNN's matmul is opt-in and Intel-only: asked for on another device it declines and says why;
// on an Intel GPU it must agree with pagoda's own kernel.
TEST(XpuRuntime, OneDnnMatmulIsOptInAndIntelOnly) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  Backend& b = backend_for(parse_device("xpu:0"));
  xpu::XpuRuntime& rt = dynamic_cast<xpu::XpuBackend&>(b).runtime();
  std::string why;
  ::unsetenv("PAGODA_XPU_ONEDNN");
  EXPECT_EQ(xpu::OneDnnMatmul::create(rt, why), nullptr);
  EXPECT_NE(why.find("PAGODA_XPU_ONEDNN=1"), std::string::npos) << why;
  ::setenv("PAGODA_XPU_ONEDNN", "1", 1);
  std::unique_ptr<xpu::OneDnnMatmul> mm = xpu::OneDnnMatmul::create(rt, why);
  ::unsetenv("PAGODA_XPU_ONEDNN");
  if (!xpu::OneDnnMatmul::built()) {
    EXPECT_EQ(mm, nullptr);
    EXPECT_NE(why.find("no oneDNN"), std::string::npos) << why;
    return;
  }
  if (!rt.caps().is_intel_gpu) {
    EXPECT_EQ(mm, nullptr);
    EXPECT_NE(why.find("Intel GPUs only"), std::string::npos) << why;
    return;
  }
  ASSERT_NE(mm, nullptr) << why;
  // An Intel GPU: f32 and f16 weights with a bias, against the host in double precision.
  constexpr int64_t kM = 5, kN = 48, kK = 64;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (DType wt : {DType::kF32, DType::kF16}) {
    Tensor x = Tensor::empty(Shape{kM, kK}, DType::kF32);
    Tensor w32 = Tensor::empty(Shape{kN, kK}, DType::kF32);
    Tensor bias = Tensor::empty(Shape{kN}, DType::kF32);
    for (int64_t i = 0; i < kM * kK; ++i)
      x.data<float>()[i] = dist(rng);
    for (int64_t i = 0; i < kN * kK; ++i)
      w32.data<float>()[i] = cpu::fp16_to_fp32(cpu::fp32_to_fp16(dist(rng)));  // exact in f16 too
    for (int64_t i = 0; i < kN; ++i)
      bias.data<float>()[i] = dist(rng);
    Tensor w = w32;
    if (wt == DType::kF16) {
      w = Tensor::empty(Shape{kN, kK}, DType::kF16);
      for (int64_t i = 0; i < kN * kK; ++i)
        w.data<uint16_t>()[i] = cpu::fp32_to_fp16(w32.data<float>()[i]);
    }
    Tensor dx = to_device(x, b.device());
    Tensor dw = to_device(w, b.device());
    Tensor db = to_device(bias, b.device());
    Tensor out = empty_on(b.device(), Shape{kM, kN}, DType::kF32);
    ASSERT_TRUE(mm->run(xpu::mem_of(out), out.byte_offset(), xpu::mem_of(dx), dx.byte_offset(), kM, xpu::mem_of(dw),
                        dw.byte_offset(), wt, kN, kK, xpu::mem_of(db), db.byte_offset()))
        << dtype_name(wt);
    const Tensor got = to_host(out);
    for (int64_t i = 0; i < kM; ++i) {
      for (int64_t j = 0; j < kN; ++j) {
        double want = bias.data<float>()[j];
        for (int64_t c = 0; c < kK; ++c)
          want += static_cast<double>(x.data<float>()[i * kK + c]) * w32.data<float>()[j * kK + c];
        // f16 weights take f16 activations in oneDNN: about 2^-11 relative per product.
        const double tol = wt == DType::kF32 ? 1e-4 : 2e-2;
        EXPECT_NEAR(got.data<float>()[i * kN + j], want, tol) << dtype_name(wt) << " " << i << "," << j;
      }
    }
  }
}

TEST(XpuRuntime, BufferPoolSizeClasses) {
  using xpu::BufferPool;
  EXPECT_EQ(BufferPool::size_class(0), 256u);
  EXPECT_EQ(BufferPool::size_class(1), 256u);
  EXPECT_EQ(BufferPool::size_class(256), 256u);
  EXPECT_EQ(BufferPool::size_class(257), 320u);  // step 64 above 256
  EXPECT_EQ(BufferPool::size_class(1024), 1024u);
  EXPECT_EQ(BufferPool::size_class(1025), 1280u);
  // Every class holds its request with at most 25% more, and classes are fixed points.
  for (uint64_t n = 1; n < (uint64_t{1} << 24); n = n * 3 / 2 + 7) {
    const uint64_t c = BufferPool::size_class(n);
    EXPECT_GE(c, n);
    EXPECT_LE(c, std::max<uint64_t>(256, n + n / 4 + 1)) << n;
    EXPECT_EQ(BufferPool::size_class(c), c) << n;
  }
  // Beyond the pooled range sizes are exact (weights and the KV cache waste nothing).
  const uint64_t big = BufferPool::kMaxPooledBuffer + 12345;
  EXPECT_EQ(BufferPool::size_class(big), big);
}

// The streaming matmul converts f16 weights on the device: every finite f16 value, subnormals and
// signed zeros included, must arrive exactly. One-hot activation rows pick single weights out.
TEST(XpuRuntime, StreamingMatmulConvertsEveryFiniteHalfExactly) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  Backend& b = backend_for(parse_device("xpu:0"));
  constexpr int64_t kK = 64;  // rows of 128 bytes: the 16-byte-load kernel takes them
  std::vector<uint16_t> bits;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    if ((h & 0x7c00u) != 0x7c00u) bits.push_back(static_cast<uint16_t>(h));  // no inf / NaN
  }
  while (bits.size() % kK != 0)
    bits.push_back(0x3c00);  // 1.0
  const auto n = static_cast<int64_t>(bits.size()) / kK;
  Tensor w = Tensor::empty(Shape{n, kK}, DType::kF16);
  std::memcpy(w.raw_data(), bits.data(), bits.size() * sizeof(uint16_t));
  Tensor x = Tensor::empty(Shape{kK, kK}, DType::kF32);
  for (int64_t r = 0; r < kK; ++r)
    for (int64_t c = 0; c < kK; ++c)
      x.data<float>()[r * kK + c] = r == c ? 1.0f : 0.0f;
  Tensor out = empty_on(b.device(), Shape{kK, n}, DType::kF32);
  ops::matmul(out, to_device(x, b.device()), to_device(w, b.device()));
  const Tensor host = to_host(out);
  int64_t wrong = 0;
  for (int64_t r = 0; r < kK; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      const float want = cpu::fp16_to_fp32(bits[static_cast<size_t>(j * kK + r)]);
      const float got = host.data<float>()[r * n + j];
      if (!(got == want)) {
        if (++wrong <= 5)
          ADD_FAILURE() << "weight bits " << bits[static_cast<size_t>(j * kK + r)] << ": " << got << " instead of "
                        << want;
      }
    }
  }
  EXPECT_EQ(wrong, 0);
}

// The subgroup kernels follow PAGODA_XPU_SUBGROUPS: "emulate" builds them on any device (16
// work-items standing in for a subgroup), which is how CI runs them without an Intel GPU (the
// ctest entry xpu_subgroup_kernels_emulated runs the matmul and engine tests that way); a value
// that is not a mode is refused with the accepted ones.
TEST(XpuRuntime, SubgroupKernelsFollowTheEnvironment) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  const char* env = std::getenv("PAGODA_XPU_SUBGROUPS");
  const std::string mode = env != nullptr ? env : "";
  auto& xb = dynamic_cast<xpu::XpuBackend&>(backend_for(parse_device("xpu:0")));
  if (mode == "emulate") {
    EXPECT_TRUE(xb.runtime().subgroup_paths());
    EXPECT_EQ(xb.runtime().required_work_group_size("matmul_vec_sg16"), 64u);
  } else if (mode == "0") {
    EXPECT_FALSE(xb.runtime().subgroup_paths());
  }
  const std::string saved = mode;
  ::setenv("PAGODA_XPU_SUBGROUPS", "sometimes", 1);
  try {
    xpu::XpuRuntime rt(0);
    ADD_FAILURE() << "PAGODA_XPU_SUBGROUPS=sometimes was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("0, 1 or emulate"), std::string::npos) << e.what();
  }
  if (env != nullptr) {
    ::setenv("PAGODA_XPU_SUBGROUPS", saved.c_str(), 1);
  } else {
    ::unsetenv("PAGODA_XPU_SUBGROUPS");
  }
  EXPECT_NE(xpu::kernel_build_options(true, true).find("-DPAGODA_SUBGROUP_EMULATION=1"), std::string::npos);
  EXPECT_EQ(xpu::kernel_build_options(false, true).find("EMULATION"), std::string::npos);
}

// Decode over contexts longer than one split-K partition (256 keys): the partitions' partial
// softmaxes must merge to exact attention. Reference: the full score matrix in double precision.
TEST(XpuRuntime, SplitKDecodeOverLongContexts) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  const Device dev = parse_device("xpu:0");
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  const int64_t heads = 4, kv_heads = 2, hs = 64, bs = 16, max_blocks = 64, num_blocks = 128;
  const std::vector<int32_t> lens = {1000, 257, 1, 513};
  const auto num_seqs = static_cast<int64_t>(lens.size());
  for (const int64_t window : {int64_t{0}, int64_t{300}}) {
    // f16 cache holding random values; the reference reads the same rounded values.
    const int64_t cache_elems = num_blocks * kv_heads * bs * hs;
    std::vector<float> kf(static_cast<size_t>(cache_elems)), vf(kf.size());
    Tensor kc = Tensor::empty(Shape{num_blocks, kv_heads, bs, hs}, DType::kF16);
    Tensor vc = Tensor::empty(Shape{num_blocks, kv_heads, bs, hs}, DType::kF16);
    auto* kp = static_cast<uint16_t*>(kc.raw_data());
    auto* vp = static_cast<uint16_t*>(vc.raw_data());
    for (int64_t i = 0; i < cache_elems; ++i) {
      kp[i] = cpu::fp32_to_fp16(uni(rng));
      vp[i] = cpu::fp32_to_fp16(uni(rng));
      kf[static_cast<size_t>(i)] = cpu::fp16_to_fp32(kp[i]);
      vf[static_cast<size_t>(i)] = cpu::fp16_to_fp32(vp[i]);
    }
    // Each sequence gets a random permutation of blocks.
    std::vector<int32_t> table(static_cast<size_t>(num_seqs * max_blocks));
    std::vector<int32_t> all(static_cast<size_t>(num_blocks));
    for (int32_t i = 0; i < num_blocks; ++i)
      all[static_cast<size_t>(i)] = i;
    for (int64_t s = 0; s < num_seqs; ++s) {
      std::shuffle(all.begin(), all.end(), rng);
      std::copy(all.begin(), all.begin() + max_blocks, table.begin() + s * max_blocks);
    }
    std::vector<float> q(static_cast<size_t>(num_seqs * heads * hs));
    for (auto& x : q)
      x = uni(rng);
    const float scale = 0.125f, cap = 20.0f;
    std::vector<double> want(q.size());
    for (int64_t s = 0; s < num_seqs; ++s) {
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t kvh = h / (heads / kv_heads);
        const int64_t pos = lens[static_cast<size_t>(s)] - 1;
        const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
        std::vector<double> scores;
        double mx = -1e300;
        for (int64_t j = first; j <= pos; ++j) {
          const int64_t block = table[static_cast<size_t>(s * max_blocks + j / bs)];
          const int64_t base = ((block * kv_heads + kvh) * bs + j % bs) * hs;
          double dot = 0.0;
          for (int64_t d = 0; d < hs; ++d)
            dot += static_cast<double>(q[static_cast<size_t>((s * heads + h) * hs + d)]) *
                   kf[static_cast<size_t>(base + d)];
          const double sc = cap * std::tanh(scale * dot / cap);
          scores.push_back(sc);
          mx = std::max(mx, sc);
        }
        double sum = 0.0;
        for (double& sc : scores) {
          sc = std::exp(sc - mx);
          sum += sc;
        }
        for (int64_t d = 0; d < hs; ++d) {
          double acc = 0.0;
          for (int64_t j = first; j <= pos; ++j) {
            const int64_t block = table[static_cast<size_t>(s * max_blocks + j / bs)];
            const int64_t base = ((block * kv_heads + kvh) * bs + j % bs) * hs;
            acc += scores[static_cast<size_t>(j - first)] * vf[static_cast<size_t>(base + d)];
          }
          want[static_cast<size_t>((s * heads + h) * hs + d)] = acc / sum;
        }
      }
    }
    Tensor hq = Tensor::empty(Shape{num_seqs, heads, hs}, DType::kF32);
    std::memcpy(hq.raw_data(), q.data(), q.size() * sizeof(float));
    Tensor ht = Tensor::empty(Shape{num_seqs, max_blocks}, DType::kI32);
    std::memcpy(ht.raw_data(), table.data(), table.size() * sizeof(int32_t));
    Tensor hl = Tensor::empty(Shape{num_seqs}, DType::kI32);
    std::memcpy(hl.raw_data(), lens.data(), lens.size() * sizeof(int32_t));
    Tensor out = empty_on(dev, Shape{num_seqs, heads, hs}, DType::kF32);
    AttentionParams p;
    p.scale = scale;
    p.logit_softcap = cap;
    p.sliding_window = window;
    ops::paged_attention(out, to_device(hq, dev), to_device(kc, dev), to_device(vc, dev), kv_heads, to_device(ht, dev),
                         to_device(hl, dev), bs, 1000, p);
    const Tensor got = to_host(out);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got.data<float>()[i], want[i], 2e-5) << "window " << window << " element " << i;
  }
}

// Tokens that share a cache slot: the last one's key and value stay, as on the host, however the
// device orders its work-items.
TEST(XpuRuntime, ReshapeAndCacheLastTokenWinsASharedSlot) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  const Device dev = parse_device("xpu:0");
  const int64_t tokens = 64, kv_heads = 2, hs = 32;
  Tensor key = Tensor::empty(Shape{tokens, kv_heads, hs}, DType::kF32);
  for (int64_t i = 0; i < key.numel(); ++i)
    key.data<float>()[i] = static_cast<float>(i / (kv_heads * hs));  // each token's rows hold its index
  Tensor slots = Tensor::empty(Shape{tokens}, DType::kI64);
  for (int64_t t = 0; t < tokens; ++t)
    slots.data<int64_t>()[t] = t % 3;  // slots 0, 1, 2, each claimed by ~21 tokens
  Tensor kc = empty_on(dev, Shape{2, kv_heads, 4, hs}, DType::kF32);
  Tensor vc = empty_on(dev, Shape{2, kv_heads, 4, hs}, DType::kF32);
  const Tensor dk = to_device(key, dev);
  ops::reshape_and_cache(dk, dk, kc, vc, to_device(slots, dev));
  const Tensor got = to_host(kc);
  for (int64_t slot = 0; slot < 3; ++slot) {
    const float want = static_cast<float>(tokens - 1 - ((tokens - 1 - slot) % 3));  // the last t with t % 3 == slot
    for (int64_t h = 0; h < kv_heads; ++h) {
      for (int64_t d = 0; d < hs; ++d)
        ASSERT_EQ(got.data<float>()[((0 * kv_heads + h) * 4 + slot) * hs + d], want) << "slot " << slot;
    }
  }
}

// Checked request indices are kept on the host between ops of one step; rewriting the tensor
// (copy() from the host, or an op writing integers) must make the next op check the new values.
TEST(XpuRuntime, RewrittenIndicesAreCheckedAgain) {
  if (!have_device()) GTEST_SKIP() << "no OpenCL device";
  const Device dev = parse_device("xpu:0");
  Backend& b = backend_for(dev);
  Tensor table = Tensor::empty(Shape{4, 8}, DType::kF32);
  for (int64_t i = 0; i < 32; ++i)
    table.data<float>()[i] = static_cast<float>(i);
  const Tensor dtable = to_device(table, dev);
  Tensor ids = Tensor::empty(Shape{2}, DType::kI32);
  ids.data<int32_t>()[0] = 1;
  ids.data<int32_t>()[1] = 2;
  Tensor dids = to_device(ids, dev);
  Tensor out = empty_on(dev, Shape{2, 8}, DType::kF32);
  ops::embedding(out, dids, dtable);
  EXPECT_EQ(to_host(out).data<float>()[8], 16.0f);
  ids.data<int32_t>()[1] = 4;  // now outside the table
  b.copy(dids, ids);
  try {
    ops::embedding(out, dids, dtable);
    ADD_FAILURE() << "stale indices were used";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ids[1] = 4"), std::string::npos) << e.what();
  }
  // argmax rewrites an i32 tensor on the device; an embedding reading it sees the new ids.
  ids.data<int32_t>()[1] = 0;
  b.copy(dids, ids);
  ops::embedding(out, dids, dtable);
  Tensor logits = Tensor::empty(Shape{2, 4}, DType::kF32);
  for (int64_t i = 0; i < 8; ++i)
    logits.data<float>()[i] = i == 3 || i == 6 ? 1.0f : 0.0f;  // row 0 -> 3, row 1 -> 2
  ops::argmax(dids, to_device(logits, dev));
  ops::embedding(out, dids, dtable);
  const Tensor got = to_host(out);
  EXPECT_EQ(got.data<float>()[0], 24.0f);
  EXPECT_EQ(got.data<float>()[8], 16.0f);
}

}  // namespace
}  // namespace pagoda::test

#else

TEST(XpuRuntime, NotBuilt) {
  GTEST_SKIP() << "this build has no xpu backend (configure with -DPAGODA_XPU=ON)";
}

#endif
