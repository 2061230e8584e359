#include "backends/xpu/xpu_backend.h"

#include <fmt/format.h>

#include <map>
#include <mutex>

#include "backends/xpu/ops/launch.h"
#include "core/error.h"

namespace pagoda::xpu {

void Launch::run(std::array<size_t, 3> global, std::array<size_t, 3> local, unsigned dims) {
  for (unsigned i = 0; i < dims; ++i) {
    if (global[i] == 0) return;  // nothing to do
    if (local[i] != 0) global[i] = (global[i] + local[i] - 1) / local[i] * local[i];
  }
  const bool has_local = local[0] != 0;
  cl_event event = nullptr;
  const cl_int rc =
      clEnqueueNDRangeKernel(rt_.queue(), kernel_, dims, nullptr, global.data(), has_local ? local.data() : nullptr, 0,
                             nullptr, rt_.profiling() ? &event : nullptr);
  if (rc != CL_SUCCESS) fail(ErrorCode::kInternal, "xpu: launching {} failed: {} ({})", name_, cl_status_name(rc), rc);
  if (event != nullptr) {
    std::string shape = std::to_string(global[0]);
    for (unsigned i = 1; i < dims; ++i)
      shape += "x" + std::to_string(global[i]);
    rt_.record(name_, std::move(shape), event);
  }
}

int weight_code(DType t) {
  switch (t) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kBF16: return 2;
    case DType::kQ4_0: return 3;
    case DType::kQ4_1: return 4;
    case DType::kQ5_0: return 5;
    case DType::kQ5_1: return 6;
    case DType::kQ8_0: return 7;
    case DType::kQ2_K: return 8;
    case DType::kQ3_K: return 9;
    case DType::kQ4_K: return 10;
    case DType::kQ5_K: return 11;
    case DType::kQ6_K: return 12;
    case DType::kQ8_K: return 13;
    default: return -1;
  }
}

std::string XpuBackend::name() const {
  return fmt::format("{} ({})", device_name(rt_.device()), rt_.caps().name);
}

uint64_t XpuBackend::free_memory() const {
  // OpenCL has no query for free memory: what pagoda has not allocated itself.
  const uint64_t total = rt_.caps().global_memory;
  const uint64_t used = rt_.allocated();
  return used >= total ? 0 : total - used;
}

void XpuBackend::copy(Tensor& dst, const Tensor& src) {
  if (!dst.defined() || !src.defined()) fail(ErrorCode::kInvalidArgument, "copy: undefined tensor");
  if (dst.dtype() != src.dtype() || !(dst.shape() == src.shape())) {
    fail(ErrorCode::kInvalidArgument, "copy: destination {} does not match source {}", dst.str(), src.str());
  }
  if (!dst.is_contiguous() || !src.is_contiguous())
    fail(ErrorCode::kInvalidArgument, "copy: tensors must be contiguous");
  const Device me = rt_.device();
  const bool dst_here = dst.device() == me;
  const bool src_here = src.device() == me;
  const bool dst_host = dst.device().kind == DeviceKind::kCpu;
  const bool src_host = src.device().kind == DeviceKind::kCpu;
  if (!((dst_here && (src_here || src_host)) || (src_here && dst_host))) {
    fail(ErrorCode::kInvalidArgument, "copy: the {} backend copies between the host and itself, got {} from {}",
         device_name(me), dst.str(), src.str());
  }
  if (!dst.storage()->writable()) fail(ErrorCode::kInvalidArgument, "copy: destination {} is read-only", dst.str());
  const uint64_t n = src.nbytes();
  if (n == 0) return;
  if (dst_here) rt_.invalidate_host_copies();  // device contents change: checked indices may be stale
  // The host side may be released as soon as this returns (large writes are staged, see
  // XpuRuntime::write; reads are blocking).
  if (dst_here && src_host) {
    rt_.write(mem_of(dst), dst.byte_offset(), src.raw_data(), n);
  } else if (src_here && dst_host) {
    check_cl(clEnqueueReadBuffer(rt_.queue(), mem_of(src), CL_TRUE, src.byte_offset(), n, dst.raw_data(), 0, nullptr,
                                 nullptr),
             "clEnqueueReadBuffer");
  } else {
    check_cl(clEnqueueCopyBuffer(rt_.queue(), mem_of(src), mem_of(dst), src.byte_offset(), dst.byte_offset(), n, 0,
                                 nullptr, nullptr),
             "clEnqueueCopyBuffer");
  }
}

void XpuBackend::synchronize() {
  check_cl(clFinish(rt_.queue()), "clFinish");
}

bool XpuBackend::supports(OpKind op, DType dtype) const {
  switch (op) {
    case OpKind::kEmbedding:
    case OpKind::kMatmul:
    case OpKind::kMoeExperts: return weight_code(dtype) >= 0;
    case OpKind::kReshapeAndCache:
    case OpKind::kCopyBlocks:
    case OpKind::kSwapBlocks:
    case OpKind::kPagedAttention:
    case OpKind::kPrefillAttention: return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
    case OpKind::kGatherRows: return dtype != DType::kCount;
    case OpKind::kCount: return false;
    default: return dtype == DType::kF32;
  }
}

Backend& xpu_backend(int index) {
  static std::mutex mutex;
  static std::map<int, std::unique_ptr<XpuBackend>> backends;
  std::lock_guard lock(mutex);
  auto it = backends.find(index);
  if (it != backends.end()) return *it->second;
  auto backend = std::make_unique<XpuBackend>(index);
  Backend& ref = *backend;
  backends.emplace(index, std::move(backend));
  return ref;
}

}  // namespace pagoda::xpu
