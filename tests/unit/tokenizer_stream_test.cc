// StreamDecoder: pieces are released as soon as they are final, never split a UTF-8 sequence,
// and join to the full decode.

#include <gtest/gtest.h>

#include <array>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

// Byte-level: 你 (E4 BD A0) is spelled "ä½ł" and comes as three one-byte tokens.
constexpr std::string_view kByteLevel = R"({
  "added_tokens": [{"id": 0, "content": "<|end|>", "special": true, "normalized": false}],
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"<|end|>": 0, "ä": 1, "½": 2, "ł": 3, "Ġ": 4, "a": 5, "Ġa": 6, "ÿ": 7},
            "merges": ["Ġ a"]}
})";

// SentencePiece style: Metaspace with a prepended "▁", byte fallback, Strip of the leading space.
constexpr std::string_view kSentencePiece = R"({
  "added_tokens": [{"id": 0, "content": "<s>", "special": true, "normalized": false}],
  "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
    {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "byte_fallback": true, "vocab": {"<s>": 0, "▁": 1, "a": 2, "▁a": 3,
            "<0xE4>": 4, "<0xBD>": 5, "<0xA0>": 6, "<0x80>": 7}, "merges": ["▁ a"]}
})";

std::vector<std::string> stream(const Tokenizer& tok, const std::vector<uint32_t>& ids, bool skip,
                                std::vector<size_t>* release_steps = nullptr) {
  StreamDecoder dec(tok, skip);
  std::vector<std::string> pieces;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string p = dec.push(ids[i]);
    EXPECT_TRUE(is_valid_utf8(p));
    if (!p.empty()) {
      pieces.push_back(p);
      if (release_steps != nullptr) release_steps->push_back(i);
    }
  }
  std::string rest = dec.finish();
  if (!rest.empty()) pieces.push_back(rest);
  return pieces;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& p : v)
    s += p;
  return s;
}

TEST(TokenizerStream, HoldsSplitMultibyteCharacterUntilComplete) {
  const Tokenizer tok = Tokenizer::from_json(kByteLevel, "", "bl.json");
  std::vector<size_t> steps;
  const std::vector<uint32_t> ids{5, 1, 2, 3, 6};  // a 你 ␠a
  const auto pieces = stream(tok, ids, false, &steps);
  EXPECT_EQ(pieces, (std::vector<std::string>{"a", "\xE4\xBD\xA0", " a"}));
  EXPECT_EQ(steps, (std::vector<size_t>{0, 3, 4}));  // released at the third byte, not before
  EXPECT_EQ(join(pieces), tok.decode(ids));
}

TEST(TokenizerStream, InvalidBytesAndSpecialTokens) {
  const Tokenizer tok = Tokenizer::from_json(kByteLevel, "", "bl.json");
  for (bool skip : {false, true}) {
    for (const std::vector<uint32_t>& ids : std::vector<std::vector<uint32_t>>{
             {1, 2, 5},        // truncated sequence followed by a letter
             {7, 7, 0, 5, 1},  // stray bytes, special token, dangling lead byte at the end
             {0, 1, 0, 2, 3},  // a special token between the bytes of a character
             {3, 3, 6, 1, 2},
         }) {
      EXPECT_EQ(join(stream(tok, ids, skip)), tok.decode(ids, skip));
    }
  }
}

TEST(TokenizerStream, LeadBytesThatNeverCompleteStillFlow) {
  const Tokenizer tok = Tokenizer::from_json(kByteLevel, "", "bl.json");
  // Each E4 is cut short by the next one: all but the last are final U+FFFDs at once.
  const std::vector<uint32_t> ids{1, 1, 1, 1, 1, 5};
  std::vector<size_t> steps;
  const auto pieces = stream(tok, ids, false, &steps);
  EXPECT_EQ(join(pieces), tok.decode(ids));
  EXPECT_EQ(steps, (std::vector<size_t>{1, 2, 3, 4, 5}));
}

TEST(TokenizerStream, SentencePieceLeadingSpaceAndByteRuns) {
  const Tokenizer tok = Tokenizer::from_json(kSentencePiece, "", "spm.json");
  const std::vector<uint32_t> ids{0, 3, 1, 3, 4, 5, 6, 3};  // <s> ▁a ▁ ▁a 你 ▁a
  const auto pieces = stream(tok, ids, true);
  EXPECT_EQ(join(pieces), tok.decode(ids, true));
  EXPECT_EQ(tok.decode(ids, true), "a  a\xE4\xBD\xA0 a");
  EXPECT_GE(pieces.size(), 3u);
  // A byte that makes the run invalid turns the whole run into U+FFFD, so a run is not final
  // until a non-byte token follows.
  const std::vector<uint32_t> bad{3, 4, 5, 6, 7, 3};
  EXPECT_EQ(join(stream(tok, bad, false)), tok.decode(bad));
  EXPECT_EQ(tok.decode(bad), "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD a");
}

TEST(TokenizerStream, EncodeOfTextRoundTripsThroughTheStream) {
  const Tokenizer tok = Tokenizer::from_json(kSentencePiece, "", "spm.json");
  const std::string text = "a a  a\xE4\xBD\xA0";
  const auto ids = tok.encode(text, false);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(join(stream(tok, ids, false)), text);
}

// Long random streams through every kind of streamable decoder chain, the rules that touch the
// start of a decode included (Metaspace's first token, a Strip after Fuse, several of them), with
// many tokens that decode to nothing or to spaces: the pieces must always join to the full
// decode. Streams of hundreds of tokens slide the window many times, often onto prefixes that
// decode to little or nothing.
TEST(TokenizerStream, RandomLongStreamsJoinToTheDecodeForEveryStreamableChain) {
  const std::vector<std::string> chains = {
      R"([{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
          {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}])",
      R"([{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
          {"type": "Fuse"}])",
      R"([{"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
          {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}])",
      R"([{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"},
          {"type": "Strip", "content": " ", "start": 2, "stop": 0}])",
      R"([{"type": "ByteFallback"}, {"type": "Fuse"},
          {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
          {"type": "Strip", "content": " ", "start": 3, "stop": 0}])",
      R"([{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "Fuse"},
          {"type": "Strip", "content": " ", "start": 2, "stop": 0}, {"type": "Replace", "pattern": {"String": "a"},
          "content": "xy"}, {"type": "Strip", "content": "x", "start": 1, "stop": 0}])",
      R"([{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}])",
  };
  const std::string vocab = R"({"<s>": 0, "▁": 1, "a": 2, "▁a": 3, "<0xE4>": 4, "<0xBD>": 5, "<0xA0>": 6,
      "<0x80>": 7, "▁▁": 8, "x": 9, "▁▁▁": 10, "b▁": 11, "<0x20>": 12, "xa": 13})";
  std::mt19937 rng(2026);
  for (size_t c = 0; c < chains.size(); ++c) {
    const std::string json = R"({"added_tokens": [{"id": 0, "content": "<s>", "special": true, "normalized": false}],
        "decoder": {"type": "Sequence", "decoders": )" +
                             chains[c] + R"(}, "model": {"type": "BPE", "byte_fallback": true, "vocab": )" + vocab +
                             R"(, "merges": []}})";
    const Tokenizer tok = Tokenizer::from_json(json, "", "chain.json");
    ASSERT_TRUE(tok.decoder_streamable()) << "chain " << c;
    for (int trial = 0; trial < 24; ++trial) {
      std::vector<uint32_t> ids(300);
      // Runs of one kind of token (spaces, byte tokens, letters) as well as mixtures.
      const int mode = trial % 4;
      for (auto& id : ids) {
        const uint32_t any = std::uniform_int_distribution<uint32_t>(0, 13)(rng);
        const uint32_t space = std::array<uint32_t, 4>{1, 8, 10, 12}[std::uniform_int_distribution<int>(0, 3)(rng)];
        id = mode == 0   ? any
             : mode == 1 ? (rng() % 3 == 0 ? any : space)
             : mode == 2 ? (rng() % 2 ? 4 + rng() % 4 : any)
                         : (rng() % 8 == 0 ? any : space);
      }
      for (bool skip : {false, true}) {
        EXPECT_EQ(join(stream(tok, ids, skip)), tok.decode(ids, skip, false)) << "chain " << c << " trial " << trial;
      }
    }
  }
}

}  // namespace
}  // namespace pagoda::tokenizer
