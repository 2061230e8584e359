#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {

// Open-addressing hash map from an (left id, right id) pair to (rank, merged id).
struct BpeModel::MergeTable {
  struct Slot {
    uint64_t key = kEmpty;
    uint32_t rank = 0;
    uint32_t id = 0;
  };
  static constexpr uint64_t kEmpty = ~0ull;
  std::vector<Slot> slots;
  size_t mask = 0;
  size_t count = 0;

  explicit MergeTable(size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 1)
      cap <<= 1;
    slots.resize(cap);
    mask = cap - 1;
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  // A pair listed twice keeps its last rank: HF builds its map by collecting the merges in order,
  // so later entries overwrite earlier ones.
  void insert(uint32_t a, uint32_t b, uint32_t rank, uint32_t id) {
    const uint64_t key = (static_cast<uint64_t>(a) << 32) | b;
    size_t i = hash(key) & mask;
    while (slots[i].key != kEmpty && slots[i].key != key)
      i = (i + 1) & mask;
    if (slots[i].key == kEmpty) ++count;
    slots[i] = {key, rank, id};
  }
  [[nodiscard]] const Slot* find(uint32_t a, uint32_t b) const {
    const uint64_t key = (static_cast<uint64_t>(a) << 32) | b;
    size_t i = hash(key) & mask;
    while (true) {
      const Slot& s = slots[i];
      if (s.key == key) return &s;
      if (s.key == kEmpty) return nullptr;
      i = (i + 1) & mask;
    }
  }
};

// Word -> ids cache, sharded so concurrent encoders rarely contend.
struct BpeModel::Cache {
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntriesPerShard = 8192;
  static constexpr size_t kMaxWordBytes = 256;
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>> map;
  };
  std::array<Shard, kShards> shards;
};

namespace {

struct Symbol {
  uint32_t id;
  int32_t prev;
  int32_t next;
  uint32_t len;
};

struct HeapEntry {
  uint32_t rank;
  uint32_t pos;
  uint32_t new_id;
};

// Min-heap order: lowest rank first, then leftmost position (HF's Merge ordering).
struct HeapCmp {
  bool operator()(const HeapEntry& a, const HeapEntry& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

struct WordScratch {
  std::vector<Symbol> symbols;
  std::vector<HeapEntry> heap;
  std::string buf;
};
thread_local WordScratch tls_word;

}  // namespace

void BpeModel::init_vocab() {
  if (vocab_.size() > kMaxVocabSize) {
    fail(ErrorCode::kInvalidArgument, "BPE vocabulary of {} tokens exceeds the cap of {}", vocab_.size(),
         kMaxVocabSize);
  }
  uint32_t limit = 0;
  for (const auto& [tok, id] : vocab_) {
    if (id >= kMaxVocabSize)
      fail(ErrorCode::kInvalidArgument, "BPE token id {} exceeds the cap of {}", id, kMaxVocabSize);
    if (tok.size() > kMaxTokenBytes) fail(ErrorCode::kInvalidArgument, "BPE token of {} bytes is too long", tok.size());
    limit = std::max(limit, id + 1);
  }
  id_to_token_.assign(limit, std::string());
  has_id_.assign(limit, 0);
  for (const auto& [tok, id] : vocab_) {
    id_to_token_[id] = tok;
    has_id_[id] = 1;
  }
  byte_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    if (auto id = token_to_id(fmt::format("<0x{:02X}>", b))) byte_ids_[b] = static_cast<int32_t>(*id);
  }
  if (options_.unk_token) {
    unk_id_ = token_to_id(*options_.unk_token);
    if (!unk_id_) fail(ErrorCode::kInvalidArgument, "BPE unk_token '{}' is not in the vocabulary", *options_.unk_token);
  }
  cache_ = std::make_unique<Cache>();
}

BpeModel::BpeModel(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  init_vocab();
  if (merges.size() > kMaxMerges) {
    fail(ErrorCode::kInvalidArgument, "{} BPE merges exceed the cap of {}", merges.size(), kMaxMerges);
  }
  merges_ = std::make_unique<MergeTable>(merges.size());
  const size_t prefix_len = options_.continuing_subword_prefix.size();
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto ia = token_to_id(a);
    const auto ib = token_to_id(b);
    if (!ia || !ib) {
      fail(ErrorCode::kInvalidArgument, "BPE merge {} ('{} {}') uses a token missing from the vocabulary", rank,
           a.substr(0, 64), b.substr(0, 64));
    }
    merged = a;
    if (prefix_len > 0 && b.compare(0, prefix_len, options_.continuing_subword_prefix) == 0) {
      merged.append(b, prefix_len);
    } else {
      merged.append(b);
    }
    const auto im = token_to_id(merged);
    if (!im) {
      fail(ErrorCode::kInvalidArgument, "BPE merge {} ('{} {}') makes a token missing from the vocabulary", rank,
           a.substr(0, 64), b.substr(0, 64));
    }
    merges_->insert(*ia, *ib, static_cast<uint32_t>(rank), *im);
  }
}

BpeModel::BpeModel(TokenMap vocab, std::vector<std::array<uint32_t, 3>> merges, BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  init_vocab();
  if (merges.size() > kMaxMerges) {
    fail(ErrorCode::kInvalidArgument, "{} BPE merges exceed the cap of {}", merges.size(), kMaxMerges);
  }
  merges_ = std::make_unique<MergeTable>(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& m = merges[rank];
    if (m[0] >= id_limit() || m[1] >= id_limit() || m[2] >= id_limit()) {
      fail(ErrorCode::kInvalidArgument, "BPE merge {} refers to an id outside the vocabulary", rank);
    }
    merges_->insert(m[0], m[1], static_cast<uint32_t>(rank), m[2]);
  }
}

BpeModel::~BpeModel() = default;
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;

size_t BpeModel::merge_count() const {
  return merges_ ? merges_->count : 0;
}

std::optional<uint32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(uint32_t id) const {
  if (id >= id_to_token_.size() || has_id_[id] == 0) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::tokenize(std::string_view word, std::vector<uint32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > Cache::kMaxWordBytes) {
    merge_word(word, out);
    return;
  }
  Cache::Shard& shard = cache_->shards[StringHash{}(word) % Cache::kShards];
  {
    std::lock_guard lock(shard.mutex);
    if (auto it = shard.map.find(word); it != shard.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge_word(word, out);
  std::lock_guard lock(shard.mutex);
  if (shard.map.size() >= Cache::kMaxEntriesPerShard) shard.map.clear();
  shard.map.emplace(std::string(word),
                    std::vector<uint32_t>(out.begin() + static_cast<std::ptrdiff_t>(start), out.end()));
}

void BpeModel::merge_word(std::string_view word, std::vector<uint32_t>& out) const {
  WordScratch& ws = tls_word;
  std::vector<Symbol>& syms = ws.symbols;
  syms.clear();
  auto add = [&](uint32_t id, uint32_t len) {
    const auto idx = static_cast<int32_t>(syms.size());
    syms.push_back({id, idx - 1, -1, len});
    if (idx > 0) syms[static_cast<size_t>(idx - 1)].next = idx;
  };
  const bool has_prefix = !options_.continuing_subword_prefix.empty();
  const bool has_suffix = !options_.end_of_word_suffix.empty();
  bool unk_pending = false;
  uint32_t unk_len = 0;
  size_t i = 0;
  while (i < word.size()) {
    const size_t n = std::min(char_length(static_cast<unsigned char>(word[i])), word.size() - i);
    const size_t end = i + n;
    std::string_view s = word.substr(i, n);
    if ((has_prefix && i > 0) || (has_suffix && end == word.size())) {
      ws.buf.clear();
      if (has_prefix && i > 0) ws.buf += options_.continuing_subword_prefix;
      ws.buf += s;
      if (has_suffix && end == word.size()) ws.buf += options_.end_of_word_suffix;
      s = ws.buf;
    }
    if (auto it = vocab_.find(s); it != vocab_.end()) {
      if (unk_pending) {
        add(*unk_id_, unk_len);
        unk_pending = false;
      }
      add(it->second, static_cast<uint32_t>(n));
      i = end;
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : s)
        all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        // HF adds these before any pending unknown token; keep its order.
        for (char c : s)
          add(static_cast<uint32_t>(byte_ids_[static_cast<uint8_t>(c)]), 1);
        i = end;
        continue;
      }
    }
    if (unk_id_) {
      if (unk_pending && options_.fuse_unk) {
        unk_len += static_cast<uint32_t>(n);
      } else {
        if (unk_pending) add(*unk_id_, unk_len);
        unk_pending = true;
        unk_len = static_cast<uint32_t>(n);
      }
    }
    i = end;
  }
  if (unk_pending) add(*unk_id_, unk_len);

  std::vector<HeapEntry>& heap = ws.heap;
  heap.clear();
  const HeapCmp cmp;
  for (size_t k = 0; k + 1 < syms.size(); ++k) {
    if (const auto* m = merges_->find(syms[k].id, syms[k + 1].id)) {
      heap.push_back({m->rank, static_cast<uint32_t>(k), m->id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), cmp);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const HeapEntry top = heap.back();
    heap.pop_back();
    Symbol& cur = syms[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const auto next_pos = static_cast<size_t>(cur.next);
    const Symbol right = syms[next_pos];
    const auto* m = merges_->find(cur.id, right.id);
    if (m == nullptr || m->id != top.new_id) continue;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    syms[next_pos].len = 0;
    if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = static_cast<int32_t>(top.pos);
    if (cur.prev >= 0) {
      const Symbol& prev = syms[static_cast<size_t>(cur.prev)];
      if (const auto* pm = merges_->find(prev.id, cur.id)) {
        heap.push_back({pm->rank, static_cast<uint32_t>(cur.prev), pm->id});
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
    if (cur.next >= 0) {
      const Symbol& nxt = syms[static_cast<size_t>(cur.next)];
      if (const auto* nm = merges_->find(cur.id, nxt.id)) {
        heap.push_back({nm->rank, top.pos, nm->id});
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
  }
  for (const Symbol& s : syms) {
    if (s.len != 0) out.push_back(s.id);
  }
}

}  // namespace pagoda::tokenizer
