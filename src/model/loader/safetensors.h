#pragma once

// Reader for Hugging Face safetensors files and sharded checkpoint folders. A file is an 8-byte
// little-endian header length N, N bytes of JSON describing each tensor (dtype, shape, byte range
// relative to the data region), then the data region. Files are untrusted: the header is parsed
// by a streaming parser that stops at the first violation, every number is range-checked, and
// the byte ranges must tile the data region exactly (no overlap, no hole, nothing past its end),
// which is what the reference implementation requires as well.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace pagoda::safetensors {

struct TensorInfo {
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  uint64_t offset = 0;  // absolute offset in the file
  uint64_t nbytes = 0;
};

// Bounds on the work and memory a hostile file can cause.
struct Limits {
  uint64_t max_header_bytes = 100'000'000;  // the reference implementation's limit
  uint64_t max_tensors = 1ull << 20;
  uint64_t max_metadata_entries = 1ull << 16;
};

class File {
 public:
  // Maps and parses `path`. Throws Error(kInvalidFile) "<path>: <reason>" for a malformed file and
  // Error(kUnsupported) for a well-formed file with a dtype pagoda has no type for (U16, F8_E4M3..).
  [[nodiscard]] static File open(const std::string& path, const Limits& limits = {});
  [[nodiscard]] static File parse(std::shared_ptr<const MappedFile> file, const Limits& limits = {});

  [[nodiscard]] const std::string& path() const { return file_->path(); }
  [[nodiscard]] uint64_t file_size() const { return file_->size(); }
  [[nodiscard]] uint64_t header_bytes() const { return header_bytes_; }  // N, the JSON length
  [[nodiscard]] uint64_t data_offset() const { return 8 + header_bytes_; }
  [[nodiscard]] const std::shared_ptr<const MappedFile>& mapped_file() const { return file_; }

  // The optional "__metadata__" string map, in the order the header lists it.
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  [[nodiscard]] const std::string* find_metadata(std::string_view key) const;

  // Tensors in the order of their data in the file.
  [[nodiscard]] const std::vector<TensorInfo>& tensors() const { return tensors_; }
  [[nodiscard]] const TensorInfo* find_tensor(std::string_view name) const;
  // A zero-copy view of the tensor's bytes in the mapping; it keeps the mapping alive.
  [[nodiscard]] Tensor tensor(const TensorInfo& info) const;
  [[nodiscard]] Tensor tensor(std::string_view name) const;  // Error(kNotFound) if absent

 private:
  File() = default;
  std::shared_ptr<const MappedFile> file_;
  uint64_t header_bytes_ = 0;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// The weights of one model: a single .safetensors file, or a Hugging Face folder holding
// model.safetensors, or shards listed by model.safetensors.index.json, or (without an index) every
// *.safetensors file of the folder. Tensor names are unique across all files.
class Checkpoint {
 public:
  static constexpr std::string_view kSingleFileName = "model.safetensors";
  static constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

  // A .safetensors file or a folder as above.
  [[nodiscard]] static Checkpoint open(const std::string& path, const Limits& limits = {});
  [[nodiscard]] static Checkpoint open_folder(const std::string& dir, const Limits& limits = {});
  [[nodiscard]] static Checkpoint open_file(const std::string& path, const Limits& limits = {});
  // A model.safetensors.index.json (any name) and the shards it lists beside it.
  [[nodiscard]] static Checkpoint open_index(const std::string& index_path, const Limits& limits = {});

  // A tensor of the checkpoint and the file that holds it.
  struct Entry {
    const File* file;
    const TensorInfo* info;
  };

  [[nodiscard]] const std::string& path() const { return path_; }              // what was opened
  [[nodiscard]] const std::string& index_path() const { return index_path_; }  // empty without an index
  [[nodiscard]] size_t num_files() const { return files_.size(); }
  [[nodiscard]] const File& file(size_t i) const { return *files_.at(i); }
  // The index's "metadata" object as JSON text ("{}" without an index); it is informational only.
  [[nodiscard]] const std::string& index_metadata_json() const { return index_metadata_json_; }

  // All tensors: files in order (index shards sorted by name), each file's tensors by offset.
  [[nodiscard]] std::vector<Entry> tensors() const;
  [[nodiscard]] size_t num_tensors() const { return index_.size(); }
  [[nodiscard]] std::optional<Entry> find(std::string_view name) const;
  [[nodiscard]] Tensor tensor(std::string_view name) const;  // Error(kNotFound) if absent

 private:
  Checkpoint() = default;
  void add_file(File file);  // registers its tensors, rejecting names already present
  std::string path_;
  std::string index_path_;
  std::string index_metadata_json_ = "{}";
  // unique_ptr keeps File addresses stable for Entry.
  std::vector<std::unique_ptr<File>> files_;
  struct Location {
    size_t file;
    size_t tensor;
  };
  std::unordered_map<std::string, Location> index_;
};

}  // namespace pagoda::safetensors
