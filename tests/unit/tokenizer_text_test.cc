// Pure text handling of the tokenizer: UTF-8 repair, the byte-level alphabet, Unicode
// normalization, regex handling and the pre-tokenizer split behaviors.

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(TokenizerUtf8, ValidSequences) {
  EXPECT_EQ(valid_sequence_length("a"), 1u);
  EXPECT_EQ(valid_sequence_length("\xC3\xA9"), 2u);
  EXPECT_EQ(valid_sequence_length("\xE4\xBD\xA0"), 3u);
  EXPECT_EQ(valid_sequence_length("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(valid_sequence_length("\xC0\xAF"), 0u);          // overlong
  EXPECT_EQ(valid_sequence_length("\xED\xA0\x80"), 0u);      // surrogate
  EXPECT_EQ(valid_sequence_length("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(valid_sequence_length("\xE2\x82"), 0u);          // truncated
  EXPECT_TRUE(is_valid_utf8("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(TokenizerUtf8, ReplacesMaximalSubpartsLikePython) {
  // Unicode's "maximal subpart" rule, which bytes.decode("utf-8", "replace") follows: a truncated
  // sequence is one U+FFFD, a byte that cannot continue it starts over.
  EXPECT_EQ(sanitize_utf8("\xE2\x82\x28"), kFffd + "(");
  EXPECT_EQ(sanitize_utf8("\xE2\x82"), kFffd);
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x98"), kFffd);
  EXPECT_EQ(sanitize_utf8("\x80\x80"), kFffd + kFffd);
  EXPECT_EQ(sanitize_utf8("a\xC3"), "a" + kFffd);
  EXPECT_EQ(sanitize_utf8("\xF8\x88\x80\x80\x80"), kFffd + kFffd + kFffd + kFffd + kFffd);
  EXPECT_EQ(sanitize_utf8("ok\xC3\xA9"), "ok\xC3\xA9");
}

TEST(TokenizerByteLevel, AlphabetIsABijectionWithGpt2Spellings) {
  const ByteLevelMap& m = ByteLevelMap::get();
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    seen.insert(m.code_point(static_cast<uint8_t>(b)));
    EXPECT_EQ(m.byte_of(m.code_point(static_cast<uint8_t>(b))), b);
  }
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(m.code_point('a'), U'a');
  EXPECT_EQ(m.spelling(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(m.spelling('\n'), "\xC4\x8A");  // Ċ
  std::string all;
  for (int b = 0; b < 256; ++b)
    all.push_back(static_cast<char>(b));
  std::string spelled;
  m.encode(all, spelled);
  std::string back;
  ASSERT_TRUE(m.decode(spelled, back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(m.decode(" ", back));  // a plain space is not in the alphabet
}

TEST(TokenizerUnicode, NormalizationForms) {
  std::string out;
  unicode_normalize("e\xCC\x81", UnicodeForm::kNfc, out);
  EXPECT_EQ(out, "\xC3\xA9");
  unicode_normalize("\xC3\xA9", UnicodeForm::kNfd, out);
  EXPECT_EQ(out, "e\xCC\x81");
  unicode_normalize("\xEF\xAC\x81", UnicodeForm::kNfkc, out);  // ﬁ ligature
  EXPECT_EQ(out, "fi");
  unicode_normalize("\xEF\xAC\x81", UnicodeForm::kNfc, out);  // compatibility only: kept
  EXPECT_EQ(out, "\xEF\xAC\x81");
  unicode_normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", UnicodeForm::kNfc, out);  // jamo -> 각
  EXPECT_EQ(out, "\xEA\xB0\x81");
  unicode_normalize("\xEA\xB0\x81", UnicodeForm::kNfd, out);
  EXPECT_EQ(out, "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8");
  // Combining marks are put in canonical order: dot below (220) before acute (230).
  unicode_normalize("a\xCC\x81\xCC\xA3", UnicodeForm::kNfd, out);
  EXPECT_EQ(out, "a\xCC\xA3\xCC\x81");
  unicode_lowercase("ÀB\xC4\xB0", out);  // İ lowercases to i + combining dot
  EXPECT_EQ(out, "àbi\xCC\x87");
}

TEST(TokenizerRegex, WhitespaceIncludesNextLineLikeOniguruma) {
  Regex re(R"(\s+)");
  std::vector<Match> m;
  re.find_all(
      "a\xC2\x85"
      "b",
      m);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].begin, 1u);
  EXPECT_EQ(m[0].end, 3u);
  Regex not_space(R"(\S+)");
  m.clear();
  not_space.find_all(
      "a\xC2\x85"
      "b",
      m);
  EXPECT_EQ(m.size(), 2u);
}

TEST(TokenizerRegex, BadPatternsAndRunawayMatchesFailCleanly) {
  EXPECT_THROW(Regex("(unclosed"), Error);
  EXPECT_THROW(Regex("\xFF"), Error);
  Regex evil("(a+)+$");
  std::vector<Match> m;
  const std::string input = std::string(40, 'a') + "!";
  EXPECT_THROW(evil.find_all(input, m), Error);
}

std::vector<std::string> split(std::string_view text, SplitBehavior behavior, bool invert = false) {
  PreTokenized pt;
  pt.reset(text, true);
  PreTokenizeScratch scratch;
  split_pieces(pt, scratch, behavior, invert, nullptr, "-");
  std::vector<std::string> out;
  for (const Piece& p : pt.pieces)
    out.emplace_back(pt.view(p));
  return out;
}

TEST(TokenizerPreTokenizer, SplitBehaviorsAsDocumentedByHf) {
  // Expected pieces are what HF tokenizers' Split("-", behavior, invert).pre_tokenize_str gives.
  const std::string s = "the-final--countdown";
  EXPECT_EQ(split(s, SplitBehavior::kRemoved), (std::vector<std::string>{"the", "final", "countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kIsolated), (std::vector<std::string>{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kMergedWithPrevious),
            (std::vector<std::string>{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kMergedWithNext), (std::vector<std::string>{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kContiguous), (std::vector<std::string>{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kRemoved, true), (std::vector<std::string>{"-", "-", "-"}));
  EXPECT_EQ(split(s, SplitBehavior::kMergedWithPrevious, true),
            (std::vector<std::string>{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split(s, SplitBehavior::kMergedWithNext, true),
            (std::vector<std::string>{"the-", "final-", "-", "countdown"}));
}

TEST(TokenizerPreTokenizer, MetaspacePrependsOnlyAtTheStartForSchemeFirst) {
  MetaspacePreTokenizer first("\xE2\x96\x81", PrependScheme::kFirst, false);
  PreTokenizeScratch scratch;
  PreTokenized pt;
  pt.reset("hi there", true);
  first.apply(pt, scratch);
  ASSERT_EQ(pt.pieces.size(), 1u);
  EXPECT_EQ(pt.view(pt.pieces[0]), "\xE2\x96\x81hi\xE2\x96\x81there");
  pt.reset("hi", false);  // not at the start of the input (after an added token)
  first.apply(pt, scratch);
  EXPECT_EQ(pt.view(pt.pieces[0]), "hi");
}

TEST(TokenizerDecoder, ByteFallbackTurnsInvalidRunsIntoOneReplacementPerByte) {
  ByteFallbackDecoder d;
  std::vector<std::string> tokens{"<0xE4>", "<0xBD>", "<0xA0>", "x", "<0xE4>", "<0xBD>", "y", "<0x4>"};
  d.decode_chain(tokens);
  std::string joined;
  for (const auto& t : tokens)
    joined += t;
  EXPECT_EQ(joined, "\xE4\xBD\xA0x" + kFffd + kFffd + "y<0x4>");
}

}  // namespace
}  // namespace pagoda::tokenizer
