// The BPE model on toy vocabularies, and a whole tokenizer built from a small tokenizer.json.

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {
namespace {

std::vector<uint32_t> run(const BpeModel& m, std::string_view word) {
  std::vector<uint32_t> out;
  m.tokenize(word, out);
  return out;
}

TEST(TokenizerBpe, AppliesMergesByRank) {
  TokenMap vocab{{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  // (b c) outranks (a b): "abc" becomes a + bc, then abc via (a bc).
  BpeModel m1(vocab, {{"b", "c"}, {"a", "b"}, {"a", "bc"}}, {});
  EXPECT_EQ(run(m1, "abc"), (std::vector<uint32_t>{5}));
  EXPECT_EQ(run(m1, "ab"), (std::vector<uint32_t>{3}));
  // Without (a bc), the (b c) merge wins and blocks (a b).
  BpeModel m2(vocab, {{"b", "c"}, {"a", "b"}}, {});
  EXPECT_EQ(run(m2, "abc"), (std::vector<uint32_t>{0, 4}));
  EXPECT_EQ(run(m2, "abcab"), (std::vector<uint32_t>{0, 4, 3}));
  EXPECT_EQ(m2.merge_count(), 2u);
}

TEST(TokenizerBpe, EqualRanksMergeLeftmostFirst) {
  TokenMap vocab{{"a", 0}, {"aa", 1}};
  BpeModel m(vocab, {{"a", "a"}}, {});
  EXPECT_EQ(run(m, "aaa"), (std::vector<uint32_t>{1, 0}));
  EXPECT_EQ(run(m, "aaaa"), (std::vector<uint32_t>{1, 1}));
}

TEST(TokenizerBpe, ByteFallbackAndFusedUnknown) {
  TokenMap vocab{{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}};
  BpeOptions fallback;
  fallback.byte_fallback = true;
  fallback.unk_token = "<unk>";
  fallback.fuse_unk = true;
  BpeModel m(vocab, std::vector<std::pair<std::string, std::string>>{}, fallback);
  EXPECT_EQ(run(m, "a\xC3\xA9"), (std::vector<uint32_t>{1, 2, 3}));       // é has its two byte tokens
  EXPECT_EQ(run(m, "a\xC3\xB1\xC3\xB1"), (std::vector<uint32_t>{1, 0}));  // ññ: no <0xB1>, one fused unk
  BpeOptions unfused = fallback;
  unfused.fuse_unk = false;
  BpeModel m2(vocab, std::vector<std::pair<std::string, std::string>>{}, unfused);
  EXPECT_EQ(run(m2, "\xC3\xB1\xC3\xB1"), (std::vector<uint32_t>{0, 0}));
}

TEST(TokenizerBpe, IgnoreMergesTakesWholeWords) {
  TokenMap vocab{{"a", 0}, {"b", 1}, {"ab", 2}, {"ba", 3}, {"aba", 4}};
  BpeOptions opt;
  opt.ignore_merges = true;
  BpeModel m(vocab, {{"a", "b"}}, opt);
  EXPECT_EQ(run(m, "aba"), (std::vector<uint32_t>{4}));  // in the vocabulary: no merges needed
  EXPECT_EQ(run(m, "abab"), (std::vector<uint32_t>{2, 2}));
}

TEST(TokenizerBpe, RejectsMergesOutsideTheVocabulary) {
  TokenMap vocab{{"a", 0}, {"b", 1}};
  EXPECT_THROW(BpeModel(vocab, {{"a", "b"}}, {}), Error);
  EXPECT_THROW(BpeModel(vocab, {{"a", "x"}}, {}), Error);
  BpeOptions opt;
  opt.unk_token = "<missing>";
  EXPECT_THROW(BpeModel(vocab, std::vector<std::pair<std::string, std::string>>{}, opt), Error);
}

// A tiny byte-level tokenizer.json: "Ġ" is the space, specials and a template with BOS.
constexpr std::string_view kByteLevelJson = R"({
  "added_tokens": [
    {"id": 0, "content": "<s>", "special": true, "normalized": false},
    {"id": 1, "content": "<x>", "special": false, "normalized": false, "lstrip": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"<s>": 0, "<x>": 1, "h": 2, "i": 3, "Ġ": 4, "hi": 5, "Ġhi": 6,
             "ä": 7, "½": 8, "ł": 9, "ä½": 10},
            "merges": ["h i", "Ġ hi", "ä ½"]}
})";

TEST(TokenizerJson, EncodesWithAddedTokensAndTemplate) {
  const Tokenizer tok = Tokenizer::from_json(kByteLevelJson, "", "toy.json");
  EXPECT_EQ(tok.encode("hi hi"), (std::vector<uint32_t>{0, 5, 6}));
  EXPECT_EQ(tok.encode("hi hi", false), (std::vector<uint32_t>{5, 6}));
  // <x> strips the whitespace on its left; <s> in the text is matched whole.
  EXPECT_EQ(tok.encode("hi  <x>hi<s>", false), (std::vector<uint32_t>{5, 1, 5, 0}));
  EXPECT_EQ(tok.decode(std::vector<uint32_t>{0, 5, 6}), "<s>hi hi");
  EXPECT_EQ(tok.decode(std::vector<uint32_t>{0, 5, 6}, true), "hi hi");
  EXPECT_EQ(tok.decode(std::vector<uint32_t>{5, 999, 6}), "hi hi");  // unknown ids are dropped
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(1));
  EXPECT_EQ(tok.vocab_size(), 11u);
}

TEST(TokenizerJson, ConcurrentEncodingGivesTheSameIds) {
  const Tokenizer tok = Tokenizer::from_json(kByteLevelJson, "", "toy.json");
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back(std::string(static_cast<size_t>(i % 7), ' ') + "hi hi<x>hi" + std::to_string(i));
  std::vector<std::vector<uint32_t>> want;
  for (const auto& t : texts)
    want.push_back(tok.encode(t));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i)
          mismatches[static_cast<size_t>(w)] += tok.encode(texts[i]) != want[i];
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0, 0, 0}));
}

TEST(TokenizerJson, ConfigFlagsRebuildTheTemplate) {
  const std::string config = R"({"bos_token": {"content": "<s>"}, "eos_token": "<x>", "add_bos_token": false,
                                 "add_eos_token": true, "chat_template": "{{ x }}"})";
  const Tokenizer tok = Tokenizer::from_json(kByteLevelJson, config, "toy.json");
  EXPECT_EQ(tok.encode("hi"), (std::vector<uint32_t>{5, 1}));
  EXPECT_EQ(tok.bos_id(), 0u);
  EXPECT_EQ(tok.eos_id(), 1u);
  EXPECT_EQ(tok.chat_template(), "{{ x }}");
}

TEST(TokenizerJson, HostileFilesAreRejectedWithTheirName) {
  const std::vector<std::string> bad = {
      "",
      "[]",
      "{\"model\": 3}",
      std::string(200, '[') + std::string(200, ']'),
      R"({"model": {"type": "BPE", "vocab": {"a": 99999999999}, "merges": []}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}})",
      R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Split",
          "pattern": {"Regex": "(?<=a+)b"}, "behavior": "Isolated"}})",
      R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "decoder": {"type": "Nope"}})",
  };
  for (const std::string& json : bad) {
    try {
      (void)Tokenizer::from_json(json, "", "bad.json");
      ADD_FAILURE() << "accepted: " << json.substr(0, 80);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace pagoda::tokenizer
