// The xpu runtime beyond the op contract: device numbering, the on-disk kernel cache, memory
// accounting and transfers. The ops themselves are covered by ops_test.cc and
// ops_attention_test.cc, which run on xpu:0 too.

#include <gtest/gtest.h>

#if PAGODA_HAS_XPU

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "backend/backend.h"
#include "backend/device_list.h"
#include "backends/xpu/xpu_backend.h"
#include "backends/xpu/xpu_runtime.h"
#include "core/error.h"

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
  const uint64_t before = b.free_memory();
  {
    Tensor t = empty_on(b.device(), Shape{1000}, DType::kF32);
    EXPECT_EQ(t.storage_kind(), StorageKind::kDevice);
    EXPECT_EQ(b.free_memory(), before - 4000);
    Tensor h = Tensor::empty(Shape{1000}, DType::kF32);
    for (int i = 0; i < 1000; ++i)
      h.data<float>()[i] = static_cast<float>(i) * 0.5f;
    b.copy(t, h);
    Tensor back = to_host(t.slice(0, 10, 20));
    for (int i = 0; i < 10; ++i)
      EXPECT_EQ(back.data<float>()[i], static_cast<float>(i + 10) * 0.5f);
    EXPECT_THROW((void)t.raw_data(), Error);  // device memory is not host-addressable
  }
  EXPECT_EQ(b.free_memory(), before);
  EXPECT_TRUE(b.supports(OpKind::kMatmul, DType::kQ4_K));
  EXPECT_TRUE(b.supports(OpKind::kMatmul, DType::kBF16));
  EXPECT_FALSE(b.supports(OpKind::kMatmul, DType::kIQ2_XXS));
  EXPECT_FALSE(b.supports(OpKind::kPagedAttention, DType::kQ8_0));
}

}  // namespace
}  // namespace pagoda::test

#else

TEST(XpuRuntime, NotBuilt) {
  GTEST_SKIP() << "this build has no xpu backend (configure with -DPAGODA_XPU=ON)";
}

#endif
