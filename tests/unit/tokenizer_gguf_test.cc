// Tokenizers read from GGUF metadata, on small files built in memory, including malformed ones.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "gguf_writer.h"
#include "model/loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {
namespace {

using pagoda::testing::GgufWriter;

Tokenizer load(const GgufWriter& w, const GgufOptions& options = {}) {
  auto file = gguf::File::parse(MappedFile::from_memory("tok.gguf", w.bytes()));
  return Tokenizer::from_gguf(file, options);
}

GgufWriter byte_level_file(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
                           const std::string& pre = "qwen2") {
  GgufWriter w;
  w.add_string("general.architecture", "qwen2");
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", pre);
  w.add_array("tokenizer.ggml.tokens", GgufWriter::string_array(tokens));
  std::vector<int32_t> types(tokens.size(), 1);
  types[0] = 3;  // control
  w.add_array("tokenizer.ggml.token_type", GgufWriter::array_of<int32_t>(5, types));
  w.add_array("tokenizer.ggml.merges", GgufWriter::string_array(merges));
  w.add_u32("tokenizer.ggml.eos_token_id", 0);
  return w;
}

TEST(TokenizerGguf, ByteLevelWithQwen2SplitAndPlainUtf8Tokens) {
  // "你" is stored as plain UTF-8; readers respell it in the byte alphabet ("ä½ł").
  const Tokenizer tok = load(byte_level_file({"<|im_end|>", "a", "b", "Ġ", "ab", "Ġab", "1", "你", "ä", "½", "ł", "ä½"},
                                             {"a b", "Ġ ab", "ä ½", "ä½ ł"}));
  EXPECT_EQ(tok.encode("ab ab 11<|im_end|>你"), (std::vector<uint32_t>{4, 5, 3, 6, 6, 0, 7}));
  EXPECT_EQ(tok.decode(tok.encode("ab ab 11<|im_end|>你")), "ab ab 11<|im_end|>你");
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_EQ(tok.eos_id(), 0u);
  // GPT2Tokenizer's default special token is added with a new id when missing.
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 12u);
  EXPECT_EQ(tok.vocab_size(), 13u);
}

TEST(TokenizerGguf, SmollmSplitFollowsTransformersUnlessLlamaCppIsAsked) {
  const GgufWriter w = byte_level_file({"<|im_end|>", "a", "Ġ", "ĠĠ", "1", "2"}, {"Ġ Ġ"}, "smollm");
  // transformers does not know "smollm" and uses GPT-2's split: "a", " ", " 12".
  EXPECT_EQ(load(w).encode("a  12"), (std::vector<uint32_t>{1, 2, 2, 4, 5}));
  // llama.cpp isolates digits first, so the two spaces stay together: "a", "  ", "1", "2".
  EXPECT_EQ(load(w, GgufOptions{.llama_cpp = true}).encode("a  12"), (std::vector<uint32_t>{1, 3, 4, 5}));
}

GgufWriter sentencepiece_file(const std::vector<std::string>& tokens, const std::vector<float>& scores) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_array("tokenizer.ggml.tokens", GgufWriter::string_array(tokens));
  w.add_array("tokenizer.ggml.scores", GgufWriter::array_of<float>(6, scores));
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_u32("tokenizer.ggml.unknown_token_id", 0);
  return w;
}

TEST(TokenizerGguf, SentencePieceMergesFollowScores) {
  const std::vector<std::string> tokens = {"<unk>",
                                           "<s>",
                                           "</s>",
                                           "\xE2\x96\x81",
                                           "a",
                                           "b",
                                           "c",
                                           "\xE2\x96\x81"
                                           "a",
                                           "bc",
                                           "ab",
                                           "<0x41>",
                                           "<0xE4>",
                                           "<0xBD>",
                                           "<0xA0>"};
  // "bc" outscores "ab": "abc" splits as a + bc.
  std::vector<float> scores = {0, 0, 0, -1, -2, -3, -4, -5, -6, -7, 0, 0, 0, 0};
  const Tokenizer tok = load(sentencepiece_file(tokens, scores));
  EXPECT_EQ(tok.encode("abc"), (std::vector<uint32_t>{1, 7, 8}));  // BOS by default; "▁a" (-5) beats "ab" (-7)
  scores[9] = -0.5f;                                               // now "ab" beats both
  const Tokenizer tok2 = load(sentencepiece_file(tokens, scores));
  EXPECT_EQ(tok2.encode("abc", false), (std::vector<uint32_t>{3, 9, 6}));
  // Byte fallback for characters outside the vocabulary; the decoder strips the leading space.
  EXPECT_EQ(tok.encode("A\xE4\xBD\xA0", false), (std::vector<uint32_t>{3, 10, 11, 12, 13}));
  EXPECT_EQ(tok.decode(std::vector<uint32_t>{1, 7, 8, 3, 11, 12, 13}, true), "abc \xE4\xBD\xA0");
}

TEST(TokenizerGguf, MalformedMetadataIsRejected) {
  const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "a"};
  {
    GgufWriter w = sentencepiece_file(tokens, {0, 0, 0});  // scores shorter than tokens
    EXPECT_THROW(load(w), Error);
  }
  {
    GgufWriter w = byte_level_file({"<|im_end|>", "a"}, {"a b"});  // merge with a missing token
    EXPECT_THROW(load(w), Error);
  }
  {
    GgufWriter w = byte_level_file({"<|im_end|>", "a"}, {"a"});  // not a pair
    EXPECT_THROW(load(w), Error);
  }
  {
    GgufWriter w;
    w.add_string("tokenizer.ggml.model", "rwkv");
    w.add_array("tokenizer.ggml.tokens", GgufWriter::string_array(tokens));
    try {
      (void)load(w);
      ADD_FAILURE() << "accepted an unsupported tokenizer model";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    }
  }
  {
    GgufWriter w;
    w.add_string("tokenizer.ggml.model", "gpt2");
    EXPECT_THROW(load(w), Error);  // no tokens
  }
  {
    GgufWriter w = sentencepiece_file({"<unk>", "<s>", "</s>", "\xFF"}, {0, 0, 0, 0});  // invalid UTF-8 token
    EXPECT_THROW(load(w), Error);
  }
}

}  // namespace
}  // namespace pagoda::tokenizer
