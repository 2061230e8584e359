// The CPU backend's memory beyond plain allocation: the reuse list of large buffers
// (backends/cpu/host_pool.h) and the repacked copies of mapped weights for the integer matmul
// (backends/cpu/quant/packed_weights.h).

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/host_pool.h"
#include "backends/cpu/quant/bf16dot.h"
#include "backends/cpu/quant/float_convert.h"
#include "backends/cpu/quant/qdot.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace pagoda::cpu {
namespace {

TEST(CpuHostPool, SizeClassesWasteAtMostAnEighth) {
  EXPECT_EQ(HostPool::size_class(1), 4096u);
  EXPECT_EQ(HostPool::size_class(1 << 20), uint64_t{1} << 20);
  EXPECT_EQ(HostPool::size_class((1 << 20) + 1), (uint64_t{1} << 20) + (uint64_t{1} << 17));  // 2 MiB / 16
  for (uint64_t n : {uint64_t{300000}, uint64_t{6291456}, uint64_t{25165825}, uint64_t{1} << 33}) {
    const uint64_t c = HostPool::size_class(n);
    EXPECT_GE(c, n);
    EXPECT_LE(c - n, n / 8 + 4096) << n;  // at most an eighth unused
    EXPECT_EQ(c % 4096, 0u);
  }
}

TEST(CpuHostPool, ReusesIdleBuffersAndKeepsTheCap) {
  auto pool = std::make_shared<HostPool>(uint64_t{3} << 20);  // room for three idle MiB
  void* first = nullptr;
  {
    auto a = pool->allocate(1 << 20);
    first = a->data();
    EXPECT_EQ(a->nbytes(), uint64_t{1} << 20);
    std::memset(a->data(), 0x5a, a->nbytes());  // writable, whole
  }
  EXPECT_EQ(pool->stats().idle_buffers, 1u);
  {
    auto b = pool->allocate((1 << 20) - 100);  // the same size class: the same buffer again
    EXPECT_EQ(b->data(), first);
    EXPECT_EQ(pool->stats().reused, 1u);
    EXPECT_EQ(pool->stats().idle_buffers, 0u);
  }
  {
    // Four live MiB-buffers come back; only three fit the cap, the oldest goes.
    std::vector<std::shared_ptr<Storage>> live;
    for (int i = 0; i < 4; ++i)
      live.push_back(pool->allocate(1 << 20));
  }
  EXPECT_EQ(pool->stats().idle_buffers, 3u);
  EXPECT_EQ(pool->stats().idle_bytes, uint64_t{3} << 20);
  {
    auto big = pool->allocate(uint64_t{8} << 20);  // larger than the cap: never kept
  }
  EXPECT_EQ(pool->stats().idle_bytes, uint64_t{3} << 20);
}

TEST(CpuHostPool, BackendServesLargeTensorsFromIt) {
  auto& b = cpu_backend();
  HostPool* pool = b.buffer_pool();
  if (pool == nullptr) GTEST_SKIP() << "pooling is off in this build (AddressSanitizer) or by PAGODA_CPU_POOL=0";
  const auto before = pool->stats();
  { Tensor t = empty_on(cpu_device(), Shape{1024, 1024}, DType::kF32); }
  { Tensor t = empty_on(cpu_device(), Shape{1024, 1024}, DType::kF32); }
  const auto after = pool->stats();
  EXPECT_GE(after.reused + after.mapped, before.reused + before.mapped + 2);
  EXPECT_GE(after.reused, before.reused + 1);
}

// A weight in a file mapping is repacked on its first reduced-precision matmul, gives the same bits
// as the same weight held in memory (not repacked), and its copy goes once the mapping's tensors
// are gone.
void check_repacked(DType t, int64_t n, int64_t k, const std::vector<uint8_t>& w) {
  auto& backend = cpu_backend();
  const bool saved = backend.quantized_activations();
  backend.set_quantized_activations(true);
  const int64_t m = 3;
  const uint64_t bytes = w.size();
  std::mt19937 rng(3);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("pagoda_packed_" + std::to_string(::getpid()) + ".bin")).string();
  {
    std::ofstream f(path, std::ios::binary);
    const std::vector<uint8_t> pad(100, 0);  // an unaligned start, as in a GGUF file
    f.write(reinterpret_cast<const char*>(pad.data()), 100);
    f.write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(bytes));
  }
  Tensor x = Tensor::empty(Shape{m, k}, DType::kF32);
  for (int64_t i = 0; i < m * k; ++i)
    x.data<float>()[i] = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  Tensor in_memory = Tensor::empty(Shape{n, k}, t);
  std::memcpy(in_memory.raw_data(), w.data(), bytes);
  Tensor want = Tensor::empty(Shape{m, n}, DType::kF32);
  const size_t copies = backend.packed_weights().size();
  ops::matmul(want, x, in_memory);
  EXPECT_EQ(backend.packed_weights().size(), copies) << "a weight in memory is not repacked";
  {
    const Tensor mapped = Tensor::from_storage(map_file_storage(MappedFile::open(path), 100, bytes), 0, Shape{n, k}, t);
    for (int round = 0; round < 2; ++round) {
      Tensor got = Tensor::empty(Shape{m, n}, DType::kF32);
      ops::matmul(got, x, mapped);
      EXPECT_EQ(std::memcmp(got.raw_data(), want.raw_data(), static_cast<size_t>(m * n) * 4), 0)
          << dtype_name(t) << " " << n << " x " << k << " round " << round;
    }
    EXPECT_EQ(backend.packed_weights().size(), copies + 1);
  }
  // The mapping is gone; the next repacking drops its copy.
  {
    const Tensor again = Tensor::from_storage(map_file_storage(MappedFile::open(path), 100, bytes), 0, Shape{n, k}, t);
    Tensor got = Tensor::empty(Shape{m, n}, DType::kF32);
    ops::matmul(got, x, again);
    EXPECT_EQ(std::memcmp(got.raw_data(), want.raw_data(), static_cast<size_t>(m * n) * 4), 0);
    EXPECT_EQ(backend.packed_weights().size(), copies + 1);
  }
  std::filesystem::remove(path);
  backend.set_quantized_activations(saved);
}

std::vector<uint8_t> random_q4_1(int64_t n, int64_t k) {
  const uint64_t bytes = *dtype_row_bytes(DType::kQ4_1, k) * n;
  std::mt19937 rng(static_cast<unsigned>(n));
  std::vector<uint8_t> w(bytes);
  for (auto& v : w)
    v = static_cast<uint8_t>(rng());
  for (uint64_t b = 0; b < bytes / 20; ++b) {  // finite scales and minimums: 0.01 and -0.02
    const uint8_t dm[4] = {0x1f, 0x21, 0x1f, 0xa5};
    std::memcpy(&w[b * 20], dm, 4);
  }
  return w;
}

TEST(CpuPackedWeights, MappedWeightsAreRepackedAndGiveTheSameBits) {
  if (!qdot::packs(DType::kQ4_1)) GTEST_SKIP() << "this CPU has no repacked kernels (AVX2 is required)";
  check_repacked(DType::kQ4_1, 21, 128, random_q4_1(21, 128));
  // 9.6 MB: repacked in three slices of 4 MiB (the last partial, the last group of rows short)
  check_repacked(DType::kQ4_1, 30003, 512, random_q4_1(30003, 512));
}

TEST(CpuPackedWeights, MappedBf16WeightsAreRepackedWhereTheCpuHasABf16Kernel) {
  if (!bf16dot::available()) {
    GTEST_SKIP() << "this CPU has neither AMX-BF16 nor AVX512-BF16: bf16 weights are not repacked";
  }
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{21, 100}, {9000, 512}}) {  // one slice; three
    std::mt19937 rng(static_cast<unsigned>(n));
    std::vector<uint8_t> w(static_cast<size_t>(n * k * 2));
    for (size_t i = 0; i < w.size(); i += 2) {
      const uint16_t b = fp32_to_bf16(std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng));
      w[i] = static_cast<uint8_t>(b & 0xff), w[i + 1] = static_cast<uint8_t>(b >> 8);
    }
    check_repacked(DType::kBF16, n, k, w);
  }
}

// Weights of several types written one after another to a file (to be mapped, so repacked), random
// quants with finite f16 scales (and minimums) of 0.01.
struct FilePart {
  DType t;
  int64_t n;
  uint64_t offset = 0;
  std::vector<uint8_t> bytes;
};

void write_parts(const std::string& path, int64_t k, std::vector<FilePart>& parts, std::mt19937& rng) {
  std::ofstream f(path, std::ios::binary);
  uint64_t at = 0;
  for (FilePart& p : parts) {
    p.offset = at;
    p.bytes.resize(*dtype_row_bytes(p.t, k) * static_cast<uint64_t>(p.n));
    for (auto& v : p.bytes)
      v = static_cast<uint8_t>(rng());
    const uint64_t block = *dtype_row_bytes(p.t, dtype_block_size(p.t));
    for (uint64_t b = 0; b < p.bytes.size() / block; ++b) {
      for (int h = 0; h < (p.t == DType::kQ8_0 ? 1 : 2); ++h) {
        p.bytes[b * block + 2 * h] = 0x1f;
        p.bytes[b * block + 2 * h + 1] = 0x21;
      }
    }
    f.write(reinterpret_cast<const char*>(p.bytes.data()), static_cast<std::streamsize>(p.bytes.size()));
    at += p.bytes.size();
  }
}

// matmul_shared of file-mapped (so repacked) weights of different types gives each part the bits of
// its own matmul, with the integer path on (x quantized once, the parts one job; 16 rows and more
// take the AMX kernels where the CPU has them) and off; outputs that overlap are refused.
TEST(CpuPackedWeights, SharedMatmulGivesEachPartItsOwnBits) {
  auto& backend = cpu_backend();
  const bool saved = backend.quantized_activations();
  const int64_t k = 256;
  std::vector<FilePart> parts = {{DType::kQ4_1, 40, 0, {}}, {DType::kQ8_0, 24, 0, {}}, {DType::kQ4_K, 21, 0, {}}};
  std::mt19937 rng(9);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("pagoda_shared_" + std::to_string(::getpid()) + ".bin")).string();
  write_parts(path, k, parts, rng);
  const auto file = MappedFile::open(path);
  for (const bool int8 : {true, false}) {
    backend.set_quantized_activations(int8);
    for (const int64_t m : {3, 16, 40, 70}) {
      Tensor x = Tensor::empty(Shape{m, k}, DType::kF32);
      for (int64_t i = 0; i < m * k; ++i)
        x.data<float>()[i] = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
      std::vector<Tensor> weights, in_memory, got, want;
      std::vector<MatmulPart> shared;
      for (const FilePart& p : parts) {
        weights.push_back(
            Tensor::from_storage(map_file_storage(file, p.offset, p.bytes.size()), 0, Shape{p.n, k}, p.t));
        in_memory.push_back(Tensor::empty(Shape{p.n, k}, p.t));
        std::memcpy(in_memory.back().raw_data(), p.bytes.data(), p.bytes.size());
        got.push_back(Tensor::empty(Shape{m, p.n}, DType::kF32));
        want.push_back(Tensor::empty(Shape{m, p.n}, DType::kF32));
      }
      for (size_t i = 0; i < parts.size(); ++i) {
        ops::matmul(want[i], x, in_memory[i]);
        shared.push_back({&got[i], &weights[i], nullptr});
      }
      ops::matmul_shared(x, shared);
      for (size_t i = 0; i < parts.size(); ++i) {
        EXPECT_EQ(std::memcmp(got[i].raw_data(), want[i].raw_data(), static_cast<size_t>(m * parts[i].n) * 4), 0)
            << dtype_name(parts[i].t) << " m " << m << (int8 ? " int8" : " float");
      }
      // The outputs as column ranges of one wider row-major tensor (strided rows), a gap of 3
      // columns between them and 5 after: the same values, the gaps untouched.
      int64_t width = 0;
      for (const FilePart& p : parts)
        width += p.n + 3;
      width += 2;
      Tensor wide = Tensor::empty(Shape{m, width}, DType::kF32);
      std::fill(wide.data<float>(), wide.data<float>() + m * width, -7.0f);
      std::vector<Tensor> views;
      int64_t at = 0;
      for (const FilePart& p : parts) {
        views.push_back(wide.slice(1, at, at + p.n));
        at += p.n + 3;
      }
      std::vector<MatmulPart> strided;
      for (size_t i = 0; i < parts.size(); ++i)
        strided.push_back({&views[i], &weights[i], nullptr});
      ops::matmul_shared(x, strided);
      at = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        for (int64_t r = 0; r < m; ++r) {
          ASSERT_EQ(std::memcmp(wide.data<float>() + r * width + at, want[i].data<float>() + r * parts[i].n,
                                static_cast<size_t>(parts[i].n) * 4),
                    0)
              << dtype_name(parts[i].t) << " m " << m << " row " << r << " (strided)";
          for (int64_t g = 0; g < 3; ++g)
            ASSERT_EQ(wide.data<float>()[r * width + at + parts[i].n + g], -7.0f);
        }
        at += parts[i].n + 3;
      }
    }
  }
  backend.set_quantized_activations(saved);
  Tensor x = Tensor::empty(Shape{2, k}, DType::kF32);
  Tensor w = Tensor::empty(Shape{8, k}, DType::kF32);
  Tensor out = Tensor::empty(Shape{2, 8}, DType::kF32);
  const std::vector<MatmulPart> overlapping = {{&out, &w, nullptr}, {&out, &w, nullptr}};
  EXPECT_THROW(ops::matmul_shared(x, overlapping), Error);
  const std::vector<MatmulPart> no_weight = {{&out, nullptr, nullptr}};
  EXPECT_THROW(ops::matmul_shared(x, no_weight), Error);
  Tensor wide = Tensor::empty(Shape{2, 20}, DType::kF32);
  Tensor left = wide.slice(1, 0, 8), middle = wide.slice(1, 4, 12), right = wide.slice(1, 12, 20);
  const std::vector<MatmulPart> columns_meet = {{&left, &w, nullptr}, {&middle, &w, nullptr}};
  EXPECT_THROW(ops::matmul_shared(x, columns_meet), Error);
  const std::vector<MatmulPart> columns_apart = {{&left, &w, nullptr}, {&right, &w, nullptr}};
  EXPECT_NO_THROW(ops::matmul_shared(x, columns_apart));
  // An x lying between a strided output's rows (within its span, not on its elements) is refused.
  Tensor flat = Tensor::empty(Shape{1200}, DType::kF32);
  const Tensor inside = flat.slice(0, 20, 20 + 2 * k).view(Shape{2, k});
  Tensor rows_apart = flat.slice(0, 0, 600).view(Shape{2, 300}).slice(1, 0, 8);
  const std::vector<MatmulPart> spanning = {{&rows_apart, &w, nullptr}};
  EXPECT_THROW(ops::matmul_shared(inside, spanning), Error);
  std::filesystem::remove(path);
}

// A matmul of many rows goes over them in passes of a few row blocks (64 rows each), every weight
// tile against one pass's blocks before the next pass. With k = 2048 a pass is four blocks: 596
// rows are passes of 4, 4 and 2 blocks, the last block short. Each row gets the bits it gets alone.
TEST(CpuPackedWeights, RowsInPassesGiveEachRowItsOwnBits) {
  auto& backend = cpu_backend();
  const bool saved = backend.quantized_activations();
  backend.set_quantized_activations(true);
  const int64_t k = 2048;
  const int64_t m = 596;
  std::vector<FilePart> parts = {{DType::kQ4_1, 40, 0, {}}, {DType::kQ8_0, 24, 0, {}}};
  std::mt19937 rng(11);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("pagoda_passes_" + std::to_string(::getpid()) + ".bin")).string();
  write_parts(path, k, parts, rng);
  const auto file = MappedFile::open(path);
  Tensor x = Tensor::empty(Shape{m, k}, DType::kF32);
  for (int64_t i = 0; i < m * k; ++i)
    x.data<float>()[i] = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  std::vector<Tensor> weights, got;
  std::vector<MatmulPart> shared;
  for (const FilePart& p : parts) {
    weights.push_back(Tensor::from_storage(map_file_storage(file, p.offset, p.bytes.size()), 0, Shape{p.n, k}, p.t));
    got.push_back(Tensor::empty(Shape{m, p.n}, DType::kF32));
  }
  for (size_t i = 0; i < parts.size(); ++i)
    shared.push_back({&got[i], &weights[i], nullptr});
  ops::matmul_shared(x, shared);
  for (size_t i = 0; i < parts.size(); ++i) {
    Tensor whole = Tensor::empty(Shape{m, parts[i].n}, DType::kF32);
    ops::matmul(whole, x, weights[i]);
    for (int64_t r = 0; r < m; ++r) {
      Tensor one = Tensor::empty(Shape{1, parts[i].n}, DType::kF32);
      ops::matmul(one, x.slice(0, r, r + 1), weights[i]);
      const size_t row_bytes = static_cast<size_t>(parts[i].n) * 4;
      ASSERT_EQ(std::memcmp(got[i].data<float>() + r * parts[i].n, one.raw_data(), row_bytes), 0)
          << dtype_name(parts[i].t) << " row " << r << " (matmul_shared)";
      ASSERT_EQ(std::memcmp(whole.data<float>() + r * parts[i].n, one.raw_data(), row_bytes), 0)
          << dtype_name(parts[i].t) << " row " << r << " (matmul)";
    }
  }
  backend.set_quantized_activations(saved);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace pagoda::cpu
