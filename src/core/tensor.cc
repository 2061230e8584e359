#include "core/tensor.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "core/checked.h"
#include "core/error.h"
#include "core/mapped_file.h"

namespace pagoda {

std::string device_name(Device d) {
  switch (d.kind) {
    case DeviceKind::kCpu: return "cpu";
    case DeviceKind::kXpu: return fmt::format("xpu:{}", d.index);
    case DeviceKind::kCuda: return fmt::format("cuda:{}", d.index);
  }
  return "unknown";
}

namespace {

class HostStorage final : public Storage {
 public:
  explicit HostStorage(uint64_t nbytes) : nbytes_(nbytes) {
    constexpr uint64_t kAlign = 64;
    auto rounded = checked_align_up(nbytes == 0 ? kAlign : nbytes, kAlign);
    if (!rounded) fail(ErrorCode::kOutOfMemory, "cannot allocate {} bytes", nbytes);
    data_ = std::aligned_alloc(kAlign, *rounded);
    if (data_ == nullptr) fail(ErrorCode::kOutOfMemory, "cannot allocate {} bytes of host memory", nbytes);
  }
  ~HostStorage() override { std::free(data_); }
  HostStorage(const HostStorage&) = delete;
  HostStorage& operator=(const HostStorage&) = delete;
  void* data() override { return data_; }
  uint64_t nbytes() const override { return nbytes_; }
  Device device() const override { return cpu_device(); }
  StorageKind kind() const override { return StorageKind::kOwned; }
  bool writable() const override { return true; }

 private:
  void* data_ = nullptr;
  uint64_t nbytes_;
};

class BorrowedStorage final : public Storage {
 public:
  BorrowedStorage(void* data, uint64_t nbytes) : data_(data), nbytes_(nbytes) {}
  void* data() override { return data_; }
  uint64_t nbytes() const override { return nbytes_; }
  Device device() const override { return cpu_device(); }
  StorageKind kind() const override { return StorageKind::kBorrowed; }
  bool writable() const override { return true; }

 private:
  void* data_;
  uint64_t nbytes_;
};

class MappedStorage final : public Storage {
 public:
  MappedStorage(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t nbytes)
      : file_(std::move(file)), offset_(offset), nbytes_(nbytes) {}
  // The mapping is read-only; callers that write through it violate the contract (writable()).
  void* data() override { return const_cast<uint8_t*>(file_->data() + offset_); }
  uint64_t nbytes() const override { return nbytes_; }
  Device device() const override { return cpu_device(); }
  StorageKind kind() const override { return StorageKind::kMapped; }
  bool writable() const override { return false; }

 private:
  std::shared_ptr<const MappedFile> file_;
  uint64_t offset_;
  uint64_t nbytes_;
};

}  // namespace

std::shared_ptr<Storage> make_host_storage(uint64_t nbytes) {
  return std::make_shared<HostStorage>(nbytes);
}

std::shared_ptr<Storage> borrow_host_storage(void* data, uint64_t nbytes) {
  return std::make_shared<BorrowedStorage>(data, nbytes);
}

std::shared_ptr<Storage> map_file_storage(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t nbytes) {
  auto end = checked_add(offset, nbytes);
  if (!end || *end > file->size()) {
    fail(ErrorCode::kInvalidFile, "{}: region [{}, +{}) lies outside the file of {} bytes", file->path(), offset,
         nbytes, file->size());
  }
  return std::make_shared<MappedStorage>(std::move(file), offset, nbytes);
}

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  if (dims.size() > static_cast<size_t>(kMaxDims)) {
    fail(ErrorCode::kInvalidArgument, "a tensor has at most {} dimensions, got {}", kMaxDims, dims.size());
  }
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) fail(ErrorCode::kInvalidArgument, "negative dimension {} at axis {}", dims[i], i);
    dims_[i] = dims[i];
  }
  ndim_ = static_cast<int>(dims.size());
}

int64_t Shape::numel() const {
  auto n = checked_product(dims());
  if (!n || *n > static_cast<uint64_t>(INT64_MAX)) fail(ErrorCode::kInvalidArgument, "shape {} overflows", str());
  return static_cast<int64_t>(*n);
}

std::string Shape::str() const {
  return fmt::format("[{}]", fmt::join(dims(), ", "));
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.ndim_ != b.ndim_) return false;
  for (int i = 0; i < a.ndim_; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

Shape Tensor::contiguous_strides(const Shape& shape) {
  Shape strides = shape;
  int64_t s = 1;
  for (int i = shape.ndim() - 1; i >= 0; --i) {
    strides[i] = s;
    // A zero dimension makes the element count 0, but the strides of the dimensions outside it
    // still multiply the others: refuse shapes whose strides cannot be represented.
    if (__builtin_mul_overflow(s, std::max<int64_t>(shape[i], 1), &s)) {
      fail(ErrorCode::kInvalidArgument, "shape {} has strides that overflow", shape.str());
    }
  }
  return strides;
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  int64_t inner = shape.ndim() > 0 ? shape[shape.ndim() - 1] : 1;
  auto row = dtype_row_bytes(dtype, inner);
  if (!row) {
    fail(ErrorCode::kInvalidArgument, "shape {} is not a whole number of {} blocks", shape.str(), dtype_name(dtype));
  }
  int64_t rows = inner == 0 ? 0 : shape.numel() / inner;
  auto bytes = checked_mul(*row, static_cast<uint64_t>(rows));
  if (!bytes) fail(ErrorCode::kInvalidArgument, "tensor {} of {} is too large", shape.str(), dtype_name(dtype));
  return from_storage(make_host_storage(*bytes), 0, shape, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.storage_ = borrow_host_storage(data, t.nbytes());
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, uint64_t byte_offset, const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.byte_offset_ = byte_offset;
  uint64_t need = t.nbytes();
  auto end = checked_add(byte_offset, need);
  if (!end || *end > storage->nbytes()) {
    fail(ErrorCode::kInvalidArgument, "tensor {} of {} ({} bytes at offset {}) exceeds its storage of {} bytes",
         shape.str(), dtype_name(dtype), need, byte_offset, storage->nbytes());
  }
  t.storage_ = std::move(storage);
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = shape_.ndim();
  int j = i < 0 ? i + n : i;
  if (j < 0 || j >= n) fail(ErrorCode::kInvalidArgument, "dimension {} out of range for {}", i, shape_.str());
  return shape_[j];
}

Device Tensor::device() const {
  return storage_ ? storage_->device() : cpu_device();
}

StorageKind Tensor::storage_kind() const {
  if (!storage_) fail(ErrorCode::kInternal, "storage_kind() of an undefined tensor");
  return storage_->kind();
}

bool Tensor::is_contiguous() const {
  return strides_ == contiguous_strides(shape_);
}

uint64_t Tensor::nbytes() const {
  if (!is_contiguous()) fail(ErrorCode::kInternal, "nbytes() of a non-contiguous tensor");
  int64_t inner = shape_.ndim() > 0 ? shape_[shape_.ndim() - 1] : 1;
  auto row = dtype_row_bytes(dtype_, inner);
  if (!row)
    fail(ErrorCode::kInvalidArgument, "shape {} is not a whole number of {} blocks", shape_.str(), dtype_name(dtype_));
  int64_t rows = inner == 0 ? 0 : numel() / inner;
  auto bytes = checked_mul(*row, static_cast<uint64_t>(rows));
  if (!bytes) fail(ErrorCode::kInvalidArgument, "tensor {} is too large", shape_.str());
  return *bytes;
}

void* Tensor::raw_data() {
  if (!storage_) fail(ErrorCode::kInternal, "data() of an undefined tensor");
  if (device().kind != DeviceKind::kCpu)
    fail(ErrorCode::kInternal, "host pointer requested for a {} tensor", device_name(device()));
  return static_cast<uint8_t*>(storage_->data()) + byte_offset_;
}

const void* Tensor::raw_data() const {
  return const_cast<Tensor*>(this)->raw_data();
}

void Tensor::check_element_size(size_t size) const {
  const DTypeInfo& info = dtype_info(dtype_);
  if (info.block_size != 1 || static_cast<size_t>(info.block_bytes) != size) {
    fail(ErrorCode::kInternal, "element access of size {} on a {} tensor", size, info.name);
  }
}

Tensor Tensor::view(const Shape& shape) const {
  if (!is_contiguous()) fail(ErrorCode::kInvalidArgument, "view() of a non-contiguous tensor {}", str());
  if (shape.numel() != numel()) fail(ErrorCode::kInvalidArgument, "cannot view {} as {}", shape_.str(), shape.str());
  return from_storage(storage_, byte_offset_, shape, dtype_);
}

Tensor Tensor::slice(int d, int64_t start, int64_t end) const {
  int n = shape_.ndim();
  int j = d < 0 ? d + n : d;
  if (j < 0 || j >= n) fail(ErrorCode::kInvalidArgument, "slice dimension {} out of range for {}", d, shape_.str());
  if (start < 0 || end < start || end > shape_[j]) {
    fail(ErrorCode::kInvalidArgument, "slice [{}, {}) out of range for dimension {} of {}", start, end, j,
         shape_.str());
  }
  const DTypeInfo& info = dtype_info(dtype_);
  if (info.block_size != 1 && j == n - 1) {
    fail(ErrorCode::kInvalidArgument, "cannot slice inside the blocks of a {} tensor", info.name);
  }
  Tensor t = *this;
  t.shape_[j] = end - start;
  uint64_t elem_offset = static_cast<uint64_t>(start) * static_cast<uint64_t>(strides_[j]);
  t.byte_offset_ =
      byte_offset_ + elem_offset / static_cast<uint64_t>(info.block_size) * static_cast<uint64_t>(info.block_bytes);
  return t;
}

std::string Tensor::str() const {
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_.str(), device_name(device()));
}

}  // namespace pagoda
