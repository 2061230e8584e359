#include "model/loader/gguf.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/checked.h"
#include "core/error.h"
#include "tokenizer/utf8.h"

namespace pagoda::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr uint64_t kMaxNameBytes = 4096;

// Sequential little-endian reads over the header with a bound on every step. Every failure
// reports the byte offset where it happened.
class Reader {
 public:
  Reader(const MappedFile& file, const Limits& limits) : file_(file), limits_(limits) {}

  [[noreturn]] void bad(const std::string& reason) const {
    fail(ErrorCode::kInvalidFile, "{}: invalid GGUF file: {} (at byte {})", file_.path(), reason, pos_);
  }

  [[nodiscard]] uint64_t pos() const { return pos_; }
  [[nodiscard]] uint64_t remaining() const { return file_.size() - pos_; }

  void need(uint64_t n, const char* what) {
    if (n > remaining()) bad(fmt::format("file ends inside {} (needs {} more bytes, {} left)", what, n, remaining()));
    if (pos_ + n > limits_.max_header_bytes) {
      bad(fmt::format("header exceeds the limit of {} bytes", limits_.max_header_bytes));
    }
  }

  template <typename T>
  T read(const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, file_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > limits_.max_string_bytes) {
      bad(fmt::format("{} has length {}, over the limit of {} bytes", what, len, limits_.max_string_bytes));
    }
    need(len, what);
    std::string s(reinterpret_cast<const char*>(file_.data() + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const MappedFile& file_;
  const Limits& limits_;
  uint64_t pos_ = 0;
};

// Smallest number of bytes an array element of this type takes on disk; used to reject element
// counts the rest of the file cannot possibly hold before anything is allocated.
uint64_t min_element_bytes(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool: return 1;
    case ValueType::kUint16:
    case ValueType::kInt16: return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32: return 4;
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64:
    case ValueType::kString: return 8;
    case ValueType::kArray: return 12;  // element type + count
  }
  return 1;
}

bool known_type(uint32_t t) {
  return t <= static_cast<uint32_t>(ValueType::kFloat64);
}

Value read_value(Reader& r, ValueType type, int depth, const Limits& limits);

template <typename Disk, typename Stored>
std::vector<Stored> read_numbers(Reader& r, uint64_t n) {
  std::vector<Stored> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i)
    out.push_back(static_cast<Stored>(r.read<Disk>("array element")));
  return out;
}

Value read_array(Reader& r, int depth, const Limits& limits) {
  if (depth >= limits.max_array_depth) r.bad(fmt::format("arrays nested deeper than {}", limits.max_array_depth));
  uint32_t raw_type = r.read<uint32_t>("array element type");
  if (!known_type(raw_type)) r.bad(fmt::format("unknown array element type {}", raw_type));
  auto et = static_cast<ValueType>(raw_type);
  uint64_t n = r.read<uint64_t>("array length");
  if (n > limits.max_array_elements) {
    r.bad(fmt::format("array of {} elements exceeds the limit of {}", n, limits.max_array_elements));
  }
  auto min_bytes = checked_mul(n, min_element_bytes(et));
  if (!min_bytes || *min_bytes > r.remaining()) {
    r.bad(
        fmt::format("array of {} {} elements cannot fit in the {} bytes left", n, value_type_name(et), r.remaining()));
  }
  switch (et) {
    case ValueType::kUint8: return {ValueType::kArray, et, read_numbers<uint8_t, uint64_t>(r, n)};
    case ValueType::kInt8: return {ValueType::kArray, et, read_numbers<int8_t, int64_t>(r, n)};
    case ValueType::kUint16: return {ValueType::kArray, et, read_numbers<uint16_t, uint64_t>(r, n)};
    case ValueType::kInt16: return {ValueType::kArray, et, read_numbers<int16_t, int64_t>(r, n)};
    case ValueType::kUint32: return {ValueType::kArray, et, read_numbers<uint32_t, uint64_t>(r, n)};
    case ValueType::kInt32: return {ValueType::kArray, et, read_numbers<int32_t, int64_t>(r, n)};
    case ValueType::kUint64: return {ValueType::kArray, et, read_numbers<uint64_t, uint64_t>(r, n)};
    case ValueType::kInt64: return {ValueType::kArray, et, read_numbers<int64_t, int64_t>(r, n)};
    case ValueType::kFloat32: return {ValueType::kArray, et, read_numbers<float, double>(r, n)};
    case ValueType::kFloat64: return {ValueType::kArray, et, read_numbers<double, double>(r, n)};
    case ValueType::kBool: {
      std::vector<int64_t> out;
      out.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        uint8_t b = r.read<uint8_t>("bool array element");
        if (b > 1) r.bad(fmt::format("bool array element has value {}", b));
        out.push_back(b);
      }
      return {ValueType::kArray, et, std::move(out)};
    }
    case ValueType::kString: {
      std::vector<std::string> out;
      out.reserve(n);
      for (uint64_t i = 0; i < n; ++i)
        out.push_back(r.read_string("string array element"));
      return {ValueType::kArray, et, std::move(out)};
    }
    case ValueType::kArray: {
      std::vector<Value> out;
      out.reserve(n);
      for (uint64_t i = 0; i < n; ++i)
        out.push_back(read_array(r, depth + 1, limits));
      return {ValueType::kArray, et, std::move(out)};
    }
  }
  r.bad("unreachable array type");
}

Value read_value(Reader& r, ValueType type, int depth, const Limits& limits) {
  switch (type) {
    case ValueType::kUint8: return {type, type, static_cast<uint64_t>(r.read<uint8_t>("value"))};
    case ValueType::kInt8: return {type, type, static_cast<int64_t>(r.read<int8_t>("value"))};
    case ValueType::kUint16: return {type, type, static_cast<uint64_t>(r.read<uint16_t>("value"))};
    case ValueType::kInt16: return {type, type, static_cast<int64_t>(r.read<int16_t>("value"))};
    case ValueType::kUint32: return {type, type, static_cast<uint64_t>(r.read<uint32_t>("value"))};
    case ValueType::kInt32: return {type, type, static_cast<int64_t>(r.read<int32_t>("value"))};
    case ValueType::kUint64: return {type, type, r.read<uint64_t>("value")};
    case ValueType::kInt64: return {type, type, r.read<int64_t>("value")};
    case ValueType::kFloat32: return {type, type, static_cast<double>(r.read<float>("value"))};
    case ValueType::kFloat64: return {type, type, r.read<double>("value")};
    case ValueType::kBool: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) r.bad(fmt::format("bool value {}", b));
      return {type, type, b == 1};
    }
    case ValueType::kString: return {type, type, r.read_string("string value")};
    case ValueType::kArray: return read_array(r, depth, limits);
  }
  r.bad("unreachable value type");
}

}  // namespace

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::kUint8: return "uint8";
    case ValueType::kInt8: return "int8";
    case ValueType::kUint16: return "uint16";
    case ValueType::kInt16: return "int16";
    case ValueType::kUint32: return "uint32";
    case ValueType::kInt32: return "int32";
    case ValueType::kFloat32: return "float32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "uint64";
    case ValueType::kInt64: return "int64";
    case ValueType::kFloat64: return "float64";
  }
  return "unknown";
}

std::optional<int64_t> Value::as_int() const {
  if (const auto* i = std::get_if<int64_t>(&data_)) return *i;
  if (const auto* u = std::get_if<uint64_t>(&data_)) {
    if (*u <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(*u);
  }
  return std::nullopt;
}

std::optional<double> Value::as_float() const {
  if (const auto* d = std::get_if<double>(&data_)) return *d;
  if (const auto* i = std::get_if<int64_t>(&data_)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&data_)) return static_cast<double>(*u);
  return std::nullopt;
}

std::optional<bool> Value::as_bool() const {
  if (const auto* b = std::get_if<bool>(&data_)) return *b;
  return std::nullopt;
}

const std::string* Value::as_string() const {
  return std::get_if<std::string>(&data_);
}

size_t Value::array_size() const {
  if (!is_array()) return 0;
  return std::visit(
      [](const auto& v) -> size_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<uint64_t>> ||
                      std::is_same_v<T, std::vector<double>> || std::is_same_v<T, std::vector<std::string>> ||
                      std::is_same_v<T, std::vector<Value>>) {
          return v.size();
        } else {
          return 0;
        }
      },
      data_);
}

const std::vector<std::string>* Value::as_string_array() const {
  return std::get_if<std::vector<std::string>>(&data_);
}

std::optional<std::vector<int64_t>> Value::to_int_array() const {
  if (const auto* v = std::get_if<std::vector<int64_t>>(&data_)) return *v;
  if (const auto* u = std::get_if<std::vector<uint64_t>>(&data_)) {
    std::vector<int64_t> out;
    out.reserve(u->size());
    for (uint64_t x : *u) {
      if (x > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
      out.push_back(static_cast<int64_t>(x));
    }
    return out;
  }
  return std::nullopt;
}

std::optional<std::vector<double>> Value::to_float_array() const {
  if (const auto* v = std::get_if<std::vector<double>>(&data_)) return *v;
  if (const auto* i = std::get_if<std::vector<int64_t>>(&data_)) return std::vector<double>(i->begin(), i->end());
  if (const auto* u = std::get_if<std::vector<uint64_t>>(&data_)) return std::vector<double>(u->begin(), u->end());
  return std::nullopt;
}

const std::vector<Value>* Value::as_nested_array() const {
  return std::get_if<std::vector<Value>>(&data_);
}

std::string Value::to_display(size_t max_items) const {
  auto quote = [](const std::string& s) {
    std::string shown = s.size() > 60 ? s.substr(0, 60) + "..." : s;
    std::string out = "\"";
    for (char c : shown) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '"') {
        out += "\\\"";
      } else {
        out += c;
      }
    }
    return out + "\"";
  };
  return std::visit(
      [&](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return quote(v);
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_arithmetic_v<T>) {
          return fmt::format("{}", v);
        } else {
          std::string out = fmt::format("{}[{}]: [", value_type_name(array_type_), v.size());
          for (size_t i = 0; i < v.size() && i < max_items; ++i) {
            if (i > 0) out += ", ";
            if constexpr (std::is_same_v<typename T::value_type, std::string>) {
              out += quote(v[i]);
            } else if constexpr (std::is_same_v<typename T::value_type, Value>) {
              out += v[i].to_display(max_items);
            } else {
              out += fmt::format("{}", v[i]);
            }
          }
          if (v.size() > max_items) out += ", ...";
          return out + "]";
        }
      },
      data_);
}

File File::open(const std::string& path, const Limits& limits) {
  return parse(MappedFile::open(path), limits);
}

File File::parse(std::shared_ptr<const MappedFile> mapped, const Limits& limits) {
  File f;
  f.file_ = std::move(mapped);
  Reader r(*f.file_, limits);

  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic) r.bad("not a GGUF file (bad magic)");
  uint32_t version = r.read<uint32_t>("version");
  if (version == 1) r.bad("GGUF version 1 is not supported (re-convert the model to version 3)");
  if (version != 2 && version != 3) {
    // A big-endian file reads its version byte-swapped.
    if (version == 0x02000000 || version == 0x03000000) r.bad("big-endian GGUF files are not supported");
    r.bad(fmt::format("unsupported GGUF version {} (supported: 2, 3)", version));
  }
  f.version_ = version;
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  if (n_tensors > limits.max_tensors) {
    r.bad(fmt::format("tensor count {} exceeds the limit of {}", n_tensors, limits.max_tensors));
  }
  if (n_kv > limits.max_kv_pairs) {
    r.bad(fmt::format("metadata count {} exceeds the limit of {}", n_kv, limits.max_kv_pairs));
  }

  f.metadata_.reserve(std::min<uint64_t>(n_kv, r.remaining() / 13));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("metadata key");
    if (key.empty()) r.bad("empty metadata key");
    if (!tokenizer::is_valid_utf8(key)) r.bad("metadata key is not valid UTF-8");
    uint32_t raw_type = r.read<uint32_t>("metadata value type");
    if (!known_type(raw_type)) r.bad(fmt::format("metadata '{}' has unknown value type {}", key, raw_type));
    Value value = read_value(r, static_cast<ValueType>(raw_type), 0, limits);
    if (!f.metadata_index_.emplace(key, f.metadata_.size()).second)
      r.bad(fmt::format("duplicate metadata key '{}'", key));
    f.metadata_.emplace_back(std::move(key), std::move(value));
  }

  if (const Value* a = f.find("general.alignment")) {
    auto al = a->as_int();
    if (a->type() != ValueType::kUint32 || !al || *al <= 0 || (*al & (*al - 1)) != 0) {
      r.bad("general.alignment must be a uint32 power of two");
    }
    f.alignment_ = static_cast<uint64_t>(*al);
  }

  // Tensor infos: each needs at least a name length, n_dims, type and offset.
  constexpr uint64_t kMinInfoBytes = 8 + 4 + 4 + 8;
  auto min_infos = checked_mul(n_tensors, kMinInfoBytes);
  if (!min_infos || *min_infos > r.remaining()) {
    r.bad(fmt::format("{} tensor infos cannot fit in the {} bytes left", n_tensors, r.remaining()));
  }
  f.tensors_.reserve(n_tensors);
  std::vector<uint64_t> relative_offsets;
  relative_offsets.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo info;
    info.name = r.read_string("tensor name");
    if (info.name.empty() || info.name.size() > kMaxNameBytes) {
      r.bad(fmt::format("tensor {} has a name of length {} (1..{} allowed)", i, info.name.size(), kMaxNameBytes));
    }
    if (!tokenizer::is_valid_utf8(info.name)) r.bad(fmt::format("tensor {} has a name that is not valid UTF-8", i));
    uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims) {
      r.bad(fmt::format("tensor '{}' has {} dimensions (1..{} allowed)", info.name, n_dims, kMaxDims));
    }
    int64_t ne[kMaxDims] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = r.read<uint64_t>("tensor dimension");
      if (dim > static_cast<uint64_t>(INT64_MAX)) r.bad(fmt::format("tensor '{}' has dimension {}", info.name, dim));
      ne[d] = static_cast<int64_t>(dim);
    }
    uint32_t type_id = r.read<uint32_t>("tensor type");
    auto dtype = dtype_from_gguf_id(type_id);
    if (!dtype) r.bad(fmt::format("tensor '{}' has unknown type id {}", info.name, type_id));
    info.dtype = *dtype;
    uint64_t offset = r.read<uint64_t>("tensor offset");

    auto numel = checked_product(std::span<const int64_t>(ne, n_dims));
    // With a zero dimension the count is 0, yet the other dimensions still set the strides.
    int64_t nonzero[kMaxDims];
    for (uint32_t d = 0; d < n_dims; ++d)
      nonzero[d] = std::max<int64_t>(ne[d], 1);
    auto extent = checked_product(std::span<const int64_t>(nonzero, n_dims));
    if (!numel || *numel > static_cast<uint64_t>(INT64_MAX) || !extent || *extent > static_cast<uint64_t>(INT64_MAX)) {
      r.bad(fmt::format("tensor '{}' has an element count that overflows", info.name));
    }
    if (ne[0] % dtype_block_size(info.dtype) != 0) {
      r.bad(fmt::format("tensor '{}': row of {} elements is not a whole number of {} blocks of {}", info.name, ne[0],
                        dtype_name(info.dtype), dtype_block_size(info.dtype)));
    }
    auto nbytes = checked_mul(*numel / static_cast<uint64_t>(dtype_block_size(info.dtype)),
                              static_cast<uint64_t>(dtype_block_bytes(info.dtype)));
    if (!nbytes) r.bad(fmt::format("tensor '{}' byte size overflows", info.name));
    info.nbytes = *nbytes;
    if (offset % f.alignment_ != 0) {
      r.bad(
          fmt::format("tensor '{}' offset {} is not a multiple of the alignment {}", info.name, offset, f.alignment_));
    }
    int64_t dims[kMaxDims];
    for (uint32_t d = 0; d < n_dims; ++d)
      dims[d] = ne[n_dims - 1 - d];
    info.shape = Shape(std::span<const int64_t>(dims, n_dims));
    if (!f.tensor_index_.emplace(info.name, f.tensors_.size()).second) {
      r.bad(fmt::format("duplicate tensor name '{}'", info.name));
    }
    relative_offsets.push_back(offset);
    f.tensors_.push_back(std::move(info));
  }

  auto data_offset = checked_align_up(r.pos(), f.alignment_);
  if (!data_offset || *data_offset > f.file_->size()) {
    if (n_tensors > 0 || !data_offset) r.bad("file ends before the tensor data section");
  }
  f.data_offset_ = *data_offset;

  // Place every tensor inside the file and make sure no two overlap.
  std::vector<size_t> order(f.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) {
    TensorInfo& t = f.tensors_[i];
    auto start = checked_add(f.data_offset_, relative_offsets[i]);
    auto end = start ? checked_add(*start, t.nbytes) : std::nullopt;
    if (!end || *end > f.file_->size()) {
      fail(
          ErrorCode::kInvalidFile,
          "{}: invalid GGUF file: tensor '{}' ({} bytes at data offset {}) extends past the end of the file ({} bytes)",
          f.file_->path(), t.name, t.nbytes, relative_offsets[i], f.file_->size());
    }
    t.offset = *start;
    order[i] = i;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& prev = f.tensors_[order[k - 1]];
    const TensorInfo& cur = f.tensors_[order[k]];
    if (prev.offset + prev.nbytes > cur.offset) {
      fail(ErrorCode::kInvalidFile, "{}: invalid GGUF file: tensors '{}' and '{}' overlap", f.file_->path(), prev.name,
           cur.name);
    }
  }
  return f;
}

const Value* File::find(std::string_view key) const {
  auto it = metadata_index_.find(std::string(key));
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

std::optional<int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<double> File::get_float(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_float() : std::nullopt;
}

std::optional<bool> File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_bool() : std::nullopt;
}

std::optional<std::string> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr || v->as_string() == nullptr) return std::nullopt;
  return *v->as_string();
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor File::tensor(const TensorInfo& info) const {
  return Tensor::from_storage(map_file_storage(file_, info.offset, info.nbytes), 0, info.shape, info.dtype);
}

}  // namespace pagoda::gguf
