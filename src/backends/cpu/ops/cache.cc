// CPU paged KV cache writes and block copies (layout: docs/design/kv-cache.md).

#include <cstring>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/quant/dequantize.h"
#include "core/error.h"

namespace pagoda::cpu {

namespace {

// Writes n floats to `dst` in the cache dtype.
void store(DType dtype, const float* src, void* dst, int64_t n) {
  switch (dtype) {
    case DType::kF16: quantize_row_f16(src, dst, n); break;
    case DType::kBF16: quantize_row_bf16(src, dst, n); break;
    default: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); break;
  }
}

// Checks each (src, dst) pair of block_mapping (pairs, 2) i64 against `src_blocks` and
// `dst_blocks`.
void check_mapping(const char* op, const Tensor& block_mapping, int64_t src_blocks, int64_t dst_blocks) {
  const int64_t* m = block_mapping.data<int64_t>();
  for (int64_t p = 0; p < block_mapping.dim(0); ++p) {
    if (m[2 * p] < 0 || m[2 * p] >= src_blocks || m[2 * p + 1] < 0 || m[2 * p + 1] >= dst_blocks) {
      fail(ErrorCode::kInvalidArgument, "{}: block_mapping[{}] = ({}, {}) is outside the caches' {} blocks", op, p,
           m[2 * p], m[2 * p + 1], src_blocks);
    }
  }
}

}  // namespace

void CpuOps::reshape_and_cache(const Tensor& key, const Tensor& value, Tensor& key_cache, Tensor& value_cache,
                               const Tensor& slot_mapping) {
  const int64_t tokens = key.dim(0);
  const int64_t num_blocks = key_cache.dim(0);
  const int64_t kv_heads = key_cache.dim(1);
  const int64_t block_size = key_cache.dim(2);
  const int64_t head_size = key_cache.dim(3);
  const int64_t* slots = slot_mapping.data<int64_t>();
  const int64_t num_slots = num_blocks * block_size;
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] >= num_slots) {
      fail(ErrorCode::kInvalidArgument, "reshape_and_cache: slot_mapping[{}] = {} is past the cache's {} slots", t,
           slots[t], num_slots);
    }
  }
  const DType dtype = key_cache.dtype();
  const uint64_t elem = static_cast<uint64_t>(dtype_block_bytes(dtype));
  auto* kc = static_cast<uint8_t*>(key_cache.raw_data());
  auto* vc = static_cast<uint8_t*>(value_cache.raw_data());
  const float* pk = key.data<float>();
  const float* pv = value.data<float>();
  // Serial: a memory copy, and two tokens given one slot then keep a defined (last-wins) order.
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    const int64_t block = slots[t] / block_size;
    const int64_t offset = slots[t] % block_size;
    for (int64_t h = 0; h < kv_heads; ++h) {
      const auto at = static_cast<uint64_t>(((block * kv_heads + h) * block_size + offset) * head_size) * elem;
      const int64_t src = (t * kv_heads + h) * head_size;
      store(dtype, pk + src, kc + at, head_size);
      store(dtype, pv + src, vc + at, head_size);
    }
  }
}

void CpuOps::copy_blocks(std::span<Tensor> key_caches, std::span<Tensor> value_caches, const Tensor& block_mapping) {
  if (key_caches.empty()) return;
  const int64_t num_blocks = key_caches[0].dim(0);
  check_mapping("copy_blocks", block_mapping, num_blocks, num_blocks);
  if (num_blocks == 0) return;  // then the mapping is empty too
  const int64_t* m = block_mapping.data<int64_t>();
  for (size_t layer = 0; layer < key_caches.size(); ++layer) {
    for (Tensor* cache : {&key_caches[layer], &value_caches[layer]}) {
      const uint64_t block_bytes = cache->nbytes() / static_cast<uint64_t>(num_blocks);
      auto* base = static_cast<uint8_t*>(cache->raw_data());
      for (int64_t p = 0; p < block_mapping.dim(0); ++p) {
        if (m[2 * p] == m[2 * p + 1]) continue;
        std::memcpy(base + static_cast<uint64_t>(m[2 * p + 1]) * block_bytes,
                    base + static_cast<uint64_t>(m[2 * p]) * block_bytes, block_bytes);
      }
    }
  }
}

void CpuOps::swap_blocks(const Tensor& src, Tensor& dst, const Tensor& block_mapping) {
  const int64_t num_blocks = src.dim(0);
  if (num_blocks == 0) {
    check_mapping("swap_blocks", block_mapping, 0, 0);
    return;
  }
  check_mapping("swap_blocks", block_mapping, num_blocks, num_blocks);
  const uint64_t block_bytes = src.nbytes() / static_cast<uint64_t>(num_blocks);
  const auto* from = static_cast<const uint8_t*>(src.raw_data());
  auto* to = static_cast<uint8_t*>(dst.raw_data());
  const int64_t* m = block_mapping.data<int64_t>();
  for (int64_t p = 0; p < block_mapping.dim(0); ++p) {
    std::memcpy(to + static_cast<uint64_t>(m[2 * p + 1]) * block_bytes,
                from + static_cast<uint64_t>(m[2 * p]) * block_bytes, block_bytes);
  }
}

}  // namespace pagoda::cpu
