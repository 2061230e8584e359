#include "backends/cpu/cpu_backend.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "backends/cpu/quant/dequantize.h"
#include "core/error.h"

namespace pagoda::cpu {

CpuBackend::CpuBackend(int num_threads) : pool_(num_threads > 0 ? num_threads : available_cpus()), ops_(pool_) {
  if (HostPool::enabled()) {
    // Idle buffers kept for reuse: a long prompt step's activations, a small share of memory.
    buffers_ = std::make_shared<HostPool>(std::min<uint64_t>(total_memory() / 16, uint64_t{256} << 20));
  }
}

std::shared_ptr<Storage> CpuBackend::allocate(uint64_t nbytes) {
  if (buffers_ != nullptr && nbytes >= HostPool::kMinPooledBytes) return buffers_->allocate(nbytes);
  return make_host_storage(nbytes);
}

uint64_t CpuBackend::total_memory() const {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

uint64_t CpuBackend::free_memory() const {
  const long pages = sysconf(_SC_AVPHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

void CpuBackend::copy(Tensor& dst, const Tensor& src) {
  if (!dst.defined() || !src.defined()) fail(ErrorCode::kInvalidArgument, "copy: undefined tensor");
  if (dst.device() != cpu_device() || src.device() != cpu_device()) {
    fail(ErrorCode::kInvalidArgument, "copy: the cpu backend copies only host tensors, got {} from {}", dst.str(),
         src.str());
  }
  if (dst.dtype() != src.dtype() || !(dst.shape() == src.shape())) {
    fail(ErrorCode::kInvalidArgument, "copy: destination {} does not match source {}", dst.str(), src.str());
  }
  if (!dst.is_contiguous() || !src.is_contiguous())
    fail(ErrorCode::kInvalidArgument, "copy: tensors must be contiguous");
  if (!dst.storage()->writable()) fail(ErrorCode::kInvalidArgument, "copy: destination {} is read-only", dst.str());
  const uint64_t n = src.nbytes();
  if (n != 0) std::memmove(dst.raw_data(), src.raw_data(), n);
}

bool CpuBackend::supports(OpKind op, DType dtype) const {
  switch (op) {
    case OpKind::kEmbedding:
    case OpKind::kMatmul:
    case OpKind::kMoeExperts: return can_dequantize(dtype);
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

CpuBackend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace pagoda::cpu
