// The paged KV cache block manager: allocation and release counts, copy-on-write after fork,
// prefix caching (hits, the last token always left to compute, LRU eviction, duplicates, hash
// collisions), argument checks, and a long randomized run against a simulated cache.

#include "engine/block_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "core/error.h"

namespace pagoda::engine {
namespace {

using Tokens = std::vector<int32_t>;

std::vector<int32_t> table_of(const BlockManager& bm, SeqId seq) {
  auto t = bm.block_table(seq);
  return {t.begin(), t.end()};
}

// Attaches, allocates the whole prompt and commits it, as a step that computes it would.
int64_t add_prompt(BlockManager& bm, SeqId seq, const Tokens& tokens) {
  const int64_t covered = bm.attach_cached_prefix(seq, tokens);
  std::vector<BlockCopy> copies;
  EXPECT_TRUE(bm.allocate(seq, static_cast<int64_t>(tokens.size()), copies));
  EXPECT_TRUE(copies.empty());
  bm.commit(seq, tokens, static_cast<int64_t>(tokens.size()));
  bm.check_invariants();
  return covered;
}

template <typename F>
void expect_invalid(F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("block manager"), std::string::npos) << e.what();
  }
}

TEST(BlockManager, RejectsBadShapes) {
  expect_invalid([] { BlockManager bm(0, 16, true); });
  expect_invalid([] { BlockManager bm(-5, 16, true); });
  expect_invalid([] { BlockManager bm(int64_t{1} << 31, 16, true); });
  expect_invalid([] { BlockManager bm(10, 0, true); });
  expect_invalid([] { BlockManager bm(10, -1, true); });
  expect_invalid([] { BlockManager bm(10, 1025, false); });
  // The largest pool costs nothing until its blocks are used.
  BlockManager big(std::numeric_limits<int32_t>::max(), 1024, true);
  EXPECT_EQ(big.num_free_blocks(), std::numeric_limits<int32_t>::max());
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(big.allocate(1, 5000, copies));
  EXPECT_EQ(big.block_table(1).size(), 5u);
  EXPECT_EQ(big.num_free_blocks(), std::numeric_limits<int32_t>::max() - 5);
  big.check_invariants();
}

TEST(BlockManager, AllocateAndFreeCounts) {
  BlockManager bm(10, 4, false);
  EXPECT_EQ(bm.num_blocks(), 10);
  EXPECT_EQ(bm.block_size(), 4);
  EXPECT_EQ(bm.num_free_blocks(), 10);
  EXPECT_EQ(bm.usage(), 0.0);
  std::vector<BlockCopy> copies;

  EXPECT_EQ(bm.blocks_needed(1, 5), 2);
  ASSERT_TRUE(bm.allocate(1, 5, copies));
  EXPECT_EQ(bm.num_tokens(1), 5);
  EXPECT_EQ(bm.block_table(1).size(), 2u);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.2);
  EXPECT_EQ(bm.blocks_needed(1, 5), 0);
  EXPECT_EQ(bm.blocks_needed(1, 8), 0);
  EXPECT_EQ(bm.blocks_needed(1, 9), 1);
  ASSERT_TRUE(bm.allocate(1, 9, copies));
  ASSERT_TRUE(bm.allocate(2, 4, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(bm.num_free_blocks(), 6);
  bm.check_invariants();

  std::set<int32_t> ids;
  for (SeqId s : {1, 2})
    for (int32_t b : bm.block_table(s)) {
      EXPECT_GE(b, 0);
      EXPECT_LT(b, 10);
      ids.insert(b);
    }
  EXPECT_EQ(ids.size(), 4u);

  bm.free(1);
  EXPECT_EQ(bm.num_free_blocks(), 9);
  EXPECT_TRUE(bm.block_table(1).empty());
  EXPECT_EQ(bm.num_tokens(1), 0);
  bm.free(1);   // already gone
  bm.free(77);  // never seen
  bm.free(2);
  EXPECT_EQ(bm.num_free_blocks(), 10);
  EXPECT_EQ(bm.usage(), 0.0);
  // Growing to 0 tokens takes nothing.
  ASSERT_TRUE(bm.allocate(3, 0, copies));
  EXPECT_EQ(bm.num_free_blocks(), 10);
  bm.check_invariants();
}

TEST(BlockManager, AllocateIsAllOrNothing) {
  BlockManager bm(4, 4, false);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate(1, 12, copies));
  EXPECT_EQ(bm.blocks_needed(2, 8), 2);
  EXPECT_FALSE(bm.allocate(2, 8, copies));
  EXPECT_EQ(bm.num_free_blocks(), 1);
  EXPECT_TRUE(bm.block_table(2).empty());
  EXPECT_EQ(bm.num_tokens(2), 0);
  EXPECT_FALSE(bm.allocate(1, 17, copies));
  EXPECT_EQ(bm.num_tokens(1), 12);
  EXPECT_EQ(bm.block_table(1).size(), 3u);
  EXPECT_FALSE(bm.allocate(1, std::numeric_limits<int64_t>::max(), copies));
  EXPECT_GT(bm.blocks_needed(1, std::numeric_limits<int64_t>::max()), 4);
  EXPECT_TRUE(copies.empty());
  bm.check_invariants();

  // A copy counts: a shared partial block with no block left for the copy.
  BlockManager small(2, 4, false);
  ASSERT_TRUE(small.allocate(1, 6, copies));
  small.fork(1, 2);
  EXPECT_EQ(small.num_free_blocks(), 0);
  EXPECT_EQ(small.blocks_needed(1, 7), 1);
  const auto before = table_of(small, 1);
  EXPECT_FALSE(small.allocate(1, 7, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(table_of(small, 1), before);
  EXPECT_EQ(small.num_tokens(1), 6);
  small.check_invariants();
}

TEST(BlockManager, ForkSharesAndCopiesOnWriteOnce) {
  BlockManager bm(10, 4, false);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate(1, 6, copies));
  const auto parent = table_of(bm, 1);
  bm.fork(1, 2);
  EXPECT_EQ(table_of(bm, 2), parent);
  EXPECT_EQ(bm.num_tokens(2), 6);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  bm.check_invariants();

  // The child writes position 6, inside the shared partial block: it gets a copy.
  EXPECT_EQ(bm.blocks_needed(2, 7), 1);
  ASSERT_TRUE(bm.allocate(2, 7, copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, parent[1]);
  const int32_t dst = copies[0].dst;
  EXPECT_NE(dst, parent[0]);
  EXPECT_NE(dst, parent[1]);
  EXPECT_EQ(table_of(bm, 2), (std::vector<int32_t>{parent[0], dst}));
  EXPECT_EQ(table_of(bm, 1), parent);
  EXPECT_EQ(bm.num_free_blocks(), 7);
  bm.check_invariants();

  // Later writes go to the copy, and the parent's block is its own again: no more copies.
  copies.clear();
  ASSERT_TRUE(bm.allocate(2, 8, copies));
  ASSERT_TRUE(bm.allocate(1, 8, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(table_of(bm, 2), (std::vector<int32_t>{parent[0], dst}));
  EXPECT_EQ(table_of(bm, 1), parent);
  // Block 0 is still shared but full: writes past it need no copy.
  ASSERT_TRUE(bm.allocate(1, 9, copies));
  EXPECT_TRUE(copies.empty());

  // A fork at a block boundary shares everything and copies nothing.
  bm.fork(2, 3);
  ASSERT_TRUE(bm.allocate(3, 10, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(table_of(bm, 3).size(), 3u);
  bm.check_invariants();

  for (SeqId s : {1, 2, 3})
    bm.free(s);
  EXPECT_EQ(bm.num_free_blocks(), 10);
  bm.check_invariants();
}

TEST(BlockManager, ThreeWayForkCopiesUntilTheLastHolder) {
  BlockManager bm(10, 4, false);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.allocate(1, 2, copies));
  const int32_t shared = bm.block_table(1)[0];
  bm.fork(1, 2);
  bm.fork(1, 3);
  ASSERT_TRUE(bm.allocate(1, 3, copies));
  ASSERT_TRUE(bm.allocate(2, 3, copies));
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].src, shared);
  EXPECT_EQ(copies[1].src, shared);
  EXPECT_NE(copies[0].dst, copies[1].dst);
  // The third holder is the last: it writes in place.
  copies.clear();
  ASSERT_TRUE(bm.allocate(3, 3, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(bm.block_table(3)[0], shared);
  bm.check_invariants();
}

TEST(BlockManager, PrefixHitsAcrossSequences) {
  BlockManager bm(16, 4, true);
  const Tokens prompt = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  EXPECT_EQ(add_prompt(bm, 1, prompt), 0);
  const auto first = table_of(bm, 1);

  EXPECT_EQ(bm.attach_cached_prefix(2, prompt), 8);
  EXPECT_EQ(bm.num_tokens(2), 8);
  EXPECT_EQ(table_of(bm, 2), (std::vector<int32_t>{first[0], first[1]}));
  EXPECT_EQ(bm.num_free_blocks(), 13);
  std::vector<BlockCopy> copies;
  EXPECT_EQ(bm.blocks_needed(2, 11), 1);
  ASSERT_TRUE(bm.allocate(2, 11, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_NE(bm.block_table(2)[2], first[2]);
  bm.check_invariants();

  const PrefixCacheStats& stats = bm.prefix_cache_stats();
  EXPECT_EQ(stats.queries, 22);
  EXPECT_EQ(stats.hits, 8);

  // The shared blocks outlive either holder.
  bm.free(1);
  EXPECT_EQ(bm.block_table(2)[0], first[0]);
  EXPECT_EQ(bm.attach_cached_prefix(3, Tokens{5, 6, 7, 8, 9, 10, 11, 12, 99}), 8);
  EXPECT_EQ(bm.block_table(3)[1], first[1]);
  EXPECT_EQ(stats.queries, 31);
  EXPECT_EQ(stats.hits, 16);
  bm.check_invariants();
}

TEST(BlockManager, AttachNeverCoversTheLastToken) {
  BlockManager bm(16, 4, true);
  const Tokens eight = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(add_prompt(bm, 1, eight), 0);
  // Both blocks are cached, but the last token must be computed: only the first block is taken.
  EXPECT_EQ(bm.attach_cached_prefix(2, eight), 4);
  Tokens nine = eight;
  nine.push_back(9);
  EXPECT_EQ(bm.attach_cached_prefix(3, nine), 8);
  EXPECT_EQ(bm.attach_cached_prefix(4, Tokens{1, 2, 3, 4}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(5, Tokens{1, 2, 3, 4, 5}), 4);
  EXPECT_EQ(bm.attach_cached_prefix(6, Tokens{}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(7, Tokens{1}), 0);
  EXPECT_EQ(bm.prefix_cache_stats().queries, 8 + 8 + 9 + 4 + 5 + 0 + 1);
  EXPECT_EQ(bm.prefix_cache_stats().hits, 4 + 8 + 4);
  bm.check_invariants();
}

TEST(BlockManager, OnlyComputedFullBlocksAreCached) {
  BlockManager bm(16, 4, true);
  const Tokens prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  std::vector<BlockCopy> copies;
  EXPECT_EQ(bm.attach_cached_prefix(1, prompt), 0);
  ASSERT_TRUE(bm.allocate(1, 10, copies));
  // Nothing computed yet, then 7 tokens: one full block.
  EXPECT_EQ(bm.attach_cached_prefix(2, prompt), 0);
  bm.commit(1, prompt, 7);
  EXPECT_EQ(bm.attach_cached_prefix(3, prompt), 4);
  bm.commit(1, prompt, 10);
  EXPECT_EQ(bm.attach_cached_prefix(4, prompt), 8);
  // Committing less than before changes nothing.
  bm.commit(1, prompt, 3);
  EXPECT_EQ(bm.attach_cached_prefix(5, prompt), 8);
  bm.check_invariants();
}

TEST(BlockManager, CachedBlocksOutliveTheirSequenceAndAreRevived) {
  BlockManager bm(8, 2, true);
  const Tokens prompt = {1, 2, 3, 4, 5};
  add_prompt(bm, 1, prompt);
  const auto blocks = table_of(bm, 1);
  bm.free(1);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_EQ(bm.usage(), 0.0);
  EXPECT_EQ(bm.attach_cached_prefix(2, prompt), 4);
  EXPECT_EQ(table_of(bm, 2), (std::vector<int32_t>{blocks[0], blocks[1]}));
  EXPECT_EQ(bm.num_free_blocks(), 6);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.25);
  bm.check_invariants();
}

TEST(BlockManager, EvictsLeastRecentlyUsedAndLaterBlocksFirst) {
  BlockManager bm(4, 2, true);
  std::vector<BlockCopy> copies;
  add_prompt(bm, 1, {1, 2, 3, 4, 5});  // caches [1 2] and [3 4]; [5] is a plain block
  const auto blocks = table_of(bm, 1);
  bm.free(1);
  EXPECT_EQ(bm.num_free_blocks(), 4);
  // Plain free and never used blocks go first: the cache is untouched.
  ASSERT_TRUE(bm.allocate(2, 4, copies));
  EXPECT_EQ(bm.num_free_blocks(), 2);
  for (int32_t b : bm.block_table(2)) {
    EXPECT_NE(b, blocks[0]);
    EXPECT_NE(b, blocks[1]);
  }
  // Then a cached block: the prompt's later one, [3 4].
  ASSERT_TRUE(bm.allocate(3, 2, copies));
  EXPECT_EQ(bm.block_table(3)[0], blocks[1]);
  EXPECT_EQ(bm.num_free_blocks(), 1);
  bm.check_invariants();
  EXPECT_EQ(bm.attach_cached_prefix(4, Tokens{1, 2, 3, 4, 5}), 2);
  EXPECT_EQ(bm.block_table(4)[0], blocks[0]);
  EXPECT_EQ(bm.num_free_blocks(), 0);
  bm.check_invariants();
}

TEST(BlockManager, EvictionFollowsRecency) {
  BlockManager bm(4, 2, true);
  std::vector<BlockCopy> copies;
  add_prompt(bm, 1, {1, 2, 9});
  add_prompt(bm, 2, {3, 4, 9});
  const int32_t a = bm.block_table(1)[0];
  const int32_t b = bm.block_table(2)[0];
  bm.free(1);
  bm.free(2);
  // [1 2] was released first, but using it again makes [3 4] the least recently used.
  EXPECT_EQ(bm.attach_cached_prefix(3, Tokens{1, 2, 7}), 2);
  EXPECT_EQ(bm.block_table(3)[0], a);
  bm.free(3);
  ASSERT_TRUE(bm.allocate(4, 6, copies));  // two plain blocks, then one evicted
  const auto taken = table_of(bm, 4);
  EXPECT_NE(std::find(taken.begin(), taken.end(), b), taken.end());
  EXPECT_EQ(std::find(taken.begin(), taken.end(), a), taken.end());
  bm.free(4);
  EXPECT_EQ(bm.attach_cached_prefix(5, Tokens{3, 4, 9}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(6, Tokens{1, 2, 9}), 2);
  bm.check_invariants();
}

TEST(BlockManager, DuplicateComputationKeepsTheFirstBlock) {
  BlockManager bm(8, 2, true);
  const Tokens prompt = {1, 2, 3};
  std::vector<BlockCopy> copies;
  // Both miss (nothing is computed yet) and compute the same block.
  EXPECT_EQ(bm.attach_cached_prefix(1, prompt), 0);
  EXPECT_EQ(bm.attach_cached_prefix(2, prompt), 0);
  ASSERT_TRUE(bm.allocate(1, 3, copies));
  ASSERT_TRUE(bm.allocate(2, 3, copies));
  bm.commit(1, prompt, 3);
  bm.commit(2, prompt, 3);
  const int32_t first = bm.block_table(1)[0];
  const int32_t duplicate = bm.block_table(2)[0];
  ASSERT_NE(first, duplicate);
  bm.check_invariants();
  bm.free(2);
  bm.free(1);
  // The duplicate went back as a plain block: taking every block but one leaves the first cached.
  ASSERT_TRUE(bm.allocate(3, 14, copies));
  const auto taken = table_of(bm, 3);
  EXPECT_NE(std::find(taken.begin(), taken.end(), duplicate), taken.end());
  EXPECT_EQ(std::find(taken.begin(), taken.end(), first), taken.end());
  EXPECT_EQ(bm.attach_cached_prefix(4, prompt), 2);
  EXPECT_EQ(bm.block_table(4)[0], first);
  bm.check_invariants();
}

TEST(BlockManager, DifferentTokensOrPrefixesMiss) {
  BlockManager bm(16, 2, true);
  add_prompt(bm, 1, {1, 2, 3, 4, 5});
  EXPECT_EQ(bm.attach_cached_prefix(2, Tokens{9, 9, 3, 4, 5}), 0);  // same second block
  EXPECT_EQ(bm.attach_cached_prefix(3, Tokens{1, 2, 3, 5, 5}), 2);
  EXPECT_EQ(bm.attach_cached_prefix(4, Tokens{2, 1, 3, 4, 5}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(5, Tokens{1, 2, 3, 4, 5}), 4);
  EXPECT_EQ(bm.prefix_cache_stats().hits, 6);
  bm.check_invariants();
}

// Every block at a given depth gets the same hash, whatever its tokens.
uint64_t depth_hash(uint64_t parent_hash, std::span<const int32_t>) {
  return parent_hash + 1;
}

TEST(BlockManager, HashCollisionsNeverGiveAWrongBlock) {
  BlockManager bm(16, 2, true);
  BlockManagerTestPeer::set_hash(bm, depth_hash);
  add_prompt(bm, 1, {1, 2, 3, 4, 5});
  // Colliding first block, other tokens: a miss, and its own blocks are not cached over the
  // first registration.
  EXPECT_EQ(add_prompt(bm, 2, {7, 8, 3, 4, 5}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(3, Tokens{7, 8, 3, 4, 5}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(4, Tokens{1, 2, 6, 6, 5}), 2);
  EXPECT_EQ(bm.attach_cached_prefix(5, Tokens{1, 2, 3, 4, 5}), 4);
  EXPECT_EQ(table_of(bm, 5), (std::vector<int32_t>{bm.block_table(1)[0], bm.block_table(1)[1]}));
  bm.check_invariants();
}

// The hash of a block is its first token, whatever came before it.
uint64_t first_token_hash(uint64_t, std::span<const int32_t> tokens) {
  return static_cast<uint32_t>(tokens[0]);
}

TEST(BlockManager, HashCollisionsAfterOtherPrefixesNeverGiveAWrongBlock) {
  BlockManager bm(16, 2, true);
  BlockManagerTestPeer::set_hash(bm, first_token_hash);
  add_prompt(bm, 1, {1, 2, 3, 4, 9});
  // [3 4] after [5 6] has the key of [3 4] after [1 2]: a conflict, so it is not cached.
  EXPECT_EQ(add_prompt(bm, 2, {5, 6, 3, 4, 9}), 0);
  // Its first block was cached, but the cached [3 4] was computed after [1 2]: not a hit.
  EXPECT_EQ(bm.attach_cached_prefix(3, Tokens{5, 6, 3, 4, 9}), 2);
  EXPECT_EQ(bm.block_table(3)[0], bm.block_table(2)[0]);
  EXPECT_EQ(bm.attach_cached_prefix(4, Tokens{1, 2, 3, 4, 9}), 4);
  EXPECT_EQ(table_of(bm, 4), (std::vector<int32_t>{bm.block_table(1)[0], bm.block_table(1)[1]}));
  bm.check_invariants();
}

TEST(BlockManager, ChildOfAnEvictedParentIsNotReused) {
  // The child [3 4] was computed after [1 2]; once [1 2] leaves the cache, a new block under the
  // same (colliding) parent hash holding [7 8] must not lead to it.
  BlockManager bm(16, 2, true);
  BlockManagerTestPeer::set_hash(bm, depth_hash);
  const Tokens prompt = {1, 2, 3, 4, 5};
  std::vector<BlockCopy> copies;
  EXPECT_EQ(bm.attach_cached_prefix(1, prompt), 0);
  EXPECT_EQ(bm.attach_cached_prefix(2, prompt), 0);
  ASSERT_TRUE(bm.allocate(1, 5, copies));
  ASSERT_TRUE(bm.allocate(2, 5, copies));
  bm.commit(1, prompt, 2);  // sequence 1 caches [1 2]
  bm.commit(2, prompt, 5);  // sequence 2 duplicates it and caches [3 4] after it
  const int32_t child = bm.block_table(2)[1];
  bm.free(1);
  bm.reset_prefix_cache();  // [1 2] goes; sequence 2 still holds the child
  bm.check_invariants();
  EXPECT_EQ(bm.attach_cached_prefix(3, prompt), 0);

  EXPECT_EQ(add_prompt(bm, 4, {7, 8, 3, 4, 5}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(5, Tokens{7, 8, 3, 4, 5}), 4);
  EXPECT_EQ(table_of(bm, 5), (std::vector<int32_t>{bm.block_table(4)[0], bm.block_table(4)[1]}));
  EXPECT_NE(bm.block_table(5)[1], child);
  bm.check_invariants();
}

TEST(BlockManager, ResetPrefixCache) {
  BlockManager bm(8, 2, true);
  add_prompt(bm, 1, {1, 2, 3});
  add_prompt(bm, 2, {4, 5, 6});
  bm.free(1);
  const auto stats = bm.prefix_cache_stats();
  bm.reset_prefix_cache();
  bm.check_invariants();
  EXPECT_EQ(bm.num_free_blocks(), 6);
  // The released prompt is gone; the one still held stays cached.
  EXPECT_EQ(bm.attach_cached_prefix(3, Tokens{1, 2, 3}), 0);
  EXPECT_EQ(bm.attach_cached_prefix(4, Tokens{4, 5, 6}), 2);
  EXPECT_EQ(bm.prefix_cache_stats().queries, stats.queries + 6);
  bm.check_invariants();
}

TEST(BlockManager, WithoutPrefixCachingNothingIsShared) {
  BlockManager bm(8, 2, false);
  EXPECT_EQ(add_prompt(bm, 1, {1, 2, 3, 4, 5}), 0);
  EXPECT_EQ(add_prompt(bm, 2, {1, 2, 3, 4, 5}), 0);
  bm.free(1);
  EXPECT_EQ(bm.attach_cached_prefix(3, Tokens{1, 2, 3, 4, 5}), 0);
  EXPECT_EQ(bm.prefix_cache_stats().queries, 0);
  EXPECT_EQ(bm.prefix_cache_stats().hits, 0);
  bm.free(2);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  bm.check_invariants();
}

TEST(BlockManager, RejectsBadArguments) {
  BlockManager bm(8, 4, true);
  std::vector<BlockCopy> copies;
  const Tokens prompt = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(bm.allocate(1, 6, copies));
  expect_invalid([&] { (void)bm.allocate(1, 5, copies); });
  expect_invalid([&] { (void)bm.allocate(2, -1, copies); });
  expect_invalid([&] { (void)bm.blocks_needed(1, 2); });
  expect_invalid([&] { (void)bm.blocks_needed(3, -7); });
  expect_invalid([&] { bm.commit(1, prompt, 7); });
  expect_invalid([&] { bm.commit(1, prompt, -1); });
  expect_invalid([&] { bm.commit(1, Tokens{1, 2}, 4); });
  expect_invalid([&] { bm.commit(9, prompt, 1); });
  expect_invalid([&] { bm.fork(1, 1); });
  ASSERT_TRUE(bm.allocate(2, 1, copies));
  expect_invalid([&] { bm.fork(1, 2); });
  expect_invalid([&] { bm.attach_cached_prefix(1, prompt); });
  // Nothing changed.
  EXPECT_EQ(bm.num_tokens(1), 6);
  EXPECT_EQ(bm.num_tokens(2), 1);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  EXPECT_TRUE(copies.empty());
  bm.check_invariants();
  // Harmless calls on unknown sequences.
  bm.commit(9, prompt, 0);
  bm.fork(42, 43);
  EXPECT_TRUE(bm.block_table(43).empty());
  EXPECT_EQ(bm.blocks_needed(44, 0), 0);
  bm.check_invariants();
}

// ---------------------------------------------------------------------------------------------
// Randomized: an engine-like mix of new prompts, growth, commits, forks, frees and preemptions
// against a simulated cache. Every slot written holds a fingerprint of the whole prefix up to its
// position (what a KV entry depends on), so each sequence reading back its own fingerprint at every
// position shows that copies, sharing and prefix reuse never give it someone else's data.

uint64_t mix(uint64_t h, int32_t token) {
  uint64_t z = h + 0x9e3779b97f4a7c15ULL + static_cast<uint32_t>(token);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct SimSeq {
  Tokens tokens;
  std::vector<uint64_t> prints;  // fingerprint of tokens[0..p]
  int64_t committed = 0;

  void push(int32_t t) {
    prints.push_back(mix(prints.empty() ? 1 : prints.back(), t));
    tokens.push_back(t);
  }
};

struct RandomRun {
  int64_t num_blocks;
  int64_t block_size;
  bool caching;
  uint64_t seed;
  int ops;
};

class Simulation {
 public:
  explicit Simulation(const RandomRun& run)
      : run_(run),
        bm_(run.num_blocks, run.block_size, run.caching),
        cache_(static_cast<size_t>(run.num_blocks * run.block_size), 0),
        rng_(run.seed) {
    // A few base prompts that new sequences start from, so prefixes repeat.
    for (int i = 0; i < 5; ++i) {
      Tokens base;
      const int len = uniform(1, 3 * static_cast<int>(run.block_size) + 2);
      for (int j = 0; j < len; ++j)
        base.push_back(uniform(0, 2));
      bases_.push_back(base);
    }
  }

  void run() {
    for (int op = 0; op < run_.ops; ++op) {
      const int kind = live_.empty() ? 0 : uniform(0, 99);
      if (kind < 18 && live_.size() < 12)
        add_new();
      else if (kind < 55)
        grow(pick());
      else if (kind < 63)
        commit(pick());
      else if (kind < 72)
        fork(pick());
      else if (kind < 84)
        release(pick());
      else if (kind < 96)
        preempt(pick());
      else if (kind < 97)
        bm_.reset_prefix_cache();
      else
        grow(pick());
      verify();
      if (::testing::Test::HasFatalFailure()) return;
    }
    for (const auto& [seq, s] : live_)
      bm_.free(seq);
    live_.clear();
    bm_.check_invariants();
    EXPECT_EQ(bm_.num_free_blocks(), run_.num_blocks);
    EXPECT_EQ(bm_.usage(), 0.0);
    bm_.reset_prefix_cache();
    bm_.check_invariants();
    EXPECT_EQ(bm_.num_free_blocks(), run_.num_blocks);

    // The run must have exercised what it claims to check.
    if (run_.block_size > 1) {
      EXPECT_GT(copies_, 0);  // with one-token blocks no block is ever partly written
    } else {
      EXPECT_EQ(copies_, 0);
    }
    EXPECT_GT(failed_allocations_, 0);
    EXPECT_GT(forks_, 0);
    EXPECT_EQ(bm_.prefix_cache_stats().queries, queries_);
    EXPECT_EQ(bm_.prefix_cache_stats().hits, hits_);
    if (run_.caching) {
      EXPECT_GT(hits_, 0);
    } else {
      EXPECT_EQ(hits_, 0);
    }
  }

 private:
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  SeqId pick() {
    auto it = live_.begin();
    std::advance(it, uniform(0, static_cast<int>(live_.size()) - 1));
    return it->first;
  }

  uint64_t& slot(SeqId seq, int64_t pos) {
    const int32_t b = bm_.block_table(seq)[static_cast<size_t>(pos / run_.block_size)];
    return cache_[static_cast<size_t>(b * run_.block_size + pos % run_.block_size)];
  }

  // Grows `seq` to its model's size as one step would: allocate, do the copies, write the new
  // positions. Returns false (the model unchanged) when blocks ran out.
  bool step(SeqId seq, const SimSeq& s) {
    const int64_t held = bm_.num_tokens(seq);
    const int64_t want = static_cast<int64_t>(s.tokens.size());
    const int64_t needed = bm_.blocks_needed(seq, want);
    const int64_t free_before = bm_.num_free_blocks();
    const auto table_before = table_of(bm_, seq);
    std::vector<BlockCopy> copies;
    if (!bm_.allocate(seq, want, copies)) {
      ++failed_allocations_;
      EXPECT_GT(needed, free_before);
      EXPECT_TRUE(copies.empty());
      EXPECT_EQ(bm_.num_tokens(seq), held);
      EXPECT_EQ(table_of(bm_, seq), table_before);
      EXPECT_EQ(bm_.num_free_blocks(), free_before);
      return false;
    }
    EXPECT_LE(needed, free_before);
    EXPECT_EQ(bm_.num_free_blocks(), free_before - needed);
    EXPECT_EQ(bm_.num_tokens(seq), want);
    EXPECT_LE(copies.size(), 1u);
    for (const BlockCopy& c : copies) {
      ++copies_;
      // Only the partial block about to be written is copied, into the table's place of it.
      EXPECT_NE(held % run_.block_size, 0);
      const size_t index = static_cast<size_t>(held / run_.block_size);
      EXPECT_EQ(c.src, table_before.at(index));
      EXPECT_EQ(bm_.block_table(seq)[index], c.dst);
      std::copy_n(cache_.begin() + c.src * run_.block_size, run_.block_size, cache_.begin() + c.dst * run_.block_size);
    }
    for (int64_t p = held; p < want; ++p)
      slot(seq, p) = s.prints[static_cast<size_t>(p)];
    return true;
  }

  // A new prompt, or an old one recomputed: take what the cache has, compute the rest.
  void start(SeqId seq, SimSeq s) {
    const int64_t covered = bm_.attach_cached_prefix(seq, s.tokens);
    if (run_.caching) queries_ += static_cast<int64_t>(s.tokens.size());
    hits_ += covered;
    EXPECT_EQ(covered % run_.block_size, 0);
    EXPECT_LT(covered, std::max<int64_t>(1, static_cast<int64_t>(s.tokens.size())));
    if (!run_.caching) {
      EXPECT_EQ(covered, 0);
    }
    EXPECT_EQ(bm_.num_tokens(seq), covered);
    for (int64_t p = 0; p < covered; ++p)
      ASSERT_EQ(slot(seq, p), s.prints[static_cast<size_t>(p)]) << "cached position " << p;
    s.committed = covered;
    if (!step(seq, s)) {
      bm_.free(seq);  // aborted while waiting for memory
      return;
    }
    live_[seq] = std::move(s);
    if (uniform(0, 3) != 0) commit(seq);
  }

  void add_new() {
    SimSeq s;
    const Tokens& base = bases_[static_cast<size_t>(uniform(0, 4))];
    const int keep = uniform(0, static_cast<int>(base.size()));
    for (int i = 0; i < keep; ++i)
      s.push(base[static_cast<size_t>(i)]);
    const int extra = uniform(keep == 0 ? 1 : 0, 4);
    for (int i = 0; i < extra; ++i)
      s.push(uniform(0, 2));
    start(next_id_++, std::move(s));
  }

  void grow(SeqId seq) {
    SimSeq grown = live_.at(seq);
    const int extra = uniform(1, 2 * static_cast<int>(run_.block_size));
    if (grown.tokens.size() + static_cast<size_t>(extra) > kMaxTokens) return;
    for (int i = 0; i < extra; ++i)
      grown.push(uniform(0, 2));
    if (step(seq, grown)) {
      live_[seq] = std::move(grown);
      if (uniform(0, 3) != 0) commit(seq);
    }
  }

  void commit(SeqId seq) {
    SimSeq& s = live_.at(seq);
    // Sometimes only part of what is written, as a chunked step would report.
    const int64_t n = uniform(0, 4) == 0 ? uniform(static_cast<int>(s.committed), static_cast<int>(s.tokens.size()))
                                         : static_cast<int64_t>(s.tokens.size());
    bm_.commit(seq, s.tokens, n);
    s.committed = n;
  }

  void fork(SeqId parent) {
    const SeqId child = next_id_++;
    bm_.fork(parent, child);
    ++forks_;
    live_[child] = live_.at(parent);
  }

  void release(SeqId seq) {
    bm_.free(seq);
    live_.erase(seq);
  }

  void preempt(SeqId seq) {
    SimSeq s = std::move(live_.at(seq));
    release(seq);
    s.committed = 0;
    start(seq, std::move(s));
  }

  void verify() {
    bm_.check_invariants();
    std::set<int32_t> held;
    for (const auto& [seq, s] : live_) {
      const auto table = bm_.block_table(seq);
      ASSERT_EQ(bm_.num_tokens(seq), static_cast<int64_t>(s.tokens.size())) << "sequence " << seq;
      ASSERT_EQ(static_cast<int64_t>(table.size()),
                (static_cast<int64_t>(s.tokens.size()) + run_.block_size - 1) / run_.block_size);
      held.insert(table.begin(), table.end());
      for (size_t p = 0; p < s.tokens.size(); ++p)
        ASSERT_EQ(slot(seq, static_cast<int64_t>(p)), s.prints[p]) << "sequence " << seq << " position " << p;
    }
    ASSERT_EQ(bm_.num_free_blocks(), run_.num_blocks - static_cast<int64_t>(held.size()));
    ASSERT_DOUBLE_EQ(bm_.usage(), static_cast<double>(held.size()) / static_cast<double>(run_.num_blocks));
  }

  static constexpr size_t kMaxTokens = 48;

  RandomRun run_;
  BlockManager bm_;
  std::vector<uint64_t> cache_;  // block_size fingerprints per block
  std::mt19937_64 rng_;
  std::vector<Tokens> bases_;
  std::map<SeqId, SimSeq> live_;
  SeqId next_id_ = 100;
  int64_t queries_ = 0;
  int64_t hits_ = 0;
  int64_t copies_ = 0;
  int64_t failed_allocations_ = 0;
  int64_t forks_ = 0;
};

TEST(BlockManagerRandom, PrefixCachingBlockSize4) {
  Simulation({.num_blocks = 40, .block_size = 4, .caching = true, .seed = 1, .ops = 12000}).run();
}

TEST(BlockManagerRandom, PrefixCachingBlockSize1) {
  Simulation({.num_blocks = 96, .block_size = 1, .caching = true, .seed = 2, .ops = 12000}).run();
}

TEST(BlockManagerRandom, PrefixCachingBlockSize3) {
  Simulation({.num_blocks = 30, .block_size = 3, .caching = true, .seed = 3, .ops = 12000}).run();
}

TEST(BlockManagerRandom, NoPrefixCaching) {
  Simulation({.num_blocks = 32, .block_size = 4, .caching = false, .seed = 4, .ops = 12000}).run();
}

}  // namespace
}  // namespace pagoda::engine
