#include "engine/block_manager.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"

namespace pagoda::engine {
namespace {

constexpr int64_t kMaxBlocks = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxBlockSize = 1024;
constexpr int32_t kNone = -1;
// The parent hash of a sequence's first block.
constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ULL;

uint64_t xxh3_block_hash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  return XXH3_64bits_withSeed(tokens.data(), tokens.size_bytes(), parent_hash);
}

int64_t blocks_for(int64_t num_tokens, int64_t block_size) {
  return num_tokens / block_size + (num_tokens % block_size != 0 ? 1 : 0);
}

// One registration in the prefix cache. A block's registration number is unique for as long as
// the manager lives, so a child names the exact registration of its parent it was computed after:
// once the parent is evicted (and maybe re-registered with other contents), the child no longer
// matches. Comparing tokens block by block would not be enough on its own: two different prefixes
// whose hashes collide would make the same child key.
struct CacheRef {
  int32_t block = kNone;
  uint64_t gen = 0;
  bool operator==(const CacheRef&) const = default;
};

struct BlockInfo {
  int32_t ref = 0;
  // Links of the evictable list (cached blocks no sequence holds), least recently used first.
  int32_t prev = kNone;
  int32_t next = kNone;
  bool evictable = false;
  // Prefix cache registration; gen is 0 while the block is not registered.
  uint64_t gen = 0;
  uint64_t hash = 0;
  CacheRef parent;
};

struct SeqState {
  std::vector<int32_t> table;
  int64_t num_tokens = 0;
  // Full blocks commit has gone through, the hash of the chain through them and the cached
  // block holding the last of them (the registration the next block's entry must name).
  int64_t committed_blocks = 0;
  uint64_t last_hash = kRootHash;
  CacheRef last;
  // A collision or tokens that disagree with the blocks: nothing more of this sequence is cached.
  bool chain_broken = false;
};

[[noreturn]] void broken(const std::string& what) {
  fail(ErrorCode::kInternal, "block manager: inconsistent bookkeeping: {}", what);
}

}  // namespace

struct BlockManager::Impl {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  bool caching = false;
  BlockManagerTestPeer::HashFn hash_fn = xxh3_block_hash;

  // Per-block state for the ids handed out so far, [0, next_unused); ids past it were never used,
  // so a huge pool costs nothing until it is used.
  std::vector<BlockInfo> blocks;
  std::vector<int32_t> cached_tokens;  // block_size per id, with prefix caching
  int64_t next_unused = 0;
  std::vector<int32_t> free_list;  // released blocks not in the cache (a stack)
  int32_t lru_head = kNone;
  int32_t lru_tail = kNone;
  int64_t lru_size = 0;
  std::unordered_map<uint64_t, int32_t> cache;  // block hash -> registered block
  std::unordered_map<SeqId, SeqState> seqs;
  uint64_t next_gen = 1;
  PrefixCacheStats stats;

  [[nodiscard]] int64_t num_free() const {
    return static_cast<int64_t>(free_list.size()) + (num_blocks - next_unused) + lru_size;
  }

  [[nodiscard]] std::span<const int32_t> tokens_of(int32_t b) const {
    return {cached_tokens.data() + static_cast<size_t>(b) * block_size, static_cast<size_t>(block_size)};
  }

  // Makes room for `count` more ids up front (geometric growth), so that take() and the releases
  // that follow never allocate: allocate() stays all or nothing even if memory runs out.
  void reserve_ids(int64_t count) {
    const int64_t want = std::min(num_blocks, next_unused + count);
    const auto grown = [&](size_t capacity, int64_t scale) {
      return static_cast<size_t>(
          std::min(num_blocks, std::max<int64_t>(want, 2 * static_cast<int64_t>(capacity) / scale)) * scale);
    };
    if (static_cast<int64_t>(blocks.capacity()) < want) blocks.reserve(grown(blocks.capacity(), 1));
    if (caching && static_cast<int64_t>(cached_tokens.capacity()) < want * block_size)
      cached_tokens.reserve(grown(cached_tokens.capacity(), block_size));
    // Every id handed out may come back to the free list at once.
    if (free_list.capacity() < blocks.capacity()) free_list.reserve(blocks.capacity());
  }

  void lru_push_back(int32_t b) {
    BlockInfo& info = blocks[b];
    info.evictable = true;
    info.prev = lru_tail;
    info.next = kNone;
    if (lru_tail != kNone)
      blocks[lru_tail].next = b;
    else
      lru_head = b;
    lru_tail = b;
    ++lru_size;
  }

  void lru_remove(int32_t b) {
    BlockInfo& info = blocks[b];
    if (info.prev != kNone)
      blocks[info.prev].next = info.next;
    else
      lru_head = info.next;
    if (info.next != kNone)
      blocks[info.next].prev = info.prev;
    else
      lru_tail = info.prev;
    info.prev = info.next = kNone;
    info.evictable = false;
    --lru_size;
  }

  void unregister(int32_t b) {
    BlockInfo& info = blocks[b];
    cache.erase(info.hash);
    info.gen = 0;
    info.hash = 0;
    info.parent = {};
  }

  // Removes a block from the cache; if no sequence holds it, it becomes a plain free block.
  void drop_cached(int32_t b) {
    unregister(b);
    if (blocks[b].evictable) {
      lru_remove(b);
      free_list.push_back(b);
    }
  }

  // A block whose reference count just reached 0.
  void release(int32_t b) {
    if (blocks[b].gen != 0)
      lru_push_back(b);
    else
      free_list.push_back(b);
  }

  // A block for one writer (reference count 1): a released one, else a never used one, else the
  // least recently used cached one, which leaves the cache. The caller checked num_free() and
  // called reserve_ids().
  int32_t take() {
    int32_t b = kNone;
    if (!free_list.empty()) {
      b = free_list.back();
      free_list.pop_back();
    } else if (next_unused < num_blocks) {
      b = static_cast<int32_t>(next_unused++);
      blocks.emplace_back();
      if (caching) cached_tokens.resize(static_cast<size_t>(next_unused) * block_size);
    } else {
      b = lru_head;
      lru_remove(b);
      unregister(b);
    }
    blocks[b].ref = 1;
    return b;
  }

  [[nodiscard]] bool is_stale(int32_t b) const {
    const CacheRef& parent = blocks[b].parent;
    return parent.block != kNone && blocks[parent.block].gen != parent.gen;
  }

  enum class Lookup { kHit, kAbsent, kConflict };

  // Looks up the block registered under `hash` for `tokens` following `parent`. An entry whose
  // parent registration is gone is dropped (its contents were computed after a prefix nobody can
  // name any more) and counts as absent; an entry for other contents is a conflict.
  Lookup find(uint64_t hash, std::span<const int32_t> tokens, const CacheRef& parent, int32_t* found) {
    auto it = cache.find(hash);
    if (it == cache.end()) return Lookup::kAbsent;
    const int32_t b = it->second;
    if (is_stale(b)) {
      drop_cached(b);
      return Lookup::kAbsent;
    }
    const std::span<const int32_t> stored = tokens_of(b);
    if (blocks[b].parent != parent || std::memcmp(stored.data(), tokens.data(), stored.size_bytes()) != 0)
      return Lookup::kConflict;
    *found = b;
    return Lookup::kHit;
  }

  struct Plan {
    int64_t fresh = 0;  // blocks to take, the copy included
    bool copy = false;
  };

  [[nodiscard]] Plan plan(const SeqState* state, int64_t num_tokens) const {
    Plan p;
    const int64_t held = state != nullptr ? state->num_tokens : 0;
    const int64_t have = state != nullptr ? static_cast<int64_t>(state->table.size()) : 0;
    if (num_tokens == held) return p;
    p.copy = held % block_size != 0 && blocks[state->table.back()].ref > 1;
    p.fresh = blocks_for(num_tokens, block_size) - have + (p.copy ? 1 : 0);
    return p;
  }

  void check_grow(SeqId seq, const SeqState* state, int64_t num_tokens, const char* what) const {
    if (num_tokens < 0)
      fail(ErrorCode::kInvalidArgument, "block manager: {}: sequence {}: negative token count {}", what, seq,
           num_tokens);
    const int64_t held = state != nullptr ? state->num_tokens : 0;
    if (num_tokens < held)
      fail(ErrorCode::kInvalidArgument, "block manager: {}: sequence {} holds {} tokens and cannot shrink to {}", what,
           seq, held, num_tokens);
  }

  [[nodiscard]] const SeqState* find_seq(SeqId seq) const {
    auto it = seqs.find(seq);
    return it != seqs.end() ? &it->second : nullptr;
  }
};

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size, bool enable_prefix_caching) {
  if (num_blocks <= 0 || num_blocks > kMaxBlocks)
    fail(ErrorCode::kInvalidArgument, "block manager: block count {} is outside [1, {}]", num_blocks, kMaxBlocks);
  if (block_size < 1 || block_size > kMaxBlockSize)
    fail(ErrorCode::kInvalidArgument, "block manager: block size {} is outside [1, {}]", block_size, kMaxBlockSize);
  impl_ = std::make_unique<Impl>();
  impl_->num_blocks = num_blocks;
  impl_->block_size = block_size;
  impl_->caching = enable_prefix_caching;
}

BlockManager::~BlockManager() = default;
BlockManager::BlockManager(BlockManager&&) noexcept = default;
BlockManager& BlockManager::operator=(BlockManager&&) noexcept = default;

int64_t BlockManager::num_blocks() const {
  return impl_->num_blocks;
}
int64_t BlockManager::block_size() const {
  return impl_->block_size;
}
int64_t BlockManager::num_free_blocks() const {
  return impl_->num_free();
}

double BlockManager::usage() const {
  return static_cast<double>(impl_->num_blocks - impl_->num_free()) / static_cast<double>(impl_->num_blocks);
}

int64_t BlockManager::attach_cached_prefix(SeqId seq, std::span<const int32_t> tokens) {
  Impl& m = *impl_;
  auto it = m.seqs.find(seq);
  if (it != m.seqs.end() && !it->second.table.empty())
    fail(ErrorCode::kInvalidArgument, "block manager: attach_cached_prefix: sequence {} already holds {} blocks", seq,
         it->second.table.size());
  if (!m.caching) return 0;

  // Blocks wholly inside tokens[0 : size - 1]: the last token is always computed by the step.
  const int64_t size = static_cast<int64_t>(tokens.size());
  const int64_t max_blocks = size == 0 ? 0 : (size - 1) / m.block_size;
  std::vector<int32_t> hits;
  uint64_t hash = kRootHash;
  CacheRef last;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const auto block_tokens = tokens.subspan(i * m.block_size, m.block_size);
    const uint64_t h = m.hash_fn(hash, block_tokens);
    int32_t b = kNone;
    if (m.find(h, block_tokens, last, &b) != Impl::Lookup::kHit) break;
    hits.push_back(b);
    hash = h;
    last = {b, m.blocks[b].gen};
  }

  SeqState fresh;
  fresh.num_tokens = static_cast<int64_t>(hits.size()) * m.block_size;
  fresh.committed_blocks = static_cast<int64_t>(hits.size());
  fresh.last_hash = hash;
  fresh.last = last;
  fresh.table = std::move(hits);
  SeqState& state = m.seqs[seq];
  state = std::move(fresh);
  for (int32_t b : state.table) {
    if (m.blocks[b].ref == 0) m.lru_remove(b);
    ++m.blocks[b].ref;
  }
  m.stats.queries += size;
  m.stats.hits += state.num_tokens;
  return state.num_tokens;
}

int64_t BlockManager::blocks_needed(SeqId seq, int64_t num_tokens) const {
  const Impl& m = *impl_;
  const SeqState* state = m.find_seq(seq);
  m.check_grow(seq, state, num_tokens, "blocks_needed");
  return m.plan(state, num_tokens).fresh;
}

bool BlockManager::allocate(SeqId seq, int64_t num_tokens, std::vector<BlockCopy>& copies) {
  Impl& m = *impl_;
  auto it = m.seqs.find(seq);
  const SeqState* found = it != m.seqs.end() ? &it->second : nullptr;
  m.check_grow(seq, found, num_tokens, "allocate");
  const Impl::Plan p = m.plan(found, num_tokens);
  if (p.fresh > m.num_free()) return false;
  if (found == nullptr && num_tokens == 0) return true;

  // Everything that may throw comes before the first change.
  if (it == m.seqs.end()) it = m.seqs.try_emplace(seq).first;
  SeqState& state = it->second;
  state.table.reserve(blocks_for(num_tokens, m.block_size));
  if (p.copy) copies.reserve(copies.size() + 1);
  m.reserve_ids(p.fresh);

  int64_t fresh = p.fresh;
  if (p.copy) {
    const int32_t src = state.table.back();
    const int32_t dst = m.take();
    --m.blocks[src].ref;  // it was shared, so it stays held
    state.table.back() = dst;
    copies.push_back({src, dst});
    --fresh;
  }
  for (int64_t i = 0; i < fresh; ++i)
    state.table.push_back(m.take());
  state.num_tokens = num_tokens;
  return true;
}

void BlockManager::commit(SeqId seq, std::span<const int32_t> tokens, int64_t num_computed) {
  Impl& m = *impl_;
  auto it = m.seqs.find(seq);
  const int64_t held = it != m.seqs.end() ? it->second.num_tokens : 0;
  if (num_computed < 0 || num_computed > held)
    fail(ErrorCode::kInvalidArgument, "block manager: commit: sequence {} holds {} tokens, {} cannot be computed", seq,
         held, num_computed);
  if (static_cast<int64_t>(tokens.size()) < num_computed)
    fail(ErrorCode::kInvalidArgument, "block manager: commit: sequence {}: {} tokens given for {} computed", seq,
         tokens.size(), num_computed);
  if (!m.caching || it == m.seqs.end()) return;

  SeqState& state = it->second;
  const int64_t full = num_computed / m.block_size;
  for (; state.committed_blocks < full && !state.chain_broken; ++state.committed_blocks) {
    const int64_t i = state.committed_blocks;
    // The cached block this one follows left the cache (this sequence held a duplicate of it):
    // nothing can name this block's prefix any more.
    if (state.last.block != kNone && m.blocks[state.last.block].gen != state.last.gen) {
      state.chain_broken = true;
      break;
    }
    const auto block_tokens = tokens.subspan(i * m.block_size, m.block_size);
    const uint64_t h = m.hash_fn(state.last_hash, block_tokens);
    const int32_t b = state.table[i];
    int32_t cached = kNone;
    const Impl::Lookup found = m.find(h, block_tokens, state.last, &cached);
    if (found == Impl::Lookup::kConflict) {
      state.chain_broken = true;
      break;
    }
    if (found == Impl::Lookup::kAbsent) {
      // Registered under another hash: the tokens given disagree with what the block holds.
      if (m.blocks[b].gen != 0) {
        state.chain_broken = true;
        break;
      }
      m.cache.emplace(h, b);
      BlockInfo& info = m.blocks[b];
      info.gen = m.next_gen++;
      info.hash = h;
      info.parent = state.last;
      std::copy(block_tokens.begin(), block_tokens.end(),
                m.cached_tokens.begin() + static_cast<ptrdiff_t>(b) * m.block_size);
      cached = b;
    }
    // Otherwise the same contents were computed first elsewhere (or this very block was
    // registered by a sequence sharing it): the first registration stays, and this block remains
    // a plain one.
    state.last_hash = h;
    state.last = {cached, m.blocks[cached].gen};
  }
  state.committed_blocks = std::max(state.committed_blocks, full);
}

void BlockManager::fork(SeqId parent, SeqId child) {
  Impl& m = *impl_;
  if (parent == child) fail(ErrorCode::kInvalidArgument, "block manager: fork: sequence {} into itself", parent);
  auto c = m.seqs.find(child);
  if (c != m.seqs.end() && !c->second.table.empty())
    fail(ErrorCode::kInvalidArgument, "block manager: fork: child sequence {} holds {} blocks", child,
         c->second.table.size());
  auto p = m.seqs.find(parent);
  if (p == m.seqs.end()) {
    // An unknown parent holds nothing, and so does the child.
    if (c != m.seqs.end()) m.seqs.erase(c);
    return;
  }
  SeqState copy = p->second;
  SeqState& slot = m.seqs[child];
  slot = std::move(copy);
  for (int32_t b : slot.table)
    ++m.blocks[b].ref;
}

void BlockManager::free(SeqId seq) {
  Impl& m = *impl_;
  auto it = m.seqs.find(seq);
  if (it == m.seqs.end()) return;
  // Last block first: the evictable list then holds a prefix's later blocks ahead of its earlier
  // ones, so the start of a prompt, the part most likely shared, is evicted last.
  const std::vector<int32_t>& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b)
    if (--m.blocks[*b].ref == 0) m.release(*b);
  m.seqs.erase(it);
}

std::span<const int32_t> BlockManager::block_table(SeqId seq) const {
  const SeqState* state = impl_->find_seq(seq);
  if (state == nullptr) return {};
  return state->table;
}

int64_t BlockManager::num_tokens(SeqId seq) const {
  const SeqState* state = impl_->find_seq(seq);
  return state != nullptr ? state->num_tokens : 0;
}

const PrefixCacheStats& BlockManager::prefix_cache_stats() const {
  return impl_->stats;
}

void BlockManager::reset_prefix_cache() {
  Impl& m = *impl_;
  while (m.lru_head != kNone)
    m.drop_cached(m.lru_head);
}

void BlockManager::check_invariants() const {
  const Impl& m = *impl_;
  const int64_t used = m.next_unused;
  if (used < 0 || used > m.num_blocks || static_cast<int64_t>(m.blocks.size()) != used)
    broken(fmt::format("{} ids handed out, {} block records, {} blocks", used, m.blocks.size(), m.num_blocks));
  if (m.caching && static_cast<int64_t>(m.cached_tokens.size()) != used * m.block_size) broken("token store size");

  // Reference counts against the tables.
  std::vector<int64_t> refs(static_cast<size_t>(used), 0);
  std::vector<int64_t> held_by(static_cast<size_t>(used), -1);  // index of the last table seen
  int64_t table_index = 0;
  for (const auto& [seq, state] : m.seqs) {
    if (state.num_tokens < 0 || static_cast<int64_t>(state.table.size()) != blocks_for(state.num_tokens, m.block_size))
      broken(fmt::format("sequence {} holds {} tokens in {} blocks", seq, state.num_tokens, state.table.size()));
    if (state.committed_blocks * m.block_size > state.num_tokens)
      broken(
          fmt::format("sequence {} committed {} blocks of {} tokens", seq, state.committed_blocks, state.num_tokens));
    for (int32_t b : state.table) {
      if (b < 0 || b >= used) broken(fmt::format("sequence {} holds block id {}", seq, b));
      if (held_by[b] == table_index) broken(fmt::format("sequence {} holds block {} twice", seq, b));
      held_by[b] = table_index;
      ++refs[b];
    }
    ++table_index;
  }
  int64_t held = 0;
  for (int64_t b = 0; b < used; ++b) {
    if (m.blocks[b].ref != refs[b])
      broken(fmt::format("block {} has {} references but {} tables hold it", b, m.blocks[b].ref, refs[b]));
    if (m.blocks[b].ref > 0) ++held;
    if (m.blocks[b].ref > 0 && m.blocks[b].evictable) broken(fmt::format("block {} is held and evictable", b));
  }

  // Free list, evictable list and held blocks partition the ids handed out.
  std::vector<char> seen(static_cast<size_t>(used), 0);
  for (int32_t b : m.free_list) {
    if (b < 0 || b >= used) broken(fmt::format("free list holds block id {}", b));
    if (seen[b]++ != 0) broken(fmt::format("block {} is on the free list twice", b));
    if (m.blocks[b].ref != 0 || m.blocks[b].evictable || m.blocks[b].gen != 0)
      broken(fmt::format("free block {} is held, evictable or cached", b));
  }
  int64_t lru_count = 0;
  int32_t prev = kNone;
  for (int32_t b = m.lru_head; b != kNone; b = m.blocks[b].next) {
    if (b < 0 || b >= used) broken(fmt::format("evictable list holds block id {}", b));
    if (++lru_count > used) broken("evictable list has a cycle");
    if (seen[b]++ != 0) broken(fmt::format("evictable block {} is also free", b));
    const BlockInfo& info = m.blocks[b];
    if (!info.evictable || info.ref != 0 || info.gen == 0)
      broken(fmt::format("evictable block {} is held or not cached", b));
    if (info.prev != prev) broken(fmt::format("evictable block {} has a wrong back link", b));
    prev = b;
  }
  if (prev != m.lru_tail || lru_count != m.lru_size)
    broken(fmt::format("evictable list of {} blocks ends at {}, recorded {} ending at {}", lru_count, prev, m.lru_size,
                       m.lru_tail));
  for (int64_t b = 0; b < used; ++b)
    if (m.blocks[b].evictable && seen[b] == 0) broken(fmt::format("block {} is marked evictable but not listed", b));
  if (held + static_cast<int64_t>(m.free_list.size()) + lru_count != used)
    broken(fmt::format("{} held + {} free + {} evictable blocks != {} handed out", held, m.free_list.size(), lru_count,
                       used));

  // The cache: every entry names a block registered under that hash, and back.
  int64_t registered = 0;
  for (int64_t b = 0; b < used; ++b) {
    const BlockInfo& info = m.blocks[b];
    if (info.gen == 0) continue;
    ++registered;
    if (!m.caching) broken(fmt::format("block {} is cached without prefix caching", b));
    if (info.gen >= m.next_gen) broken(fmt::format("block {} has a future registration", b));
    auto it = m.cache.find(info.hash);
    if (it == m.cache.end() || it->second != b) broken(fmt::format("cached block {} is not the entry of its hash", b));
    if (info.parent.block != kNone &&
        (info.parent.block < 0 || info.parent.block >= used || info.parent.gen >= info.gen))
      broken(fmt::format("cached block {} names a bad parent {}", b, info.parent.block));
  }
  for (const auto& [hash, b] : m.cache)
    if (b < 0 || b >= used || m.blocks[b].gen == 0 || m.blocks[b].hash != hash)
      broken(fmt::format("cache entry {:#x} names block {} that does not carry it", hash, b));
  if (registered != static_cast<int64_t>(m.cache.size()))
    broken(fmt::format("{} cached blocks but {} cache entries", registered, m.cache.size()));
  if (m.stats.hits < 0 || m.stats.hits > m.stats.queries) broken("prefix cache stats");
}

void BlockManagerTestPeer::set_hash(BlockManager& manager, HashFn hash) {
  manager.impl_->hash_fn = hash;
}

}  // namespace pagoda::engine
