// Loading the tokenizer embedded in a GGUF file's metadata (llama.cpp's tokenizer.ggml.* keys).
// The result is the pipeline transformers builds when it converts the same file to a fast
// tokenizer (integrations/gguf), which is the reference the tests compare against:
//   - "gpt2": byte-level BPE with the file's merges; the split regex named by tokenizer.ggml.pre;
//   - "llama": SentencePiece-style BPE with byte fallback, merges recovered from the vocabulary
//     ordered by token score (Gemma: by token position), Metaspace (or Gemma's space -> "▁").
// Control tokens become special added tokens and user-defined ones plain added tokens.

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "core/error.h"
#include "model/loader/gguf.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

constexpr std::string_view kGpt2Split = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr std::string_view kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen35Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kTekkenSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt4oSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kFinnishSplit = R"( ?[^(\s|.,!?…。，、।۔،)]+)";

// The split regexes (applied one after another, each isolating its matches) for a
// tokenizer.ggml.pre name, as transformers maps them. Empty: ByteLevel's own GPT-2 split, which
// transformers uses for every name its table lacks.
std::vector<std::string_view> split_for_pre(std::string_view pre, bool llama_cpp) {
  static const std::unordered_map<std::string_view, std::vector<std::string_view>> kTable = {
      {"llama3", {kLlama3Split}},       {"llama-v3", {kLlama3Split}},
      {"llama-bpe", {kLlama3Split}},    {"falcon3", {kLlama3Split}},
      {"falcon-h1", {kLlama3Split}},    {"pixtral", {kLlama3Split}},
      {"midm-2.0", {kLlama3Split}},     {"lfm2", {kLlama3Split}},
      {"jina-v5-nano", {kLlama3Split}}, {"dbrx", {kLlama3Split}},
      {"smaug-bpe", {kLlama3Split}},    {"tekken", {kTekkenSplit}},
      {"qwen2", {kQwen2Split}},         {"deepseek-r1-qwen", {kQwen2Split}},
      {"kormo", {kQwen2Split}},         {"f2llmv2", {kQwen2Split}},
      {"megrez", {kQwen2Split}},        {"qwen35", {kQwen35Split}},
      {"gpt-4o", {kGpt4oSplit}},        {"llama4", {kGpt4oSplit}},
      {"kanana2", {kGpt4oSplit}},       {"talkie", {kGpt4oSplit}},
      {"minimax-m2", {kGpt4oSplit}},
  };
  // Names transformers does not know; llama.cpp (and these models' own tokenizer.json files) split
  // them as follows.
  static const std::unordered_map<std::string_view, std::vector<std::string_view>> kLlamaCppOnly = {
      {"chatglm-bpe", {kLlama3Split}},
      {"stablelm2", {kQwen2Split}},
      // Individual digits, then GPT-2's split.
      {"smollm", {R"(\p{N})", kGpt2Split}},
      {"starcoder", {R"(\p{N})", kGpt2Split}},
      {"refact", {R"(\p{N})", kGpt2Split}},
      {"command-r", {R"(\p{N})", kGpt2Split}},
      {"codeshell", {R"(\p{N})", kGpt2Split}},
      {"exaone", {R"(\p{N})", kGpt2Split}},
      {"minerva-7b", {R"(\p{N})", kGpt2Split}},
      {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Split, "[0-9][0-9][0-9]"}},
      {"deepseek-coder", {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[一-龥ࠀ-一가-퟿]+", R"(\p{N})"}},
      {"deepseek-v3",
       {R"(\p{N}{1,3})", "[一-龥぀-ゟ゠-ヿ]+",
        R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {"poro-chat", {kFinnishSplit}},
      {"bloom", {kFinnishSplit}},
      {"gpt3-finnish", {kFinnishSplit}},
      {"viking", {kFinnishSplit, R"(\p{N})"}},
  };
  if (auto it = kTable.find(pre); it != kTable.end()) return it->second;
  if (!llama_cpp) return {};
  if (auto it = kLlamaCppOnly.find(pre); it != kLlamaCppOnly.end()) return it->second;
  return {};
}

enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Python's str.isspace.
bool py_isspace(char32_t cp) {
  return (cp >= 0x1C && cp <= 0x1F) || is_white_space(cp);
}

// What transformers' generate_merges does: every split of every token into two vocabulary
// tokens is a merge, best score first (ties: longer left part, then longer right part, then
// vocabulary order). Tokens are visited in first-occurrence order with their last score.
std::vector<std::array<uint32_t, 3>> derive_merges(const std::vector<std::string>& tokens, const TokenMap& vocab,
                                                   const std::vector<double>& score_of_index) {
  struct Item {
    double score;
    uint32_t len_left;
    uint32_t len_right;
    uint32_t left;
    uint32_t right;
    uint32_t merged;
  };
  std::vector<Item> items;
  std::vector<Item> local;
  std::unordered_map<std::string_view, double> last_score;
  last_score.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i)
    last_score[tokens[i]] = score_of_index[i];
  std::unordered_map<std::string_view, bool> visited;
  visited.reserve(tokens.size());
  for (const std::string& tok : tokens) {
    if (!visited.emplace(tok, true).second) continue;
    const double score = last_score[tok];
    const auto merged_it = vocab.find(tok);
    if (merged_it == vocab.end()) continue;
    local.clear();
    uint32_t len_left = 0;
    const uint32_t total = static_cast<uint32_t>(count_code_points(tok));
    size_t pos = 0;
    while (pos < tok.size()) {
      pos += char_length(static_cast<unsigned char>(tok[pos]));
      ++len_left;
      if (pos >= tok.size()) break;
      const auto l = vocab.find(std::string_view(tok).substr(0, pos));
      if (l == vocab.end()) continue;
      const auto r = vocab.find(std::string_view(tok).substr(pos));
      if (r == vocab.end()) continue;
      local.push_back({score, len_left, total - len_left, l->second, r->second, merged_it->second});
    }
    std::stable_sort(local.begin(), local.end(), [](const Item& a, const Item& b) {
      return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    items.insert(items.end(), local.begin(), local.end());
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.len_left != b.len_left) return a.len_left > b.len_left;
    return a.len_right > b.len_right;
  });
  std::vector<std::array<uint32_t, 3>> merges;
  merges.reserve(items.size());
  for (const Item& it : items)
    merges.push_back({it.left, it.right, it.merged});
  return merges;
}

std::vector<std::array<uint32_t, 3>> file_merges(const std::vector<std::string>& merges, const TokenMap& vocab,
                                                 const std::string& path) {
  std::vector<std::array<uint32_t, 3>> out;
  out.reserve(merges.size());
  std::string merged;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& m = merges[i];
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos) {
      fail(ErrorCode::kInvalidFile, "{}: tokenizer.ggml.merges[{}] is not two tokens", path, i);
    }
    const auto l = vocab.find(std::string_view(m).substr(0, sp));
    const auto r = vocab.find(std::string_view(m).substr(sp + 1));
    merged.assign(m, 0, sp);
    merged.append(m, sp + 1);
    const auto c = vocab.find(merged);
    if (l == vocab.end() || r == vocab.end() || c == vocab.end()) {
      fail(ErrorCode::kInvalidFile, "{}: tokenizer.ggml.merges[{}] uses a token missing from the vocabulary", path, i);
    }
    out.push_back({l->second, r->second, c->second});
  }
  return out;
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const gguf::File& file, const GgufOptions& options) {
  const std::string& path = file.path();
  const auto model = file.get_string("tokenizer.ggml.model");
  if (!model) fail(ErrorCode::kInvalidFile, "{}: no tokenizer.ggml.model", path);
  if (*model != "gpt2" && *model != "llama" && *model != "gemma4") {
    fail(ErrorCode::kUnsupported, "{}: tokenizer model '{}' is not supported (gpt2, llama)", path,
         model->substr(0, 64));
  }
  const gguf::Value* tokens_v = file.find("tokenizer.ggml.tokens");
  const std::vector<std::string>* tokens_p = tokens_v != nullptr ? tokens_v->as_string_array() : nullptr;
  if (tokens_p == nullptr || tokens_p->empty()) fail(ErrorCode::kInvalidFile, "{}: no tokenizer.ggml.tokens", path);
  if (tokens_p->size() > kMaxVocabSize) {
    fail(ErrorCode::kInvalidFile, "{}: {} tokens exceed the cap of {}", path, tokens_p->size(), kMaxVocabSize);
  }
  const size_t n = tokens_p->size();
  for (const std::string& t : *tokens_p) {
    if (t.size() > kMaxTokenBytes || !is_valid_utf8(t)) {
      fail(ErrorCode::kInvalidFile, "{}: a token is too long or not valid UTF-8", path);
    }
  }
  std::vector<int64_t> types;
  if (const gguf::Value* v = file.find("tokenizer.ggml.token_type")) {
    auto t = v->to_int_array();
    if (!t || t->size() != n)
      fail(ErrorCode::kInvalidFile, "{}: tokenizer.ggml.token_type does not match the tokens", path);
    types = std::move(*t);
  }
  std::vector<double> scores;
  if (const gguf::Value* v = file.find("tokenizer.ggml.scores")) {
    auto s = v->to_float_array();
    if (!s || s->size() != n)
      fail(ErrorCode::kInvalidFile, "{}: tokenizer.ggml.scores does not match the tokens", path);
    scores = std::move(*s);
  }
  const std::vector<std::string>* merges_p = nullptr;
  if (const gguf::Value* v = file.find("tokenizer.ggml.merges")) {
    merges_p = v->as_string_array();
    if (merges_p == nullptr) fail(ErrorCode::kInvalidFile, "{}: tokenizer.ggml.merges is not a string array", path);
    if (merges_p->size() > kMaxMerges) fail(ErrorCode::kInvalidFile, "{}: too many merges", path);
  }
  const std::string arch = file.get_string("general.architecture").value_or("");
  const std::string pre = file.get_string("tokenizer.ggml.pre").value_or("");
  auto token_id = [&](const char* key) -> std::optional<uint32_t> {
    const auto v = file.get_int(key);
    if (!v || *v < 0 || static_cast<uint64_t>(*v) >= n) return std::nullopt;
    return static_cast<uint32_t>(*v);
  };
  const auto bos = token_id("tokenizer.ggml.bos_token_id");
  const auto eos = token_id("tokenizer.ggml.eos_token_id");
  const auto unk = token_id("tokenizer.ggml.unknown_token_id");
  const auto pad = token_id("tokenizer.ggml.padding_token_id");
  const bool byte_level = *model == "gpt2";
  const bool gemma = *model == "llama" && (arch == "gemma" || arch == "gemma2" || arch == "gemma3");
  const bool phi3 = *model == "llama" && arch == "phi3";

  TokenizerSpec spec;
  spec.source = path;
  std::vector<std::string> tokens = *tokens_p;  // the spelling the vocabulary uses
  const ByteLevelMap& bl = ByteLevelMap::get();
  if (byte_level) {
    // Tokens written in plain UTF-8 rather than the byte alphabet are respelled.
    for (std::string& t : tokens) {
      std::string tmp;
      if (!bl.decode(t, tmp)) {
        tmp.clear();
        bl.encode(t, tmp);
        t = std::move(tmp);
      }
    }
  } else if (gemma) {
    // Runs of spaces are stored as spaces but looked up as "▁"s.
    for (std::string& t : tokens) {
      if (t.find(' ') == std::string::npos) continue;
      bool all_space = true;
      size_t pos = 0;
      while (pos < t.size() && all_space)
        all_space = py_isspace(next_code_point(t, pos));
      if (!all_space) continue;
      std::string rep;
      for (size_t i = 0, k = count_code_points(t); i < k; ++i)
        rep += "\xE2\x96\x81";
      t = std::move(rep);
    }
  }
  TokenMap vocab;
  vocab.reserve(n);
  for (size_t i = 0; i < n; ++i)
    vocab[tokens[i]] = static_cast<uint32_t>(i);

  std::vector<std::array<uint32_t, 3>> merges;
  if (merges_p != nullptr) {
    merges = file_merges(*merges_p, vocab, path);
  } else {
    std::vector<double> keys(n, 0.0);
    if (gemma) {
      for (size_t i = 0; i < n; ++i)
        keys[i] = -static_cast<double>(i);  // file order is merge order
    } else if (!scores.empty()) {
      keys = scores;
    }
    merges = derive_merges(tokens, vocab, keys);
  }

  BpeOptions opt;
  if (byte_level) {
    spec.pre_tokenizer = std::make_unique<ByteLevelPreTokenizer>(false, true);
    spec.decoder = std::make_unique<ByteLevelDecoder>();
    const auto splits = split_for_pre(pre, options.llama_cpp);
    if (!splits.empty()) {
      std::vector<std::unique_ptr<PreTokenizer>> seq;
      for (std::string_view re : splits) {
        seq.push_back(std::make_unique<SplitPreTokenizer>(std::string(), std::make_unique<Regex>(re),
                                                          SplitBehavior::kIsolated, false));
      }
      seq.push_back(std::make_unique<ByteLevelPreTokenizer>(false, false));
      spec.pre_tokenizer = std::make_unique<SequencePreTokenizer>(std::move(seq));
    }
  } else {
    opt.byte_fallback = true;
    opt.fuse_unk = true;
    const std::string kMeta = "\xE2\x96\x81";
    std::vector<std::unique_ptr<Decoder>> dec;
    dec.push_back(std::make_unique<ReplaceDecoder>(kMeta, nullptr, " "));
    dec.push_back(std::make_unique<ByteFallbackDecoder>());
    dec.push_back(std::make_unique<FuseDecoder>());
    if (gemma || *model == "gemma4") {
      opt.unk_token = "<unk>";
      if (vocab.find(*opt.unk_token) == vocab.end()) opt.unk_token.reset();
      spec.normalizer = std::make_unique<ReplaceNormalizer>(" ", nullptr, kMeta);
      spec.pre_tokenizer = std::make_unique<SplitPreTokenizer>(" ", nullptr, SplitBehavior::kMergedWithPrevious, false);
    } else {
      const bool prefix = !options.llama_cpp || file.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
      if (prefix) dec.push_back(std::make_unique<StripDecoder>(U' ', 1, 0));
      if (phi3) {
        std::vector<std::unique_ptr<Normalizer>> norms;
        norms.push_back(std::make_unique<PrependNormalizer>(kMeta));
        norms.push_back(std::make_unique<ReplaceNormalizer>(" ", nullptr, kMeta));
        spec.normalizer = std::make_unique<SequenceNormalizer>(std::move(norms));
      } else {
        spec.pre_tokenizer = std::make_unique<MetaspacePreTokenizer>(
            kMeta, prefix ? PrependScheme::kFirst : PrependScheme::kNever, false);
      }
    }
    spec.decoder = std::make_unique<SequenceDecoder>(std::move(dec));
  }
  spec.model = std::make_unique<BpeModel>(vocab, std::move(merges), opt);

  // Added tokens, in the order transformers adds them: the special tokens the tokenizer class
  // has by default (GPT2Tokenizer: <|endoftext|>; LlamaTokenizer: <s> </s> <unk>; GemmaTokenizer:
  // <bos> <eos> <unk> <pad> <mask>), which get a new id when the vocabulary lacks them; then
  // control tokens as special and user-defined ones as plain added tokens; then the tokens the
  // file names as BOS/EOS/UNK/PAD.
  std::unordered_map<std::string, bool> added_contents;
  uint32_t next_new_id = static_cast<uint32_t>(vocab.size());
  auto add = [&](const std::string& content, bool special, bool create) {
    if (content.empty() || added_contents.count(content) != 0) return;
    const auto it = vocab.find(content);
    if (it == vocab.end() && !create) return;
    added_contents[content] = special;
    AddedToken t;
    t.content = content;
    t.id = it != vocab.end() ? it->second : next_new_id++;
    t.special = special;
    t.normalized = false;
    next_new_id = std::max(next_new_id, t.id + 1);
    spec.added_tokens.push_back(std::move(t));
  };
  std::vector<std::string> class_defaults;
  if (byte_level) {
    class_defaults = {"<|endoftext|>"};
  } else if (gemma || *model == "gemma4") {
    class_defaults = {"<bos>", "<eos>", "<unk>", "<pad>", "<mask>"};
  } else {
    class_defaults = {"<s>", "</s>", "<unk>"};
  }
  for (const std::string& t : class_defaults)
    add(t, true, true);
  if (!types.empty()) {
    for (size_t i = 0; i < n; ++i) {
      if (types[i] != kControl) continue;
      std::string tmp;
      if (byte_level && !bl.decode((*tokens_p)[i], tmp)) continue;  // mislabelled: not a real token
      add((*tokens_p)[i], true, false);
    }
    for (size_t i = 0; i < n; ++i) {
      if (types[i] == kUserDefined) add((*tokens_p)[i], false, false);
    }
  }
  for (const auto& id : {bos, eos, unk, pad}) {
    if (id) add((*tokens_p)[*id], true, false);
  }
  auto name_of = [&](const std::optional<uint32_t>& id) -> std::optional<std::string> {
    if (!id) return std::nullopt;
    return (*tokens_p)[*id];
  };
  spec.bos_token = name_of(bos);
  spec.eos_token = name_of(eos);
  spec.unk_token = name_of(unk);
  spec.pad_token = name_of(pad);
  spec.chat_template = file.get_string("tokenizer.chat_template").value_or("");

  // BOS/EOS: a SentencePiece vocabulary adds BOS unless the file says otherwise (llama.cpp's and
  // transformers' default); Gemma 4's template writes its own.
  bool add_bos = file.get_bool("tokenizer.ggml.add_bos_token").value_or(*model == "llama");
  if (*model == "gemma4") add_bos = false;
  const bool add_eos = file.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  if (add_bos && bos) spec.post.prefix.push_back(*bos);
  if (add_eos && eos) spec.post.suffix.push_back(*eos);
  return Tokenizer(std::move(spec));
}

}  // namespace pagoda::tokenizer
