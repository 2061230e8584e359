#pragma once

// A backend owns the memory and the kernels of one kind of device. The engine, the models and the
// tests talk to backends only through this interface and the op contract (src/ops/), so they are
// written once for CPU, XPU (OpenCL) and CUDA.
//
// Devices own their memory and run asynchronously: an op enqueues work on the backend's in-order
// stream and returns; host code sees results only after copy_to_host() or synchronize(). Model code
// never loops over tensor elements on the host and never touches device pointers.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend_ops.h"
#include "core/tensor.h"

namespace pagoda {

// Device time spent in one kernel, summed over its launches (see Backend::take_kernel_profile).
struct KernelTiming {
  std::string name;
  uint64_t launches = 0;
  double seconds = 0.0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  [[nodiscard]] virtual Device device() const = 0;
  [[nodiscard]] virtual std::string name() const = 0;  // "cpu", "xpu:0 (Intel(R) Arc(TM) A770)"

  // Memory.
  [[nodiscard]] virtual std::shared_ptr<Storage> allocate(uint64_t nbytes) = 0;
  [[nodiscard]] virtual uint64_t total_memory() const = 0;
  [[nodiscard]] virtual uint64_t free_memory() const = 0;

  // Copies between a host tensor and a tensor of this backend (either direction), or within this
  // backend. Both tensors contiguous, same dtype and shape. Asynchronous on devices; the host
  // buffer must stay alive until synchronize().
  virtual void copy(Tensor& dst, const Tensor& src) = 0;
  virtual void synchronize() = 0;

  // Whether ops() implements `op` for tensors of `dtype` (the weight dtype for matmul, the cache
  // dtype for attention and cache ops, the activation dtype otherwise).
  [[nodiscard]] virtual bool supports(OpKind op, DType dtype) const = 0;
  [[nodiscard]] virtual BackendOps& ops() = 0;

  // Per-kernel device time since the last call, longest first, when the backend was created with
  // profiling on (xpu: PAGODA_XPU_PROFILE=1); empty otherwise. Waits for queued work.
  [[nodiscard]] virtual std::vector<KernelTiming> take_kernel_profile() { return {}; }
};

// The backend of a device. The CPU backend always exists; another kind throws Error(kUnsupported)
// saying that it was not built, or Error(kNotFound) when the device is absent.
[[nodiscard]] Backend& backend_for(Device device);

// Parses "cpu", "xpu", "xpu:1", "cuda:0" (an absent index means 0).
[[nodiscard]] Device parse_device(const std::string& text);

// Allocation and transfer helpers over backend_for().
[[nodiscard]] Tensor empty_on(Device device, const Shape& shape, DType dtype);
[[nodiscard]] Tensor to_device(const Tensor& src, Device device);  // a copy (or src itself if already there)
[[nodiscard]] Tensor to_host(const Tensor& src);                   // synchronizes

}  // namespace pagoda
