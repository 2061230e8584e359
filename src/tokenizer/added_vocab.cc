#include "tokenizer/added_vocab.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, joiners.
const Regex& word_char_regex() {
  static const Regex re(R"([\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])");
  return re;
}

bool is_word_char(std::string_view s) {
  return word_char_regex().search(s);
}

// The last code point of s (valid UTF-8, non-empty).
std::string_view last_char(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80)
    --i;
  return s.substr(i);
}

std::string_view first_char(std::string_view s) {
  return s.substr(0, std::min(s.size(), char_length(static_cast<unsigned char>(s[0]))));
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view s, int32_t token) {
  if (s.empty()) return;
  first_byte[static_cast<uint8_t>(s[0])] = true;
  uint32_t node = 0;
  for (char ch : s) {
    const auto c = static_cast<uint8_t>(ch);
    auto& kids = nodes[node].children;
    auto it = std::lower_bound(kids.begin(), kids.end(), c,
                               [](const std::pair<uint8_t, uint32_t>& p, uint8_t v) { return p.first < v; });
    if (it != kids.end() && it->first == c) {
      node = it->second;
    } else {
      const auto child = static_cast<uint32_t>(nodes.size());
      kids.insert(it, {c, child});
      nodes.emplace_back();
      node = child;
    }
  }
  // Two tokens with the same content: the later one wins, as in HF's trie over its ordered list.
  if (nodes[node].token < 0) nodes[node].token = token;
}

std::pair<size_t, int32_t> AddedVocabulary::Trie::longest(std::string_view s, size_t pos) const {
  uint32_t node = 0;
  std::pair<size_t, int32_t> best{0, -1};
  for (size_t i = pos; i < s.size(); ++i) {
    const auto c = static_cast<uint8_t>(s[i]);
    const auto& kids = nodes[node].children;
    auto it = std::lower_bound(kids.begin(), kids.end(), c,
                               [](const std::pair<uint8_t, uint32_t>& p, uint8_t v) { return p.first < v; });
    if (it == kids.end() || it->first != c) break;
    node = it->second;
    if (nodes[node].token >= 0) best = {i + 1 - pos, nodes[node].token};
  }
  return best;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)) {
  if (tokens_.size() > kMaxAddedTokens) {
    fail(ErrorCode::kInvalidArgument, "{} added tokens exceed the cap of {}", tokens_.size(), kMaxAddedTokens);
  }
  // HF matches special tokens first, then the others, each in the order given; a trie keeps the
  // first token inserted for a given content.
  std::vector<size_t> order(tokens_.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return tokens_[a].special && !tokens_[b].special; });
  std::string norm;
  std::string scratch;
  id_strings_.resize(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i)
    id_strings_[i] = tokens_[i].content;
  for (size_t i : order) {
    const AddedToken& t = tokens_[i];
    if (t.content.empty()) continue;
    if (!is_valid_utf8(t.content)) fail(ErrorCode::kInvalidArgument, "added token {} is not valid UTF-8", t.id);
    if (t.normalized) {
      norm = t.content;
      if (normalizer != nullptr) normalizer->normalize(norm, scratch);
      normalized_.insert(norm, static_cast<int32_t>(i));
      id_strings_[i] = norm;
    } else {
      raw_.insert(t.content, static_cast<int32_t>(i));
    }
  }
  for (size_t i = 0; i < tokens_.size(); ++i) {
    by_id_[tokens_[i].id] = i;
    by_content_[tokens_[i].content] = i;
    if (tokens_[i].special) special_contents_.insert(tokens_[i].content);
  }
}

const AddedToken* AddedVocabulary::find_id(uint32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const std::string* AddedVocabulary::id_string(uint32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &id_strings_[it->second];
}

const AddedToken* AddedVocabulary::find_content(std::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

bool AddedVocabulary::is_special_content(std::string_view content) const {
  return special_contents_.find(content) != special_contents_.end();
}

void AddedVocabulary::split(std::string_view text, bool normalized_set, std::vector<AddedSplit>& out) const {
  out.clear();
  const Trie& trie = normalized_set ? normalized_ : raw_;
  size_t start_offset = 0;
  if (trie.nodes.size() > 1) {
    size_t pos = 0;
    while (pos < text.size()) {
      if (!trie.first_byte[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      const auto [len, index] = trie.longest(text, pos);
      if (index < 0) {
        ++pos;
        continue;
      }
      size_t start = pos;
      size_t stop = pos + len;
      pos = stop;  // matches never overlap, whatever the options below decide
      const AddedToken& tok = tokens_[static_cast<size_t>(index)];
      if (tok.single_word) {
        const bool start_space = start == 0 || !is_word_char(last_char(text.substr(0, start)));
        const bool stop_space = stop == text.size() || !is_word_char(first_char(text.substr(stop)));
        if (!start_space || !stop_space) continue;
      }
      if (tok.lstrip) {
        size_t s = start;
        while (s > 0) {
          const std::string_view c = last_char(text.substr(0, s));
          size_t p = 0;
          if (!is_white_space(next_code_point(c, p))) break;
          s -= c.size();
        }
        start = std::max(s, start_offset);
      }
      if (tok.rstrip) {
        while (stop < text.size()) {
          size_t p = stop;
          if (!is_white_space(next_code_point(text, p))) break;
          stop = p;
        }
      }
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, static_cast<int64_t>(tok.id)});
      start_offset = stop;
    }
  }
  if (start_offset < text.size() || text.empty()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace pagoda::tokenizer
