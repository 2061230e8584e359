#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pagoda {

// A whole file mapped read-only. The mapping lives as long as the last shared owner, so tensors
// that point into it keep it alive. An empty file maps to an empty span.
class MappedFile {
 public:
  // Throws Error(kNotFound / kIo) naming the path.
  [[nodiscard]] static std::shared_ptr<const MappedFile> open(const std::string& path);
  // The same interface over bytes held in memory (tests, fuzzers, files received over a network).
  [[nodiscard]] static std::shared_ptr<const MappedFile> from_memory(std::string name, std::vector<uint8_t> bytes);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] uint64_t size() const { return size_; }
  [[nodiscard]] const uint8_t* data() const { return data_; }
  [[nodiscard]] std::span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }

 private:
  MappedFile(std::string path, const uint8_t* data, uint64_t size);
  std::string path_;
  bool mapped_ = false;         // data_ came from mmap and must be unmapped
  std::vector<uint8_t> owned_;  // backing bytes of from_memory(); empty for real mappings
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Reads a whole (small) text file such as config.json, refusing files over `max_bytes`.
[[nodiscard]] std::string read_text_file(const std::string& path, uint64_t max_bytes);

}  // namespace pagoda
