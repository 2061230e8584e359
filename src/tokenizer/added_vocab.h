#pragma once

// Added tokens (HF tokenizers' AddedVocabulary): strings matched whole in the input before the
// model sees it, leftmost-longest, with the single_word / lstrip / rstrip options. Tokens with
// normalized=false are matched in the raw text; normalized=true ones in each normalized piece.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pagoda::tokenizer {

struct AddedToken {
  std::string content;
  uint32_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// One piece of a split: a matched added token (id >= 0) or plain text (id < 0).
struct AddedSplit {
  size_t begin = 0;
  size_t end = 0;
  int64_t id = -1;
};

class Normalizer;

struct ContentHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

class AddedVocabulary {
 public:
  inline static constexpr size_t kMaxAddedTokens = 1u << 20;

  AddedVocabulary() = default;
  // `normalizer` (may be null) is applied to normalized tokens' content before matching, as HF
  // does. Throws Error(kInvalidArgument) past the caps.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Splits `text` with the raw (normalized=false) or the normalized set. `out` covers all of text.
  void split(std::string_view text, bool normalized_set, std::vector<AddedSplit>& out) const;

  [[nodiscard]] const std::vector<AddedToken>& tokens() const { return tokens_; }
  [[nodiscard]] const AddedToken* find_id(uint32_t id) const;
  // The string HF reports for an added token's id: its content, normalized when the token is.
  [[nodiscard]] const std::string* id_string(uint32_t id) const;
  [[nodiscard]] const AddedToken* find_content(std::string_view content) const;
  [[nodiscard]] bool is_special_content(std::string_view content) const;
  [[nodiscard]] bool empty() const { return tokens_.empty(); }

 private:
  // Byte trie; leftmost-longest search scans start positions and walks the trie.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, uint32_t>> children;  // sorted by byte
      int32_t token = -1;                                  // index into tokens_
    };
    std::vector<Node> nodes{Node{}};
    std::array<bool, 256> first_byte{};
    void insert(std::string_view s, int32_t token);
    // Longest match starting at `pos`: (length, token index) or (0, -1).
    [[nodiscard]] std::pair<size_t, int32_t> longest(std::string_view s, size_t pos) const;
  };

  std::vector<AddedToken> tokens_;
  std::vector<std::string> id_strings_;  // parallel to tokens_
  std::unordered_map<uint32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t, ContentHash, std::equal_to<>> by_content_;
  std::unordered_set<std::string, ContentHash, std::equal_to<>> special_contents_;
  Trie raw_;
  Trie normalized_;
};

}  // namespace pagoda::tokenizer
