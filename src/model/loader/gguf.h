#pragma once

// GGUF reader (versions 2 and 3). The file is untrusted: every count, length and offset is checked
// against caps and against the real file size before anything is allocated or read.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace pagoda::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

[[nodiscard]] std::string_view value_type_name(ValueType t);

// One metadata value: a scalar, a string, or an array (possibly of arrays). Numeric arrays are
// stored widened (int64 / uint64 / double) so callers need not care about the on-disk width.
class Value {
 public:
  using Storage =
      std::variant<int64_t, uint64_t, double, bool, std::string, std::vector<int64_t>, std::vector<uint64_t>,
                   std::vector<double>, std::vector<std::string>, std::vector<Value>>;

  Value(ValueType type, ValueType array_type, Storage data)
      : type_(type), array_type_(array_type), data_(std::move(data)) {}

  [[nodiscard]] ValueType type() const { return type_; }
  [[nodiscard]] bool is_array() const { return type_ == ValueType::kArray; }
  [[nodiscard]] ValueType array_type() const { return array_type_; }  // element type of an array

  // Scalars. as_int accepts every integer type that fits int64; as_float accepts floats and
  // integers; as_bool only bool.
  [[nodiscard]] std::optional<int64_t> as_int() const;
  [[nodiscard]] std::optional<double> as_float() const;
  [[nodiscard]] std::optional<bool> as_bool() const;
  [[nodiscard]] const std::string* as_string() const;

  // Arrays.
  [[nodiscard]] size_t array_size() const;
  [[nodiscard]] const std::vector<std::string>* as_string_array() const;
  [[nodiscard]] std::optional<std::vector<int64_t>> to_int_array() const;   // any integer/bool elements
  [[nodiscard]] std::optional<std::vector<double>> to_float_array() const;  // float or integer elements
  [[nodiscard]] const std::vector<Value>* as_nested_array() const;

  // Short human-readable rendering; arrays show at most `max_items` elements.
  [[nodiscard]] std::string to_display(size_t max_items = 8) const;

  [[nodiscard]] const Storage& data() const { return data_; }

 private:
  ValueType type_;
  ValueType array_type_;
  Storage data_;
};

struct TensorInfo {
  std::string name;
  Shape shape;  // outermost first (GGUF stores ne[] innermost first; this is reversed)
  DType dtype;
  uint64_t offset = 0;  // absolute offset in the file
  uint64_t nbytes = 0;
};

// Limits that bound memory and time spent on a hostile file.
struct Limits {
  uint64_t max_header_bytes = 100ull << 20;  // metadata + tensor infos
  uint64_t max_string_bytes = 16ull << 20;
  uint64_t max_array_elements = 1ull << 24;
  uint64_t max_tensors = 1ull << 20;
  uint64_t max_kv_pairs = 1ull << 16;
  int max_array_depth = 4;
};

class File {
 public:
  // Maps and parses `path`. Throws Error(kInvalidFile) with "<path>: <reason>" on a bad file.
  [[nodiscard]] static File open(const std::string& path, const Limits& limits = {});
  [[nodiscard]] static File parse(std::shared_ptr<const MappedFile> file, const Limits& limits = {});

  [[nodiscard]] const std::string& path() const { return file_->path(); }
  [[nodiscard]] uint32_t version() const { return version_; }
  [[nodiscard]] uint64_t alignment() const { return alignment_; }
  [[nodiscard]] uint64_t data_offset() const { return data_offset_; }
  [[nodiscard]] uint64_t file_size() const { return file_->size(); }

  // Metadata in file order, and lookups by key.
  [[nodiscard]] const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  [[nodiscard]] const Value* find(std::string_view key) const;
  [[nodiscard]] std::optional<int64_t> get_int(std::string_view key) const;
  [[nodiscard]] std::optional<double> get_float(std::string_view key) const;
  [[nodiscard]] std::optional<bool> get_bool(std::string_view key) const;
  [[nodiscard]] std::optional<std::string> get_string(std::string_view key) const;

  [[nodiscard]] const std::vector<TensorInfo>& tensors() const { return tensors_; }
  [[nodiscard]] const TensorInfo* find_tensor(std::string_view name) const;
  // A zero-copy view of the tensor's bytes in the mapping.
  [[nodiscard]] Tensor tensor(const TensorInfo& info) const;

 private:
  File() = default;
  std::shared_ptr<const MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace pagoda::gguf
