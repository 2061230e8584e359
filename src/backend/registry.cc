#include <cstdint>
#include <string_view>

#include "backend/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "core/checked.h"
#include "core/error.h"

namespace pagoda {

#if PAGODA_HAS_XPU
namespace xpu {
// Defined by the pagoda_xpu target (backends/xpu/xpu_backend.h); declared here so that the portable
// library needs no OpenCL headers.
Backend& xpu_backend(int index);
}  // namespace xpu
#endif

Backend& backend_for(Device device) {
  switch (device.kind) {
    case DeviceKind::kCpu:
      if (device.index != 0) {
        fail(ErrorCode::kNotFound, "there is no device cpu:{}: the host CPU is the single device cpu (cpu:0)",
             device.index);
      }
      return cpu::cpu_backend();
    case DeviceKind::kXpu:
#if PAGODA_HAS_XPU
      return xpu::xpu_backend(device.index);
#else
      fail(ErrorCode::kUnsupported,
           "the xpu backend is not implemented in this build yet (configure with -DPAGODA_XPU=ON)");
#endif
    // The cuda target can list its devices (pagoda info --devices) but has no kernels yet.
    case DeviceKind::kCuda: fail(ErrorCode::kUnsupported, "the cuda backend is not implemented in this build yet");
  }
  fail(ErrorCode::kInvalidArgument, "unknown device kind {}", static_cast<int>(device.kind));
}

Device parse_device(const std::string& text) {
  constexpr size_t kMaxLength = 32;
  constexpr int kMaxIndex = 1023;
  const std::string_view s(text);
  if (s.size() > kMaxLength)
    fail(ErrorCode::kInvalidArgument, "invalid device name: longer than {} characters", kMaxLength);
  const size_t colon = s.find(':');
  const std::string_view kind = s.substr(0, colon);
  Device device;
  if (kind == "cpu") {
    device.kind = DeviceKind::kCpu;
  } else if (kind == "xpu") {
    device.kind = DeviceKind::kXpu;
  } else if (kind == "cuda") {
    device.kind = DeviceKind::kCuda;
  } else {
    fail(ErrorCode::kInvalidArgument, "invalid device '{}': expected cpu, xpu, xpu:N, cuda or cuda:N", text);
  }
  if (colon == std::string_view::npos) return device;
  const std::string_view digits = s.substr(colon + 1);
  if (digits.empty() || digits.size() > 4) {
    fail(ErrorCode::kInvalidArgument, "invalid device '{}': the index after ':' must be 0 to {}", text, kMaxIndex);
  }
  int index = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') {
      fail(ErrorCode::kInvalidArgument, "invalid device '{}': the index after ':' must be 0 to {}", text, kMaxIndex);
    }
    index = index * 10 + (c - '0');
  }
  if (index > kMaxIndex) {
    fail(ErrorCode::kInvalidArgument, "invalid device '{}': the index after ':' must be 0 to {}", text, kMaxIndex);
  }
  device.index = index;
  return device;
}

Tensor empty_on(Device device, const Shape& shape, DType dtype) {
  const int64_t inner = shape.ndim() > 0 ? shape[shape.ndim() - 1] : 1;
  const auto row = dtype_row_bytes(dtype, inner);
  if (!row) {
    fail(ErrorCode::kInvalidArgument, "shape {} is not a whole number of {} blocks", shape.str(), dtype_name(dtype));
  }
  const int64_t rows = inner == 0 ? 0 : shape.numel() / inner;
  const auto bytes = checked_mul(*row, static_cast<uint64_t>(rows));
  if (!bytes) fail(ErrorCode::kInvalidArgument, "tensor {} of {} is too large", shape.str(), dtype_name(dtype));
  Backend& backend = backend_for(device);
  return Tensor::from_storage(backend.allocate(*bytes), 0, shape, dtype);
}

Tensor to_device(const Tensor& src, Device device) {
  if (!src.defined()) fail(ErrorCode::kInvalidArgument, "to_device: undefined tensor");
  if (src.device() == device) return src;
  if (!src.is_contiguous()) fail(ErrorCode::kInvalidArgument, "to_device: {} is not contiguous", src.str());
  const bool src_on_host = src.device().kind == DeviceKind::kCpu;
  const bool dst_on_host = device.kind == DeviceKind::kCpu;
  if (!src_on_host && !dst_on_host) return to_device(to_host(src), device);  // device to device, through the host
  Tensor dst = empty_on(device, src.shape(), src.dtype());
  backend_for(dst_on_host ? src.device() : device).copy(dst, src);
  return dst;
}

Tensor to_host(const Tensor& src) {
  if (!src.defined()) fail(ErrorCode::kInvalidArgument, "to_host: undefined tensor");
  if (src.device().kind == DeviceKind::kCpu) return src;
  Tensor dst = to_device(src, cpu_device());
  backend_for(src.device()).synchronize();
  return dst;
}

}  // namespace pagoda
