#pragma once

// Builds GGUF files in memory for tests: metadata of every value type and tensors with data.
// Deliberately independent of the reader so that a bug cannot cancel itself out.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pagoda::testing {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3, uint32_t alignment = 32) : version_(version), alignment_(alignment) {}

  // Raw metadata: the value bytes must already be encoded (use the helpers below).
  void add_raw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
    put_string(kv_, key);
    put(kv_, type);
    kv_.insert(kv_.end(), value.begin(), value.end());
    ++n_kv_;
  }
  template <typename T>
  void add(const std::string& key, uint32_t type, T v) {
    std::vector<uint8_t> b;
    put(b, v);
    add_raw(key, type, b);
  }
  void add_u8(const std::string& k, uint8_t v) { add(k, 0, v); }
  void add_i8(const std::string& k, int8_t v) { add(k, 1, v); }
  void add_u16(const std::string& k, uint16_t v) { add(k, 2, v); }
  void add_i16(const std::string& k, int16_t v) { add(k, 3, v); }
  void add_u32(const std::string& k, uint32_t v) { add(k, 4, v); }
  void add_i32(const std::string& k, int32_t v) { add(k, 5, v); }
  void add_f32(const std::string& k, float v) { add(k, 6, v); }
  void add_bool(const std::string& k, bool v) { add(k, 7, static_cast<uint8_t>(v)); }
  void add_string(const std::string& k, const std::string& v) {
    std::vector<uint8_t> b;
    put_string(b, v);
    add_raw(k, 8, b);
  }
  void add_u64(const std::string& k, uint64_t v) { add(k, 10, v); }
  void add_i64(const std::string& k, int64_t v) { add(k, 11, v); }
  void add_f64(const std::string& k, double v) { add(k, 12, v); }

  template <typename T>
  static std::vector<uint8_t> array_of(uint32_t elem_type, const std::vector<T>& items) {
    std::vector<uint8_t> b;
    put(b, elem_type);
    put(b, static_cast<uint64_t>(items.size()));
    for (const T& x : items)
      put(b, x);
    return b;
  }
  static std::vector<uint8_t> string_array(const std::vector<std::string>& items) {
    std::vector<uint8_t> b;
    put(b, uint32_t{8});
    put(b, static_cast<uint64_t>(items.size()));
    for (const auto& s : items)
      put_string(b, s);
    return b;
  }
  // An array whose elements are arrays already encoded with array_of/string_array.
  static std::vector<uint8_t> nested_array(const std::vector<std::vector<uint8_t>>& arrays) {
    std::vector<uint8_t> b;
    put(b, uint32_t{9});
    put(b, static_cast<uint64_t>(arrays.size()));
    for (const auto& a : arrays)
      b.insert(b.end(), a.begin(), a.end());
    return b;
  }
  void add_array(const std::string& key, const std::vector<uint8_t>& encoded) { add_raw(key, 9, encoded); }

  // ne is innermost-first, as GGUF stores it. Data is placed at the next aligned data offset.
  void add_tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, const std::vector<uint8_t>& data) {
    put_string(infos_, name);
    put(infos_, static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne)
      put(infos_, d);
    put(infos_, type);
    while (data_.size() % alignment_ != 0)
      data_.push_back(0);
    put(infos_, static_cast<uint64_t>(data_.size()));
    data_.insert(data_.end(), data.begin(), data.end());
    ++n_tensors_;
  }

  [[nodiscard]] std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out;
    put(out, uint32_t{0x46554747});
    put(out, version_);
    put(out, n_tensors_);
    put(out, n_kv_);
    out.insert(out.end(), kv_.begin(), kv_.end());
    out.insert(out.end(), infos_.begin(), infos_.end());
    while (out.size() % alignment_ != 0)
      out.push_back(0);
    out.insert(out.end(), data_.begin(), data_.end());
    return out;
  }

  template <typename T>
  static void put(std::vector<uint8_t>& b, T v) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    b.insert(b.end(), raw, raw + sizeof(T));
  }
  static void put_string(std::vector<uint8_t>& b, const std::string& s) {
    put(b, static_cast<uint64_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }

 private:
  uint32_t version_;
  uint32_t alignment_;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_;
  std::vector<uint8_t> infos_;
  std::vector<uint8_t> data_;
};

}  // namespace pagoda::testing
