// libFuzzer target: arbitrary bytes through two fixed small tokenizers (byte-level BPE with a
// Llama-3-style split, NFC and added tokens; SentencePiece-style BPE with byte fallback,
// NFKC + lowercase and Metaspace), and arbitrary ids through their decoders. Checks beyond "no
// crash": every decode is valid UTF-8 and the streamed pieces join to the full decode.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

using nlohmann::json;
using pagoda::tokenizer::Tokenizer;

json added(int id, const char* content, bool special, bool normalized, bool lstrip = false, bool rstrip = false,
           bool single_word = false) {
  return json{{"id", id},         {"content", content}, {"special", special},        {"normalized", normalized},
              {"lstrip", lstrip}, {"rstrip", rstrip},   {"single_word", single_word}};
}

std::unique_ptr<Tokenizer> byte_level_tokenizer() {
  const auto& map = pagoda::tokenizer::ByteLevelMap::get();
  json vocab = json::object();
  int next = 0;
  vocab["<|bos|>"] = next++;
  vocab["<|eot|>"] = next++;
  for (int b = 0; b < 256; ++b)
    vocab[std::string(map.spelling(static_cast<uint8_t>(b)))] = next++;
  json merges = json::array();
  const char* pairs[][2] = {{"Ġ", "t"}, {"h", "e"},   {"Ġt", "he"}, {"i", "n"}, {"Ġ", "a"}, {"e", "r"}, {"o", "n"},
                            {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"}, {"Ċ", "Ċ"},   {"1", "2"}, {"Ã", "©"}, {"ä", "½"}, {"ä½", "ł"}};
  for (const auto& p : pairs) {
    const std::string merged = std::string(p[0]) + p[1];
    if (!vocab.contains(merged)) vocab[merged] = next++;
    merges.push_back(std::string(p[0]) + " " + p[1]);
  }
  vocab["<think>"] = next++;
  vocab["hello world"] = next++;
  json j = {
      {"added_tokens", json::array({added(0, "<|bos|>", true, false), added(1, "<|eot|>", true, false),
                                    added(next - 2, "<think>", false, false, true, true),
                                    added(next - 1, "hello world", false, true, false, false, true)})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern",
                {{"Regex",
                  R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens", {{"<|bos|>", {{"id", "<|bos|>"}, {"ids", {0}}, {"tokens", {"<|bos|>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", true}}},
  };
  return std::make_unique<Tokenizer>(Tokenizer::from_json(j.dump(), "", "fuzz-byte-level.json"));
}

std::unique_ptr<Tokenizer> sentencepiece_tokenizer() {
  json vocab = json::object();
  int next = 0;
  for (const char* t : {"<unk>", "<s>", "</s>", "▁"})
    vocab[t] = next++;
  for (char c = 'a'; c <= 'z'; ++c)
    vocab[std::string(1, c)] = next++;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = next++;
  }
  json merges = json::array();
  const char* pairs[][2] = {{"▁", "t"}, {"h", "e"}, {"▁t", "he"}, {"▁", "▁"}, {"▁", "a"}, {"i", "n"}};
  for (const auto& p : pairs) {
    const std::string merged = std::string(p[0]) + p[1];
    if (!vocab.contains(merged)) vocab[merged] = next++;
    merges.push_back(std::string(p[0]) + " " + p[1]);
  }
  json j = {
      {"added_tokens",
       json::array({added(0, "<unk>", true, false), added(1, "<s>", true, false), added(2, "</s>", true, false)})},
      {"normalizer",
       {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFKC"}}, {{"type", "Lowercase"}}})}}},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}},
          {"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                                  {{"type", "ByteFallback"}},
                                  {{"type", "Fuse"}},
                                  {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", merges},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"unk_token", "<unk>"}}},
  };
  return std::make_unique<Tokenizer>(Tokenizer::from_json(j.dump(), "", "fuzz-sentencepiece.json"));
}

void check_decode(const Tokenizer& tok, const std::vector<uint32_t>& ids, bool skip) {
  const std::string full = tok.decode(ids, skip, false);
  if (!pagoda::tokenizer::is_valid_utf8(full)) __builtin_trap();
  pagoda::tokenizer::StreamDecoder stream(tok, skip);
  std::string joined;
  for (uint32_t id : ids) {
    const std::string piece = stream.push(id);
    if (!pagoda::tokenizer::is_valid_utf8(piece)) __builtin_trap();
    joined += piece;
  }
  joined += stream.finish();
  if (joined != full) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Tokenizer> tokenizers[2] = {byte_level_tokenizer(), sentencepiece_tokenizer()};
  if (size == 0) return 0;
  const Tokenizer& tok = *tokenizers[data[0] & 1];
  const bool skip = (data[0] & 2) != 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if ((data[0] & 4) == 0) {
      // Text: encode, then decode and stream the ids.
      const auto ids = tok.encode(rest, (data[0] & 8) != 0);
      for (uint32_t id : ids) {
        if (id >= tok.vocab_size()) __builtin_trap();
      }
      check_decode(tok, ids, skip);
    } else {
      // Ids: little-endian 16-bit values, some past the vocabulary.
      std::vector<uint32_t> ids;
      for (size_t i = 0; i + 1 < rest.size(); i += 2) {
        const uint32_t v =
            static_cast<uint8_t>(rest[i]) | (static_cast<uint32_t>(static_cast<uint8_t>(rest[i + 1])) << 8);
        ids.push_back(v % (tok.vocab_size() + 8));
      }
      check_decode(tok, ids, skip);
    }
  } catch (const pagoda::Error&) {
    // Only a regex hitting its match limit may fail an encode.
  }
  return 0;
}
