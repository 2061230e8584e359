#pragma once

#include <span>

#include "backend/backend_ops.h"

namespace pagoda::ops {

// The paged KV cache (docs/design/kv-cache.md): per layer, key_cache and value_cache each
// (num_blocks, num_kv_heads, block_size, head_size) in f32, f16 or bf16.

// Writes key and value (tokens, num_kv_heads, head_size) f32 into slot_mapping (tokens) i64
// slots (block * block_size + offset); a negative slot skips its token. A slot past the cache is
// an error.
void reshape_and_cache(const Tensor& key, const Tensor& value, Tensor& key_cache, Tensor& value_cache,
                       const Tensor& slot_mapping);

// For each row (src, dst) of block_mapping (pairs, 2) i64, copies block src over block dst in
// every layer (copy-on-write). key_caches[i] and value_caches[i] are layer i's; all layers have
// the same number of blocks. block_mapping lives on the caches' device.
void copy_blocks(std::span<Tensor> key_caches, std::span<Tensor> value_caches, const Tensor& block_mapping);

// For each row (src block, dst block) of block_mapping (pairs, 2) i64, copies a block of `src`
// to `dst`: two caches of one shape and dtype, on the same device or one on a device and the
// other on the host (swapping out and in). block_mapping is on the host, as in vLLM, because it
// is read to drive the copies.
void swap_blocks(const Tensor& src, Tensor& dst, const Tensor& block_mapping);

}  // namespace pagoda::ops
