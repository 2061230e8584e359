#include "backends/cpu/quant/packed_weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "backends/cpu/quant/bf16dot.h"
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
  // bf16 weights are repacked for the bf16 kernels, where the CPU has them (bf16dot.h)
  const bool bf16 = t == DType::kBF16 && bf16dot::available();
  const bool blocks_fit = qdot::packs(t) && k % qdot::kBlock == 0;
  if ((!bf16 && !blocks_fit) || n <= 0 || k <= 0 || weight.storage_kind() != StorageKind::kMapped ||
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
  drop_expired();
  const uint64_t row_bytes = *dtype_row_bytes(t, k);
  const auto* src = static_cast<const uint8_t*>(weight.raw_data());
  // Packed a slice of rows at a time, each slice's mapped pages released once it is copied, so
  // that the original and the copy are never both resident in full (the peak of a run would
  // otherwise grow by the largest weight, e.g. a tied embedding).
  const int64_t group_rows = bf16 ? bf16dot::kGroupRows : 8;
  const uint64_t group_bytes = bf16 ? bf16dot::packed_group_bytes(k) : qdot::packed_group_bytes(t, k / qdot::kBlock);
  auto packed = map_anonymous(static_cast<uint64_t>((n + group_rows - 1) / group_rows) * group_bytes);
  const int64_t slice = std::max<int64_t>(1, static_cast<int64_t>((4u << 20) / (row_bytes * group_rows))) * group_rows;
  for (int64_t r0 = 0; r0 < n; r0 += slice) {
    const int64_t rows = std::min(slice, n - r0);
    const uint8_t* from = src + static_cast<uint64_t>(r0) * row_bytes;
    uint8_t* to = packed.get() + static_cast<uint64_t>(r0 / group_rows) * group_bytes;
    if (bf16) {
      bf16dot::pack_rows16(from, row_bytes, rows, k, to);
    } else {
      qdot::pack_rows8(t, from, row_bytes, rows, k / qdot::kBlock, to);
    }
    release_mapped(from, row_bytes * static_cast<uint64_t>(rows));
  }
  release_mapped(src, row_bytes * static_cast<uint64_t>(n));  // the pages the slices shared
  const uint8_t* data = packed.get();
  entries_[key] = Entry{storage, std::move(packed)};
  return data;
}

void PackedWeights::drop_expired() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->second.storage.expired() ? entries_.erase(it) : std::next(it);
  }
}

size_t PackedWeights::size() {
  std::lock_guard lock(mutex_);
  drop_expired();
  return entries_.size();
}

}  // namespace pagoda::cpu
