#include "backends/cpu/host_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "core/error.h"

namespace pagoda::cpu {

class PooledStorage final : public Storage {
 public:
  PooledStorage(std::shared_ptr<HostPool> pool, void* p, uint64_t nbytes, uint64_t mapped)
      : pool_(std::move(pool)), p_(p), nbytes_(nbytes), mapped_(mapped) {}
  ~PooledStorage() override { pool_->give_back(p_, mapped_); }
  PooledStorage(const PooledStorage&) = delete;
  PooledStorage& operator=(const PooledStorage&) = delete;
  void* data() override { return p_; }
  uint64_t nbytes() const override { return nbytes_; }
  Device device() const override { return cpu_device(); }
  StorageKind kind() const override { return StorageKind::kOwned; }
  bool writable() const override { return true; }

 private:
  std::shared_ptr<HostPool> pool_;
  void* p_;
  uint64_t nbytes_;
  uint64_t mapped_;
};

HostPool::HostPool(uint64_t idle_cap) : idle_cap_(idle_cap) {}

HostPool::~HostPool() {
  for (const Block& b : idle_)
    ::munmap(b.p, b.bytes);
}

bool HostPool::enabled() {
#if defined(__SANITIZE_ADDRESS__)
  return false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return false;
#endif
#endif
  const char* env = std::getenv("PAGODA_CPU_POOL");
  return env == nullptr || std::string(env) != "0";
}

uint64_t HostPool::size_class(uint64_t nbytes) {
  constexpr uint64_t kPage = 4096;
  uint64_t top = 1;
  while (top < nbytes && top < (uint64_t{1} << 62))
    top <<= 1;
  // Steps of a sixteenth of the power of two at or above the request: since the request is more
  // than half of that power, at most an eighth of the request goes unused.
  const uint64_t step = std::max<uint64_t>(kPage, top / 16);
  return (nbytes + step - 1) / step * step;
}

std::shared_ptr<Storage> HostPool::allocate(uint64_t nbytes) {
  const uint64_t bytes = size_class(nbytes);
  {
    std::lock_guard lock(mutex_);
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if (it->bytes == bytes) {
        void* p = it->p;
        idle_.erase(it);
        idle_bytes_ -= bytes;
        ++reused_;
        return std::make_shared<PooledStorage>(shared_from_this(), p, nbytes, bytes);
      }
    }
    ++mapped_;
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail(ErrorCode::kOutOfMemory, "cannot allocate {} bytes of host memory", nbytes);
  return std::make_shared<PooledStorage>(shared_from_this(), p, nbytes, bytes);
}

void HostPool::give_back(void* p, uint64_t bytes) {
  std::deque<Block> evicted;
  {
    std::lock_guard lock(mutex_);
    if (bytes > idle_cap_) {
      evicted.push_back({p, bytes});
    } else {
      idle_.push_back({p, bytes});
      idle_bytes_ += bytes;
      while (idle_bytes_ > idle_cap_) {
        evicted.push_back(idle_.front());
        idle_bytes_ -= idle_.front().bytes;
        idle_.pop_front();
      }
    }
  }
  for (const Block& b : evicted)
    ::munmap(b.p, b.bytes);
}

HostPool::Stats HostPool::stats() {
  std::lock_guard lock(mutex_);
  return Stats{idle_bytes_, idle_.size(), reused_, mapped_};
}

}  // namespace pagoda::cpu
