#pragma once

// Repacked copies of weights for the reduced-precision kernels: GGUF block types for the
// integer-dot kernels (qdot.h, pack_rows8), bf16 for the bf16 kernels where the CPU has them
// (bf16dot.h, pack_rows16). Made the first time a weight is multiplied and kept while its storage
// lives.
//
// Only weights in a file mapping are repacked: once the copy exists, the mapped pages are
// released (they come back from the file if anything else reads them), so the copy replaces the
// original in memory instead of doubling it. PAGODA_CPU_REPACK=0 turns repacking off.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "core/tensor.h"

namespace pagoda::cpu {

class PackedWeights {
 public:
  // The repacked rows of `weight` (n rows of k elements, contiguous), or nullptr when it does not
  // qualify (type, storage, layout) or repacking is off. Thread-safe.
  [[nodiscard]] const uint8_t* get(const Tensor& weight, int64_t n, int64_t k);

  // Copies alive now, after dropping those whose weight is gone (for tests).
  [[nodiscard]] size_t size();

 private:
  struct Entry {
    std::weak_ptr<Storage> storage;   // the original's; expired once its model is gone
    std::shared_ptr<uint8_t> packed;  // its own anonymous mapping, not the heap (see get)
  };
  void drop_expired();  // the copies of weights whose model is gone; under mutex_
  std::mutex mutex_;
  std::map<std::pair<const Storage*, uint64_t>, Entry> entries_;  // by storage and byte offset
};

// Whether PAGODA_CPU_REPACK allows repacking (anything but "0").
[[nodiscard]] bool repacking_enabled();

}  // namespace pagoda::cpu
