// Tests of the paged KV cache ops and of attention over it, on every compiled backend, against
// references written here: the cache layout written out by hand (docs/design/kv-cache.md), and
// attention from the full score matrix in double precision.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "ops/ops.h"
#include "ops_test_util.h"

namespace pagoda::test {
namespace {

class AttentionTest : public DeviceOpTest {};

std::vector<uint8_t> download_bytes(const Tensor& t) {
  Tensor h = to_host(t);
  const auto* p = static_cast<const uint8_t*>(h.raw_data());
  return {p, p + h.nbytes()};
}

// Byte offset of (block, head, slot) in a cache tensor: the layout, written out.
uint64_t cache_offset(const Tensor& cache, int64_t block, int64_t head, int64_t slot) {
  const int64_t kv_heads = cache.dim(1), block_size = cache.dim(2), head_size = cache.dim(3);
  return static_cast<uint64_t>(((block * kv_heads + head) * block_size + slot) * head_size *
                               dtype_block_bytes(cache.dtype()));
}

Tensor random_cache(std::mt19937& rng, const Shape& shape, DType dtype, float lo = -1.0f, float hi = 1.0f) {
  Tensor cache = Tensor::empty(shape, dtype);
  const auto v = random_floats(rng, static_cast<size_t>(shape.numel()), lo, hi);
  store_as(dtype, v.data(), cache.raw_data(), shape.numel());
  return cache;
}

// ---------------------------------------------------------------------------------------------
// reshape_and_cache, copy_blocks, swap_blocks

TEST_P(AttentionTest, ReshapeAndCache) {
  std::mt19937 rng(21);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t block_size : {8, 16, 32}) {
      const int64_t num_blocks = 7, kv_heads = 3, head_size = 80, tokens = 29;
      const Shape shape{num_blocks, kv_heads, block_size, head_size};
      const Tensor key_cache = random_cache(rng, shape, dtype);
      const Tensor value_cache = random_cache(rng, shape, dtype);
      std::vector<int64_t> all(static_cast<size_t>(num_blocks * block_size));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      std::vector<int64_t> slots(all.begin(), all.begin() + tokens);
      slots[3] = -1;  // padding tokens are skipped
      slots[17] = -5;
      slots[0] = num_blocks * block_size - 1;  // the very last slot
      const auto key = random_floats(rng, static_cast<size_t>(tokens * kv_heads * head_size), -3.0f, 3.0f);
      const auto value = random_floats(rng, static_cast<size_t>(tokens * kv_heads * head_size), -3.0f, 3.0f);
      // Expected: the initial cache with each head vector stored by hand at its slot.
      std::vector<uint8_t> want_k = download_bytes(key_cache);
      std::vector<uint8_t> want_v = download_bytes(value_cache);
      for (int64_t t = 0; t < tokens; ++t) {
        if (slots[t] < 0) continue;
        for (int64_t h = 0; h < kv_heads; ++h) {
          const uint64_t at = cache_offset(key_cache, slots[t] / block_size, h, slots[t] % block_size);
          store_as(dtype, key.data() + (t * kv_heads + h) * head_size, want_k.data() + at, head_size);
          store_as(dtype, value.data() + (t * kv_heads + h) * head_size, want_v.data() + at, head_size);
        }
      }
      Tensor dk = upload(key_cache);
      Tensor dv = upload(value_cache);
      ops::reshape_and_cache(upload(host_f32(Shape{tokens, kv_heads, head_size}, key)),
                             upload(host_f32(Shape{tokens, kv_heads, head_size}, value)), dk, dv,
                             upload(host_i64(Shape{tokens}, slots)));
      EXPECT_TRUE(download_bytes(dk) == want_k) << dtype_name(dtype) << " block size " << block_size;
      EXPECT_TRUE(download_bytes(dv) == want_v) << dtype_name(dtype) << " block size " << block_size;
    }
  }
}

TEST_P(AttentionTest, ReshapeAndCacheRejectsSlotsPastTheCache) {
  std::mt19937 rng(22);
  Tensor kc = upload(random_cache(rng, Shape{2, 1, 4, 8}, DType::kF16));
  Tensor vc = upload(random_cache(rng, Shape{2, 1, 4, 8}, DType::kF16));
  const Tensor k = upload(Tensor::zeros(Shape{2, 1, 8}, DType::kF32));
  EXPECT_PAGODA_ERROR(ops::reshape_and_cache(k, k, kc, vc, upload(host_i64(Shape{2}, {0, 8}))),
                      ErrorCode::kInvalidArgument, "slot_mapping[1] = 8");
}

TEST_P(AttentionTest, CopyBlocks) {
  std::mt19937 rng(23);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const Shape shape{6, 2, 16, 64};
    std::vector<Tensor> host_k, host_v, dev_k, dev_v;
    for (int layer = 0; layer < 3; ++layer) {
      host_k.push_back(random_cache(rng, shape, dtype));
      host_v.push_back(random_cache(rng, shape, dtype));
      dev_k.push_back(upload(host_k.back()));
      dev_v.push_back(upload(host_v.back()));
    }
    const std::vector<int64_t> mapping = {0, 5, 3, 1, 2, 2, 4, 0};  // (src, dst) pairs; 0 is read before written
    ops::copy_blocks(dev_k, dev_v, upload(host_i64(Shape{4, 2}, mapping)));
    const uint64_t block_bytes = host_k[0].nbytes() / 6;
    for (int layer = 0; layer < 3; ++layer) {
      for (auto [host, dev] : {std::pair{&host_k[layer], &dev_k[layer]}, std::pair{&host_v[layer], &dev_v[layer]}}) {
        std::vector<uint8_t> want = download_bytes(*host);
        for (size_t p = 0; p < mapping.size(); p += 2) {
          std::memmove(want.data() + mapping[p + 1] * block_bytes, want.data() + mapping[p] * block_bytes, block_bytes);
        }
        EXPECT_TRUE(download_bytes(*dev) == want) << dtype_name(dtype) << " layer " << layer;
      }
    }
  }
}

TEST_P(AttentionTest, SwapBlocksBetweenHostAndDevice) {
  std::mt19937 rng(24);
  const Shape shape{5, 2, 8, 32};
  const Tensor host_src = random_cache(rng, shape, DType::kF16);
  const Tensor dev_dst_initial = random_cache(rng, shape, DType::kF16);
  Tensor dev_dst = upload(dev_dst_initial);
  const Tensor mapping = host_i64(Shape{2, 2}, {4, 0, 1, 3});  // block mapping lives on the host
  ops::swap_blocks(host_src, dev_dst, mapping);                // swap in
  const uint64_t block_bytes = host_src.nbytes() / 5;
  std::vector<uint8_t> want = download_bytes(dev_dst_initial);
  const auto* src = static_cast<const uint8_t*>(host_src.raw_data());
  std::memcpy(want.data() + 0 * block_bytes, src + 4 * block_bytes, block_bytes);
  std::memcpy(want.data() + 3 * block_bytes, src + 1 * block_bytes, block_bytes);
  EXPECT_TRUE(download_bytes(dev_dst) == want);
  Tensor host_back = Tensor::zeros(shape, DType::kF16);  // swap out
  ops::swap_blocks(dev_dst, host_back, host_i64(Shape{1, 2}, {3, 2}));
  EXPECT_EQ(
      std::memcmp(static_cast<const uint8_t*>(host_back.raw_data()) + 2 * block_bytes, src + block_bytes, block_bytes),
      0);
  EXPECT_PAGODA_ERROR(ops::swap_blocks(host_src, dev_dst, host_i64(Shape{1, 2}, {5, 0})), ErrorCode::kInvalidArgument,
                      "block_mapping[0] = (5, 0)");
}

// ---------------------------------------------------------------------------------------------
// attention

struct SeqSpec {
  int64_t context;  // tokens cached by earlier steps (prefix cache, earlier chunks)
  int64_t query;    // new tokens this step
};

struct AttnCase {
  int64_t head_size, heads, kv_heads, block_size;
  DType dtype;
  std::vector<SeqSpec> seqs;
  int64_t window = 0;
  float softcap = 0.0f;
  bool alibi = false;

  [[nodiscard]] std::string str() const {
    std::string s = "hs " + std::to_string(head_size) + " heads " + std::to_string(heads) + "/" +
                    std::to_string(kv_heads) + " bs " + std::to_string(block_size) + " " +
                    std::string(dtype_name(dtype)) + " seqs";
    for (const auto& q : seqs)
      s += " (" + std::to_string(q.context) + "+" + std::to_string(q.query) + ")";
    if (window > 0) s += " window " + std::to_string(window);
    if (softcap > 0) s += " softcap " + std::to_string(softcap);
    if (alibi) s += " alibi";
    return s;
  }
};

// A batch on the host: every sequence's keys and values (as the cache dtype holds them), written
// into a paged cache through shuffled block tables; unused slots hold large values that would
// show in any result that read them.
struct Batch {
  std::vector<std::vector<float>> keys, values;  // per sequence (seq_len, kv_heads, head_size)
  std::vector<float> query;                      // (tokens, heads, head_size)
  std::vector<float> slopes;
  Tensor key_cache, value_cache, block_tables;
  std::vector<int32_t> seq_lens, cu_query_lens;
  int64_t tokens = 0, max_query_len = 0, max_seq_len = 0;
};

Batch make_batch(std::mt19937& rng, const AttnCase& c) {
  Batch b;
  const auto num_seqs = static_cast<int64_t>(c.seqs.size());
  int64_t blocks_needed = 0, max_blocks = 1;
  b.cu_query_lens.push_back(0);
  for (const auto& s : c.seqs) {
    const int64_t len = s.context + s.query;
    const int64_t blocks = (len + c.block_size - 1) / c.block_size;
    blocks_needed += blocks;
    max_blocks = std::max(max_blocks, blocks + 1);  // a spare column: entries past the end are ignored
    b.seq_lens.push_back(static_cast<int32_t>(len));
    b.cu_query_lens.push_back(static_cast<int32_t>(b.cu_query_lens.back() + s.query));
    b.max_query_len = std::max(b.max_query_len, s.query);
    b.max_seq_len = std::max(b.max_seq_len, len);
  }
  b.tokens = b.cu_query_lens.back();
  const int64_t num_blocks = blocks_needed + 3;
  const Shape shape{num_blocks, c.kv_heads, c.block_size, c.head_size};
  b.key_cache = random_cache(rng, shape, c.dtype, 50.0f, 100.0f);
  b.value_cache = random_cache(rng, shape, c.dtype, 50.0f, 100.0f);
  std::vector<int32_t> physical(static_cast<size_t>(num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  std::vector<int32_t> table(static_cast<size_t>(num_seqs * max_blocks), 0);
  size_t next = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int64_t len = b.seq_lens[s];
    for (int64_t blk = 0; blk < (len + c.block_size - 1) / c.block_size; ++blk)
      table[s * max_blocks + blk] = physical[next++];
    std::vector<float> k(static_cast<size_t>(len * c.kv_heads * c.head_size));
    std::vector<float> v(k.size());
    for (auto* vec : {&k, &v}) {
      for (auto& x : *vec)
        x = round_to(c.dtype, std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng));
    }
    for (int64_t t = 0; t < len; ++t) {
      const int64_t block = table[s * max_blocks + t / c.block_size];
      for (int64_t h = 0; h < c.kv_heads; ++h) {
        const uint64_t at = cache_offset(b.key_cache, block, h, t % c.block_size);
        const int64_t src = (t * c.kv_heads + h) * c.head_size;
        store_as(c.dtype, k.data() + src, static_cast<uint8_t*>(b.key_cache.raw_data()) + at, c.head_size);
        store_as(c.dtype, v.data() + src, static_cast<uint8_t*>(b.value_cache.raw_data()) + at, c.head_size);
      }
    }
    b.keys.push_back(std::move(k));
    b.values.push_back(std::move(v));
  }
  b.block_tables = host_i32(Shape{num_seqs, max_blocks}, table);
  b.query = random_floats(rng, static_cast<size_t>(b.tokens * c.heads * c.head_size), -2.0f, 2.0f);
  for (int64_t h = 0; h < c.heads; ++h)
    b.slopes.push_back(std::pow(2.0f, -8.0f * static_cast<float>(h + 1) / static_cast<float>(c.heads)));
  return b;
}

// Attention of each new token by the definition: the full row of scores against every cached key
// of its sequence, masks, softmax and the weighted sum, in double.
std::vector<double> ref_attention(const AttnCase& c, const Batch& b, double scale) {
  std::vector<double> out(static_cast<size_t>(b.tokens * c.heads * c.head_size), 0.0);
  const int64_t group = c.heads / c.kv_heads;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const int64_t len = b.seq_lens[s];
    for (int64_t i = 0; i < c.seqs[s].query; ++i) {
      const int64_t token = b.cu_query_lens[s] + i;
      const int64_t pos = len - c.seqs[s].query + i;
      for (int64_t h = 0; h < c.heads; ++h) {
        const int64_t kvh = h / group;
        const float* q = b.query.data() + (token * c.heads + h) * c.head_size;
        std::vector<double> scores(static_cast<size_t>(len), -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < len; ++j) {
          const bool visible = j <= pos && (c.window == 0 || j > pos - c.window);
          if (!visible) continue;
          double dot = 0.0;
          for (int64_t d = 0; d < c.head_size; ++d)
            dot += static_cast<double>(q[d]) * b.keys[s][(j * c.kv_heads + kvh) * c.head_size + d];
          double score = scale * dot;
          if (c.softcap > 0) score = c.softcap * std::tanh(score / c.softcap);
          if (c.alibi) score += b.slopes[h] * static_cast<double>(j - pos);
          scores[j] = score;
          mx = std::max(mx, score);
        }
        double total = 0.0;
        for (auto& sc : scores) {
          sc = std::exp(sc - mx);
          total += sc;
        }
        double* o = out.data() + (token * c.heads + h) * c.head_size;
        for (int64_t j = 0; j < len; ++j) {
          for (int64_t d = 0; d < c.head_size; ++d)
            o[d] += scores[j] / total * b.values[s][(j * c.kv_heads + kvh) * c.head_size + d];
        }
      }
    }
  }
  return out;
}

AttentionParams params_for(const AttnCase& c, const Tensor* slopes) {
  AttentionParams p;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_size));
  p.sliding_window = c.window;
  p.logit_softcap = c.softcap;
  p.alibi_slopes = c.alibi ? slopes : nullptr;
  return p;
}

// Values lie in [-1, 1] and the outputs are convex combinations of them; float arithmetic keeps
// them within a few float epsilons of the double reference.
constexpr double kAttentionTolerance = 2e-5;

TEST_P(AttentionTest, PrefillAttention) {
  std::mt19937 rng(25);
  const std::vector<AttnCase> cases = {
      // A fresh prompt whose length is not a multiple of the block size.
      {64, 4, 4, 16, DType::kF32, {{0, 37}}},
      // Mixed batch: a fresh prompt, a later chunk of a long prompt, a decode token (GQA 4).
      {80, 8, 2, 8, DType::kF16, {{0, 20}, {13, 7}, {40, 1}}},
      // MQA, prefix-cache hit with a long cached prefix, block size 32.
      {128, 8, 1, 32, DType::kBF16, {{50, 30}, {0, 5}}},
      // GQA 2, head size 256, soft-cap; context exactly one block.
      {256, 4, 2, 16, DType::kF32, {{16, 16}, {3, 1}}, 0, 50.0f},
      // Sliding window shorter than the context (GQA 8).
      {64, 8, 1, 16, DType::kF16, {{30, 25}, {0, 40}}, 10},
      // ALiBi, GQA 8, and a sequence with no new tokens this step.
      {128, 16, 2, 8, DType::kF32, {{5, 11}, {12, 0}, {0, 1}}, 0, 0.0f, true},
      // Everything at once.
      {64, 2, 2, 32, DType::kBF16, {{70, 3}, {1, 1}, {0, 33}}, 7, 20.0f, true},
      // Longer chunk over a longer context: several query tiles and many blocks.
      {128, 8, 4, 16, DType::kF32, {{100, 60}}},
      {80, 4, 1, 8, DType::kF16, {{33, 17}, {0, 18}}, 21, 30.0f},
  };
  for (const AttnCase& c : cases) {
    const Batch b = make_batch(rng, c);
    const Tensor slopes = upload(host_f32(Shape{c.heads}, b.slopes));
    const AttentionParams p = params_for(c, &slopes);
    const auto num_seqs = static_cast<int64_t>(c.seqs.size());
    Tensor out = empty(Shape{b.tokens, c.heads, c.head_size}, DType::kF32);
    ops::prefill_attention(out, upload(host_f32(Shape{b.tokens, c.heads, c.head_size}, b.query)), upload(b.key_cache),
                           upload(b.value_cache), c.kv_heads, upload(b.block_tables),
                           upload(host_i32(Shape{num_seqs + 1}, b.cu_query_lens)),
                           upload(host_i32(Shape{num_seqs}, b.seq_lens)), c.block_size, b.max_query_len, p);
    expect_close(download_f32(out), ref_attention(c, b, p.scale), 0.0, kAttentionTolerance, "prefill " + c.str());
  }
}

TEST_P(AttentionTest, PagedAttentionDecode) {
  std::mt19937 rng(26);
  const std::vector<AttnCase> cases = {
      {64, 4, 4, 16, DType::kF32, {{0, 1}, {16, 1}, {36, 1}}},
      {80, 8, 2, 8, DType::kF16, {{20, 1}, {7, 1}}},
      {128, 8, 1, 32, DType::kBF16, {{64, 1}, {100, 1}, {2, 1}}},
      {256, 4, 2, 16, DType::kF32, {{47, 1}}, 0, 30.0f},
      {64, 8, 1, 16, DType::kF16, {{90, 1}, {5, 1}}, 20},
      {128, 16, 2, 8, DType::kF32, {{31, 1}, {32, 1}}, 0, 0.0f, true},
      {64, 4, 4, 32, DType::kBF16, {{77, 1}, {1, 1}}, 9, 15.0f, true},
  };
  for (const AttnCase& c : cases) {
    const Batch b = make_batch(rng, c);
    const Tensor slopes = upload(host_f32(Shape{c.heads}, b.slopes));
    const AttentionParams p = params_for(c, &slopes);
    const auto num_seqs = static_cast<int64_t>(c.seqs.size());
    Tensor out = empty(Shape{num_seqs, c.heads, c.head_size}, DType::kF32);
    ops::paged_attention(out, upload(host_f32(Shape{num_seqs, c.heads, c.head_size}, b.query)), upload(b.key_cache),
                         upload(b.value_cache), c.kv_heads, upload(b.block_tables),
                         upload(host_i32(Shape{num_seqs}, b.seq_lens)), c.block_size, b.max_seq_len, p);
    expect_close(download_f32(out), ref_attention(c, b, p.scale), 0.0, kAttentionTolerance, "decode " + c.str());
  }
}

TEST_P(AttentionTest, PagedAttentionEmptySequenceGivesZeros) {
  std::mt19937 rng(27);
  const AttnCase c{64, 2, 1, 16, DType::kF32, {{5, 1}}};
  const Batch b = make_batch(rng, c);
  Tensor out = upload(host_f32(Shape{2, 2, 64}, std::vector<float>(256, 7.0f)));
  ops::paged_attention(out, upload(host_f32(Shape{2, 2, 64}, random_floats(rng, 256))), upload(b.key_cache),
                       upload(b.value_cache), 1, upload(host_i32(Shape{2, 1}, {b.block_tables.data<int32_t>()[0], 0})),
                       upload(host_i32(Shape{2}, {6, 0})), 16, 6);
  const auto got = download_f32(out);
  for (int i = 128; i < 256; ++i)
    ASSERT_EQ(got[i], 0.0f);
}

// The model's path end to end: f32 keys and values go through reshape_and_cache into a narrower
// cache, then attention; the result is within the cache dtype's rounding of exact attention over
// the unrounded values.
TEST_P(AttentionTest, CacheThenAttendWithinTheCacheDtypeEpsilon) {
  std::mt19937 rng(28);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const AttnCase c{64, 8, 2, 16, DType::kF32, {{0, 21}, {0, 40}}};
    const int64_t tokens = 61, num_blocks = 8;
    const double eps = dtype == DType::kF16 ? 0x1p-11 : dtype == DType::kBF16 ? 0x1p-8 : 0x1p-24;
    Batch b;  // the unrounded reference inputs
    b.seq_lens = {21, 40};
    b.cu_query_lens = {0, 21, 61};
    b.tokens = tokens;
    const auto key = random_floats(rng, static_cast<size_t>(tokens * 2 * 64));
    const auto value = random_floats(rng, key.size());
    b.keys = {std::vector<float>(key.begin(), key.begin() + 21 * 128),
              std::vector<float>(key.begin() + 21 * 128, key.end())};
    b.values = {std::vector<float>(value.begin(), value.begin() + 21 * 128),
                std::vector<float>(value.begin() + 21 * 128, value.end())};
    b.query = random_floats(rng, static_cast<size_t>(tokens * 8 * 64));
    // Sequence 0 in blocks 5, 2; sequence 1 in blocks 0, 7, 3.
    const std::vector<int32_t> table = {5, 2, 0, 0, 7, 3};
    std::vector<int64_t> slots;
    for (int64_t t = 0; t < 21; ++t)
      slots.push_back(table[t / 16] * 16 + t % 16);
    for (int64_t t = 0; t < 40; ++t)
      slots.push_back(table[3 + t / 16] * 16 + t % 16);
    Tensor kc = empty(Shape{num_blocks, 2, 16, 64}, dtype);
    Tensor vc = empty(Shape{num_blocks, 2, 16, 64}, dtype);
    ops::reshape_and_cache(upload(host_f32(Shape{tokens, 2, 64}, key)), upload(host_f32(Shape{tokens, 2, 64}, value)),
                           kc, vc, upload(host_i64(Shape{tokens}, slots)));
    AttentionParams p;
    p.scale = 0.125f;
    Tensor out = empty(Shape{tokens, 8, 64}, DType::kF32);
    ops::prefill_attention(out, upload(host_f32(Shape{tokens, 8, 64}, b.query)), kc, vc, 2,
                           upload(host_i32(Shape{2, 3}, table)), upload(host_i32(Shape{3}, b.cu_query_lens)),
                           upload(host_i32(Shape{2}, b.seq_lens)), 16, 40, p);
    // Rounding keys by eps moves a score by about eps * |q| |k| * scale (|q|, |k| ~ 4.6 for 64
    // dimensions in [-1, 1], so ~2.7 eps), each softmax weight by twice that relative, and values
    // by eps: ~6.4 eps in all; the bound leaves a factor of two.
    const double tol = 12.0 * eps + kAttentionTolerance;
    expect_close(download_f32(out), ref_attention(c, b, p.scale), 0.0, tol,
                 "cache then attend, " + std::string(dtype_name(dtype)));
  }
}

// The CPU reads an f16 cache in place, converting in registers; the result must be bit for bit
// that of an f32 cache holding the same values (the conversion is exact), for decode and prefill,
// with and without grouped query heads, at head sizes with and without a tail past the last
// eight elements.
TEST(CpuAttention, F16CacheGivesTheBitsOfTheSameValuesInF32) {
  std::mt19937 rng(31);
  const std::vector<AttnCase> cases = {
      {64, 9, 3, 16, DType::kF16, {{40, 1}, {7, 1}, {100, 1}, {16, 1}}},
      {80, 8, 2, 8, DType::kF16, {{20, 1}, {0, 33}, {12, 9}}},
      {68, 4, 4, 16, DType::kF16, {{33, 1}, {0, 19}}, 0, 20.0f},
      {64, 4, 1, 16, DType::kF16, {{50, 1}, {3, 14}}, 24},
  };
  const auto as_f32 = [](const Tensor& cache) {
    Tensor out = Tensor::empty(cache.shape(), DType::kF32);
    const auto* h = static_cast<const uint16_t*>(cache.raw_data());
    for (int64_t i = 0; i < cache.numel(); ++i)
      out.data<float>()[i] = cpu::fp16_to_fp32(h[i]);
    return out;
  };
  for (const AttnCase& c : cases) {
    const Batch b = make_batch(rng, c);
    const Tensor slopes = host_f32(Shape{c.heads}, b.slopes);
    const AttentionParams p = params_for(c, &slopes);
    const auto num_seqs = static_cast<int64_t>(c.seqs.size());
    const Tensor keys32 = as_f32(b.key_cache), values32 = as_f32(b.value_cache);
    const Tensor query = host_f32(Shape{b.tokens, c.heads, c.head_size}, b.query);
    const Tensor cu = host_i32(Shape{num_seqs + 1}, b.cu_query_lens);
    const Tensor lens = host_i32(Shape{num_seqs}, b.seq_lens);
    std::vector<float> got[2];
    for (int f32 = 0; f32 < 2; ++f32) {
      Tensor out = Tensor::empty(Shape{b.tokens, c.heads, c.head_size}, DType::kF32);
      const Tensor& kc = f32 != 0 ? keys32 : b.key_cache;
      const Tensor& vc = f32 != 0 ? values32 : b.value_cache;
      if (b.max_query_len == 1) {
        ops::paged_attention(out, query, kc, vc, c.kv_heads, b.block_tables, lens, c.block_size, b.max_seq_len, p);
      } else {
        ops::prefill_attention(out, query, kc, vc, c.kv_heads, b.block_tables, cu, lens, c.block_size, b.max_query_len,
                               p);
      }
      got[f32].assign(out.data<float>(), out.data<float>() + out.numel());
    }
    ASSERT_EQ(got[0].size(), got[1].size());
    EXPECT_EQ(std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)), 0) << c.str();
    // and both are attention: within tolerance of the double reference
    expect_close(got[0], ref_attention(c, b, p.scale), 0.0, kAttentionTolerance, "f16 in place " + c.str());
  }
}

// The engine relies on a query getting the same bits from prefill as from decode at the same
// position (preemption recomputes, prefix caching skips work), however the work is split: every
// position of each prompt, attended by prefill (tiles of positions, keys in chunks), by one decode
// batch per position (a task per kv head, or per head with more threads than that fills) and by
// one decode batch of all positions (a task per sequence, all heads), with one thread and with
// eight. Cases cover grouped heads (3 and 8 to a kv head), several cache blocks, every cache
// dtype, a head-size tail, and long enough contexts for prefill to take the keys in chunks.
TEST(CpuAttention, DecodeAndPrefillGiveTheSameBitsHoweverSplit) {
  std::mt19937 rng(32);
  const std::vector<AttnCase> cases = {
      {64, 9, 3, 16, DType::kF32, {{0, 70}, {0, 33}}},
      {64, 9, 3, 16, DType::kF16, {{0, 70}, {0, 33}}},
      {256, 8, 2, 16, DType::kF32, {{0, 150}}},
      {256, 6, 2, 16, DType::kF16, {{0, 140}}},
      {80, 8, 2, 8, DType::kBF16, {{0, 41}, {0, 9}}, 13, 30.0f},
      {68, 6, 2, 16, DType::kF16, {{0, 50}}, 0, 0.0f, true},
      {64, 8, 1, 16, DType::kF32, {{0, 45}, {0, 20}}, 24},
  };
  for (const AttnCase& c : cases) {
    const Batch b = make_batch(rng, c);
    const Tensor slopes = host_f32(Shape{c.heads}, b.slopes);
    const AttentionParams p = params_for(c, &slopes);
    const auto num_seqs = static_cast<int64_t>(c.seqs.size());
    const int64_t row = c.heads * c.head_size;
    const int32_t* table = b.block_tables.data<int32_t>();
    const int64_t max_blocks = b.block_tables.dim(1);
    std::vector<float> first;  // prefill's result with one thread
    for (int threads : {1, 8}) {
      cpu::CpuBackend backend(threads);
      BackendOps& ops = backend.ops();
      Tensor out = Tensor::empty(Shape{b.tokens, c.heads, c.head_size}, DType::kF32);
      ops.prefill_attention(out, host_f32(Shape{b.tokens, c.heads, c.head_size}, b.query), b.key_cache, b.value_cache,
                            c.kv_heads, b.block_tables, host_i32(Shape{num_seqs + 1}, b.cu_query_lens),
                            host_i32(Shape{num_seqs}, b.seq_lens), c.block_size, b.max_query_len, p);
      const std::vector<float> prefill(out.data<float>(), out.data<float>() + out.numel());
      const std::string what = c.str() + ", " + std::to_string(threads) + " threads";
      if (first.empty()) {
        expect_close(prefill, ref_attention(c, b, p.scale), 0.0, kAttentionTolerance, "prefill " + what);
        first = prefill;
      } else {
        EXPECT_EQ(std::memcmp(prefill.data(), first.data(), first.size() * sizeof(float)), 0) << "prefill " << what;
      }
      // Decode batches: (token) entries, each its sequence's query at that position.
      const auto decode = [&](const std::vector<int64_t>& tokens) {
        const auto n = static_cast<int64_t>(tokens.size());
        std::vector<float> q;
        std::vector<int32_t> lens, tables;
        for (int64_t t : tokens) {
          const auto s = static_cast<int64_t>(std::upper_bound(b.cu_query_lens.begin(), b.cu_query_lens.end(), t) -
                                              b.cu_query_lens.begin() - 1);
          q.insert(q.end(), b.query.begin() + t * row, b.query.begin() + (t + 1) * row);
          lens.push_back(static_cast<int32_t>(t - b.cu_query_lens[s] + 1));
          tables.insert(tables.end(), table + s * max_blocks, table + (s + 1) * max_blocks);
        }
        Tensor dout = Tensor::empty(Shape{n, c.heads, c.head_size}, DType::kF32);
        ops.paged_attention(dout, host_f32(Shape{n, c.heads, c.head_size}, q), b.key_cache, b.value_cache, c.kv_heads,
                            host_i32(Shape{n, max_blocks}, tables), host_i32(Shape{n}, lens), c.block_size,
                            b.max_seq_len, p);
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_EQ(std::memcmp(dout.data<float>() + i * row, prefill.data() + tokens[i] * row, row * sizeof(float)), 0)
              << "decode of token " << tokens[i] << " among " << n << ", " << what;
        }
      };
      std::vector<int64_t> all(static_cast<size_t>(b.tokens));
      std::iota(all.begin(), all.end(), 0);
      decode(all);
      for (int64_t pos = 0; pos < b.max_query_len; ++pos) {
        std::vector<int64_t> at_pos;
        for (int64_t s = 0; s < num_seqs; ++s) {
          if (pos < b.cu_query_lens[s + 1] - b.cu_query_lens[s]) at_pos.push_back(b.cu_query_lens[s] + pos);
        }
        decode(at_pos);
      }
    }
  }
}

TEST_P(AttentionTest, AttentionRejectsCorruptBatches) {
  std::mt19937 rng(29);
  const AttnCase c{64, 2, 1, 16, DType::kF16, {{10, 5}}};
  const Batch b = make_batch(rng, c);
  const Tensor kc = upload(b.key_cache), vc = upload(b.value_cache);
  const Tensor q = upload(host_f32(Shape{5, 2, 64}, b.query));
  Tensor out = empty(Shape{5, 2, 64}, DType::kF32);
  const int64_t num_blocks = b.key_cache.dim(0);
  const int64_t max_blocks = b.block_tables.dim(1);
  const Tensor tables = upload(b.block_tables);
  const Tensor lens = upload(host_i32(Shape{1}, {15}));
  const Tensor cu = upload(host_i32(Shape{2}, {0, 5}));
  // A block id outside the cache.
  std::vector<int32_t> bad_table(static_cast<size_t>(max_blocks), 0);
  bad_table[0] = static_cast<int32_t>(num_blocks);
  EXPECT_PAGODA_ERROR(
      ops::prefill_attention(out, q, kc, vc, 1, upload(host_i32(Shape{1, max_blocks}, bad_table)), cu, lens, 16, 5),
      ErrorCode::kInvalidArgument, "block_tables[0][0]");
  // A sequence longer than its block table row.
  EXPECT_PAGODA_ERROR(
      ops::prefill_attention(out, q, kc, vc, 1, tables, cu,
                             upload(host_i32(Shape{1}, {static_cast<int32_t>(max_blocks * 16 + 1)})), 16, 5),
      ErrorCode::kInvalidArgument, "seq_lens[0]");
  // Offsets that do not cover the tokens, run backwards, or exceed the context or max_query_len.
  EXPECT_PAGODA_ERROR(
      ops::prefill_attention(out, q, kc, vc, 1, tables, upload(host_i32(Shape{2}, {0, 4})), lens, 16, 5),
      ErrorCode::kInvalidArgument, "cu_query_lens");
  EXPECT_PAGODA_ERROR(ops::prefill_attention(out, q, kc, vc, 1, tables, cu, upload(host_i32(Shape{1}, {4})), 16, 5),
                      ErrorCode::kInvalidArgument, "new tokens");
  EXPECT_PAGODA_ERROR(ops::prefill_attention(out, q, kc, vc, 1, tables, cu, lens, 16, 4), ErrorCode::kInvalidArgument,
                      "max_query_len");
  // Decode: a length past max_seq_len, a negative length.
  Tensor dout = empty(Shape{1, 2, 64}, DType::kF32);
  const Tensor dq = upload(host_f32(Shape{1, 2, 64}, std::vector<float>(128, 0.5f)));
  EXPECT_PAGODA_ERROR(ops::paged_attention(dout, dq, kc, vc, 1, tables, lens, 16, 14), ErrorCode::kInvalidArgument,
                      "max_seq_len");
  EXPECT_PAGODA_ERROR(ops::paged_attention(dout, dq, kc, vc, 1, tables, upload(host_i32(Shape{1}, {-3})), 16, 15),
                      ErrorCode::kInvalidArgument, "seq_lens[0] = -3");
}

INSTANTIATE_TEST_SUITE_P(Backends, AttentionTest, testing::ValuesIn(op_test_devices()), device_param_name);

}  // namespace
}  // namespace pagoda::test
