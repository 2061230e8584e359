#pragma once

// Small writers of model-file formats for unit tests: they build valid files from a description,
// and raw files from hand-written headers for the malformed cases.

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pagoda::test {

// A fresh folder under the system temp folder, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "pagoda_test_XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline void write_file(const std::string& path, std::string_view text) {
  write_file(path, std::vector<uint8_t>(text.begin(), text.end()));
}

// A safetensors file from a header given verbatim: the 8-byte little-endian length, the header
// bytes, then the data region. Nothing is checked, so any malformed layout can be made.
inline std::vector<uint8_t> raw_safetensors(std::string_view header, const std::vector<uint8_t>& data = {}) {
  std::vector<uint8_t> out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // as the format spells it: "F32", "BF16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// A valid safetensors file: tensors laid out back to back in the given order, the header padded
// with spaces to a multiple of 8 bytes as the reference writer does.
inline std::vector<uint8_t> make_safetensors(const std::vector<SafetensorsTensor>& tensors,
                                             const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint8_t> data;
  for (const SafetensorsTensor& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + static_cast<uint64_t>(t.data.size())}}};
    offset += t.data.size();
    data.insert(data.end(), t.data.begin(), t.data.end());
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return raw_safetensors(text, data);
}

// Bytes 0, 1, 2, ... (mod 251, so that neighbouring tensors differ) starting at `seed`.
inline std::vector<uint8_t> pattern_bytes(size_t n, uint8_t seed = 0) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<uint8_t>((seed + i) % 251);
  return out;
}

}  // namespace pagoda::test
