#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {

std::string StreamDecoder::push(uint32_t id) {
  const std::string* tok = tok_->id_to_token(id);
  if (tok == nullptr) return {};  // decode drops unknown ids too
  if (skip_special_ && tok_->is_special(id)) return {};
  window_.push_back(*tok);
  last_is_byte_ = tok_->decodes_byte_fallback() && tok_->is_byte_token(id);
  return release(false);
}

std::string StreamDecoder::finish() {
  std::string out = release(true);
  window_.clear();
  read_ = 0;
  prefix_text_.clear();
  return out;
}

std::string StreamDecoder::release(bool final) {
  if (window_.size() == read_) return {};
  if (!final && (last_is_byte_ || !tok_->decoder_streamable())) return {};
  std::string text = tok_->decode_tokens(window_);
  if (!final && text.size() >= kReplacementUtf8.size() &&
      std::string_view(text).substr(text.size() - kReplacementUtf8.size()) == kReplacementUtf8) {
    return {};
  }
  if (text.size() < prefix_text_.size() || text.compare(0, prefix_text_.size(), prefix_text_) != 0) {
    // The window's earlier text changed; wait for more tokens (finish releases what is left).
    if (!final) return {};
    return text.size() > prefix_text_.size() ? text.substr(prefix_text_.size()) : std::string();
  }
  std::string piece = text.substr(prefix_text_.size());
  // Slide the window: what was unread becomes the new prefix.
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(read_));
  read_ = window_.size();
  prefix_text_ = tok_->decode_tokens(window_);
  return piece;
}

}  // namespace pagoda::tokenizer
