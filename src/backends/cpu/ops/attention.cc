// CPU attention over the paged KV cache, decode and prefill alike.
//
// Flash-style: keys and values are read one cache block (a contiguous (block_size, head_size)
// tile of one kv head) at a time, and each query keeps a running maximum, a running sum of
// exponentials and an unnormalised output row, rescaled whenever the maximum grows (online
// softmax). Scores exist only for the block at hand, never for the whole context.
//
// Work is split over (sequence, query head) and, for prefill, over tiles of a sequence's
// queries. Every index read from a tensor (lengths, offsets, block ids) is checked first, on the
// calling thread, so that a bad batch is an Error rather than a wild read.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/ops/attention_avx2.h"
#include "backends/cpu/quant/dequantize.h"
#include "backends/cpu/vec.h"
#include "core/error.h"

namespace pagoda::cpu {

namespace {

constexpr int64_t kQueryTile = 16;  // prefill queries that share each loaded key/value tile

struct CacheView {
  const uint8_t* keys;
  const uint8_t* values;
  DType dtype;
  uint64_t elem;
  int64_t num_blocks;
  int64_t kv_heads;
  int64_t block_size;
  int64_t head_size;

  [[nodiscard]] uint64_t tile_offset(int64_t block, int64_t kv_head) const {
    return static_cast<uint64_t>((block * kv_heads + kv_head) * block_size * head_size) * elem;
  }
};

// The first `rows` rows of a tile as floats: in place for f32, else converted into `buffer`.
const float* load_tile(const CacheView& cache, const uint8_t* tile, int64_t rows, float* buffer) {
  if (cache.dtype == DType::kF32) return reinterpret_cast<const float*>(tile);
  dequantize_row(cache.dtype, tile, buffer, rows * cache.head_size);
  return buffer;
}

struct Scratch {
  std::vector<float> max, sum, acc, scores, keys, values;
  void reserve(int64_t queries, int64_t block_size, int64_t head_size) {
    max.resize(static_cast<size_t>(queries));
    sum.resize(static_cast<size_t>(queries));
    acc.resize(static_cast<size_t>(queries * head_size));
    scores.resize(static_cast<size_t>(block_size));
    keys.resize(static_cast<size_t>(block_size * head_size));
    values.resize(static_cast<size_t>(block_size * head_size));
  }
};

// Attends `count` positions first_pos .. first_pos + count - 1 (each below the sequence's cached
// length) of `heads` query heads that share kv head `kv_head`, to their causal (and windowed)
// keys. Position p's query of head g is at q + p * q_stride + g * head_stride, its output row at
// out + p * out_stride + g * head_stride; `slopes` (or null) holds the heads' ALiBi slopes. Each
// query's arithmetic is the same whatever the other queries of the call: grouping only lets them
// share the key and value tiles while those are in L1.
void attend(const CacheView& cache, const int32_t* block_table, int64_t kv_head, const float* q, int64_t q_stride,
            float* out, int64_t out_stride, int64_t count, int64_t first_pos, int64_t heads, int64_t head_stride,
            const float* slopes, const AttentionParams& params, Scratch& s) {
  const int64_t hs = cache.head_size;
  const int64_t bs = cache.block_size;
  const int64_t queries = count * heads;
  s.reserve(queries, bs, hs);
  std::fill_n(s.max.begin(), queries, -std::numeric_limits<float>::infinity());
  std::fill_n(s.sum.begin(), queries, 0.0f);
  std::fill_n(s.acc.begin(), queries * hs, 0.0f);
  const int64_t window = params.sliding_window;
  const auto lowest_key = [&](int64_t pos) { return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0; };
  const int64_t last_pos = first_pos + count - 1;
  const float cap = params.logit_softcap;
  static const bool fast = attn::available();  // AVX2 inner loops (attention_avx2.h)
  // f16 tiles are read in place by the AVX2 loops, converted in registers.
  static const bool fast_f16 = attn::available_f16();
  const bool direct = fast_f16 && cache.dtype == DType::kF16;
  for (int64_t b = lowest_key(first_pos) / bs; b <= last_pos / bs; ++b) {
    const int64_t start = b * bs;
    const int64_t rows = std::min(bs, last_pos + 1 - start);
    const int64_t block = block_table[b];
    const uint64_t at = cache.tile_offset(block, kv_head);
    const auto* keys16 = reinterpret_cast<const uint16_t*>(cache.keys + at);
    const auto* values16 = reinterpret_cast<const uint16_t*>(cache.values + at);
    const float* keys = direct ? nullptr : load_tile(cache, cache.keys + at, rows, s.keys.data());
    const float* values = direct ? nullptr : load_tile(cache, cache.values + at, rows, s.values.data());
    for (int64_t i = 0; i < queries; ++i) {
      const int64_t pos = first_pos + i / heads;
      const int64_t lo = std::max(lowest_key(pos), start);
      const int64_t hi = std::min(pos, start + rows - 1);
      if (lo > hi) continue;
      const float* qi = q + (i / heads) * q_stride + (i % heads) * head_stride;
      const float alibi_slope = slopes != nullptr ? slopes[i % heads] : 0.0f;
      float block_max = -std::numeric_limits<float>::infinity();
      if (direct) {
        attn::scores(qi, keys16 + (lo - start) * hs, hi - lo + 1, hs, params.scale, s.scores.data());
      } else if (fast) {
        attn::scores(qi, keys + (lo - start) * hs, hi - lo + 1, hs, params.scale, s.scores.data());
      }
      for (int64_t j = lo; j <= hi; ++j) {
        float score =
            fast ? s.scores[static_cast<size_t>(j - lo)] : params.scale * vec::dot(qi, keys + (j - start) * hs, hs);
        if (cap > 0.0f) score = cap * std::tanh(score / cap);
        score += alibi_slope * static_cast<float>(j - pos);
        s.scores[static_cast<size_t>(j - lo)] = score;
        block_max = std::max(block_max, score);
      }
      const float old_max = s.max[static_cast<size_t>(i)];
      const float new_max = std::max(old_max, block_max);
      if (new_max == -std::numeric_limits<float>::infinity()) continue;  // nothing but -inf so far
      float* acc = s.acc.data() + i * hs;
      if (new_max > old_max) {
        const float rescale = std::exp(old_max - new_max);  // 0 on the first block
        s.sum[static_cast<size_t>(i)] *= rescale;
        vec::scale(acc, rescale, hs);
        s.max[static_cast<size_t>(i)] = new_max;
      }
      if (fast) {
        s.sum[static_cast<size_t>(i)] += attn::exp_sum(s.scores.data(), hi - lo + 1, new_max);
        if (direct) {
          attn::accumulate(s.scores.data(), values16 + (lo - start) * hs, hi - lo + 1, hs, acc);
        } else {
          attn::accumulate(s.scores.data(), values + (lo - start) * hs, hi - lo + 1, hs, acc);
        }
        continue;
      }
      float sum = 0.0f;
      for (int64_t j = lo; j <= hi; ++j) {
        const float p = std::exp(s.scores[static_cast<size_t>(j - lo)] - new_max);
        sum += p;
        vec::axpy(p, values + (j - start) * hs, acc, hs);
      }
      s.sum[static_cast<size_t>(i)] += sum;
    }
  }
  for (int64_t i = 0; i < queries; ++i) {
    const float total = s.sum[static_cast<size_t>(i)];
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    const float* acc = s.acc.data() + i * hs;
    float* o = out + (i / heads) * out_stride + (i % heads) * head_stride;
    for (int64_t d = 0; d < hs; ++d)
      o[d] = acc[d] * inv;
  }
}

CacheView view_of(const Tensor& key_cache, const Tensor& value_cache) {
  return CacheView{static_cast<const uint8_t*>(key_cache.raw_data()),
                   static_cast<const uint8_t*>(value_cache.raw_data()),
                   key_cache.dtype(),
                   static_cast<uint64_t>(dtype_block_bytes(key_cache.dtype())),
                   key_cache.dim(0),
                   key_cache.dim(1),
                   key_cache.dim(2),
                   key_cache.dim(3)};
}

// Checks that sequence `s` of `seq_len` tokens fits its block table row and that the blocks it
// uses exist.
void check_blocks(const char* op, const Tensor& block_tables, int64_t s, int64_t seq_len, const CacheView& cache) {
  const int64_t max_blocks = block_tables.dim(1);
  if (seq_len < 0 || seq_len > max_blocks * cache.block_size) {
    fail(ErrorCode::kInvalidArgument, "{}: seq_lens[{}] = {} does not fit the {} blocks of {} tokens per sequence", op,
         s, seq_len, max_blocks, cache.block_size);
  }
  const int32_t* row = block_tables.data<int32_t>() + s * max_blocks;
  for (int64_t b = 0; b < (seq_len + cache.block_size - 1) / cache.block_size; ++b) {
    if (row[b] < 0 || row[b] >= cache.num_blocks) {
      fail(ErrorCode::kInvalidArgument, "{}: block_tables[{}][{}] = {} is outside the cache's {} blocks", op, s, b,
           row[b], cache.num_blocks);
    }
  }
}

}  // namespace

void CpuOps::paged_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                             int64_t num_kv_heads, const Tensor& block_tables, const Tensor& seq_lens,
                             int64_t block_size, int64_t max_seq_len, const AttentionParams& params) {
  (void)block_size;  // the cache's own dimension, equal by the front end's check
  const CacheView cache = view_of(key_cache, value_cache);
  const int64_t num_seqs = query.dim(0);
  const int64_t num_heads = query.dim(1);
  const int64_t hs = query.dim(2);
  const int64_t group = num_heads / num_kv_heads;
  const int32_t* lens = seq_lens.data<int32_t>();
  for (int64_t s = 0; s < num_seqs; ++s) {
    if (lens[s] > max_seq_len) {
      fail(ErrorCode::kInvalidArgument, "paged_attention: seq_lens[{}] = {} exceeds max_seq_len {}", s, lens[s],
           max_seq_len);
    }
    check_blocks("paged_attention", block_tables, s, lens[s], cache);
  }
  const float* slopes = params.alibi_slopes != nullptr ? params.alibi_slopes->data<float>() : nullptr;
  const float* pq = query.data<float>();
  float* po = out.data<float>();
  const int32_t* tables = block_tables.data<int32_t>();
  const int64_t max_blocks = block_tables.dim(1);
  // The query heads of a kv head go together (reading each key and value tile once for all of
  // them) when that still leaves a task per thread; otherwise one task per head. Either way each
  // query gets the same bits (see attend), so the choice may depend on the batch.
  const int64_t heads = group > 1 && num_seqs * num_kv_heads >= static_cast<int64_t>(pool_.num_threads()) ? group : 1;
  const int64_t units = num_heads / heads;
  pool_.parallel_for(num_seqs * units, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t s = task / units;
      const int64_t h = (task % units) * heads;  // the first query head of the task
      const int64_t row = (s * num_heads + h) * hs;
      if (lens[s] == 0) {
        std::fill_n(po + row, heads * hs, 0.0f);
        continue;
      }
      attend(cache, tables + s * max_blocks, h / group, pq + row, hs, po + row, hs, 1, lens[s] - 1, heads, hs,
             slopes != nullptr ? slopes + h : nullptr, params, scratch);
    }
  });
}

void CpuOps::prefill_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                               int64_t num_kv_heads, const Tensor& block_tables, const Tensor& cu_query_lens,
                               const Tensor& seq_lens, int64_t block_size, int64_t max_query_len,
                               const AttentionParams& params) {
  (void)block_size;
  const CacheView cache = view_of(key_cache, value_cache);
  const int64_t tokens = query.dim(0);
  const int64_t num_heads = query.dim(1);
  const int64_t hs = query.dim(2);
  const int64_t group = num_heads / num_kv_heads;
  const int64_t num_seqs = seq_lens.dim(0);
  const int32_t* lens = seq_lens.data<int32_t>();
  const int32_t* cu = cu_query_lens.data<int32_t>();
  if (cu[0] != 0 || cu[num_seqs] != tokens) {
    fail(ErrorCode::kInvalidArgument, "prefill_attention: cu_query_lens runs from {} to {}, expected 0 to {} tokens",
         cu[0], cu[num_seqs], tokens);
  }
  // Tiles of queries: (sequence, first query, count).
  struct Tile {
    int64_t seq, first, count;
  };
  std::vector<Tile> tiles;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t qlen = static_cast<int64_t>(cu[s + 1]) - cu[s];
    if (qlen < 0 || qlen > max_query_len || qlen > lens[s]) {
      fail(ErrorCode::kInvalidArgument,
           "prefill_attention: sequence {} has {} new tokens (cu_query_lens {} to {}), expected 0 to "
           "min(max_query_len {}, seq_lens {})",
           s, qlen, cu[s], cu[s + 1], max_query_len, lens[s]);
    }
    check_blocks("prefill_attention", block_tables, s, lens[s], cache);
    for (int64_t first = 0; first < qlen; first += kQueryTile)
      tiles.push_back({s, first, std::min(kQueryTile, qlen - first)});
  }
  const float* slopes = params.alibi_slopes != nullptr ? params.alibi_slopes->data<float>() : nullptr;
  const float* pq = query.data<float>();
  float* po = out.data<float>();
  const int32_t* tables = block_tables.data<int32_t>();
  const int64_t max_blocks = block_tables.dim(1);
  const int64_t row_stride = num_heads * hs;
  const auto num_tiles = static_cast<int64_t>(tiles.size());
  pool_.parallel_for(num_tiles * num_heads, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch;
    for (int64_t task = begin; task < end; ++task) {
      const Tile& tile = tiles[static_cast<size_t>(task / num_heads)];
      const int64_t h = task % num_heads;
      const int64_t qlen = static_cast<int64_t>(cu[tile.seq + 1]) - cu[tile.seq];
      const int64_t token = cu[tile.seq] + tile.first;
      const int64_t first_pos = lens[tile.seq] - qlen + tile.first;
      const int64_t offset = token * row_stride + h * hs;
      attend(cache, tables + tile.seq * max_blocks, h / group, pq + offset, row_stride, po + offset, row_stride,
             tile.count, first_pos, 1, hs, slopes != nullptr ? slopes + h : nullptr, params, scratch);
    }
  });
}

}  // namespace pagoda::cpu
