#pragma once

// Reuse of device buffers. A decode step allocates a few dozen activation tensors per layer and
// frees them a moment later; creating and releasing an OpenCL buffer each time costs more host
// time than many of the kernels that use it. Freed buffers up to kMaxPooledBuffer bytes are kept,
// by size class, and handed out again. Reuse is safe without events because the queue is in
// order: every command that used a buffer was enqueued before any command of its next owner.
//
// The pool is shared (shared_ptr) by the runtime and every storage it handed out, so either may
// be destroyed first. Pooled bytes count as allocated: they are held on the device.

#include <CL/cl.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "backends/xpu/cl_handle.h"

namespace pagoda::xpu {

class BufferPool {
 public:
  // Buffers above this size (weights, the KV cache) are never pooled.
  static constexpr uint64_t kMaxPooledBuffer = uint64_t{256} << 20;

  // `capacity`: the most bytes kept idle in the pool; beyond it freed buffers are released.
  explicit BufferPool(uint64_t capacity) : capacity_(capacity) {}

  // The size a request of `nbytes` is rounded up to: four classes per power of two (at most 25%
  // more), 256 bytes at least; unchanged above kMaxPooledBuffer.
  [[nodiscard]] static uint64_t size_class(uint64_t nbytes);

  // An idle buffer of exactly `size` bytes, or an empty handle.
  [[nodiscard]] ClMem take(uint64_t size);
  // Keeps `mem` (of `size` bytes) for reuse, or releases it when it is too big or the pool is full.
  void give(ClMem mem, uint64_t size);
  // Releases every idle buffer (before retrying an allocation that failed).
  void drain();

  // Bytes held on the device: live buffers plus idle pooled ones.
  void add_live(uint64_t size) { live_ += size; }
  void sub_live(uint64_t size) { live_ -= size; }
  [[nodiscard]] uint64_t held() const;
  [[nodiscard]] uint64_t idle() const;
  // Allocations served from the pool and by a new buffer (the runtime test reads these).
  [[nodiscard]] uint64_t hits() const;
  [[nodiscard]] uint64_t misses() const;
  void count_miss();

 private:
  mutable std::mutex mutex_;
  uint64_t capacity_;
  uint64_t idle_bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  std::atomic<uint64_t> live_{0};
  std::map<uint64_t, std::vector<ClMem>> free_;
};

}  // namespace pagoda::xpu
