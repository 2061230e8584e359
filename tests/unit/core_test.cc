#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "core/checked.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace pagoda {
namespace {

TEST(Checked, DetectsOverflow) {
  EXPECT_EQ(checked_add(1, 2), 3u);
  EXPECT_FALSE(checked_add(UINT64_MAX, 1).has_value());
  EXPECT_FALSE(checked_mul(1ull << 32, 1ull << 32).has_value());
  EXPECT_EQ(checked_align_up(33, 32), 64u);
  EXPECT_EQ(checked_align_up(64, 32), 64u);
  EXPECT_FALSE(checked_align_up(UINT64_MAX - 3, 32).has_value());
  EXPECT_FALSE(checked_align_up(5, 0).has_value());
  const int64_t dims[] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
  EXPECT_FALSE(checked_product(dims).has_value());
  const int64_t neg[] = {4, -1};
  EXPECT_FALSE(checked_product(neg).has_value());
}

TEST(DType, GgufIdsRoundTripAndBlockGeometry) {
  int gguf_types = 0;
  for (int i = 0; i < kNumDTypes; ++i) {
    auto t = static_cast<DType>(i);
    const DTypeInfo& info = dtype_info(t);
    EXPECT_GT(info.block_size, 0) << info.name;
    EXPECT_GT(info.block_bytes, 0) << info.name;
    EXPECT_EQ(dtype_from_name(info.name), t);
    if (info.gguf_id >= 0) {
      ++gguf_types;
      EXPECT_EQ(dtype_from_gguf_id(static_cast<uint32_t>(info.gguf_id)), t) << info.name;
    }
  }
  EXPECT_GE(gguf_types, 31);
  EXPECT_EQ(dtype_block_bytes(DType::kQ4_K), 144);
  EXPECT_EQ(dtype_block_size(DType::kQ4_K), 256);
  EXPECT_EQ(dtype_block_bytes(DType::kQ6_K), 210);
  EXPECT_EQ(dtype_block_bytes(DType::kQ4_1), 20);
  EXPECT_FALSE(dtype_from_gguf_id(4).has_value());  // removed Q4_2
  EXPECT_FALSE(dtype_from_gguf_id(1000).has_value());
  EXPECT_EQ(dtype_from_name("Q8_0"), DType::kQ8_0);
  EXPECT_EQ(dtype_from_safetensors("BF16"), DType::kBF16);
  EXPECT_FALSE(dtype_from_safetensors("F8_E4M3").has_value());
}

TEST(DType, RowBytes) {
  EXPECT_EQ(dtype_row_bytes(DType::kQ4_0, 64), 36u);
  EXPECT_FALSE(dtype_row_bytes(DType::kQ4_0, 33).has_value());
  EXPECT_EQ(dtype_row_bytes(DType::kF16, 3), 6u);
  EXPECT_FALSE(dtype_row_bytes(DType::kF32, std::numeric_limits<int64_t>::max()).has_value());
}

TEST(Tensor, OwnedViewsAndSlices) {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::kF32);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.storage_kind(), StorageKind::kOwned);
  EXPECT_EQ(t.strides()[0], 12);
  float* p = t.data<float>();
  for (int i = 0; i < 24; ++i)
    p[i] = static_cast<float>(i);
  Tensor rows = t.slice(0, 1, 2);
  EXPECT_EQ(rows.data<float>()[0], 12.0f);
  Tensor flat = t.view({6, 4});
  EXPECT_EQ(flat.dim(-1), 4);
  EXPECT_EQ(flat.data<float>()[5], 5.0f);
  EXPECT_THROW((void)t.view({5, 5}), Error);
  EXPECT_THROW((void)t.data<double>(), Error);
  EXPECT_THROW((void)t.slice(2, 3, 5), Error);
  Tensor cols = t.slice(2, 1, 3);
  EXPECT_FALSE(cols.is_contiguous());
  EXPECT_EQ(t.str(), "f32[2, 3, 4] cpu");
}

TEST(Tensor, QuantizedGeometry) {
  Tensor q = Tensor::empty({4, 256}, DType::kQ4_K);
  EXPECT_EQ(q.nbytes(), 4u * 144u);
  EXPECT_THROW((void)Tensor::empty({4, 100}, DType::kQ4_K), Error);
  Tensor second = q.slice(0, 1, 2);
  EXPECT_EQ(static_cast<const uint8_t*>(second.raw_data()) - static_cast<const uint8_t*>(q.raw_data()), 144);
}

TEST(Tensor, StridesThatOverflowAreRefused) {
  // No elements, yet the outer stride is 2^80: refused instead of overflowing.
  EXPECT_THROW((void)Tensor::empty({1ll << 40, 0, 1ll << 40}, DType::kF32), Error);
  EXPECT_EQ(Tensor::empty({0, 1ll << 20}, DType::kF32).numel(), 0);
}

TEST(Tensor, BorrowedAndMapped) {
  std::vector<uint8_t> bytes(64);
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<uint8_t>(i);
  auto file = MappedFile::from_memory("mem", bytes);
  Tensor m = Tensor::from_storage(map_file_storage(file, 16, 8), 0, {4}, DType::kI16);
  EXPECT_EQ(m.storage_kind(), StorageKind::kMapped);
  EXPECT_EQ(static_cast<const uint8_t*>(m.raw_data())[0], 16);
  EXPECT_THROW((void)map_file_storage(file, 60, 8), Error);
  EXPECT_THROW((void)map_file_storage(file, UINT64_MAX, 2), Error);
  EXPECT_THROW((void)Tensor::from_storage(map_file_storage(file, 0, 8), 0, {5}, DType::kI16), Error);
  int32_t values[3] = {7, 8, 9};
  Tensor b = Tensor::borrow(values, {3}, DType::kI32);
  EXPECT_EQ(b.storage_kind(), StorageKind::kBorrowed);
  EXPECT_EQ(b.data<int32_t>()[2], 9);
}

TEST(MappedFile, MissingFileNamesThePath) {
  try {
    (void)MappedFile::open("/nonexistent/pagoda-test");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/pagoda-test"), std::string::npos);
  }
}

}  // namespace
}  // namespace pagoda
