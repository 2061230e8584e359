#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {

std::string StreamDecoder::push(uint32_t id) {
  const std::string* tok = tok_->id_to_token(id);
  if (tok == nullptr) return {};  // decode drops unknown ids too
  if (skip_special_ && tok_->is_special(id)) return {};
  window_.push_back(*tok);
  is_byte_.push_back(tok_->decodes_byte_fallback() && tok_->is_byte_token(id));
  all_.push_back(*tok);
  std::string piece = release(false);
  emitted_ += piece;
  return piece;
}

std::string StreamDecoder::finish() {
  std::string out = release(true);
  const std::string full = tok_->decode_tokens(std::move(all_));
  if (full.size() >= emitted_.size() && full.compare(0, emitted_.size(), emitted_) == 0) {
    out = full.substr(emitted_.size());
  }
  all_.clear();
  emitted_.clear();
  window_.clear();
  is_byte_.clear();
  read_ = 0;
  prefix_text_.clear();
  released_ = 0;
  return out;
}

std::string StreamDecoder::release(bool final) {
  if (window_.size() == read_) return {};
  if (!final && !tok_->decoder_streamable()) return {};
  // A trailing run of byte-fallback tokens may still change: decode up to where it starts.
  size_t end = window_.size();
  if (!final) {
    while (end > read_ && is_byte_[end - 1])
      --end;
    if (end == read_) return {};
  }
  std::vector<std::string> part(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(end));
  const std::string text = tok_->decode_tokens(std::move(part));
  const size_t done = prefix_text_.size() + released_;
  if (text.size() < done || text.compare(0, prefix_text_.size(), prefix_text_) != 0) {
    // Earlier text changed (a decoder that is not local after all): wait; finish() releases it.
    if (!final || text.size() <= done) return {};
    return text.substr(done);
  }
  // The last character may be an incomplete UTF-8 sequence shown as U+FFFD: keep it back.
  const bool hold_tail = !final && text.size() - done >= kReplacementUtf8.size() &&
                         std::string_view(text).substr(text.size() - kReplacementUtf8.size()) == kReplacementUtf8;
  const size_t avail = hold_tail ? text.size() - kReplacementUtf8.size() : text.size();
  std::string piece = avail > done ? text.substr(done, avail - done) : std::string();
  if (hold_tail) {
    released_ += piece.size();
    return piece;
  }
  // Slide the window only where the rules that touch the start of a decode cancel out: the new
  // prefix must decode alone to exactly the text it gave in context. Otherwise (for example a
  // Metaspace and a Strip that both remove leading spaces) keep decoding from the window start.
  // The new prefix must also decode to something: a rule that strips leading characters of the
  // joined text (a Strip after Fuse, Metaspace's first token) stops inside a prefix that keeps
  // some text, so it takes the same characters in every later decode of the window, and those of
  // the whole stream; over a prefix with no text it would reach into the tokens after it.
  std::string alone = tok_->decode_tokens(std::vector<std::string>(window_.begin() + static_cast<std::ptrdiff_t>(read_),
                                                                   window_.begin() + static_cast<std::ptrdiff_t>(end)));
  if (alone.empty() || alone != std::string_view(text).substr(prefix_text_.size())) {
    released_ += piece.size();
    return piece;
  }
  // Everything up to `end` is out: slide the window so [old boundary, end) becomes the prefix,
  // whose text alone is `alone`.
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(read_));
  is_byte_.erase(is_byte_.begin(), is_byte_.begin() + static_cast<std::ptrdiff_t>(read_));
  read_ = end - read_;
  prefix_text_ = std::move(alone);
  released_ = 0;
  return piece;
}

}  // namespace pagoda::tokenizer
