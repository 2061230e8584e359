#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "core/dtype.h"

namespace pagoda {

class MappedFile;

enum class DeviceKind : uint8_t { kCpu, kXpu, kCuda };

// Where a tensor's bytes live: a kind of backend and an ordinal among its devices.
struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;
  friend bool operator==(const Device&, const Device&) = default;
};

[[nodiscard]] std::string device_name(Device d);  // "cpu", "xpu:0", "cuda:1"
[[nodiscard]] inline Device cpu_device() {
  return {};
}

enum class StorageKind : uint8_t {
  kOwned,     // allocated by pagoda and freed with the last tensor that uses it
  kBorrowed,  // memory the caller owns and keeps alive
  kMapped,    // a region of a read-only memory-mapped file
  kDevice,    // device memory owned by a backend
};

// A span of bytes on one device. Backends derive their own device buffers from it.
class Storage {
 public:
  virtual ~Storage() = default;
  [[nodiscard]] virtual void* data() = 0;  // host-addressable only for CPU storage
  [[nodiscard]] virtual uint64_t nbytes() const = 0;
  [[nodiscard]] virtual Device device() const = 0;
  [[nodiscard]] virtual StorageKind kind() const = 0;
  [[nodiscard]] virtual bool writable() const = 0;
};

[[nodiscard]] std::shared_ptr<Storage> make_host_storage(uint64_t nbytes);  // 64-byte aligned
[[nodiscard]] std::shared_ptr<Storage> borrow_host_storage(void* data, uint64_t nbytes);
[[nodiscard]] std::shared_ptr<Storage> map_file_storage(std::shared_ptr<const MappedFile> file, uint64_t offset,
                                                        uint64_t nbytes);

inline constexpr int kMaxDims = 8;

// Dimensions, outermost first. Small and fixed so that shapes never allocate.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  [[nodiscard]] int ndim() const { return ndim_; }
  [[nodiscard]] int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  [[nodiscard]] int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  [[nodiscard]] std::span<const int64_t> dims() const { return {dims_.data(), static_cast<size_t>(ndim_)}; }
  [[nodiscard]] int64_t numel() const;    // throws on overflow
  [[nodiscard]] std::string str() const;  // "[2, 3, 4]"
  friend bool operator==(const Shape& a, const Shape& b);

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

// A view of an n-dimensional array: shape, element strides, dtype, and shared storage. Quantized
// block types are only held contiguous, with the innermost dimension a whole number of blocks.
class Tensor {
 public:
  Tensor() = default;

  [[nodiscard]] static Tensor empty(const Shape& shape, DType dtype);  // owned host memory
  [[nodiscard]] static Tensor zeros(const Shape& shape, DType dtype);
  [[nodiscard]] static Tensor borrow(void* data, const Shape& shape, DType dtype);
  [[nodiscard]] static Tensor from_storage(std::shared_ptr<Storage> storage, uint64_t byte_offset, const Shape& shape,
                                           DType dtype);

  [[nodiscard]] bool defined() const { return storage_ != nullptr; }
  [[nodiscard]] const Shape& shape() const { return shape_; }
  [[nodiscard]] int ndim() const { return shape_.ndim(); }
  [[nodiscard]] int64_t dim(int i) const;  // negative i counts from the end
  [[nodiscard]] int64_t numel() const { return shape_.numel(); }
  [[nodiscard]] const Shape& strides() const { return strides_; }
  [[nodiscard]] DType dtype() const { return dtype_; }
  [[nodiscard]] Device device() const;
  [[nodiscard]] StorageKind storage_kind() const;
  [[nodiscard]] const std::shared_ptr<Storage>& storage() const { return storage_; }
  [[nodiscard]] uint64_t byte_offset() const { return byte_offset_; }
  [[nodiscard]] bool is_contiguous() const;
  [[nodiscard]] uint64_t nbytes() const;  // bytes spanned by a contiguous tensor

  // Host pointers; throw for device tensors. T must match the dtype's element size.
  [[nodiscard]] void* raw_data();
  [[nodiscard]] const void* raw_data() const;
  template <typename T>
  [[nodiscard]] T* data() {
    check_element_size(sizeof(T));
    return static_cast<T*>(raw_data());
  }
  template <typename T>
  [[nodiscard]] const T* data() const {
    check_element_size(sizeof(T));
    return static_cast<const T*>(raw_data());
  }

  // Views sharing storage.
  [[nodiscard]] Tensor view(const Shape& shape) const;  // contiguous reshape, same numel
  [[nodiscard]] Tensor slice(int dim, int64_t start, int64_t end) const;

  [[nodiscard]] std::string str() const;  // "f32[2, 3] cpu"

 private:
  void check_element_size(size_t size) const;
  static Shape contiguous_strides(const Shape& shape);

  std::shared_ptr<Storage> storage_;
  uint64_t byte_offset_ = 0;
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::kF32;
};

}  // namespace pagoda
