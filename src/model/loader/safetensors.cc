#include "model/loader/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <unordered_set>

#include "core/checked.h"
#include "core/error.h"

namespace pagoda::safetensors {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kLengthPrefixBytes = 8;
constexpr uint64_t kMaxIndexBytes = 64ull << 20;
constexpr size_t kMaxIndexDepth = 16;
constexpr uint64_t kMaxIndexValues = 1ull << 23;
constexpr size_t kMaxFolderFiles = 1u << 16;
constexpr size_t kMaxQuotedBytes = 200;

// Renders untrusted text for a one-line message: control bytes become \xNN, and with
// `ascii_only` (text that may not be valid UTF-8) so do all bytes above 0x7e. Long text is cut.
std::string printable(std::string_view text, bool ascii_only = false) {
  std::string out;
  for (char ch : text) {
    if (out.size() >= kMaxQuotedBytes) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f || (ascii_only && c > 0x7e)) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  return out;
}

std::string quote_name(std::string_view name) {
  return "'" + printable(name) + "'";
}

// Names the reference format defines but pagoda has no DType for; they get a clearer message
// (and kUnsupported) than a misspelt dtype.
bool is_known_unsupported_dtype(std::string_view name) {
  static constexpr std::array<std::string_view, 10> kNames = {
      "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64",
  };
  return std::find(kNames.begin(), kNames.end(), name) != kNames.end();
}

std::string describe_json_error(size_t position, const nlohmann::json::exception& ex) {
  // nlohmann's text quotes the offending token, which may be long or not UTF-8.
  return fmt::format("invalid JSON near byte {}: {}", position, printable(ex.what(), /*ascii_only=*/true));
}

// Streams the header through a SAX parser that builds the tensor table directly. Any event that
// does not fit the schema stops the parse at once, so no hostile header costs more than its own
// length in memory and time.
class HeaderParser final : public nlohmann::json_sax<Json> {
 public:
  HeaderParser(const Limits& limits, uint64_t data_begin, uint64_t data_size)
      : limits_(limits), data_begin_(data_begin), data_size_(data_size) {}

  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] ErrorCode error_code() const { return error_code_; }
  [[nodiscard]] std::vector<TensorInfo>& tensors() { return tensors_; }
  [[nodiscard]] std::vector<std::pair<std::string, std::string>>& metadata() { return metadata_; }
  // Relative [begin, end) of each tensor, parallel to tensors().
  [[nodiscard]] const std::vector<std::pair<uint64_t, uint64_t>>& ranges() const { return ranges_; }

  bool null() override { return unexpected("null"); }
  bool boolean(bool /*val*/) override { return unexpected("a boolean"); }
  // Only numbers written with a minus sign arrive here, "-0" included, which the reference
  // implementation rejects as well.
  bool number_integer(number_integer_t val) override {
    std::string text = val == 0 ? "-0" : std::to_string(val);
    if (state_ == State::kShape) return fail_tensor(fmt::format("shape has a negative dimension {}", text));
    if (state_ == State::kOffsets) return fail_tensor(fmt::format("data_offsets has a negative value {}", text));
    return unexpected("a number");
  }
  bool number_unsigned(number_unsigned_t val) override {
    if (state_ == State::kShape) {
      if (dims_.size() >= static_cast<size_t>(kMaxDims)) {
        return fail_tensor(fmt::format("shape has more than {} dimensions", kMaxDims));
      }
      if (val > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return fail_tensor(fmt::format("shape dimension {} is too large", val));
      }
      dims_.push_back(static_cast<int64_t>(val));
      return true;
    }
    if (state_ == State::kOffsets) {
      if (offsets_.size() >= 2) return fail_tensor("data_offsets must be [begin, end], got more than 2 values");
      offsets_.push_back(val);
      return true;
    }
    return unexpected("a number");
  }
  bool number_float(number_float_t /*val*/, const string_t& text) override {
    if (state_ == State::kShape || state_ == State::kOffsets) {
      return fail_tensor(fmt::format("{} holds {}, which is not a non-negative integer that fits 64 bits",
                                     state_ == State::kShape ? "shape" : "data_offsets", printable(text)));
    }
    return unexpected("a number");
  }
  bool string(string_t& val) override {
    if (state_ == State::kMetadata) {
      metadata_.emplace_back(std::move(key_), std::move(val));
      return true;
    }
    if (state_ == State::kTensor && field_ == Field::kDtype) {
      auto dtype = dtype_from_safetensors(val);
      if (!dtype) {
        if (is_known_unsupported_dtype(val)) {
          return fail(ErrorCode::kUnsupported,
                      fmt::format("tensor {}: unsupported dtype '{}' (pagoda has no such element type)",
                                  quote_name(name_), printable(val)));
        }
        return fail_tensor(fmt::format("unknown dtype {}", quote_name(val)));
      }
      dtype_ = *dtype;
      return true;
    }
    return unexpected("a string");
  }
  bool binary(binary_t& /*val*/) override { return unexpected("binary data"); }

  bool start_object(std::size_t /*elements*/) override {
    switch (state_) {
      case State::kTop: state_ = State::kRoot; return true;
      case State::kRoot:
        if (key_ == "__metadata__") {
          state_ = State::kMetadata;
          return true;
        }
        state_ = State::kTensor;
        name_ = std::move(key_);
        seen_fields_ = 0;
        dims_.clear();
        offsets_.clear();
        return true;
      default: return unexpected("an object");
    }
  }

  bool key(string_t& val) override {
    switch (state_) {
      case State::kRoot:
        if (val == "__metadata__") {
          if (seen_metadata_) return fail_file("duplicate key '__metadata__'");
          seen_metadata_ = true;
        } else {
          if (names_.size() >= limits_.max_tensors) {
            return fail_file(fmt::format("more than {} tensors", limits_.max_tensors));
          }
          if (!names_.insert(val).second) return fail_file(fmt::format("duplicate tensor name {}", quote_name(val)));
        }
        key_ = std::move(val);
        return true;
      case State::kMetadata:
        if (metadata_.size() >= limits_.max_metadata_entries) {
          return fail_file(fmt::format("__metadata__ has more than {} entries", limits_.max_metadata_entries));
        }
        if (!metadata_keys_.insert(val).second) {
          return fail_file(fmt::format("duplicate key {} in __metadata__", quote_name(val)));
        }
        key_ = std::move(val);
        return true;
      case State::kTensor: {
        Field f = Field::kNone;
        if (val == "dtype") f = Field::kDtype;
        if (val == "shape") f = Field::kShape;
        if (val == "data_offsets") f = Field::kOffsets;
        if (f == Field::kNone) return fail_tensor(fmt::format("unknown field {}", quote_name(val)));
        if ((seen_fields_ & bit(f)) != 0) return fail_tensor(fmt::format("duplicate field {}", quote_name(val)));
        seen_fields_ |= bit(f);
        field_ = f;
        return true;
      }
      default: return fail_file("internal: key outside an object");
    }
  }

  bool end_object() override {
    switch (state_) {
      case State::kRoot: state_ = State::kDone; return true;
      case State::kMetadata: state_ = State::kRoot; return true;
      case State::kTensor: state_ = State::kRoot; return finish_tensor();
      default: return fail_file("internal: unbalanced object");
    }
  }

  bool start_array(std::size_t /*elements*/) override {
    if (state_ == State::kTensor && field_ == Field::kShape) {
      state_ = State::kShape;
      return true;
    }
    if (state_ == State::kTensor && field_ == Field::kOffsets) {
      state_ = State::kOffsets;
      return true;
    }
    return unexpected("an array");
  }

  bool end_array() override {
    if (state_ == State::kShape || state_ == State::kOffsets) {
      state_ = State::kTensor;
      return true;
    }
    return fail_file("internal: unbalanced array");
  }

  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::json::exception& ex) override {
    if (error_.empty()) fail_file(describe_json_error(position, ex));
    return false;
  }

 private:
  enum class State { kTop, kRoot, kMetadata, kTensor, kShape, kOffsets, kDone };
  enum class Field : unsigned { kNone = 0, kDtype = 1, kShape = 2, kOffsets = 3 };
  static unsigned bit(Field f) { return 1u << static_cast<unsigned>(f); }

  bool fail(ErrorCode code, std::string message) {
    error_code_ = code;
    error_ = std::move(message);
    return false;
  }
  bool fail_file(std::string message) { return fail(ErrorCode::kInvalidFile, std::move(message)); }
  bool fail_tensor(const std::string& reason) {
    return fail_file(fmt::format("tensor {}: {}", quote_name(name_), reason));
  }

  // A value of the wrong JSON type for where it stands.
  bool unexpected(std::string_view what) {
    switch (state_) {
      case State::kTop: return fail_file("header is not a JSON object");
      case State::kRoot:
        if (key_ == "__metadata__") return fail_file(fmt::format("__metadata__ is {}, not an object", what));
        return fail_file(fmt::format("tensor {}: entry is {}, not an object", quote_name(key_), what));
      case State::kMetadata:
        return fail_file(fmt::format("__metadata__ value of {} is {}, not a string", quote_name(key_), what));
      case State::kTensor:
        switch (field_) {
          case Field::kDtype: return fail_tensor(fmt::format("dtype is {}, not a string", what));
          case Field::kShape: return fail_tensor(fmt::format("shape is {}, not an array of integers", what));
          case Field::kOffsets: return fail_tensor(fmt::format("data_offsets is {}, not [begin, end]", what));
          case Field::kNone: break;
        }
        break;
      case State::kShape: return fail_tensor(fmt::format("shape holds {}, not a non-negative integer", what));
      case State::kOffsets: return fail_tensor(fmt::format("data_offsets holds {}, not a non-negative integer", what));
      case State::kDone: break;
    }
    return fail_file(fmt::format("unexpected {} in the header", what));
  }

  bool finish_tensor() {
    for (Field f : {Field::kDtype, Field::kShape, Field::kOffsets}) {
      if ((seen_fields_ & bit(f)) == 0) {
        static constexpr std::array<std::string_view, 4> kFieldNames = {"", "dtype", "shape", "data_offsets"};
        return fail_tensor(fmt::format("missing field '{}'", kFieldNames[static_cast<unsigned>(f)]));
      }
    }
    if (offsets_.size() != 2) {
      return fail_tensor(fmt::format("data_offsets must be [begin, end], got {} values", offsets_.size()));
    }
    uint64_t begin = offsets_[0];
    uint64_t end = offsets_[1];
    if (begin > end) return fail_tensor(fmt::format("data_offsets [{}, {}] ends before it begins", begin, end));
    if (end > data_size_) {
      return fail_tensor(fmt::format("data_offsets [{}, {}] extend past the end of the data region ({} bytes)", begin,
                                     end, data_size_));
    }
    Shape shape{std::span<const int64_t>(dims_)};
    auto numel = checked_product(shape.dims());
    auto need = numel ? checked_mul(*numel, static_cast<uint64_t>(dtype_block_bytes(dtype_))) : std::nullopt;
    if (!need) return fail_tensor(fmt::format("shape {} of {} overflows 64 bits", shape.str(), dtype_name(dtype_)));
    if (*need != end - begin) {
      return fail_tensor(fmt::format("data_offsets [{}, {}] hold {} bytes but shape {} of {} needs {}", begin, end,
                                     end - begin, shape.str(), dtype_name(dtype_), *need));
    }
    auto offset = checked_add(data_begin_, begin);
    if (!offset) return fail_tensor("offset overflows 64 bits");
    tensors_.push_back(TensorInfo{std::move(name_), shape, dtype_, *offset, *need});
    ranges_.emplace_back(begin, end);
    return true;
  }

  const Limits& limits_;
  uint64_t data_begin_;
  uint64_t data_size_;
  State state_ = State::kTop;
  std::string error_;
  ErrorCode error_code_ = ErrorCode::kInvalidFile;

  std::string key_;  // the last key read in the root or the metadata object
  bool seen_metadata_ = false;
  std::unordered_set<std::string> names_;
  std::unordered_set<std::string> metadata_keys_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<TensorInfo> tensors_;
  std::vector<std::pair<uint64_t, uint64_t>> ranges_;

  // The tensor being read.
  std::string name_;
  Field field_ = Field::kNone;
  unsigned seen_fields_ = 0;
  DType dtype_ = DType::kF32;
  std::vector<int64_t> dims_;
  std::vector<uint64_t> offsets_;
};

// Checks JSON for duplicate keys (which nlohmann would silently collapse), nesting depth and the
// number of values before a DOM is built, so that a hostile file cannot make the DOM large.
class JsonShapeCheck final : public nlohmann::json_sax<Json> {
 public:
  JsonShapeCheck(size_t max_depth, uint64_t max_values) : max_depth_(max_depth), max_values_(max_values) {}
  [[nodiscard]] const std::string& error() const { return error_; }

  bool null() override { return value(); }
  bool boolean(bool /*val*/) override { return value(); }
  bool number_integer(number_integer_t /*val*/) override { return value(); }
  bool number_unsigned(number_unsigned_t /*val*/) override { return value(); }
  bool number_float(number_float_t /*val*/, const string_t& /*text*/) override { return value(); }
  bool string(string_t& /*val*/) override { return value(); }
  bool binary(binary_t& /*val*/) override { return value(); }
  bool start_object(std::size_t /*elements*/) override {
    if (!enter()) return false;
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& val) override {
    if (!keys_.back().insert(val).second) {
      error_ = fmt::format("duplicate key {}", quote_name(val));
      return false;
    }
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t /*elements*/) override { return enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::json::exception& ex) override {
    if (error_.empty()) error_ = describe_json_error(position, ex);
    return false;
  }

 private:
  bool value() {
    if (++values_ > max_values_) {
      error_ = fmt::format("more than {} JSON values", max_values_);
      return false;
    }
    return true;
  }
  bool enter() {
    if (!value()) return false;
    if (depth_ >= max_depth_) {
      error_ = fmt::format("JSON nests deeper than {} levels", max_depth_);
      return false;
    }
    ++depth_;
    return true;
  }
  size_t max_depth_;
  uint64_t max_values_;
  size_t depth_ = 0;
  uint64_t values_ = 0;
  std::string error_;
  std::vector<std::unordered_set<std::string>> keys_;
};

// Parses small trusted-format JSON (an index file) strictly: no duplicate keys, bounded depth.
Json parse_json_strictly(const std::string& path, const std::string& text) {
  if (text.find('\0') != std::string::npos)
    fail(ErrorCode::kInvalidFile, "{}: invalid JSON: it contains a NUL byte", path);
  JsonShapeCheck check(kMaxIndexDepth, kMaxIndexValues);
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &check, nlohmann::json::input_format_t::json, /*strict=*/true);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kInvalidFile, "{}: invalid JSON: {}", path, printable(e.what(), true));
  }
  if (!ok) fail(ErrorCode::kInvalidFile, "{}: {}", path, check.error().empty() ? "invalid JSON" : check.error());
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) fail(ErrorCode::kInvalidFile, "{}: invalid JSON", path);
  return doc;
}

// A shard named by an index must be a plain file name in the index's folder.
bool is_plain_file_name(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}

}  // namespace

File File::open(const std::string& path, const Limits& limits) {
  return parse(MappedFile::open(path), limits);
}

File File::parse(std::shared_ptr<const MappedFile> file, const Limits& limits) {
  const std::string& path = file->path();
  const uint64_t size = file->size();
  if (size < kLengthPrefixBytes) {
    fail(ErrorCode::kInvalidFile, "{}: file is {} bytes, too small for the 8-byte header length", path, size);
  }
  const uint64_t n = read_le64(file->data());
  if (n > limits.max_header_bytes) {
    fail(ErrorCode::kInvalidFile, "{}: header length {} exceeds the limit of {} bytes", path, n,
         limits.max_header_bytes);
  }
  auto data_begin = checked_add(kLengthPrefixBytes, n);
  if (!data_begin || *data_begin > size) {
    fail(ErrorCode::kInvalidFile, "{}: header length {} runs past the end of the file ({} bytes)", path, n, size);
  }
  const auto* header = reinterpret_cast<const char*>(file->data() + kLengthPrefixBytes);
  if (n == 0 || header[0] != '{') fail(ErrorCode::kInvalidFile, "{}: header does not start with '{{'", path);
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows it; in
  // valid JSON a raw NUL cannot occur at all.
  if (std::memchr(header, 0, n) != nullptr) {
    fail(ErrorCode::kInvalidFile, "{}: invalid JSON header: it contains a NUL byte", path);
  }

  const uint64_t data_size = size - *data_begin;
  HeaderParser parser(limits, *data_begin, data_size);
  bool ok = false;
  try {
    ok = Json::sax_parse(header, header + n, &parser, nlohmann::json::input_format_t::json, /*strict=*/true);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kInvalidFile, "{}: invalid JSON header: {}", path, printable(e.what(), true));
  }
  if (!ok) {
    fail(parser.error_code(), "{}: {}", path, parser.error().empty() ? "invalid JSON header" : parser.error());
  }

  // The byte ranges must tile the data region: sorted by (begin, end), each starts where the
  // previous one ended, and the last ends at the end of the file.
  std::vector<TensorInfo>& tensors = parser.tensors();
  const auto& ranges = parser.ranges();
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (ranges[a] != ranges[b]) return ranges[a] < ranges[b];
    return tensors[a].name < tensors[b].name;
  });
  uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (size_t i : order) {
    auto [begin, end] = ranges[i];
    if (begin < covered) {
      fail(ErrorCode::kInvalidFile, "{}: tensor {} (bytes [{}, {})) overlaps tensor {}", path,
           quote_name(tensors[i].name), begin, end, quote_name(previous->name));
    }
    if (begin > covered) {
      fail(ErrorCode::kInvalidFile, "{}: bytes [{}, {}) of the data region belong to no tensor (a hole before {})",
           path, covered, begin, quote_name(tensors[i].name));
    }
    covered = end;
    previous = &tensors[i];
  }
  if (covered != data_size) {
    fail(ErrorCode::kInvalidFile, "{}: bytes [{}, {}) of the data region belong to no tensor (trailing data)", path,
         covered, data_size);
  }

  File result;
  result.file_ = std::move(file);
  result.header_bytes_ = n;
  result.metadata_ = std::move(parser.metadata());
  result.tensors_.reserve(tensors.size());
  for (size_t i : order)
    result.tensors_.push_back(std::move(tensors[i]));
  result.tensor_index_.reserve(result.tensors_.size());
  for (size_t i = 0; i < result.tensors_.size(); ++i)
    result.tensor_index_.emplace(result.tensors_[i].name, i);
  return result;
}

const std::string* File::find_metadata(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor File::tensor(const TensorInfo& info) const {
  return Tensor::from_storage(map_file_storage(file_, info.offset, info.nbytes), 0, info.shape, info.dtype);
}

Tensor File::tensor(std::string_view name) const {
  const TensorInfo* info = find_tensor(name);
  if (info == nullptr) fail(ErrorCode::kNotFound, "{}: no tensor {}", path(), quote_name(name));
  return tensor(*info);
}

void Checkpoint::add_file(File file) {
  size_t file_index = files_.size();
  for (size_t i = 0; i < file.tensors().size(); ++i) {
    const std::string& name = file.tensors()[i].name;
    auto [it, inserted] = index_.emplace(name, Location{file_index, i});
    if (!inserted) {
      fail(ErrorCode::kInvalidFile, "{}: tensor {} is also in {}", file.path(), quote_name(name),
           files_[it->second.file]->path());
    }
  }
  files_.push_back(std::make_unique<File>(std::move(file)));
}

Checkpoint Checkpoint::open(const std::string& path, const Limits& limits) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail(ErrorCode::kNotFound, "{}: no such file or folder", path);
  if (fs::is_directory(st)) return open_folder(path, limits);
  if (path.ends_with(".json")) return open_index(path, limits);
  return open_file(path, limits);
}

Checkpoint Checkpoint::open_file(const std::string& path, const Limits& limits) {
  Checkpoint c;
  c.path_ = path;
  c.add_file(File::open(path, limits));
  return c;
}

Checkpoint Checkpoint::open_folder(const std::string& dir, const Limits& limits) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(ErrorCode::kNotFound, "{}: not a folder", dir);
  fs::path index = fs::path(dir) / kIndexFileName;
  if (fs::exists(index, ec)) {
    Checkpoint c = open_index(index.string(), limits);
    c.path_ = dir;
    return c;
  }
  fs::path single = fs::path(dir) / kSingleFileName;
  if (fs::exists(single, ec)) {
    Checkpoint c = open_file(single.string(), limits);
    c.path_ = dir;
    return c;
  }
  // No index: every *.safetensors file of the folder, in name order.
  std::vector<std::string> names;
  fs::directory_iterator it(dir, ec);
  if (ec) fail(ErrorCode::kIo, "{}: cannot list the folder: {}", dir, ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) fail(ErrorCode::kIo, "{}: cannot list the folder: {}", dir, ec.message());
    const fs::path& p = it->path();
    if (p.extension() == ".safetensors" && it->is_regular_file(ec)) {
      if (names.size() >= kMaxFolderFiles) {
        fail(ErrorCode::kInvalidArgument, "{}: more than {} .safetensors files", dir, kMaxFolderFiles);
      }
      names.push_back(p.filename().string());
    }
  }
  if (names.empty()) {
    fail(ErrorCode::kNotFound, "{}: no {}, {} or other .safetensors file in the folder", dir, kIndexFileName,
         kSingleFileName);
  }
  std::sort(names.begin(), names.end());
  Checkpoint c;
  c.path_ = dir;
  for (const std::string& name : names)
    c.add_file(File::open((fs::path(dir) / name).string(), limits));
  return c;
}

Checkpoint Checkpoint::open_index(const std::string& index_path, const Limits& limits) {
  namespace fs = std::filesystem;
  const std::string text = read_text_file(index_path, kMaxIndexBytes);
  const Json doc = parse_json_strictly(index_path, text);
  if (!doc.is_object()) fail(ErrorCode::kInvalidFile, "{}: the index is not a JSON object", index_path);
  auto wm = doc.find("weight_map");
  if (wm == doc.end()) fail(ErrorCode::kInvalidFile, "{}: the index has no 'weight_map'", index_path);
  if (!wm->is_object()) fail(ErrorCode::kInvalidFile, "{}: 'weight_map' is not an object", index_path);
  if (wm->size() > limits.max_tensors) {
    fail(ErrorCode::kInvalidFile, "{}: 'weight_map' lists more than {} tensors", index_path, limits.max_tensors);
  }

  // tensor name -> shard name; shard names in sorted order.
  std::unordered_map<std::string, std::string> shard_of;
  std::set<std::string> shards;
  for (const auto& [name, value] : wm->items()) {
    if (!value.is_string()) {
      fail(ErrorCode::kInvalidFile, "{}: weight_map entry {} is not a file name string", index_path, quote_name(name));
    }
    const auto& shard = value.get_ref<const std::string&>();
    if (!is_plain_file_name(shard)) {
      fail(ErrorCode::kInvalidFile, "{}: weight_map entry {} names {}, which is not a plain file name in the folder",
           index_path, quote_name(name), quote_name(shard));
    }
    shard_of.emplace(name, shard);
    shards.insert(shard);
  }

  Checkpoint c;
  c.path_ = index_path;
  c.index_path_ = index_path;
  auto meta = doc.find("metadata");
  if (meta != doc.end()) c.index_metadata_json_ = meta->dump(-1, ' ', /*ensure_ascii=*/true);
  const fs::path dir = fs::path(index_path).parent_path();
  for (const std::string& shard : shards) {
    File file = File::open((dir / shard).string(), limits);
    for (const TensorInfo& t : file.tensors()) {
      auto it = shard_of.find(t.name);
      if (it == shard_of.end()) {
        fail(ErrorCode::kInvalidFile, "{}: shard {} holds tensor {}, which the index does not list", index_path,
             quote_name(shard), quote_name(t.name));
      }
      if (it->second != shard) {
        fail(ErrorCode::kInvalidFile, "{}: tensor {} is in shard {} but the index maps it to {}", index_path,
             quote_name(t.name), quote_name(shard), quote_name(it->second));
      }
    }
    c.add_file(std::move(file));
  }
  for (const auto& [name, shard] : shard_of) {
    if (c.index_.find(name) == c.index_.end()) {
      fail(ErrorCode::kInvalidFile, "{}: the index maps tensor {} to {}, which does not contain it", index_path,
           quote_name(name), quote_name(shard));
    }
  }
  return c;
}

std::vector<Checkpoint::Entry> Checkpoint::tensors() const {
  std::vector<Entry> out;
  out.reserve(index_.size());
  for (const auto& f : files_) {
    for (const TensorInfo& t : f->tensors())
      out.push_back(Entry{f.get(), &t});
  }
  return out;
}

std::optional<Checkpoint::Entry> Checkpoint::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) return std::nullopt;
  const File& f = *files_[it->second.file];
  return Entry{&f, &f.tensors()[it->second.tensor]};
}

Tensor Checkpoint::tensor(std::string_view name) const {
  auto e = find(name);
  if (!e) fail(ErrorCode::kNotFound, "{}: no tensor {}", path_, quote_name(name));
  return e->file->tensor(*e->info);
}

}  // namespace pagoda::safetensors
