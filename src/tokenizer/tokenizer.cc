#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

bool contains_byte_fallback(const Decoder* d) {
  if (d == nullptr) return false;
  if (dynamic_cast<const ByteFallbackDecoder*>(d) != nullptr) return true;
  if (const auto* seq = dynamic_cast<const SequenceDecoder*>(d)) {
    return std::any_of(seq->items().begin(), seq->items().end(),
                       [](const auto& item) { return contains_byte_fallback(item.get()); });
  }
  return false;
}

// Whether decoding a window of recent tokens and taking the difference gives exactly the text
// the full decode adds (see StreamDecoder). Steps that see the text after it was joined into one
// string (after ByteLevel or Fuse) must act on single characters or only at its start; a
// trailing Strip, or the word suffix of BPEDecoder, depend on what comes later.
bool streamable(const Decoder* d, bool& joined) {
  if (d == nullptr) return true;
  if (const auto* seq = dynamic_cast<const SequenceDecoder*>(d)) {
    for (const auto& item : seq->items()) {
      if (!streamable(item.get(), joined)) return false;
    }
    return true;
  }
  if (dynamic_cast<const ByteLevelDecoder*>(d) != nullptr || dynamic_cast<const FuseDecoder*>(d) != nullptr) {
    joined = true;
    return true;
  }
  if (const auto* strip = dynamic_cast<const StripDecoder*>(d)) return strip->stop() == 0;
  if (const auto* rep = dynamic_cast<const ReplaceDecoder*>(d)) return !joined || rep->single_char_literal();
  if (dynamic_cast<const ByteFallbackDecoder*>(d) != nullptr) return !joined;
  if (dynamic_cast<const MetaspaceDecoder*>(d) != nullptr) return true;
  return false;
}

struct EncodeScratch {
  std::string clean;
  std::string normalized;
  std::string norm_scratch;
  std::vector<AddedSplit> raw_splits;
  std::vector<AddedSplit> norm_splits;
  PreTokenized pt;
  PreTokenizeScratch pts;
};
thread_local EncodeScratch tls_encode;

}  // namespace

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  if (spec_.model == nullptr) fail(ErrorCode::kInvalidArgument, "{}: tokenizer has no model", spec_.source);
  for (const AddedToken& t : spec_.added_tokens) {
    if (t.id >= kMaxVocabSize) {
      fail(ErrorCode::kInvalidFile, "{}: added token id {} exceeds the cap of {}", spec_.source, t.id, kMaxVocabSize);
    }
  }
  added_ = AddedVocabulary(spec_.added_tokens, spec_.normalizer.get());
  vocab_size_ = spec_.model->id_limit();
  for (const AddedToken& t : spec_.added_tokens)
    vocab_size_ = std::max(vocab_size_, t.id + 1);
  auto lookup = [&](const std::optional<std::string>& tok) -> std::optional<uint32_t> {
    if (!tok) return std::nullopt;
    return token_to_id(*tok);
  };
  bos_id_ = lookup(spec_.bos_token);
  eos_id_ = lookup(spec_.eos_token);
  pad_id_ = lookup(spec_.pad_token);
  decodes_byte_fallback_ = contains_byte_fallback(spec_.decoder.get());
  bool joined = false;
  decoder_streamable_ = streamable(spec_.decoder.get(), joined);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 3 + 8);
  encode_into(text, add_special_tokens, out);
  return out;
}

void Tokenizer::encode_into(std::string_view text, bool add_special_tokens, std::vector<uint32_t>& out) const {
  if (text.size() > kMaxEncodeBytes) {
    fail(ErrorCode::kInvalidArgument, "text of {} bytes exceeds the {} byte encoding cap", text.size(),
         kMaxEncodeBytes);
  }
  EncodeScratch& s = tls_encode;
  if (!is_valid_utf8(text)) {
    s.clean = sanitize_utf8(text);
    text = s.clean;
  }
  if (add_special_tokens) out.insert(out.end(), spec_.post.prefix.begin(), spec_.post.prefix.end());
  encode_text(text, out);
  if (add_special_tokens) out.insert(out.end(), spec_.post.suffix.begin(), spec_.post.suffix.end());
}

void Tokenizer::encode_text(std::string_view text, std::vector<uint32_t>& out) const {
  EncodeScratch& s = tls_encode;
  std::vector<AddedSplit>& raw = s.raw_splits;
  added_.split(text, false, raw);
  for (const AddedSplit& r : raw) {
    if (r.id >= 0) {
      out.push_back(static_cast<uint32_t>(r.id));
      continue;
    }
    const bool first = r.begin == 0;
    s.normalized.assign(text.substr(r.begin, r.end - r.begin));
    if (spec_.normalizer != nullptr) spec_.normalizer->normalize(s.normalized, s.norm_scratch);
    added_.split(s.normalized, true, s.norm_splits);
    for (const AddedSplit& n : s.norm_splits) {
      if (n.id >= 0) {
        out.push_back(static_cast<uint32_t>(n.id));
        continue;
      }
      s.pt.reset(std::string_view(s.normalized).substr(n.begin, n.end - n.begin), first && n.begin == 0);
      if (spec_.pre_tokenizer != nullptr) spec_.pre_tokenizer->apply(s.pt, s.pts);
      for (const Piece& p : s.pt.pieces)
        spec_.model->tokenize(s.pt.view(p), out);
    }
  }
}

const std::string* Tokenizer::id_to_token(uint32_t id) const {
  if (const std::string* t = added_.id_string(id)) return t;
  return spec_.model->id_to_token(id);
}

std::optional<uint32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* t = added_.find_content(token)) return t->id;
  return spec_.model->token_to_id(token);
}

bool Tokenizer::is_special(uint32_t id) const {
  const std::string* tok = id_to_token(id);
  return tok != nullptr && added_.is_special_content(*tok);
}

bool Tokenizer::is_byte_token(uint32_t id) const {
  const std::string* tok = id_to_token(id);
  return tok != nullptr && ByteFallbackDecoder::byte_token_value(*tok) >= 0;
}

std::string Tokenizer::decode_tokens(std::vector<std::string> tokens) const {
  // Nothing decodes to nothing. (A decoder chain can turn an empty list into text, e.g. Fuse then a
  // Replace whose regex matches the empty string; streaming, which sees no token, could never
  // produce that text, so both agree on "".)
  if (tokens.empty()) return {};
  if (spec_.decoder == nullptr) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out += tokens[i];
    }
    return out;
  }
  spec_.decoder->decode_chain(tokens);
  std::string out;
  for (const std::string& t : tokens)
    out += t;
  return out;
}

std::string Tokenizer::decode(std::span<const uint32_t> ids, bool skip_special_tokens) const {
  return decode(ids, skip_special_tokens, spec_.clean_up_tokenization_spaces);
}

std::string Tokenizer::decode(std::span<const uint32_t> ids, bool skip_special_tokens, bool clean_up) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (uint32_t id : ids) {
    const std::string* tok = id_to_token(id);
    if (tok == nullptr) continue;
    if (skip_special_tokens && added_.is_special_content(*tok)) continue;
    tokens.push_back(*tok);
  }
  std::string text = decode_tokens(std::move(tokens));
  if (clean_up) text = clean_up_tokenization(text);
  return text;
}

std::string clean_up_tokenization(std::string_view text) {
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  std::string cur(text);
  std::string next;
  for (const auto& [from, to] : kRules) {
    replace_all(cur, from, nullptr, to, next);
    cur.swap(next);
  }
  return cur;
}

}  // namespace pagoda::tokenizer
