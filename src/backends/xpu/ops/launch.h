#pragma once

// Kernel launches and small host read-backs shared by the xpu ops.

#include <CL/cl.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/xpu/xpu_runtime.h"
#include "core/error.h"
#include "core/tensor.h"

namespace pagoda::xpu {

// Sets a kernel's arguments in order, then enqueues it. Tensors pass as (buffer, byte offset).
class Launch {
 public:
  Launch(XpuRuntime& rt, const char* name) : rt_(rt), kernel_(rt.kernel(name)), name_(name) {}

  Launch& mem(cl_mem m) { return set(sizeof m, &m); }  // NOLINT(bugprone-sizeof-expression): OpenCL wants the handle
  Launch& tensor(const Tensor& t) { return mem(mem_of(t)).u64(t.byte_offset()); }
  // An optional tensor: a stand-in buffer when absent (the kernel is told not to read it).
  Launch& tensor_or(const Tensor* t, const Tensor& stand_in) { return tensor(t != nullptr ? *t : stand_in); }
  Launch& i32(int64_t v) {
    const auto x = static_cast<cl_int>(v);
    return set(sizeof x, &x);
  }
  Launch& i64(int64_t v) {
    const auto x = static_cast<cl_long>(v);
    return set(sizeof x, &x);
  }
  Launch& u64(uint64_t v) {
    const auto x = static_cast<cl_ulong>(v);
    return set(sizeof x, &x);
  }
  Launch& f32(float v) { return set(sizeof v, &v); }

  // Enqueues over `global` (rounded up to multiples of `local` when given; the kernels bound-check).
  void run(std::array<size_t, 3> global, std::array<size_t, 3> local = {0, 0, 0}, unsigned dims = 3);

 private:
  Launch& set(size_t size, const void* value) {
    check_cl(clSetKernelArg(kernel_, arg_++, size, value), name_);
    return *this;
  }

  XpuRuntime& rt_;
  cl_kernel kernel_;
  const char* name_;
  cl_uint arg_ = 0;
};

// A device tensor's contents on the host, for small index tensors (see XpuRuntime::host_copy).
template <typename T>
[[nodiscard]] std::vector<T> read_back(XpuRuntime& rt, const Tensor& t) {
  const std::vector<uint8_t> bytes = rt.host_copy(t);
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

// A new device tensor holding `values` (blocking write).
template <typename T>
[[nodiscard]] Tensor upload_vector(XpuRuntime& rt, const std::vector<T>& values, DType dtype) {
  Tensor t = Tensor::from_storage(rt.allocate(values.size() * sizeof(T)), 0, Shape{static_cast<int64_t>(values.size())},
                                  dtype);
  if (!values.empty()) {
    check_cl(clEnqueueWriteBuffer(rt.queue(), mem_of(t), CL_TRUE, 0, values.size() * sizeof(T), values.data(), 0,
                                  nullptr, nullptr),
             "clEnqueueWriteBuffer");
  }
  return t;
}

[[nodiscard]] inline Tensor scratch(XpuRuntime& rt, const Shape& shape, DType dtype) {
  const uint64_t bytes = static_cast<uint64_t>(shape.numel()) * static_cast<uint64_t>(dtype_block_bytes(dtype));
  return Tensor::from_storage(rt.allocate(bytes), 0, shape, dtype);
}

// The cache dtype code of the kernels (DT_* in kernels/common.cl).
[[nodiscard]] inline int cache_code(DType t) {
  return t == DType::kF16 ? 1 : t == DType::kBF16 ? 2 : 0;
}

}  // namespace pagoda::xpu
