#pragma once

// Reuse of the CPU backend's large buffers. Every engine step allocates the same activation
// buffers again (tens of MiB for a long prompt); fresh memory for each would be zero-filled page
// by page by the kernel on first touch, every step. Buffers of at least kMinPooledBytes are
// therefore anonymous mappings that go back to an idle list when their last tensor is gone and
// are handed out again for a request of the same size class (sizes rounded up to a sixteenth of
// the power of two above them, so at most an eighth of a request is unused). The idle list is
// bounded; the oldest idle
// buffers are unmapped first. Smaller buffers come from malloc as before.
//
// Under AddressSanitizer, or with PAGODA_CPU_POOL=0, nothing is pooled (so the sanitizer sees
// every buffer's bounds).

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "core/tensor.h"

namespace pagoda::cpu {

class HostPool : public std::enable_shared_from_this<HostPool> {
 public:
  static constexpr uint64_t kMinPooledBytes = uint64_t{256} << 10;

  // `idle_cap`: the most bytes kept idle.
  explicit HostPool(uint64_t idle_cap);
  ~HostPool();
  HostPool(const HostPool&) = delete;
  HostPool& operator=(const HostPool&) = delete;

  // A buffer of at least nbytes (64-byte aligned, contents unspecified).
  [[nodiscard]] std::shared_ptr<Storage> allocate(uint64_t nbytes);

  // The size class a request of nbytes is served from.
  [[nodiscard]] static uint64_t size_class(uint64_t nbytes);
  // Whether pooling is on in this process (not under ASan, PAGODA_CPU_POOL not 0).
  [[nodiscard]] static bool enabled();

  struct Stats {
    uint64_t idle_bytes = 0;
    uint64_t idle_buffers = 0;
    uint64_t reused = 0;  // allocations served from the idle list
    uint64_t mapped = 0;  // allocations that made a new mapping
  };
  [[nodiscard]] Stats stats();

 private:
  friend class PooledStorage;
  void give_back(void* p, uint64_t bytes);

  struct Block {
    void* p;
    uint64_t bytes;
  };
  std::mutex mutex_;
  std::deque<Block> idle_;  // oldest first
  uint64_t idle_bytes_ = 0;
  uint64_t idle_cap_;
  uint64_t reused_ = 0;
  uint64_t mapped_ = 0;
};

}  // namespace pagoda::cpu
