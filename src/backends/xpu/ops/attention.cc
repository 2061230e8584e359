// xpu paged KV cache ops and attention (layout: docs/design/kv-cache.md).

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "backends/xpu/ops/launch.h"
#include "backends/xpu/xpu_backend.h"

namespace pagoda::xpu {

namespace {

constexpr int64_t kMaxHead = 256;        // MAX_HEAD in kernels/attention.cl
constexpr int64_t kPartitionSize = 256;  // keys per split-K partition of decode attention
constexpr size_t kAttentionLws = 64;     // ATT_LWS

void check_mapping(const char* op, const std::vector<int64_t>& m, int64_t src_blocks, int64_t dst_blocks) {
  for (size_t p = 0; p < m.size() / 2; ++p) {
    if (m[2 * p] < 0 || m[2 * p] >= src_blocks || m[2 * p + 1] < 0 || m[2 * p + 1] >= dst_blocks) {
      fail(ErrorCode::kInvalidArgument, "{}: block_mapping[{}] = ({}, {}) is outside the caches' {} blocks", op, p,
           m[2 * p], m[2 * p + 1], src_blocks);
    }
  }
}

void check_blocks(const char* op, const std::vector<int32_t>& tables, int64_t max_blocks, int64_t s, int64_t seq_len,
                  int64_t block_size, int64_t num_blocks) {
  if (seq_len < 0 || seq_len > max_blocks * block_size) {
    fail(ErrorCode::kInvalidArgument, "{}: seq_lens[{}] = {} does not fit the {} blocks of {} tokens per sequence", op,
         s, seq_len, max_blocks, block_size);
  }
  for (int64_t b = 0; b < (seq_len + block_size - 1) / block_size; ++b) {
    const int32_t block = tables[static_cast<size_t>(s * max_blocks + b)];
    if (block < 0 || block >= num_blocks) {
      fail(ErrorCode::kInvalidArgument, "{}: block_tables[{}][{}] = {} is outside the cache's {} blocks", op, s, b,
           block, num_blocks);
    }
  }
}

void check_head_size(const char* op, int64_t head_size) {
  if (head_size > kMaxHead) {
    fail(ErrorCode::kUnsupported, "{}: the xpu backend handles head sizes up to {}, got {}", op, kMaxHead, head_size);
  }
}

}  // namespace

void XpuOps::reshape_and_cache(const Tensor& key, const Tensor& value, Tensor& key_cache, Tensor& value_cache,
                               const Tensor& slot_mapping) {
  const int64_t tokens = key.dim(0);
  const int64_t num_blocks = key_cache.dim(0);
  const int64_t kv_heads = key_cache.dim(1);
  const int64_t block_size = key_cache.dim(2);
  const int64_t head_size = key_cache.dim(3);
  const int64_t num_slots = num_blocks * block_size;
  const std::vector<int64_t> slots = read_back<int64_t>(rt_, slot_mapping);
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] >= num_slots) {
      fail(ErrorCode::kInvalidArgument, "reshape_and_cache: slot_mapping[{}] = {} is past the cache's {} slots", t,
           slots[t], num_slots);
    }
  }
  // Tokens run in parallel, so two tokens given one slot would race. The host's rule is that the
  // last one wins: earlier claimants of a slot are turned into padding (rare; only then is a
  // corrected mapping uploaded).
  std::unordered_map<int64_t, int64_t> last;
  std::vector<int64_t> winners;
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    auto [it, fresh] = last.try_emplace(slots[t], t);
    if (!fresh) {
      if (winners.empty()) winners = slots;
      winners[static_cast<size_t>(it->second)] = -1;
      it->second = t;
    }
  }
  const Tensor deduplicated = winners.empty() ? Tensor() : upload_vector(rt_, winners, DType::kI64);
  Launch(rt_, "reshape_and_cache")
      .tensor(key)
      .tensor(value)
      .tensor(key_cache)
      .tensor(value_cache)
      .tensor(winners.empty() ? slot_mapping : deduplicated)
      .i32(cache_code(key_cache.dtype()))
      .i32(kv_heads)
      .i32(block_size)
      .i32(head_size)
      .i64(num_slots)
      .run({static_cast<size_t>(kv_heads * head_size), static_cast<size_t>(tokens), 1}, {0, 0, 0}, 2);
}

void XpuOps::copy_blocks(std::span<Tensor> key_caches, std::span<Tensor> value_caches, const Tensor& block_mapping) {
  if (key_caches.empty()) return;
  const int64_t num_blocks = key_caches[0].dim(0);
  const std::vector<int64_t> m = read_back<int64_t>(rt_, block_mapping);
  check_mapping("copy_blocks", m, num_blocks, num_blocks);
  if (num_blocks == 0) return;
  // In queue order, pair after pair, so a block read by a later pair is read before or after an
  // earlier pair overwrites it exactly as on the host.
  for (size_t layer = 0; layer < key_caches.size(); ++layer) {
    for (Tensor* cache : {&key_caches[layer], &value_caches[layer]}) {
      const uint64_t block_bytes = cache->nbytes() / static_cast<uint64_t>(num_blocks);
      for (size_t p = 0; p < m.size() / 2; ++p) {
        if (m[2 * p] == m[2 * p + 1] || block_bytes == 0) continue;
        check_cl(clEnqueueCopyBuffer(rt_.queue(), mem_of(*cache), mem_of(*cache),
                                     cache->byte_offset() + static_cast<uint64_t>(m[2 * p]) * block_bytes,
                                     cache->byte_offset() + static_cast<uint64_t>(m[2 * p + 1]) * block_bytes,
                                     block_bytes, 0, nullptr, nullptr),
                 "clEnqueueCopyBuffer");
      }
    }
  }
}

void XpuOps::swap_blocks(const Tensor& src, Tensor& dst, const Tensor& block_mapping) {
  const int64_t num_blocks = src.dim(0);
  const int64_t* m = block_mapping.data<int64_t>();  // a host tensor (the front end checked)
  const std::vector<int64_t> mapping(m, m + block_mapping.numel());
  check_mapping("swap_blocks", mapping, num_blocks, num_blocks);
  if (num_blocks == 0) return;
  const uint64_t block_bytes = src.nbytes() / static_cast<uint64_t>(num_blocks);
  if (block_bytes == 0) return;
  const bool src_host = src.device().kind == DeviceKind::kCpu;
  const bool dst_host = dst.device().kind == DeviceKind::kCpu;
  if (!dst_host) rt_.invalidate_host_copies();
  for (size_t p = 0; p < mapping.size() / 2; ++p) {
    const uint64_t from = static_cast<uint64_t>(mapping[2 * p]) * block_bytes;
    const uint64_t to = static_cast<uint64_t>(mapping[2 * p + 1]) * block_bytes;
    if (src_host) {  // swap in, blocking: the host side may go away afterwards
      check_cl(clEnqueueWriteBuffer(rt_.queue(), mem_of(dst), CL_TRUE, dst.byte_offset() + to, block_bytes,
                                    static_cast<const uint8_t*>(src.raw_data()) + from, 0, nullptr, nullptr),
               "clEnqueueWriteBuffer");
    } else if (dst_host) {  // swap out
      check_cl(clEnqueueReadBuffer(rt_.queue(), mem_of(src), CL_TRUE, src.byte_offset() + from, block_bytes,
                                   static_cast<uint8_t*>(dst.raw_data()) + to, 0, nullptr, nullptr),
               "clEnqueueReadBuffer");
    } else {
      check_cl(clEnqueueCopyBuffer(rt_.queue(), mem_of(src), mem_of(dst), src.byte_offset() + from,
                                   dst.byte_offset() + to, block_bytes, 0, nullptr, nullptr),
               "clEnqueueCopyBuffer");
    }
  }
}

namespace {

struct AttentionCall {
  Tensor* out;
  const Tensor* query;
  const Tensor* key_cache;
  const Tensor* value_cache;
  const Tensor* block_tables;
  const Tensor* seq_lens;
  const Tensor* cu_query_lens;  // null for decode
  int64_t tokens, num_seqs, num_heads, kv_heads, head_size, block_size, partitions;
};

void launch_attention(XpuRuntime& rt, const AttentionCall& c, const AttentionParams& p) {
  if (c.tokens == 0 || c.num_heads == 0) return;
  const int64_t parts = c.partitions;
  Tensor part_ml, part_acc;
  if (parts > 1) {
    part_ml = scratch(rt, Shape{c.tokens * c.num_heads * parts * 2}, DType::kF32);
    part_acc = scratch(rt, Shape{c.tokens * c.num_heads * parts * c.head_size}, DType::kF32);
  }
  const Tensor& stand_in = *c.query;
  Launch launch(rt, "attention");
  launch.tensor(*c.out)
      .tensor(*c.query)
      .tensor(*c.key_cache)
      .tensor(*c.value_cache)
      .i32(cache_code(c.key_cache->dtype()))
      .tensor(*c.block_tables)
      .i32(c.block_tables->dim(1))
      .tensor(*c.seq_lens)
      .tensor_or(c.cu_query_lens, stand_in)
      .i32(c.cu_query_lens != nullptr ? 1 : 0)
      .i32(c.num_seqs)
      .i32(c.num_heads)
      .i32(c.kv_heads)
      .i32(c.head_size)
      .i32(c.block_size)
      .i32(c.key_cache->dim(0))
      .f32(p.scale)
      .i32(p.sliding_window)
      .f32(p.logit_softcap)
      .tensor_or(p.alibi_slopes, stand_in)
      .i32(p.alibi_slopes != nullptr ? 1 : 0)
      .i32(parts > 1 ? kPartitionSize : (int64_t{1} << 30))
      .mem(parts > 1 ? mem_of(part_ml) : mem_of(stand_in))
      .mem(parts > 1 ? mem_of(part_acc) : mem_of(stand_in));
  launch.run(
      {static_cast<size_t>(c.num_heads) * kAttentionLws, static_cast<size_t>(c.tokens), static_cast<size_t>(parts)},
      {kAttentionLws, 1, 1});
  if (parts > 1) {
    Launch(rt, "attention_combine")
        .tensor(*c.out)
        .mem(mem_of(part_ml))
        .mem(mem_of(part_acc))
        .i32(c.num_heads)
        .i32(c.head_size)
        .i32(parts)
        .run({static_cast<size_t>(c.head_size), static_cast<size_t>(c.num_heads), static_cast<size_t>(c.tokens)});
  }
}

}  // namespace

void XpuOps::paged_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                             int64_t num_kv_heads, const Tensor& block_tables, const Tensor& seq_lens,
                             int64_t block_size, int64_t max_seq_len, const AttentionParams& params) {
  const int64_t num_seqs = query.dim(0);
  check_head_size("paged_attention", query.dim(2));
  const std::vector<int32_t> lens = read_back<int32_t>(rt_, seq_lens);
  const std::vector<int32_t> tables = read_back<int32_t>(rt_, block_tables);
  int64_t longest = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    if (lens[s] > max_seq_len) {
      fail(ErrorCode::kInvalidArgument, "paged_attention: seq_lens[{}] = {} exceeds max_seq_len {}", s, lens[s],
           max_seq_len);
    }
    check_blocks("paged_attention", tables, block_tables.dim(1), s, lens[s], key_cache.dim(2), key_cache.dim(0));
    longest = std::max<int64_t>(longest, lens[s]);
  }
  // Split-K (v2) once a context spans several partitions: more work-items share a long context.
  const int64_t partitions = std::max<int64_t>(1, (longest + kPartitionSize - 1) / kPartitionSize);
  launch_attention(rt_,
                   {&out, &query, &key_cache, &value_cache, &block_tables, &seq_lens, nullptr, num_seqs, num_seqs,
                    query.dim(1), num_kv_heads, query.dim(2), block_size, partitions},
                   params);
}

void XpuOps::prefill_attention(Tensor& out, const Tensor& query, const Tensor& key_cache, const Tensor& value_cache,
                               int64_t num_kv_heads, const Tensor& block_tables, const Tensor& cu_query_lens,
                               const Tensor& seq_lens, int64_t block_size, int64_t max_query_len,
                               const AttentionParams& params) {
  const int64_t tokens = query.dim(0);
  const int64_t num_seqs = seq_lens.dim(0);
  check_head_size("prefill_attention", query.dim(2));
  const std::vector<int32_t> lens = read_back<int32_t>(rt_, seq_lens);
  const std::vector<int32_t> cu = read_back<int32_t>(rt_, cu_query_lens);
  const std::vector<int32_t> tables = read_back<int32_t>(rt_, block_tables);
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
    check_blocks("prefill_attention", tables, block_tables.dim(1), s, lens[s], key_cache.dim(2), key_cache.dim(0));
  }
  launch_attention(rt_,
                   {&out, &query, &key_cache, &value_cache, &block_tables, &seq_lens, &cu_query_lens, tokens, num_seqs,
                    query.dim(1), num_kv_heads, query.dim(2), block_size, 1},
                   params);
}

}  // namespace pagoda::xpu
