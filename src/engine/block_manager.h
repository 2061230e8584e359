#pragma once

// The paged KV cache's bookkeeping: which cache blocks each sequence owns, in order. Pure logic;
// it never touches the cache itself (copies it asks for are done by the caller before the step).
//
// - Blocks hold block_size tokens. A block may be shared by several sequences (reference
//   counts): a request's n samples fork from one sequence, and with prefix caching requests
//   share the blocks of a common prefix.
// - Copy-on-write: before a sequence writes into a block that another sequence also holds, the
//   block is copied to a fresh one (the (src, dst) pair is returned to the caller).
// - Automatic prefix caching: a full block whose tokens have been computed is registered under
//   hash(parent block's hash, its token ids); a later sequence whose prompt starts with the same
//   tokens takes those blocks instead of computing them. A block whose last holder lets go stays
//   cached (evictable) until its memory is needed; the least recently used goes first. Hits are
//   compared token by token, so a hash collision never gives a wrong block.

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pagoda::engine {

using SeqId = int64_t;

struct BlockCopy {
  int32_t src = 0;
  int32_t dst = 0;
  bool operator==(const BlockCopy&) const = default;
};

struct PrefixCacheStats {
  int64_t queries = 0;  // tokens passed to attach_cached_prefix, all of them (as vLLM counts)
  int64_t hits = 0;     // of those, tokens covered by the cached blocks taken
};

struct BlockManagerTestPeer;

class BlockManager {
 public:
  BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching);

  [[nodiscard]] int64_t num_blocks() const;
  [[nodiscard]] int64_t block_size() const;
  // Blocks that allocation can use now: never used or freed, plus cached ones no sequence holds.
  [[nodiscard]] int64_t num_free_blocks() const;
  // Fraction of blocks held by at least one sequence, in [0, 1].
  [[nodiscard]] double usage() const;

  // A sequence that holds no blocks yet: takes the longest run of cached full blocks matching
  // the start of `tokens`, only blocks lying wholly within tokens[0 : size - 1] (at least one
  // token is always left to compute, so the step yields its logits). Returns the number of
  // tokens those blocks cover (a multiple of block_size; 0 without prefix caching). Counts the
  // query in the stats.
  int64_t attach_cached_prefix(SeqId seq, std::span<const int32_t> tokens);

  // Blocks `seq` still needs to hold `num_tokens` tokens, counting a copy of a shared block it
  // would write into. A sequence not seen yet holds 0 tokens.
  [[nodiscard]] int64_t blocks_needed(SeqId seq, int64_t num_tokens) const;

  // Grows `seq` to hold `num_tokens` tokens (>= what it holds). The tokens between what it held
  // and num_tokens will be written by the caller: a shared block among those it writes into is
  // first copied (appended to `copies`). Returns false, changing nothing, when too few blocks
  // are free (evicting cached blocks as needed otherwise). The copy is decided here, so a
  // sequence must not be forked between this call and the step that writes those tokens.
  [[nodiscard]] bool allocate(SeqId seq, int64_t num_tokens, std::vector<BlockCopy>& copies);

  // Tokens [0, num_computed) of `seq` now sit in its blocks: every full block among them is
  // registered in the prefix cache (a no-op without prefix caching). `tokens` are the sequence's
  // tokens, at least num_computed of them. Blocks already committed are not looked at again
  // (a smaller num_computed changes nothing).
  void commit(SeqId seq, std::span<const int32_t> tokens, int64_t num_computed);

  // `child` (holding nothing) takes all of `parent`'s blocks, shared, and its token count. An
  // unknown parent holds nothing, so neither does the child.
  void fork(SeqId parent, SeqId child);

  // Releases every block of `seq` (preemption, finish or abort); unknown ids are ignored.
  void free(SeqId seq);

  // The blocks of `seq` in order (empty for an unknown id); valid until the next call that
  // changes `seq`.
  [[nodiscard]] std::span<const int32_t> block_table(SeqId seq) const;
  // Tokens `seq` can hold (its last allocate).
  [[nodiscard]] int64_t num_tokens(SeqId seq) const;

  [[nodiscard]] const PrefixCacheStats& prefix_cache_stats() const;
  // Drops every cached block no sequence holds (they become plain free blocks). Blocks still
  // held stay cached; the stats are kept.
  void reset_prefix_cache();

  // Throws Error(kInternal) if the bookkeeping is inconsistent: reference counts that differ from
  // the tables holding each block, a block both free and held, a block lost. For tests.
  void check_invariants() const;

 private:
  friend struct BlockManagerTestPeer;
  struct Impl;
  // Defined by the implementation; kept opaque so the header stays stable.
  std::unique_ptr<Impl> impl_;

 public:
  ~BlockManager();
  BlockManager(BlockManager&&) noexcept;
  BlockManager& operator=(BlockManager&&) noexcept;
};

// Tests only: swaps the block hash for one that collides at will, to show that a collision never
// yields a wrong block.
struct BlockManagerTestPeer {
  using HashFn = uint64_t (*)(uint64_t parent_hash, std::span<const int32_t> tokens);
  static void set_hash(BlockManager& manager, HashFn hash);
};

}  // namespace pagoda::engine
