#pragma once

// AVX2 inner loops of the CPU attention (attention.cc): the scores of a few queries against a run
// of keys, their exponentials, and the weighted sum of the values. They walk the paged cache
// themselves, so that a query's whole context is a handful of calls rather than several per cache
// block.
//
// The queries of one call are query heads of one position: those that share a kv head share each
// key or value vector loaded into a register. Every query still goes through the same
// instructions whatever the other queries of the call, their number or its place among them, and
// however its key range is cut into calls, so its result depends only on its own query and keys
// (decode and prefill, heads grouped or not, give the same bits).

#include <cstdint>

namespace pagoda::cpu::attn {

// Whether the functions below may be called (AVX2 and FMA on this CPU).
[[nodiscard]] bool available();
// Whether they may be called on an f16 cache too (F16C as well).
[[nodiscard]] bool available_f16();

enum class Elem : uint8_t { kF32, kF16, kBF16 };

// The keys (or the values) of consecutive kv heads of one sequence in the paged cache: row j of
// kv head k is row j % block_size of the tile at
// base + table[j / block_size] * block_stride + k * head_stride bytes, head_size elements of type
// `elem`. f16 and bf16 rows are converted in registers, exactly.
struct Rows {
  const uint8_t* base;
  const int32_t* table;
  uint64_t block_stride;
  uint64_t head_stride;
  int64_t block_size;
  int64_t head_size;
  Elem elem;
};

// In scores and accumulate, query i < n reads kv head i / group, and the blocks are walked in
// order, each block's kv heads together: their tiles lie side by side in the cache, so the reads
// go through memory in long runs.

// out[i][j - lo] = scale * dot(q[i], row j) for i < n and lo <= j <= hi.
void scores(const float* const* q, int64_t n, int64_t group, const Rows& keys, int64_t lo, int64_t hi, float scale,
            float* const* out);

// p[j] = exp(p[j] - m) for j < n, m the largest p[j] (NaNs ignored); returns the sum of the
// p[j], or 0 with p left as it was when m is -inf (every score -inf, or n = 0). The exponentials
// and the sum go eight at a time from p[0], so the bits depend on where p starts.
float softmax_numerators(float* p, int64_t n);

// acc[i][d] += p[i][j - lo] * row j [d] for i < n, d < head_size, and j from lo to hi in order.
void accumulate(const float* const* p, int64_t n, int64_t group, const Rows& values, int64_t lo, int64_t hi,
                float* const* acc);

}  // namespace pagoda::cpu::attn
