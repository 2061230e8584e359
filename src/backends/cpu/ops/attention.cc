// CPU attention over the paged KV cache, decode and prefill alike.
//
// Two passes over each query's context: first every score (the scratch holds a row of them per
// query, over the whole context), then their maximum, exponentials and sum, then the weighted sum
// of the values. Unlike a running (online) softmax this needs no rescaling of the partial output,
// and the inner loops (attention_avx2.h) run over many cache blocks at a time rather than one.
//
// The query heads of one position that share a kv head go through those loops together, so that
// each key and value vector is loaded once for all of them. Work is split over sequences (all
// heads, reading a block's kv heads side by side), or (sequence, kv head), or (sequence, head)
// when there are too few sequences for the threads, and for prefill over tiles of a sequence's
// positions. Decode and prefill run every query through the same arithmetic, whatever the split.
// Every index read from a tensor (lengths, offsets, block ids) is checked first, on the calling
// thread, so that a bad batch is an Error rather than a wild read.

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

// A prefill tile holds as many positions as make kQueryTile queries with the query heads of a kv
// head, which share each key and value tile while it is in L1; it goes through kChunkBytes of keys
// (or values) at a time, so that its next position finds them still in L2 however long the
// context.
constexpr int64_t kQueryTile = 16;
constexpr uint64_t kChunkBytes = 128 << 10;

struct CacheView {
  const uint8_t* keys;
  const uint8_t* values;
  DType dtype;
  uint64_t elem;
  int64_t num_blocks;
  int64_t kv_heads;
  int64_t block_size;
  int64_t head_size;

  // The keys or values (`base`) of the sequence with block table `table`, from kv head
  // `kv_head` on.
  [[nodiscard]] attn::Rows rows(const uint8_t* base, const int32_t* table, int64_t kv_head) const {
    const uint64_t tile = static_cast<uint64_t>(block_size * head_size) * elem;
    const attn::Elem e = dtype == DType::kF16    ? attn::Elem::kF16
                         : dtype == DType::kBF16 ? attn::Elem::kBF16
                                                 : attn::Elem::kF32;
    return {base + kv_head * tile, table, kv_heads * tile, tile, block_size, head_size, e};
  }
};

// Whether the AVX2 loops serve this cache: they need F16C for an f16 one.
bool fast_for(DType dtype) {
  static const bool fast = attn::available();
  static const bool fast_f16 = attn::available_f16();
  return dtype == DType::kF16 ? fast_f16 : fast;
}

// The portable versions of attn::scores, attn::softmax_numerators and attn::accumulate, for CPUs
// the AVX2 ones do not serve: a row at a time through vec::dot, std::exp and vec::axpy.
const float* row_of(const CacheView& cache, const attn::Rows& r, int64_t kv_head, int64_t j, float* buffer) {
  const uint8_t* row = r.base + static_cast<uint64_t>(r.table[j / r.block_size]) * r.block_stride +
                       kv_head * r.head_stride + static_cast<uint64_t>(j % r.block_size * r.head_size) * cache.elem;
  if (cache.dtype == DType::kF32) return reinterpret_cast<const float*>(row);
  dequantize_row(cache.dtype, row, buffer, r.head_size);
  return buffer;
}

void portable_scores(const CacheView& cache, const float* const* q, int64_t n, int64_t group, const attn::Rows& keys,
                     int64_t lo, int64_t hi, float scale, float* const* out, float* buffer) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = lo; j <= hi; ++j)
      out[i][j - lo] = scale * vec::dot(q[i], row_of(cache, keys, i / group, j, buffer), keys.head_size);
  }
}

float portable_softmax_numerators(float* p, int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j)
    max = std::max(max, p[j]);  // passes over NaNs, as the AVX2 version does
  if (max == -std::numeric_limits<float>::infinity()) return 0.0f;
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::exp(p[j] - max);
    sum += p[j];
  }
  return sum;
}

void portable_accumulate(const CacheView& cache, const float* const* p, int64_t n, int64_t group,
                         const attn::Rows& values, int64_t lo, int64_t hi, float* const* acc, float* buffer) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = lo; j <= hi; ++j)
      vec::axpy(p[i][j - lo], row_of(cache, values, i / group, j, buffer), acc[i], values.head_size);
  }
}

struct Scratch {
  std::vector<float> scores, sums, acc, row;
  std::vector<const float*> in;
  std::vector<float*> at;
};

// Attends `count` positions first_pos .. first_pos + count - 1 (each below the sequence's cached
// length) of `heads` query heads, `group` to a kv head from kv head `kv_head` on, to their causal
// (and windowed) keys. Position p's query of head g is at q + p * q_stride + g * head_stride, its
// output row at out + p * out_stride + g * head_stride; `slopes` (or null) holds the heads' ALiBi
// slopes. Each query's arithmetic is the same whatever the other queries of the call: grouping
// only lets them share the loaded keys and values (see attention_avx2.h), and cutting a query's
// keys into chunks changes nothing (scores are independent, the output sums go through memory
// exactly, and the softmax runs over the query's whole row from its first key).
void attend(const CacheView& cache, const int32_t* block_table, int64_t kv_head, const float* q, int64_t q_stride,
            float* out, int64_t out_stride, int64_t count, int64_t first_pos, int64_t heads, int64_t group,
            int64_t head_stride, const float* slopes, const AttentionParams& params, Scratch& s) {
  const int64_t hs = cache.head_size;
  const int64_t window = params.sliding_window;
  const auto lowest_key = [&](int64_t pos) { return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0; };
  const int64_t last_pos = first_pos + count - 1;
  const int64_t base = lowest_key(first_pos);  // the key in column 0 of the score rows
  const int64_t span = last_pos + 1 - base;
  const int64_t queries = count * heads;
  s.scores.resize(static_cast<size_t>(queries * span));
  s.sums.resize(static_cast<size_t>(queries));
  s.acc.assign(static_cast<size_t>(queries * hs), 0.0f);
  s.row.resize(static_cast<size_t>(hs));
  s.in.resize(static_cast<size_t>(heads));
  s.at.resize(static_cast<size_t>(heads));
  const attn::Rows keys = cache.rows(cache.keys, block_table, kv_head);
  const attn::Rows values = cache.rows(cache.values, block_table, kv_head);
  const bool fast = fast_for(cache.dtype);
  const auto score_row = [&](int64_t i) { return s.scores.data() + i * span; };
  // Chunks of keys: whole blocks, kChunkBytes of them for the call's kv heads.
  const int64_t bs = cache.block_size;
  const int64_t chunk =
      bs * std::max<int64_t>(
               1, static_cast<int64_t>(kChunkBytes / (static_cast<uint64_t>(heads / group * bs * hs) * cache.elem)));
  const auto chunk_end = [&](int64_t c0) { return std::min(last_pos, (c0 / chunk + 1) * chunk - 1); };
  // Calls run(p, lo, hi) for each position p and its causal keys lo..hi within each chunk, a chunk
  // at a time for all positions (passes 1 and 3).
  const auto each_run = [&](const auto& run) {
    for (int64_t c0 = base; c0 <= last_pos; c0 = chunk_end(c0) + 1) {
      const int64_t c1 = chunk_end(c0);
      for (int64_t p = 0; p < count; ++p) {
        const int64_t lo = std::max(lowest_key(first_pos + p), c0);
        const int64_t hi = std::min(first_pos + p, c1);
        if (lo <= hi) run(p, lo, hi);
      }
    }
  };

  // Pass 1: the scores.
  each_run([&](int64_t p, int64_t lo, int64_t hi) {
    for (int64_t g = 0; g < heads; ++g) {
      s.in[g] = q + p * q_stride + g * head_stride;
      s.at[g] = score_row(p * heads + g) + (lo - base);
    }
    if (fast) {
      attn::scores(s.in.data(), heads, group, keys, lo, hi, params.scale, s.at.data());
    } else {
      portable_scores(cache, s.in.data(), heads, group, keys, lo, hi, params.scale, s.at.data(), s.row.data());
    }
  });

  // Pass 2: soft-cap and ALiBi (rare), then the exponentials and their sum, per query.
  const float cap = params.logit_softcap;
  for (int64_t i = 0; i < queries; ++i) {
    const int64_t pos = first_pos + i / heads;
    const int64_t lo = lowest_key(pos);
    float* row = score_row(i) + (lo - base);
    if (cap > 0.0f || slopes != nullptr) {
      const float alibi_slope = slopes != nullptr ? slopes[i % heads] : 0.0f;
      for (int64_t j = lo; j <= pos; ++j) {
        float score = row[j - lo];
        if (cap > 0.0f) score = cap * std::tanh(score / cap);
        row[j - lo] = score + alibi_slope * static_cast<float>(j - pos);
      }
    }
    s.sums[static_cast<size_t>(i)] =
        fast ? attn::softmax_numerators(row, pos + 1 - lo) : portable_softmax_numerators(row, pos + 1 - lo);
  }

  // Pass 3: the weighted sums of the values.
  each_run([&](int64_t p, int64_t lo, int64_t hi) {
    for (int64_t g = 0; g < heads; ++g) {
      s.in[g] = score_row(p * heads + g) + (lo - base);
      s.at[g] = s.acc.data() + (p * heads + g) * hs;
    }
    if (fast) {
      attn::accumulate(s.in.data(), heads, group, values, lo, hi, s.at.data());
    } else {
      portable_accumulate(cache, s.in.data(), heads, group, values, lo, hi, s.at.data(), s.row.data());
    }
  });

  // A query with no weight at all (every score -inf) gets zeros, whatever its sums made of the
  // scores left in its row.
  for (int64_t i = 0; i < queries; ++i) {
    const float total = s.sums[static_cast<size_t>(i)];
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    const float* acc = s.acc.data() + i * hs;
    float* o = out + (i / heads) * out_stride + (i % heads) * head_stride;
    for (int64_t d = 0; d < hs; ++d)
      o[d] = total == 0.0f ? 0.0f : acc[d] * inv;
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

// How many query heads (from a multiple of that on) one task takes, when there are `units` sets of
// positions (sequences, or tiles of a prompt's positions) to share out. All of them when that
// leaves several tasks per thread: the task then reads its keys and values block by block, all kv
// heads together, a stretch of memory long enough for the hardware prefetcher. Else the query
// heads of a kv head together (reading each key and value once for all of them), or one head per
// task. Whatever the split, each query gets the same bits (see attend), so it may depend on the
// batch.
int64_t heads_per_task(int64_t units, int64_t num_heads, int64_t num_kv_heads, int64_t threads) {
  if (units >= 4 * threads) return num_heads;
  return units * num_kv_heads >= threads ? num_heads / num_kv_heads : 1;
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
  const int64_t heads = heads_per_task(num_seqs, num_heads, num_kv_heads, pool_.num_threads());
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
      attend(cache, tables + s * max_blocks, h / group, pq + row, hs, po + row, hs, 1, lens[s] - 1, heads,
             std::min(heads, group), hs, slopes != nullptr ? slopes + h : nullptr, params, scratch);
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
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t qlen = static_cast<int64_t>(cu[s + 1]) - cu[s];
    if (qlen < 0 || qlen > max_query_len || qlen > lens[s]) {
      fail(ErrorCode::kInvalidArgument,
           "prefill_attention: sequence {} has {} new tokens (cu_query_lens {} to {}), expected 0 to "
           "min(max_query_len {}, seq_lens {})",
           s, qlen, cu[s], cu[s + 1], max_query_len, lens[s]);
    }
    check_blocks("prefill_attention", block_tables, s, lens[s], cache);
  }
  // Tiles of positions: (sequence, first new token, count), as many as make kQueryTile queries
  // with the query heads of a kv head.
  struct Tile {
    int64_t seq, first, count;
  };
  std::vector<Tile> tiles;
  const int64_t positions = std::max<int64_t>(1, kQueryTile / group);
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t qlen = static_cast<int64_t>(cu[s + 1]) - cu[s];
    for (int64_t first = 0; first < qlen; first += positions)
      tiles.push_back({s, first, std::min(positions, qlen - first)});
  }
  const auto num_tiles = static_cast<int64_t>(tiles.size());
  const int64_t heads = heads_per_task(num_tiles, num_heads, num_kv_heads, pool_.num_threads());
  const float* slopes = params.alibi_slopes != nullptr ? params.alibi_slopes->data<float>() : nullptr;
  const float* pq = query.data<float>();
  float* po = out.data<float>();
  const int32_t* tables = block_tables.data<int32_t>();
  const int64_t max_blocks = block_tables.dim(1);
  const int64_t row_stride = num_heads * hs;
  const int64_t units = num_heads / heads;
  pool_.parallel_for(num_tiles * units, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch;
    for (int64_t task = begin; task < end; ++task) {
      const Tile& tile = tiles[static_cast<size_t>(task / units)];
      const int64_t h = (task % units) * heads;  // the first query head of the task
      const int64_t qlen = static_cast<int64_t>(cu[tile.seq + 1]) - cu[tile.seq];
      const int64_t token = cu[tile.seq] + tile.first;
      const int64_t first_pos = lens[tile.seq] - qlen + tile.first;
      const int64_t offset = token * row_stride + h * hs;
      attend(cache, tables + tile.seq * max_blocks, h / group, pq + offset, row_stride, po + offset, row_stride,
             tile.count, first_pos, heads, std::min(heads, group), hs, slopes != nullptr ? slopes + h : nullptr, params,
             scratch);
    }
  });
}

}  // namespace pagoda::cpu
