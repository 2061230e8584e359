#pragma once

// The stages of a HF-style tokenizer pipeline other than the model: normalizers, pre-tokenizers,
// decoders and post-processors. Each mirrors the component of the same name in HF `tokenizers`
// (the reference implementation); the JSON and GGUF loaders build them.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace pagoda::tokenizer {

// ---------------------------------------------------------------------------------------------
// Normalizers: string -> string.

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `s` in place; `scratch` is a reusable buffer.
  virtual void normalize(std::string& s, std::string& scratch) const = 0;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> items) : items_(std::move(items)) {}
  void normalize(std::string& s, std::string& scratch) const override;

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  void normalize(std::string& s, std::string& scratch) const override;

 private:
  std::string prepend_;
};

// Replaces every occurrence of a literal string (regex == nullptr) or every regex match.
class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void normalize(std::string& s, std::string& scratch) const override;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s, std::string& scratch) const override;

 private:
  bool left_;
  bool right_;
};

enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(UnicodeForm form) : form_(form) {}
  void normalize(std::string& s, std::string& scratch) const override;

 private:
  UnicodeForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void normalize(std::string& s, std::string& scratch) const override;
};

// Replace with a literal pattern, as a free function shared with the Replace decoder.
void replace_all(std::string_view s, std::string_view literal, const Regex* regex, std::string_view content,
                 std::string& out);

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers: split a normalized string into pieces (words) that the model encodes separately.

struct Piece {
  uint32_t begin = 0;
  uint32_t end = 0;
  // The piece starts at offset 0 of the original input (Metaspace's "first" prepend scheme).
  bool first = false;
};

struct PreTokenized {
  std::string text;
  std::vector<Piece> pieces;

  [[nodiscard]] std::string_view view(const Piece& p) const { return {text.data() + p.begin, p.end - p.begin}; }
  void reset(std::string_view s, bool first) {
    text.assign(s);
    pieces.clear();
    if (!s.empty()) pieces.push_back({0, static_cast<uint32_t>(s.size()), first});
  }
};

// Reusable buffers a pre-tokenizer may swap with its input.
struct PreTokenizeScratch {
  std::string text;
  std::vector<Piece> pieces;
  std::vector<Match> matches;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(PreTokenized& pt, PreTokenizeScratch& scratch) const = 0;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> items) : items_(std::move(items)) {}
  void apply(PreTokenized& pt, PreTokenizeScratch& scratch) const override;

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

// Split on a literal (regex == nullptr) or on regex matches.
class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(std::string literal, std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert)
      : literal_(std::move(literal)), regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void apply(PreTokenized& pt, PreTokenizeScratch& scratch) const override;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex);
  void apply(PreTokenized& pt, PreTokenizeScratch& scratch) const override;

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;  // GPT-2's split, when use_regex
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void apply(PreTokenized& pt, PreTokenizeScratch& scratch) const override;

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual);
  void apply(PreTokenized& pt, PreTokenizeScratch& scratch) const override;

 private:
  bool individual_;
  Regex regex_;
};

// `Whitespace` (\w+|[^\w\s]+ kept), `WhitespaceSplit` (split on whitespace) and `Punctuation`.
class RegexKeepPreTokenizer final : public PreTokenizer {
 public:
  RegexKeepPreTokenizer(std::string_view pattern, SplitBehavior behavior, bool invert)
      : regex_(pattern), behavior_(behavior), invert_(invert) {}
  void apply(PreTokenized& pt, PreTokenizeScratch& scratch) const override;

 private:
  Regex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

// Splits every piece of `pt` at `matches`-derived boundaries per `behavior` (HF's
// NormalizedString::split); exposed for tests.
void split_pieces(PreTokenized& pt, PreTokenizeScratch& scratch, SplitBehavior behavior, bool invert,
                  const Regex* regex, std::string_view literal);

// ---------------------------------------------------------------------------------------------
// Decoders: token strings -> text, as a chain over the list of token strings.

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> items) : items_(std::move(items)) {}
  void decode_chain(std::vector<std::string>& tokens) const override;
  [[nodiscard]] const std::vector<std::unique_ptr<Decoder>>& items() const { return items_; }

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme)
      : replacement_(std::move(replacement)), scheme_(scheme) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override;
  // The byte a "<0xXX>" token stands for, or -1.
  [[nodiscard]] static int byte_token_value(std::string_view token);
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override;
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override;
  [[nodiscard]] size_t stop() const { return stop_; }

 private:
  char32_t content_;
  size_t start_;
  size_t stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override;
  // Whether the pattern can only ever match within one character.
  [[nodiscard]] bool single_char_literal() const;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

// BPEDecoder: a word suffix (e.g. "</w>") becomes a space, except after the last token.
class BpeSuffixDecoder final : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  std::string suffix_;
};

// ---------------------------------------------------------------------------------------------
// Post-processor: the special tokens added around a single sequence (pairs are not used by an
// inference engine). Every HF processor that matters here reduces to a template.

struct PostTemplate {
  std::vector<uint32_t> prefix;  // ids before the sequence
  std::vector<uint32_t> suffix;  // ids after it
};

}  // namespace pagoda::tokenizer
