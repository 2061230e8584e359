#include "model/loader/gguf.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "gguf_writer.h"

namespace pagoda {
namespace {

using testing::GgufWriter;

gguf::File parse(const GgufWriter& w) {
  return gguf::File::parse(MappedFile::from_memory("test.gguf", w.bytes()));
}

std::string parse_error(std::vector<uint8_t> bytes) {
  try {
    (void)gguf::File::parse(MappedFile::from_memory("bad.gguf", std::move(bytes)));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidFile);
    return e.what();
  }
  ADD_FAILURE() << "file was accepted";
  return {};
}

TEST(Gguf, EveryMetadataTypeRoundTrips) {
  for (uint32_t version : {2u, 3u}) {
    GgufWriter w(version);
    w.add_u8("u8", 200);
    w.add_i8("i8", -100);
    w.add_u16("u16", 60000);
    w.add_i16("i16", -30000);
    w.add_u32("u32", 4000000000u);
    w.add_i32("i32", -2000000000);
    w.add_f32("f32", 1.5f);
    w.add_bool("bool", true);
    w.add_string("str", "héllo ▁world");
    w.add_u64("u64", 18000000000000000000ull);
    w.add_i64("i64", -9000000000000000000ll);
    w.add_f64("f64", 2.25);
    w.add_array("arr.i32", GgufWriter::array_of<int32_t>(5, {1, -2, 3}));
    w.add_array("arr.f32", GgufWriter::array_of<float>(6, {0.5f, -1.0f}));
    w.add_array("arr.u8", GgufWriter::array_of<uint8_t>(0, {7, 8}));
    w.add_array("arr.bool", GgufWriter::array_of<uint8_t>(7, {1, 0, 1}));
    w.add_array("arr.str", GgufWriter::string_array({"a", "", "ccc"}));
    w.add_array("arr.empty", GgufWriter::array_of<int64_t>(11, {}));
    w.add_array("arr.nested",
                GgufWriter::nested_array({GgufWriter::array_of<uint16_t>(2, {1, 2}), GgufWriter::string_array({"x"})}));
    gguf::File f = parse(w);
    EXPECT_EQ(f.version(), version);
    ASSERT_EQ(f.metadata().size(), 19u);
    EXPECT_EQ(f.metadata()[0].first, "u8");  // file order is kept
    EXPECT_EQ(f.get_int("u8"), 200);
    EXPECT_EQ(f.get_int("i8"), -100);
    EXPECT_EQ(f.get_int("u16"), 60000);
    EXPECT_EQ(f.get_int("i16"), -30000);
    EXPECT_EQ(f.get_int("u32"), 4000000000ll);
    EXPECT_EQ(f.get_int("i32"), -2000000000);
    EXPECT_EQ(f.get_float("f32"), 1.5);
    EXPECT_EQ(f.get_bool("bool"), true);
    EXPECT_EQ(f.get_string("str"), "héllo ▁world");
    EXPECT_FALSE(f.get_int("u64").has_value());  // beyond int64
    EXPECT_EQ(std::get<uint64_t>(f.find("u64")->data()), 18000000000000000000ull);
    EXPECT_EQ(f.get_int("i64"), -9000000000000000000ll);
    EXPECT_EQ(f.get_float("f64"), 2.25);
    EXPECT_EQ(f.find("f32")->type(), gguf::ValueType::kFloat32);
    EXPECT_EQ(f.find("arr.i32")->to_int_array(), (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(f.find("arr.i32")->array_type(), gguf::ValueType::kInt32);
    EXPECT_EQ(f.find("arr.f32")->to_float_array(), (std::vector<double>{0.5, -1.0}));
    EXPECT_EQ(f.find("arr.u8")->to_int_array(), (std::vector<int64_t>{7, 8}));
    EXPECT_EQ(f.find("arr.bool")->to_int_array(), (std::vector<int64_t>{1, 0, 1}));
    EXPECT_EQ(*f.find("arr.str")->as_string_array(), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(f.find("arr.empty")->array_size(), 0u);
    const auto* nested = f.find("arr.nested")->as_nested_array();
    ASSERT_NE(nested, nullptr);
    ASSERT_EQ(nested->size(), 2u);
    EXPECT_EQ((*nested)[0].to_int_array(), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ((*nested)[1].as_string_array()->at(0), "x");
    EXPECT_EQ(f.find("missing"), nullptr);
    EXPECT_FALSE(f.get_string("u8").has_value());
  }
}

TEST(Gguf, TensorsAreLocatedInTheMappingWithoutCopies) {
  GgufWriter w(3, 64);
  w.add_u32("general.alignment", 64);
  std::vector<uint8_t> a(2 * 3 * 4);
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> q(2 * 20, 0xAB);  // two Q4_1 blocks: one row of 64
  w.add_tensor("a", {3, 2}, 0, a);       // f32, ne = {3, 2} -> shape [2, 3]
  w.add_tensor("q", {64}, 3, q);
  auto mapped = MappedFile::from_memory("t.gguf", w.bytes());
  gguf::File f = gguf::File::parse(mapped);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  ASSERT_EQ(f.tensors().size(), 2u);
  const gguf::TensorInfo* ta = f.find_tensor("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->shape, (Shape{2, 3}));
  EXPECT_EQ(ta->dtype, DType::kF32);
  EXPECT_EQ(ta->nbytes, 24u);
  Tensor t = f.tensor(*ta);
  EXPECT_EQ(t.storage_kind(), StorageKind::kMapped);
  EXPECT_EQ(static_cast<const uint8_t*>(t.raw_data()), mapped->data() + ta->offset);
  EXPECT_EQ(static_cast<const uint8_t*>(t.raw_data())[5], 5);
  const gguf::TensorInfo* tq = f.find_tensor("q");
  ASSERT_NE(tq, nullptr);
  EXPECT_EQ(tq->dtype, DType::kQ4_1);
  EXPECT_EQ(tq->nbytes, 40u);
  EXPECT_EQ(tq->offset % 64, 0u);
}

std::vector<uint8_t> header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  std::vector<uint8_t> b;
  GgufWriter::put(b, uint32_t{0x46554747});
  GgufWriter::put(b, version);
  GgufWriter::put(b, n_tensors);
  GgufWriter::put(b, n_kv);
  return b;
}

TEST(Gguf, RejectsMalformedHeaders) {
  EXPECT_NE(parse_error({}).find("file ends inside magic"), std::string::npos);
  EXPECT_NE(parse_error({'G', 'G', 'U', 'X', 3, 0, 0, 0}).find("bad magic"), std::string::npos);
  EXPECT_NE(parse_error(header(1, 0, 0)).find("version 1"), std::string::npos);
  EXPECT_NE(parse_error(header(7, 0, 0)).find("unsupported GGUF version 7"), std::string::npos);
  EXPECT_NE(parse_error(header(0x03000000, 0, 0)).find("big-endian"), std::string::npos);
  EXPECT_NE(parse_error(header(3, 1ull << 40, 0)).find("tensor count"), std::string::npos);
  EXPECT_NE(parse_error(header(3, 0, 1ull << 40)).find("metadata count"), std::string::npos);
  EXPECT_NE(parse_error(header(3, 0, 1)).find("file ends inside metadata key"), std::string::npos);
  // A key claiming 2^60 bytes.
  auto b = header(3, 0, 1);
  GgufWriter::put(b, uint64_t{1} << 60);
  EXPECT_NE(parse_error(b).find("over the limit"), std::string::npos);
}

TEST(Gguf, RejectsBadMetadata) {
  {
    GgufWriter w;
    w.add_raw("k", 13, {});
    EXPECT_NE(parse_error(w.bytes()).find("unknown value type 13"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_u32("dup", 1);
    w.add_u32("dup", 2);
    EXPECT_NE(parse_error(w.bytes()).find("duplicate metadata key 'dup'"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_u32(std::string("bad\xff key"), 1);
    EXPECT_NE(parse_error(w.bytes()).find("not valid UTF-8"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_bool("b", false);
    auto bytes = w.bytes();
    bytes[24 + 8 + 1 + 4] = 7;  // header, key "b", value type, then the bool byte
    EXPECT_NE(parse_error(bytes).find("bool value 7"), std::string::npos);
  }
  {
    GgufWriter w;  // array claiming more elements than the file can hold
    std::vector<uint8_t> a;
    GgufWriter::put(a, uint32_t{4});
    GgufWriter::put(a, uint64_t{1000000});
    w.add_array("a", a);
    EXPECT_NE(parse_error(w.bytes()).find("cannot fit"), std::string::npos);
  }
  {
    GgufWriter w;  // arrays nested too deep
    auto inner = GgufWriter::array_of<uint8_t>(0, {1});
    for (int i = 0; i < 6; ++i)
      inner = GgufWriter::nested_array({inner});
    w.add_array("deep", inner);
    EXPECT_NE(parse_error(w.bytes()).find("nested deeper"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_u32("general.alignment", 48);
    EXPECT_NE(parse_error(w.bytes()).find("power of two"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_string("general.alignment", "32");
    EXPECT_NE(parse_error(w.bytes()).find("power of two"), std::string::npos);
  }
}

TEST(Gguf, RejectsBadTensors) {
  std::vector<uint8_t> data(64);
  {
    GgufWriter w;
    w.add_tensor("t", {16}, 99, data);
    EXPECT_NE(parse_error(w.bytes()).find("unknown type id 99"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("t", {1, 1, 1, 1, 1}, 0, data);
    EXPECT_NE(parse_error(w.bytes()).find("5 dimensions"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("t", {1ull << 32, 1ull << 32}, 0, data);
    EXPECT_NE(parse_error(w.bytes()).find("overflows"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("t", {1ull << 62, 1}, 0, data);  // 2^62 f32 elements: bytes overflow
    EXPECT_NE(parse_error(w.bytes()).find("overflows"), std::string::npos);
  }
  {
    GgufWriter w;  // zero elements, but the other dimensions' strides overflow (a fuzzer finding)
    w.add_tensor("t", {1ull << 40, 0, 1ull << 40}, 0, data);
    EXPECT_NE(parse_error(w.bytes()).find("overflows"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("t", {33}, 2, data);  // q4_0 rows need multiples of 32
    EXPECT_NE(parse_error(w.bytes()).find("whole number of q4_0 blocks"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("t", {1024}, 0, data);  // 4 KiB claimed, 64 bytes present
    EXPECT_NE(parse_error(w.bytes()).find("extends past the end"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("t", {4}, 0, data);
    w.add_tensor("t", {4}, 0, data);
    EXPECT_NE(parse_error(w.bytes()).find("duplicate tensor name 't'"), std::string::npos);
  }
  {
    GgufWriter w;
    w.add_tensor("", {4}, 0, data);
    EXPECT_NE(parse_error(w.bytes()).find("name of length 0"), std::string::npos);
  }
}

TEST(Gguf, RejectsOverlapAndMisalignment) {
  // Hand-built infos: two tensors at offsets 0 and 32, the first 64 bytes long.
  auto build = [](uint64_t second_offset) {
    auto b = header(3, 2, 0);
    for (int i = 0; i < 2; ++i) {
      GgufWriter::put_string(b, i == 0 ? "a" : "b");
      GgufWriter::put(b, uint32_t{1});
      GgufWriter::put(b, uint64_t{16});  // 16 f32 = 64 bytes
      GgufWriter::put(b, uint32_t{0});
      GgufWriter::put(b, i == 0 ? uint64_t{0} : second_offset);
    }
    while (b.size() % 32 != 0)
      b.push_back(0);
    b.resize(b.size() + 256);
    return b;
  };
  EXPECT_NE(parse_error(build(32)).find("overlap"), std::string::npos);
  EXPECT_NE(parse_error(build(70)).find("not a multiple of the alignment"), std::string::npos);
  (void)gguf::File::parse(MappedFile::from_memory("ok.gguf", build(64)));  // adjacent is fine
}

TEST(Gguf, TruncatedAnywhereIsRejectedCleanly) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_array("tokens", GgufWriter::string_array({"a", "b", "c"}));
  w.add_array("nested", GgufWriter::nested_array({GgufWriter::array_of<float>(6, {1.0f})}));
  w.add_tensor("x", {8}, 0, std::vector<uint8_t>(32, 1));
  w.add_tensor("y", {32}, 8, std::vector<uint8_t>(34, 2));
  auto full = w.bytes();
  (void)gguf::File::parse(MappedFile::from_memory("full.gguf", full));
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    std::string msg = parse_error(cut);
    EXPECT_NE(msg.find("bad.gguf: invalid GGUF file:"), std::string::npos) << "cut at " << n << ": " << msg;
  }
}

TEST(Gguf, HeaderCapIsEnforced) {
  GgufWriter w;
  w.add_string("big", std::string(4096, 'x'));
  gguf::Limits limits;
  limits.max_header_bytes = 1024;
  try {
    (void)gguf::File::parse(MappedFile::from_memory("capped.gguf", w.bytes()), limits);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("header exceeds the limit"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pagoda
