#include "backends/xpu/buffer_pool.h"

#include <bit>

namespace pagoda::xpu {

uint64_t BufferPool::size_class(uint64_t nbytes) {
  constexpr uint64_t kMin = 256;
  if (nbytes <= kMin) return kMin;
  if (nbytes > kMaxPooledBuffer) return nbytes;
  // A quarter of the power of two below nbytes is the step: 1024, 1280, 1536, 1792, 2048, ...
  const uint64_t step = std::bit_floor(nbytes - 1) / 4;
  return (nbytes + step - 1) / step * step;
}

ClMem BufferPool::take(uint64_t size) {
  std::lock_guard lock(mutex_);
  auto it = free_.find(size);
  if (it == free_.end() || it->second.empty()) return {};
  ClMem mem = std::move(it->second.back());
  it->second.pop_back();
  idle_bytes_ -= size;
  ++hits_;
  return mem;
}

void BufferPool::give(ClMem mem, uint64_t size) {
  if (size > kMaxPooledBuffer) return;  // released by ~ClMem
  std::lock_guard lock(mutex_);
  if (idle_bytes_ + size > capacity_) return;
  idle_bytes_ += size;
  free_[size].push_back(std::move(mem));
}

void BufferPool::drain() {
  std::lock_guard lock(mutex_);
  free_.clear();
  idle_bytes_ = 0;
}

uint64_t BufferPool::held() const {
  std::lock_guard lock(mutex_);
  return live_ + idle_bytes_;
}

uint64_t BufferPool::idle() const {
  std::lock_guard lock(mutex_);
  return idle_bytes_;
}

uint64_t BufferPool::hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

uint64_t BufferPool::misses() const {
  std::lock_guard lock(mutex_);
  return misses_;
}

void BufferPool::count_miss() {
  std::lock_guard lock(mutex_);
  ++misses_;
}

}  // namespace pagoda::xpu
