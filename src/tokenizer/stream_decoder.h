#pragma once

// Incremental detokenization for streaming: ids go in one at a time and text comes out as soon
// as it is final, never a broken UTF-8 sequence, so that the concatenated pieces equal
// Tokenizer::decode of all ids (without clean_up_tokenization).
//
// It decodes a short window of recent tokens twice, with and without the newest ones, and
// releases the difference (the method vLLM uses): rules that only touch the first token of a
// decode (Metaspace dropping the prepended "▁", Strip removing one leading space) then cancel
// out, since the window only starts after a prefix that decodes to some text by itself and the
// same in context. A final U+FFFD is held back (it may be a multi-byte character still arriving), and so is
// a trailing run of "<0xXX>" tokens of a byte-fallback decoder (HF decodes a whole run at once,
// and a later byte can turn the run's earlier characters into U+FFFD). A decoder
// chain whose output depends on later tokens (a trailing Strip, a regex Replace over the joined
// text, BPEDecoder's word suffix) releases everything at finish().

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {

class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
      : tok_(&tokenizer), skip_special_(skip_special_tokens) {}

  // Adds one id; returns the text that became final (often empty).
  [[nodiscard]] std::string push(uint32_t id);
  // End of the stream: returns whatever was held back.
  [[nodiscard]] std::string finish();

 private:
  [[nodiscard]] std::string release(bool final);

  const Tokenizer* tok_;
  bool skip_special_;
  std::vector<std::string> window_;  // token strings since the window start
  std::vector<bool> is_byte_;        // window_[i] is a "<0xXX>" token of a byte-fallback decoder
  size_t read_ = 0;                  // window_[0:read_] decodes to prefix_text_
  std::string prefix_text_;
  size_t released_ = 0;  // bytes released beyond prefix_text_ while a trailing U+FFFD is held
  // Every token of the stream and every byte released so far: finish() decodes the whole stream
  // once and releases the rest of it, so the pieces add up to Tokenizer::decode. (Checking each
  // piece against a decode of the whole stream made a stream of n tokens cost O(n^2): 4 s of
  // decoding for 16,000 tokens.)
  std::vector<std::string> all_;
  std::string emitted_;
};

}  // namespace pagoda::tokenizer
