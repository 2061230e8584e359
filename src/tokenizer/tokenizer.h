#pragma once

// pagoda's tokenizer: the HF `tokenizers` pipeline (added tokens, normalizer, pre-tokenizer, BPE
// model, post-processor template, decoder) loaded from a tokenizer.json (+ tokenizer_config.json)
// or from the tokenizer embedded in a GGUF file. Encoding and decoding are const and thread-safe.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"

namespace pagoda::gguf {
class File;
}

namespace pagoda::tokenizer {

// Everything a loader produces.
struct TokenizerSpec {
  std::string source;  // file or folder it came from, for messages
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<Decoder> decoder;
  PostTemplate post;
  std::vector<AddedToken> added_tokens;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
  std::string chat_template;
  bool clean_up_tokenization_spaces = false;
};

struct GgufOptions {
  // Where transformers' GGUF conversion (the reference the tests use, and the default) and
  // llama.cpp read a file differently, follow llama.cpp:
  //  - tokenizer.ggml.pre names transformers does not know (smollm, starcoder, deepseek-*,
  //    falcon, ...) get llama.cpp's split regexes instead of GPT-2's (smollm: digits first, so a
  //    run of spaces before a number stays one piece, as in SmolLM's own tokenizer.json);
  //  - a SentencePiece vocabulary with tokenizer.ggml.add_space_prefix = false gets no "▁"
  //    prepended (transformers always prepends one).
  bool llama_cpp = false;
};

class Tokenizer {
 public:
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // MODEL as the CLI takes it: a .gguf file, a folder with tokenizer.json (and optionally
  // tokenizer_config.json), or a tokenizer.json path. Throws pagoda::Error.
  [[nodiscard]] static Tokenizer load(const std::string& path);
  // `config_json` may be empty. `name` prefixes error messages.
  [[nodiscard]] static Tokenizer from_json(std::string_view tokenizer_json, std::string_view config_json,
                                           const std::string& name);
  [[nodiscard]] static Tokenizer from_gguf(const gguf::File& file, const GgufOptions& options = {});

  // Longest text encode() accepts: pieces are addressed with 32-bit offsets, and pre-tokenizers
  // may triple a text's size (Metaspace writes "▁" for every space).
  static constexpr size_t kMaxEncodeBytes = 512u << 20;

  // Encodes `text`; bytes that are not valid UTF-8 are first replaced by U+FFFD the way Python's
  // bytes.decode("utf-8", errors="replace") does. add_special_tokens applies the post-processor
  // template (BOS/EOS), as HF's argument of the same name.
  [[nodiscard]] std::vector<uint32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  void encode_into(std::string_view text, bool add_special_tokens, std::vector<uint32_t>& out) const;

  // Decodes ids (unknown ids are dropped, as HF does). clean_up applies transformers'
  // clean_up_tokenization (" ." -> "." ...) when the config asks for it.
  [[nodiscard]] std::string decode(std::span<const uint32_t> ids, bool skip_special_tokens = false) const;
  [[nodiscard]] std::string decode(std::span<const uint32_t> ids, bool skip_special_tokens, bool clean_up) const;

  // The token string for an id (added tokens included), nullptr for an unknown id.
  [[nodiscard]] const std::string* id_to_token(uint32_t id) const;
  [[nodiscard]] std::optional<uint32_t> token_to_id(std::string_view token) const;
  [[nodiscard]] bool is_special(uint32_t id) const;
  // One past the largest id (model and added tokens).
  [[nodiscard]] uint32_t vocab_size() const { return vocab_size_; }

  [[nodiscard]] std::optional<uint32_t> bos_id() const { return bos_id_; }
  [[nodiscard]] std::optional<uint32_t> eos_id() const { return eos_id_; }
  [[nodiscard]] std::optional<uint32_t> pad_id() const { return pad_id_; }
  [[nodiscard]] const std::optional<std::string>& bos_token() const { return spec_.bos_token; }
  [[nodiscard]] const std::optional<std::string>& eos_token() const { return spec_.eos_token; }
  [[nodiscard]] const std::string& chat_template() const { return spec_.chat_template; }
  [[nodiscard]] bool clean_up_tokenization_spaces() const { return spec_.clean_up_tokenization_spaces; }
  [[nodiscard]] const PostTemplate& post_template() const { return spec_.post; }
  [[nodiscard]] const std::string& source() const { return spec_.source; }

  // The decoder chain over token strings, joined (HF's Decoder::decode). Used by StreamDecoder.
  [[nodiscard]] std::string decode_tokens(std::vector<std::string> tokens) const;
  // Whether the decoder joins runs of "<0xXX>" byte tokens (a later byte can still change how an
  // earlier run decodes).
  [[nodiscard]] bool decodes_byte_fallback() const { return decodes_byte_fallback_; }
  [[nodiscard]] bool is_byte_token(uint32_t id) const;
  // Whether the decoder chain allows incremental release (StreamDecoder holds everything until
  // finish() otherwise; the common chains all do).
  [[nodiscard]] bool decoder_streamable() const { return decoder_streamable_; }

 private:
  void encode_text(std::string_view text, std::vector<uint32_t>& out) const;

  TokenizerSpec spec_;
  AddedVocabulary added_;
  uint32_t vocab_size_ = 0;
  std::optional<uint32_t> bos_id_;
  std::optional<uint32_t> eos_id_;
  std::optional<uint32_t> pad_id_;
  bool decodes_byte_fallback_ = false;
  bool decoder_streamable_ = true;
};

// transformers' clean_up_tokenization.
[[nodiscard]] std::string clean_up_tokenization(std::string_view text);

}  // namespace pagoda::tokenizer
