#include "backends/cpu/quant/packed_weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "backends/cpu/quant/qdot.h"
#include "core/error.h"

namespace pagoda::cpu {

namespace {

// Drops the resident pages wholly inside [p, p + bytes) of a read-only file mapping; a later read
// faults them back in from the file.
void release_mapped(const uint8_t* p, uint64_t bytes) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(p) + bytes) / page * page;
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Long-lived copies get their own mapping: from the heap, they would sit between the activation
// buffers of the step that made them and keep the freed space around them from being reused.
std::shared_ptr<uint8_t> map_anonymous(uint64_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail(ErrorCode::kOutOfMemory, "cannot allocate {} bytes for a repacked weight", bytes);
  return {static_cast<uint8_t*>(p), [bytes](uint8_t* q) { ::munmap(q, bytes); }};
}

}  // namespace

bool repacking_enabled() {
  static const bool enabled = [] {  // read once: get() runs for every matmul
    const char* env = std::getenv("PAGODA_CPU_REPACK");
    return env == nullptr || std::string(env) != "0";
  }();
  return enabled;
}

const uint8_t* PackedWeights::get(const Tensor& weight, int64_t n, int64_t k) {
  const DType t = weight.dtype();
  if (!qdot::packs(t) || n <= 0 || k <= 0 || k % qdot::kBlock != 0 || weight.storage_kind() != StorageKind::kMapped ||
      !weight.is_contiguous() || !repacking_enabled()) {
    return nullptr;
  }
  const std::shared_ptr<Storage>& storage = weight.storage();
  const auto key = std::make_pair(static_cast<const Storage*>(storage.get()), weight.byte_offset());
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    if (it->second.storage.lock() == storage) return it->second.packed.get();
    entries_.erase(it);  // another storage now lives at that address
  }
  // Copies of weights whose model is gone.
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->second.storage.expired() ? entries_.erase(it) : std::next(it);
  }
  const int64_t blocks = k / qdot::kBlock;
  const uint64_t row_bytes = *dtype_row_bytes(t, k);
  auto packed = map_anonymous(static_cast<uint64_t>((n + 7) / 8) * qdot::packed_group_bytes(t, blocks));
  const auto* src = static_cast<const uint8_t*>(weight.raw_data());
  qdot::pack_rows8(t, src, row_bytes, n, blocks, packed.get());
  release_mapped(src, row_bytes * static_cast<uint64_t>(n));
  const uint8_t* data = packed.get();
  entries_[key] = Entry{storage, std::move(packed)};
  return data;
}

size_t PackedWeights::size() {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace pagoda::cpu
