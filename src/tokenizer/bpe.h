#pragma once

// Byte-pair-encoding model as HF tokenizers' `BPE`: a vocabulary, merge ranks, optional byte
// fallback ("<0xXX>" tokens), unknown token with fusing, subword prefix / word suffix, and
// `ignore_merges` (a word that is itself in the vocabulary is taken whole). Encoding a word uses a
// merge-rank hash map and a binary heap over a linked list of symbols; results are cached per
// word.

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pagoda::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

inline constexpr uint32_t kMaxVocabSize = 1u << 22;
inline constexpr size_t kMaxMerges = 1u << 23;
inline constexpr size_t kMaxTokenBytes = 1u << 16;

struct BpeOptions {
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  // `vocab` maps token -> id; `merges` are (left, right) token pairs in rank order. Throws
  // Error(kInvalidArgument) on a merge whose parts or result are missing from the vocabulary, or
  // on a cap being exceeded.
  BpeModel(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);
  // Merges given as id pairs with the id of the merged token (the GGUF path derives these).
  BpeModel(TokenMap vocab, std::vector<std::array<uint32_t, 3>> merges, BpeOptions options);
  ~BpeModel();
  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;

  // Appends the ids of `word` (one pre-tokenized piece) to `out`.
  void tokenize(std::string_view word, std::vector<uint32_t>& out) const;

  [[nodiscard]] std::optional<uint32_t> token_to_id(std::string_view token) const;
  [[nodiscard]] const std::string* id_to_token(uint32_t id) const;
  // One past the largest id in the vocabulary.
  [[nodiscard]] uint32_t id_limit() const { return static_cast<uint32_t>(id_to_token_.size()); }
  [[nodiscard]] size_t vocab_size() const { return vocab_.size(); }
  [[nodiscard]] size_t merge_count() const;
  [[nodiscard]] const BpeOptions& options() const { return options_; }

 private:
  struct MergeTable;
  struct Cache;
  void init_vocab();
  void merge_word(std::string_view word, std::vector<uint32_t>& out) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> has_id_;
  BpeOptions options_;
  std::optional<uint32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_{};  // "<0xXX>" ids for byte fallback, -1 if absent
  std::unique_ptr<MergeTable> merges_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace pagoda::tokenizer
