#include "model/loader/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_writers.h"

namespace pagoda::safetensors {
namespace {

using test::make_safetensors;
using test::pattern_bytes;
using test::raw_safetensors;
using test::SafetensorsTensor;
using test::TempDir;
using test::write_file;

File parse_bytes(std::vector<uint8_t> bytes, const Limits& limits = {}) {
  return File::parse(MappedFile::from_memory("mem.safetensors", std::move(bytes)), limits);
}

// Parsing must fail with `code` and a one-line message that names the file and contains `reason`.
void expect_rejected(std::vector<uint8_t> bytes, const std::string& reason, ErrorCode code = ErrorCode::kInvalidFile,
                     const Limits& limits = {}) {
  try {
    (void)parse_bytes(std::move(bytes), limits);
    ADD_FAILURE() << "accepted a file that should fail with: " << reason;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), code) << msg;
    EXPECT_EQ(msg.rfind("mem.safetensors: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(reason), std::string::npos) << "message: " << msg << "\nexpected to contain: " << reason;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// A header with one tensor entry `entry` and `data_bytes` zero bytes of data.
std::vector<uint8_t> one_tensor(const std::string& entry, size_t data_bytes) {
  return raw_safetensors("{\"t\":" + entry + "}", std::vector<uint8_t>(data_bytes));
}

std::vector<uint8_t> tensor_bytes(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw_data());
  return {p, p + t.nbytes()};
}

TEST(SafetensorsTest, ReadsEveryDtype) {
  struct Case {
    const char* name;
    DType dtype;
    size_t size;
  };
  const std::vector<Case> cases = {
      {"F32", DType::kF32, 4}, {"F16", DType::kF16, 2},   {"BF16", DType::kBF16, 2}, {"F64", DType::kF64, 8},
      {"I8", DType::kI8, 1},   {"I16", DType::kI16, 2},   {"I32", DType::kI32, 4},   {"I64", DType::kI64, 8},
      {"U8", DType::kU8, 1},   {"BOOL", DType::kBool, 1},
  };
  std::vector<SafetensorsTensor> tensors;
  uint8_t seed = 0;
  for (const Case& c : cases) {
    tensors.push_back({std::string("t_") + c.name, c.name, {2, 3}, pattern_bytes(6 * c.size, seed)});
    seed = static_cast<uint8_t>(seed + 17);
  }
  std::vector<uint8_t> bytes = make_safetensors(tensors);
  auto mapped = MappedFile::from_memory("all.safetensors", bytes);
  File f = File::parse(mapped);
  ASSERT_EQ(f.tensors().size(), cases.size());
  uint64_t expected_offset = f.data_offset();
  for (size_t i = 0; i < cases.size(); ++i) {
    const TensorInfo& info = f.tensors()[i];  // file order is the writing order here
    EXPECT_EQ(info.name, tensors[i].name);
    EXPECT_EQ(info.dtype, cases[i].dtype) << info.name;
    EXPECT_EQ(info.shape, Shape({2, 3}));
    EXPECT_EQ(info.nbytes, 6 * cases[i].size);
    EXPECT_EQ(info.offset, expected_offset);
    expected_offset += info.nbytes;
    Tensor t = f.tensor(info);
    EXPECT_EQ(t.storage_kind(), StorageKind::kMapped);
    EXPECT_EQ(t.dtype(), cases[i].dtype);
    EXPECT_EQ(t.shape(), Shape({2, 3}));
    // Zero-copy: the tensor points into the mapping itself.
    EXPECT_EQ(t.raw_data(), mapped->data() + info.offset);
    EXPECT_EQ(tensor_bytes(t), tensors[i].data) << info.name;
  }
  EXPECT_EQ(expected_offset, bytes.size());
}

TEST(SafetensorsTest, ScalarsAndZeroSizeTensors) {
  std::vector<uint8_t> scalar = {0, 0, 0x80, 0x3f};  // 1.0f
  File f = parse_bytes(make_safetensors({
      {"empty_a", "F32", {0, 4}, {}},
      {"scalar", "F32", {}, scalar},
      {"empty_b", "I64", {3, 0, 2}, {}},
      {"empty_c", "BF16", {0}, {}},
  }));
  ASSERT_EQ(f.tensors().size(), 4u);
  const TensorInfo* s = f.find_tensor("scalar");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->shape.ndim(), 0);
  EXPECT_EQ(s->nbytes, 4u);
  Tensor t = f.tensor("scalar");
  EXPECT_EQ(t.numel(), 1);
  EXPECT_FLOAT_EQ(*t.data<float>(), 1.0f);
  for (const char* name : {"empty_a", "empty_b", "empty_c"}) {
    const TensorInfo* e = f.find_tensor(name);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->nbytes, 0u);
    Tensor z = f.tensor(*e);
    EXPECT_EQ(z.numel(), 0);
    EXPECT_EQ(z.nbytes(), 0u);
  }
  EXPECT_EQ(f.find_tensor("empty_b")->shape, Shape({3, 0, 2}));
}

TEST(SafetensorsTest, OnlyZeroSizeTensorsAndEmptyHeader) {
  File only_empty = parse_bytes(make_safetensors({{"a", "F16", {0}, {}}, {"b", "F16", {5, 0}, {}}}));
  EXPECT_EQ(only_empty.tensors().size(), 2u);
  EXPECT_EQ(only_empty.data_offset(), only_empty.file_size());

  File empty = parse_bytes(raw_safetensors("{}      "));
  EXPECT_TRUE(empty.tensors().empty());
  EXPECT_TRUE(empty.metadata().empty());
  EXPECT_EQ(empty.header_bytes(), 8u);
}

TEST(SafetensorsTest, Metadata) {
  File f = parse_bytes(make_safetensors({{"w", "U8", {3}, {1, 2, 3}}}, {{"format", "pt"}, {"note", "h\u00e9llo"}}));
  ASSERT_EQ(f.metadata().size(), 2u);
  ASSERT_NE(f.find_metadata("format"), nullptr);
  EXPECT_EQ(*f.find_metadata("format"), "pt");
  EXPECT_EQ(*f.find_metadata("note"), "h\u00e9llo");
  EXPECT_EQ(f.find_metadata("missing"), nullptr);
  // An empty metadata object is allowed too.
  File g =
      parse_bytes(raw_safetensors(R"({"__metadata__":{},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", {7}));
  EXPECT_TRUE(g.metadata().empty());
  EXPECT_EQ(g.tensors().size(), 1u);
}

TEST(SafetensorsTest, HeaderOrderDoesNotMatterAndLayoutNeedNotBeAligned) {
  // Entries listed against data order, keys of an entry in any order, an odd header length,
  // padding whitespace after the object and a non-ASCII name.
  std::string header = R"({"z\u00fc":{"shape":[2],"data_offsets":[3,7],"dtype":"I16"},)"
                       R"("a":{"data_offsets":[0,3],"dtype":"U8","shape":[3]}}   )";
  std::vector<uint8_t> data = pattern_bytes(7, 40);
  File f = parse_bytes(raw_safetensors(header, data));
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "a");
  EXPECT_EQ(f.tensors()[1].name, "z\u00fc");
  EXPECT_EQ(f.tensors()[1].offset, 8 + header.size() + 3);
  EXPECT_EQ(tensor_bytes(f.tensor("z\u00fc")), std::vector<uint8_t>(data.begin() + 3, data.end()));
}

TEST(SafetensorsTest, LookupOfMissingTensor) {
  File f = parse_bytes(make_safetensors({{"w", "U8", {1}, {9}}}));
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  try {
    (void)f.tensor("nope");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos);
  }
}

TEST(SafetensorsTest, OpensFromDiskAndTensorsOutliveTheFileObject) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  write_file(path, make_safetensors({{"w", "I32", {2}, {1, 0, 0, 0, 2, 0, 0, 0}}}));
  Tensor t;
  {
    File f = File::open(path);
    EXPECT_EQ(f.path(), path);
    t = f.tensor("w");
  }
  // The tensor's storage holds the mapping.
  EXPECT_EQ(t.data<int32_t>()[0], 1);
  EXPECT_EQ(t.data<int32_t>()[1], 2);
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  TempDir dir;
  try {
    (void)File::open(dir.file("absent.safetensors"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
}

// ---- malformed files ------------------------------------------------------------------------

TEST(SafetensorsMalformedTest, LengthPrefix) {
  expect_rejected({}, "too small for the 8-byte header length");
  expect_rejected({1, 0, 0}, "too small for the 8-byte header length");
  expect_rejected({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "exceeds the limit of 100000000 bytes");
  expect_rejected({0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}, "exceeds the limit");  // 100,000,001
  std::vector<uint8_t> short_header = raw_safetensors("{}");
  short_header[0] = 10;
  expect_rejected(short_header, "header length 10 runs past the end of the file (10 bytes)");
  expect_rejected(raw_safetensors(""), "header does not start with '{'");
  Limits small;
  small.max_header_bytes = 4;
  expect_rejected(raw_safetensors("{}      "), "header length 8 exceeds the limit of 4 bytes", ErrorCode::kInvalidFile,
                  small);
}

TEST(SafetensorsMalformedTest, HeaderIsNotAJsonObject) {
  expect_rejected(raw_safetensors(" {}"), "header does not start with '{'");
  expect_rejected(raw_safetensors("[]"), "header does not start with '{'");
  expect_rejected(raw_safetensors("{"), "invalid JSON");
  expect_rejected(raw_safetensors("{\"a\" 1}"), "invalid JSON");
  expect_rejected(raw_safetensors("{} x"), "invalid JSON");
  expect_rejected(raw_safetensors("{}{}"), "invalid JSON");
  expect_rejected(raw_safetensors(std::string("{}\0\0", 4)), "invalid JSON header: it contains a NUL byte");
  expect_rejected(raw_safetensors(std::string("{}\0x", 4)), "invalid JSON header: it contains a NUL byte");
  expect_rejected(raw_safetensors("{} // comment"), "invalid JSON");
}

TEST(SafetensorsMalformedTest, InvalidUtf8) {
  // A raw 0xff byte, an overlong encoding of '/', a lone surrogate escape and a truncated sequence.
  expect_rejected(raw_safetensors("{\"a\xff\":{}}"), "invalid JSON");
  expect_rejected(raw_safetensors("{\"a\xc0\xaf\":{}}"), "invalid JSON");
  expect_rejected(raw_safetensors("{\"a\\ud800\":{}}"), "invalid JSON");
  expect_rejected(raw_safetensors("{\"a\xe2\x82\":{}}"), "invalid JSON");
  // The message itself stays printable ASCII.
  try {
    (void)parse_bytes(raw_safetensors("{\"a\xff\":{}}"));
  } catch (const Error& e) {
    for (char c : std::string(e.what()))
      EXPECT_TRUE(c >= 0x20 && c < 0x7f) << e.what();
  }
}

TEST(SafetensorsMalformedTest, EntriesAndFields) {
  expect_rejected(one_tensor("5", 0), "tensor 't': entry is a number, not an object");
  expect_rejected(one_tensor("[]", 0), "tensor 't': entry is an array, not an object");
  expect_rejected(one_tensor("null", 0), "tensor 't': entry is null, not an object");
  expect_rejected(one_tensor(R"({"shape":[1],"data_offsets":[0,4]})", 4), "tensor 't': missing field 'dtype'");
  expect_rejected(one_tensor(R"({"dtype":"F32","data_offsets":[0,4]})", 4), "tensor 't': missing field 'shape'");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[1]})", 4), "tensor 't': missing field 'data_offsets'");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"offsets":[0,4]})", 4),
                  "tensor 't': unknown field 'offsets'");
  expect_rejected(one_tensor(R"({"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]})", 4),
                  "tensor 't': duplicate field 'dtype'");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"shape":[1]})", 4),
                  "tensor 't': duplicate field 'shape'");
}

TEST(SafetensorsMalformedTest, DuplicateNames) {
  expect_rejected(raw_safetensors(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                  R"("t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                  {1, 2}),
                  "duplicate tensor name 't'");
  expect_rejected(raw_safetensors(R"({"__metadata__":{},"__metadata__":{}})"), "duplicate key '__metadata__'");
  expect_rejected(raw_safetensors(R"({"__metadata__":{"k":"a","k":"b"}})"), "duplicate key 'k' in __metadata__");
}

TEST(SafetensorsMalformedTest, Metadata) {
  expect_rejected(raw_safetensors(R"({"__metadata__":"x"})"), "__metadata__ is a string, not an object");
  expect_rejected(raw_safetensors(R"({"__metadata__":[]})"), "__metadata__ is an array, not an object");
  expect_rejected(raw_safetensors(R"({"__metadata__":{"k":1}})"),
                  "__metadata__ value of 'k' is a number, not a string");
  expect_rejected(raw_safetensors(R"({"__metadata__":{"k":{}}})"),
                  "__metadata__ value of 'k' is an object, not a string");
  expect_rejected(raw_safetensors(R"({"__metadata__":{"k":null}})"), "__metadata__ value of 'k' is null");
  Limits limits;
  limits.max_metadata_entries = 2;
  expect_rejected(raw_safetensors(R"({"__metadata__":{"a":"1","b":"2","c":"3"}})"),
                  "__metadata__ has more than 2 entries", ErrorCode::kInvalidFile, limits);
}

TEST(SafetensorsMalformedTest, Dtypes) {
  expect_rejected(one_tensor(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})", 4), "unknown dtype 'F33'");
  expect_rejected(one_tensor(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})", 4), "unknown dtype 'f32'");
  expect_rejected(one_tensor(R"({"dtype":"Q4_0","shape":[32],"data_offsets":[0,18]})", 18), "unknown dtype 'Q4_0'");
  expect_rejected(one_tensor(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})", 4), "dtype is a number, not a string");
  for (const char* name : {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2"}) {
    expect_rejected(one_tensor(std::string(R"({"dtype":")") + name + R"(","shape":[1],"data_offsets":[0,1]})", 1),
                    std::string("unsupported dtype '") + name + "'", ErrorCode::kUnsupported);
  }
}

TEST(SafetensorsMalformedTest, Shapes) {
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":3,"data_offsets":[0,3]})", 3), "shape is a number, not an array");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":"3","data_offsets":[0,3]})", 3), "shape is a string");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[-3],"data_offsets":[0,3]})", 3),
                  "shape has a negative dimension -3");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[-0],"data_offsets":[0,0]})", 0),
                  "shape has a negative dimension -0");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[3.0],"data_offsets":[0,3]})", 3),
                  "shape holds 3.0, which is not a non-negative integer");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[1e2],"data_offsets":[0,100]})", 100), "shape holds 1e2");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":["3"],"data_offsets":[0,3]})", 3),
                  "shape holds a string, not a non-negative integer");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[[3]],"data_offsets":[0,3]})", 3), "shape holds an array");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[true],"data_offsets":[0,1]})", 1), "shape holds a boolean");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]})", 1),
                  "shape has more than 8 dimensions");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,1]})", 1),
                  "shape dimension 9223372036854775808 is too large");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]})", 1),
                  "which is not a non-negative integer that fits 64 bits");
  // The product overflows 64 bits.
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]})", 4),
                  "overflows 64 bits");
  // The element count fits but the byte count does not.
  expect_rejected(one_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]})", 8),
                  "overflows 64 bits");
  // Rank 8 is the most that is allowed.
  File f = parse_bytes(one_tensor(R"({"dtype":"U8","shape":[1,1,1,1,1,1,1,2],"data_offsets":[0,2]})", 2));
  EXPECT_EQ(f.tensors()[0].shape.ndim(), 8);
}

TEST(SafetensorsMalformedTest, DataOffsets) {
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[0]})", 2),
                  "data_offsets must be [begin, end], got 1 values");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[]})", 2),
                  "data_offsets must be [begin, end], got 0 values");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2,4]})", 4),
                  "data_offsets must be [begin, end], got more than 2 values");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":{"a":0}})", 2),
                  "data_offsets is an object, not [begin, end]");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[-1,1]})", 2),
                  "data_offsets has a negative value -1");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2.5]})", 2),
                  "data_offsets holds 2.5, which is not a non-negative integer");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[0],"data_offsets":[2,0]})", 2),
                  "data_offsets [2, 0] ends before it begins");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})", 2),
                  "data_offsets [0, 4] extend past the end of the data region (2 bytes)");
  expect_rejected(
      one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[18446744073709551614,18446744073709551615]})", 2),
      "extend past the end of the data region");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", 4),
                  "data_offsets [0, 4] hold 4 bytes but shape [2] of f32 needs 8");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[],"data_offsets":[0,0]})", 0),
                  "hold 0 bytes but shape [] of f32 needs 4");
}

TEST(SafetensorsMalformedTest, LayoutMustTileTheDataRegion) {
  const std::string a = R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  // Overlap: b starts inside a.
  expect_rejected(
      raw_safetensors("{" + a + R"(,"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", std::vector<uint8_t>(6)),
      "tensor 'b' (bytes [2, 6)) overlaps tensor 'a'");
  // Two tensors on the same bytes.
  expect_rejected(
      raw_safetensors("{" + a + R"(,"b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)),
      "overlaps tensor");
  // Hole between tensors.
  expect_rejected(
      raw_safetensors("{" + a + R"(,"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})", std::vector<uint8_t>(8)),
      "bytes [4, 6) of the data region belong to no tensor (a hole before 'b')");
  // Hole at the start.
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[1,3]})", 3),
                  "bytes [0, 1) of the data region belong to no tensor");
  // Bytes after the last tensor.
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2]})", 5),
                  "bytes [2, 5) of the data region belong to no tensor (trailing data)");
  expect_rejected(raw_safetensors("{}", {0}), "bytes [0, 1) of the data region belong to no tensor (trailing data)");
}

TEST(SafetensorsMalformedTest, TensorCountLimit) {
  Limits limits;
  limits.max_tensors = 2;
  std::vector<SafetensorsTensor> three = {{"a", "U8", {1}, {1}}, {"b", "U8", {1}, {2}}, {"c", "U8", {1}, {3}}};
  expect_rejected(make_safetensors(three), "more than 2 tensors", ErrorCode::kInvalidFile, limits);
  three.pop_back();
  EXPECT_EQ(parse_bytes(make_safetensors(three), limits).tensors().size(), 2u);
}

TEST(SafetensorsMalformedTest, ControlCharactersInNamesStayOnOneLine) {
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x\ny":1})", 1),
                  "unknown field 'x\\x0ay'");
}

// ---- checkpoints (single files and sharded folders) -----------------------------------------

std::vector<uint8_t> shard(const std::vector<std::pair<std::string, uint8_t>>& tensors) {
  std::vector<SafetensorsTensor> list;
  for (const auto& [name, seed] : tensors)
    list.push_back({name, "F16", {2, 2}, pattern_bytes(8, seed)});
  return make_safetensors(list);
}

void expect_checkpoint_rejected(const std::string& path, const std::string& reason,
                                ErrorCode code = ErrorCode::kInvalidFile) {
  try {
    (void)Checkpoint::open(path);
    ADD_FAILURE() << "accepted a checkpoint that should fail with: " << reason;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.code(), code) << msg;
    EXPECT_NE(msg.find(reason), std::string::npos) << "message: " << msg << "\nexpected to contain: " << reason;
  }
}

TEST(SafetensorsCheckpointTest, SingleFileAndFolderWithModelSafetensors) {
  TempDir dir;
  write_file(dir.file("model.safetensors"), shard({{"x", 1}, {"y", 2}}));
  for (const std::string& path : {dir.file("model.safetensors"), dir.path().string()}) {
    Checkpoint c = Checkpoint::open(path);
    EXPECT_EQ(c.num_files(), 1u);
    EXPECT_EQ(c.num_tensors(), 2u);
    EXPECT_TRUE(c.index_path().empty());
    auto e = c.find("y");
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->info->name, "y");
    EXPECT_EQ(tensor_bytes(c.tensor("y")), pattern_bytes(8, 2));
    EXPECT_FALSE(c.find("z").has_value());
  }
}

TEST(SafetensorsCheckpointTest, ShardedFolderWithIndex) {
  TempDir dir;
  write_file(dir.file("model-00001-of-00002.safetensors"), shard({{"embed", 1}, {"layer.0", 2}}));
  write_file(dir.file("model-00002-of-00002.safetensors"), shard({{"layer.1", 3}, {"head", 4}}));
  // Another file in the folder that the index does not mention is ignored.
  write_file(dir.file("other.safetensors"), shard({{"embed", 9}}));
  write_file(dir.file("model.safetensors.index.json"), R"({
    "metadata": {"total_size": 32},
    "weight_map": {
      "embed": "model-00001-of-00002.safetensors",
      "layer.0": "model-00001-of-00002.safetensors",
      "layer.1": "model-00002-of-00002.safetensors",
      "head": "model-00002-of-00002.safetensors"
    }})");
  Checkpoint c = Checkpoint::open(dir.path().string());
  EXPECT_EQ(c.num_files(), 2u);
  EXPECT_EQ(c.num_tensors(), 4u);
  EXPECT_EQ(c.index_path(), dir.file("model.safetensors.index.json"));
  EXPECT_EQ(c.index_metadata_json(), R"({"total_size":32})");
  std::vector<std::string> names;
  for (const auto& e : c.tensors())
    names.push_back(e.info->name);
  EXPECT_EQ(names, (std::vector<std::string>{"embed", "layer.0", "layer.1", "head"}));
  auto head = c.find("head");
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->file->path(), dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(tensor_bytes(c.tensor("head")), pattern_bytes(8, 4));
  EXPECT_EQ(tensor_bytes(c.tensor("embed")), pattern_bytes(8, 1));
  // The index file itself can be named.
  EXPECT_EQ(Checkpoint::open(dir.file("model.safetensors.index.json")).num_tensors(), 4u);
}

TEST(SafetensorsCheckpointTest, FolderOfFilesWithoutIndex) {
  TempDir dir;
  write_file(dir.file("b.safetensors"), shard({{"y", 2}}));
  write_file(dir.file("a.safetensors"), shard({{"x", 1}}));
  write_file(dir.file("notes.txt"), "not a tensor file");
  Checkpoint c = Checkpoint::open(dir.path().string());
  ASSERT_EQ(c.num_files(), 2u);
  EXPECT_EQ(c.file(0).path(), dir.file("a.safetensors"));
  EXPECT_EQ(tensor_bytes(c.tensor("y")), pattern_bytes(8, 2));

  write_file(dir.file("c.safetensors"), shard({{"x", 5}}));
  expect_checkpoint_rejected(dir.path().string(), "tensor 'x' is also in");
}

TEST(SafetensorsCheckpointTest, MissingThings) {
  TempDir dir;
  expect_checkpoint_rejected(dir.path().string(), "no model.safetensors.index.json, model.safetensors or other",
                             ErrorCode::kNotFound);
  expect_checkpoint_rejected(dir.file("absent"), "no such file or folder", ErrorCode::kNotFound);
  write_file(dir.file("model.safetensors.index.json"), R"({"weight_map":{"x":"gone.safetensors"}})");
  expect_checkpoint_rejected(dir.path().string(), "gone.safetensors", ErrorCode::kNotFound);
}

TEST(SafetensorsCheckpointTest, BadIndexes) {
  TempDir dir;
  write_file(dir.file("s1.safetensors"), shard({{"x", 1}, {"y", 2}}));
  write_file(dir.file("s2.safetensors"), shard({{"z", 3}, {"x", 4}}));
  std::string index = dir.file("model.safetensors.index.json");
  auto expect_index = [&](const std::string& text, const std::string& reason) {
    write_file(index, text);
    expect_checkpoint_rejected(dir.path().string(), reason);
    // Messages name the index file.
    try {
      (void)Checkpoint::open(dir.path().string());
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(index, 0), 0u) << e.what();
    }
  };
  expect_index("not json", "invalid JSON");
  expect_index(std::string(R"({"weight_map":{}})") + '\0' + "x", "invalid JSON: it contains a NUL byte");
  expect_index("[]", "the index is not a JSON object");
  expect_index("{}", "the index has no 'weight_map'");
  expect_index(R"({"weight_map":[]})", "'weight_map' is not an object");
  expect_index(R"({"weight_map":{"x":1}})", "weight_map entry 'x' is not a file name string");
  expect_index(R"({"weight_map":{"x":"../s1.safetensors"}})", "names '../s1.safetensors', which is not a plain file");
  expect_index(R"({"weight_map":{"x":"sub/s1.safetensors"}})", "which is not a plain file name");
  expect_index(R"({"weight_map":{"x":"/etc/passwd"}})", "which is not a plain file name");
  expect_index(R"({"weight_map":{"x":".."}})", "which is not a plain file name");
  expect_index(R"({"weight_map":{"x":""}})", "which is not a plain file name");
  expect_index(R"({"weight_map":{"x":"s1.safetensors\u0000"}})", "which is not a plain file name");
  expect_index(R"({"weight_map":{"x":"s1.safetensors","x":"s2.safetensors"}})", "duplicate key 'x'");
  expect_index(R"({"weight_map":{"x":"s1.safetensors","y":"s1.safetensors","w":"s1.safetensors"}})",
               "the index maps tensor 'w' to 's1.safetensors', which does not contain it");
  expect_index(R"({"weight_map":{"x":"s1.safetensors"}})",
               "shard 's1.safetensors' holds tensor 'y', which the index "
               "does not list");
  // x is in both shards: the index must map it to one of them, and the other one then holds it
  // against the index.
  expect_index(R"({"weight_map":{"x":"s1.safetensors","y":"s1.safetensors","z":"s2.safetensors"}})",
               "tensor 'x' is in shard 's2.safetensors' but the index maps it to 's1.safetensors'");
  expect_index(std::string(100, '[') + std::string(100, ']'), "JSON nests deeper than 16 levels");
}

}  // namespace
}  // namespace pagoda::safetensors
