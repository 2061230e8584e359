// Loading a tokenizer from HF's tokenizer.json (+ tokenizer_config.json). Both files are
// untrusted: sizes, nesting depth and counts are capped and every field is type-checked, so a
// malformed file is reported as one Error naming the file and the field.

#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/loader/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace pagoda::tokenizer {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxJsonBytes = 128ull << 20;  // the largest real tokenizer.json files are ~35 MB
constexpr int kMaxJsonDepth = 64;
constexpr int kMaxComponentDepth = 16;
constexpr size_t kMaxSequenceItems = 64;

// Rejects deeply nested JSON before nlohmann sees it (bounded work, no recursion blow-up).
void check_depth(std::string_view text, const std::string& name) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) fail(ErrorCode::kInvalidFile, "{}: JSON nested deeper than {}", name, kMaxJsonDepth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

json parse_json(std::string_view text, const std::string& name) {
  if (text.size() > kMaxJsonBytes) fail(ErrorCode::kInvalidFile, "{}: {} bytes exceed the JSON cap", name, text.size());
  check_depth(text, name);
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) fail(ErrorCode::kInvalidFile, "{}: not valid JSON", name);
  return j;
}

struct Ctx {
  const std::string& name;
};

[[noreturn]] void bad(const Ctx& ctx, std::string_view what) {
  fail(ErrorCode::kInvalidFile, "{}: {}", ctx.name, what);
}

const json* field(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string get_string(const Ctx& ctx, const json& obj, const char* key, const char* where,
                       std::optional<std::string> def = std::nullopt) {
  const json* v = field(obj, key);
  if (v == nullptr) {
    if (def) return *def;
    bad(ctx, fmt::format("{}: missing string '{}'", where, key));
  }
  if (!v->is_string()) bad(ctx, fmt::format("{}: '{}' is not a string", where, key));
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > kMaxTokenBytes) bad(ctx, fmt::format("{}: '{}' is too long", where, key));
  if (!is_valid_utf8(s)) bad(ctx, fmt::format("{}: '{}' is not valid UTF-8", where, key));
  return s;
}

bool get_bool(const Ctx& ctx, const json& obj, const char* key, const char* where, bool def) {
  const json* v = field(obj, key);
  if (v == nullptr) return def;
  if (!v->is_boolean()) bad(ctx, fmt::format("{}: '{}' is not a boolean", where, key));
  return v->get<bool>();
}

uint64_t get_uint(const Ctx& ctx, const json& obj, const char* key, const char* where, uint64_t def, uint64_t max) {
  const json* v = field(obj, key);
  if (v == nullptr) return def;
  if (!v->is_number_unsigned()) bad(ctx, fmt::format("{}: '{}' is not a non-negative integer", where, key));
  const auto x = v->get<uint64_t>();
  if (x > max) bad(ctx, fmt::format("{}: '{}' = {} exceeds {}", where, key, x, max));
  return x;
}

const json& get_array(const Ctx& ctx, const json& obj, const char* key, const char* where) {
  const json* v = field(obj, key);
  if (v == nullptr || !v->is_array()) bad(ctx, fmt::format("{}: '{}' is not an array", where, key));
  if (v->size() > kMaxSequenceItems) bad(ctx, fmt::format("{}: '{}' has too many items", where, key));
  return *v;
}

std::string type_of(const Ctx& ctx, const json& obj, const char* where) {
  if (!obj.is_object()) bad(ctx, fmt::format("{} is not an object", where));
  return get_string(ctx, obj, "type", where);
}

// {"String": "..."} or {"Regex": "..."}: a literal, or a compiled regex.
std::pair<std::string, std::unique_ptr<Regex>> get_pattern(const Ctx& ctx, const json& obj, const char* where) {
  const json* p = field(obj, "pattern");
  if (p == nullptr || !p->is_object()) bad(ctx, fmt::format("{}: 'pattern' is not an object", where));
  if (field(*p, "String") != nullptr) return {get_string(ctx, *p, "String", where), nullptr};
  if (field(*p, "Regex") != nullptr) {
    const std::string re = get_string(ctx, *p, "Regex", where);
    try {
      return {std::string(), std::make_unique<Regex>(re)};
    } catch (const Error& e) {
      bad(ctx, fmt::format("{}: {}", where, e.what()));
    }
  }
  bad(ctx, fmt::format("{}: 'pattern' has neither 'String' nor 'Regex'", where));
}

std::unique_ptr<Normalizer> parse_normalizer(const Ctx& ctx, const json& j, int depth) {
  if (depth > kMaxComponentDepth) bad(ctx, "normalizer nested too deeply");
  const std::string type = type_of(ctx, j, "normalizer");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> items;
    for (const json& item : get_array(ctx, j, "normalizers", "Sequence normalizer")) {
      items.push_back(parse_normalizer(ctx, item, depth + 1));
    }
    return std::make_unique<SequenceNormalizer>(std::move(items));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(get_string(ctx, j, "prepend", "Prepend"));
  if (type == "Replace") {
    auto [literal, regex] = get_pattern(ctx, j, "Replace normalizer");
    return std::make_unique<ReplaceNormalizer>(std::move(literal), std::move(regex),
                                               get_string(ctx, j, "content", "Replace normalizer"));
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(get_bool(ctx, j, "strip_left", "Strip", true),
                                             get_bool(ctx, j, "strip_right", "Strip", true));
  }
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(UnicodeForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(UnicodeForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(UnicodeForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(UnicodeForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  fail(ErrorCode::kUnsupported, "{}: normalizer type '{}' is not supported", ctx.name, type.substr(0, 64));
}

SplitBehavior parse_behavior(const Ctx& ctx, const json& j, const char* where, SplitBehavior def) {
  const json* v = field(j, "behavior");
  if (v == nullptr) return def;
  const std::string b = get_string(ctx, j, "behavior", where);
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  bad(ctx, fmt::format("{}: unknown behavior '{}'", where, b.substr(0, 64)));
}

PrependScheme parse_prepend_scheme(const Ctx& ctx, const json& j, const char* where) {
  if (field(j, "prepend_scheme") != nullptr) {
    const std::string s = get_string(ctx, j, "prepend_scheme", where);
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    bad(ctx, fmt::format("{}: unknown prepend_scheme '{}'", where, s.substr(0, 64)));
  }
  // Files written before prepend_scheme existed say add_prefix_space.
  return get_bool(ctx, j, "add_prefix_space", where, true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

std::string get_replacement(const Ctx& ctx, const json& j, const char* where) {
  std::string r = get_string(ctx, j, "replacement", where, std::string("\xE2\x96\x81"));
  if (count_code_points(r) != 1) bad(ctx, fmt::format("{}: 'replacement' must be one character", where));
  return r;
}

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const Ctx& ctx, const json& j, int depth) {
  if (depth > kMaxComponentDepth) bad(ctx, "pre_tokenizer nested too deeply");
  const std::string type = type_of(ctx, j, "pre_tokenizer");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> items;
    for (const json& item : get_array(ctx, j, "pretokenizers", "Sequence pre_tokenizer")) {
      items.push_back(parse_pre_tokenizer(ctx, item, depth + 1));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(items));
  }
  if (type == "Split") {
    auto [literal, regex] = get_pattern(ctx, j, "Split pre_tokenizer");
    return std::make_unique<SplitPreTokenizer>(std::move(literal), std::move(regex),
                                               parse_behavior(ctx, j, "Split", SplitBehavior::kIsolated),
                                               get_bool(ctx, j, "invert", "Split", false));
  }
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(get_bool(ctx, j, "add_prefix_space", "ByteLevel", true),
                                                   get_bool(ctx, j, "use_regex", "ByteLevel", true));
  }
  if (type == "Metaspace") {
    return std::make_unique<MetaspacePreTokenizer>(get_replacement(ctx, j, "Metaspace"),
                                                   parse_prepend_scheme(ctx, j, "Metaspace"),
                                                   get_bool(ctx, j, "split", "Metaspace", true));
  }
  if (type == "Digits") {
    return std::make_unique<DigitsPreTokenizer>(get_bool(ctx, j, "individual_digits", "Digits", false));
  }
  if (type == "Whitespace") {
    return std::make_unique<RegexKeepPreTokenizer>(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, true);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<RegexKeepPreTokenizer>(R"(\s)", SplitBehavior::kRemoved, false);
  }
  if (type == "Punctuation") {
    return std::make_unique<RegexKeepPreTokenizer>(
        R"([\p{P}!-/:-@\[-`{-~])", parse_behavior(ctx, j, "Punctuation", SplitBehavior::kIsolated), false);
  }
  fail(ErrorCode::kUnsupported, "{}: pre_tokenizer type '{}' is not supported", ctx.name, type.substr(0, 64));
}

std::unique_ptr<Decoder> parse_decoder(const Ctx& ctx, const json& j, int depth) {
  if (depth > kMaxComponentDepth) bad(ctx, "decoder nested too deeply");
  const std::string type = type_of(ctx, j, "decoder");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> items;
    for (const json& item : get_array(ctx, j, "decoders", "Sequence decoder")) {
      items.push_back(parse_decoder(ctx, item, depth + 1));
    }
    return std::make_unique<SequenceDecoder>(std::move(items));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    return std::make_unique<MetaspaceDecoder>(get_replacement(ctx, j, "Metaspace decoder"),
                                              parse_prepend_scheme(ctx, j, "Metaspace decoder"));
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const std::string content = get_string(ctx, j, "content", "Strip decoder");
    if (count_code_points(content) != 1) bad(ctx, "Strip decoder: 'content' must be one character");
    size_t pos = 0;
    const char32_t cp = next_code_point(content, pos);
    return std::make_unique<StripDecoder>(cp, get_uint(ctx, j, "start", "Strip decoder", 0, 1u << 20),
                                          get_uint(ctx, j, "stop", "Strip decoder", 0, 1u << 20));
  }
  if (type == "Replace") {
    auto [literal, regex] = get_pattern(ctx, j, "Replace decoder");
    return std::make_unique<ReplaceDecoder>(std::move(literal), std::move(regex),
                                            get_string(ctx, j, "content", "Replace decoder"));
  }
  if (type == "BPEDecoder") {
    return std::make_unique<BpeSuffixDecoder>(get_string(ctx, j, "suffix", "BPEDecoder", std::string("</w>")));
  }
  fail(ErrorCode::kUnsupported, "{}: decoder type '{}' is not supported", ctx.name, type.substr(0, 64));
}

std::unique_ptr<BpeModel> parse_model(const Ctx& ctx, const json& j) {
  if (!j.is_object()) bad(ctx, "'model' is not an object");
  const std::string type = get_string(ctx, j, "type", "model", std::string("BPE"));
  if (type != "BPE") {
    fail(ErrorCode::kUnsupported, "{}: model type '{}' is not supported (only BPE)", ctx.name, type.substr(0, 64));
  }
  if (const json* d = field(j, "dropout"); d != nullptr && !(d->is_number() && d->get<double>() == 0.0)) {
    fail(ErrorCode::kUnsupported, "{}: BPE dropout is not supported", ctx.name);
  }
  const json* vocab_j = field(j, "vocab");
  if (vocab_j == nullptr || !vocab_j->is_object()) bad(ctx, "model: 'vocab' is not an object");
  if (vocab_j->size() > kMaxVocabSize)
    bad(ctx, fmt::format("model: {} vocabulary entries exceed the cap", vocab_j->size()));
  TokenMap vocab;
  vocab.reserve(vocab_j->size());
  for (auto it = vocab_j->begin(); it != vocab_j->end(); ++it) {
    if (!it.value().is_number_unsigned()) bad(ctx, "model: a vocabulary id is not a non-negative integer");
    const auto id = it.value().get<uint64_t>();
    if (id >= kMaxVocabSize) bad(ctx, fmt::format("model: vocabulary id {} exceeds the cap", id));
    if (it.key().size() > kMaxTokenBytes || !is_valid_utf8(it.key())) bad(ctx, "model: a vocabulary token is invalid");
    vocab[it.key()] = static_cast<uint32_t>(id);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (const json* m = field(j, "merges")) {
    if (!m->is_array()) bad(ctx, "model: 'merges' is not an array");
    if (m->size() > kMaxMerges) bad(ctx, fmt::format("model: {} merges exceed the cap", m->size()));
    merges.reserve(m->size());
    for (const json& e : *m) {
      if (e.is_string()) {
        const auto& s = e.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          bad(ctx, fmt::format("model: merge '{}' is not two tokens", s.substr(0, 64)));
        }
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        bad(ctx, "model: a merge is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  }
  BpeOptions opt;
  opt.byte_fallback = get_bool(ctx, j, "byte_fallback", "model", false);
  opt.fuse_unk = get_bool(ctx, j, "fuse_unk", "model", false);
  opt.ignore_merges = get_bool(ctx, j, "ignore_merges", "model", false);
  if (field(j, "unk_token") != nullptr) opt.unk_token = get_string(ctx, j, "unk_token", "model");
  opt.continuing_subword_prefix = get_string(ctx, j, "continuing_subword_prefix", "model", std::string());
  opt.end_of_word_suffix = get_string(ctx, j, "end_of_word_suffix", "model", std::string());
  try {
    return std::make_unique<BpeModel>(std::move(vocab), merges, std::move(opt));
  } catch (const Error& e) {
    bad(ctx, e.what());
  }
}

std::vector<AddedToken> parse_added_tokens(const Ctx& ctx, const json& j) {
  std::vector<AddedToken> out;
  if (!j.is_array()) bad(ctx, "'added_tokens' is not an array");
  if (j.size() > AddedVocabulary::kMaxAddedTokens) bad(ctx, "too many added tokens");
  out.reserve(j.size());
  for (const json& t : j) {
    if (!t.is_object()) bad(ctx, "an added token is not an object");
    AddedToken a;
    a.id = static_cast<uint32_t>(get_uint(ctx, t, "id", "added token", kMaxVocabSize, kMaxVocabSize - 1));
    if (field(t, "id") == nullptr) bad(ctx, "an added token has no id");
    a.content = get_string(ctx, t, "content", "added token");
    a.special = get_bool(ctx, t, "special", "added token", false);
    a.single_word = get_bool(ctx, t, "single_word", "added token", false);
    a.lstrip = get_bool(ctx, t, "lstrip", "added token", false);
    a.rstrip = get_bool(ctx, t, "rstrip", "added token", false);
    a.normalized = get_bool(ctx, t, "normalized", "added token", !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

// The ids a TemplateProcessing "SpecialToken" item names.
std::vector<uint32_t> special_ids(const Ctx& ctx, const json& specials, const std::string& id) {
  const json* s = field(specials, id.c_str());
  if (s == nullptr) bad(ctx, fmt::format("post_processor: special token '{}' is not defined", id.substr(0, 64)));
  const json* ids = field(*s, "ids");
  if (ids == nullptr || !ids->is_array() || ids->size() > 64) bad(ctx, "post_processor: bad special token ids");
  std::vector<uint32_t> out;
  for (const json& v : *ids) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() >= kMaxVocabSize) bad(ctx, "post_processor: bad special token id");
    out.push_back(static_cast<uint32_t>(v.get<uint64_t>()));
  }
  return out;
}

void parse_post_processor(const Ctx& ctx, const json& j, PostTemplate& post, int depth) {
  if (depth > kMaxComponentDepth) bad(ctx, "post_processor nested too deeply");
  const std::string type = type_of(ctx, j, "post_processor");
  if (type == "Sequence") {
    for (const json& item : get_array(ctx, j, "processors", "Sequence post_processor")) {
      parse_post_processor(ctx, item, post, depth + 1);
    }
    return;
  }
  if (type == "ByteLevel") return;  // only trims offsets
  if (type == "TemplateProcessing") {
    const json* single = field(j, "single");
    if (single == nullptr || !single->is_array() || single->size() > 64) bad(ctx, "post_processor: bad 'single'");
    const json empty = json::object();
    const json* specials = field(j, "special_tokens");
    if (specials == nullptr) specials = &empty;
    bool seen_sequence = false;
    for (const json& item : *single) {
      if (const json* st = field(item, "SpecialToken")) {
        const auto ids = special_ids(ctx, *specials, get_string(ctx, *st, "id", "post_processor"));
        auto& dst = seen_sequence ? post.suffix : post.prefix;
        dst.insert(dst.end(), ids.begin(), ids.end());
      } else if (field(item, "Sequence") != nullptr) {
        seen_sequence = true;
      } else {
        bad(ctx, "post_processor: a template item is neither SpecialToken nor Sequence");
      }
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto pair_id = [&](const char* key) -> uint32_t {
      const json* p = field(j, key);
      if (p == nullptr || !p->is_array() || p->size() != 2 || !(*p)[1].is_number_unsigned() ||
          (*p)[1].get<uint64_t>() >= kMaxVocabSize) {
        bad(ctx, fmt::format("post_processor: bad '{}'", key));
      }
      return static_cast<uint32_t>((*p)[1].get<uint64_t>());
    };
    post.prefix.push_back(pair_id("cls"));
    post.suffix.push_back(pair_id("sep"));
    return;
  }
  fail(ErrorCode::kUnsupported, "{}: post_processor type '{}' is not supported", ctx.name, type.substr(0, 64));
}

// A special token in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const Ctx& ctx, const json& config, const char* key) {
  const json* v = field(config, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) return get_string(ctx, config, key, "tokenizer_config");
  if (v->is_object()) return get_string(ctx, *v, "content", key);
  bad(ctx, fmt::format("tokenizer_config: '{}' is neither a string nor an object", key));
}

std::string config_chat_template(const Ctx& ctx, const json& config) {
  const json* v = field(config, "chat_template");
  if (v == nullptr) return {};
  if (v->is_string()) return v->get<std::string>();
  if (v->is_array()) {  // named templates: use "default"
    for (const json& t : *v) {
      if (field(t, "name") != nullptr && t["name"] == "default") return get_string(ctx, t, "template", "chat_template");
    }
    return {};
  }
  bad(ctx, "tokenizer_config: 'chat_template' is neither a string nor a list");
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json, const std::string& name) {
  const Ctx ctx{name};
  const json j = parse_json(tokenizer_json, name);
  if (!j.is_object()) bad(ctx, "top level is not an object");
  json config = json::object();
  if (!config_json.empty()) {
    config = parse_json(config_json, name + " (tokenizer_config.json)");
    if (!config.is_object()) bad(ctx, "tokenizer_config.json is not an object");
  }
  TokenizerSpec spec;
  spec.source = name;
  if (const json* n = field(j, "normalizer")) spec.normalizer = parse_normalizer(ctx, *n, 0);
  if (const json* p = field(j, "pre_tokenizer")) spec.pre_tokenizer = parse_pre_tokenizer(ctx, *p, 0);
  const json* m = field(j, "model");
  if (m == nullptr) bad(ctx, "no 'model'");
  spec.model = parse_model(ctx, *m);
  if (const json* d = field(j, "decoder")) spec.decoder = parse_decoder(ctx, *d, 0);
  if (const json* a = field(j, "added_tokens")) spec.added_tokens = parse_added_tokens(ctx, *a);
  // transformers also adds the config's added_tokens_decoder entries that tokenizer.json lacks.
  if (const json* dec = field(config, "added_tokens_decoder")) {
    if (!dec->is_object() || dec->size() > AddedVocabulary::kMaxAddedTokens) bad(ctx, "bad added_tokens_decoder");
    for (auto it = dec->begin(); it != dec->end(); ++it) {
      uint64_t id = 0;
      const std::string& key = it.key();
      if (key.empty() || key.size() > 9 || key.find_first_not_of("0123456789") != std::string::npos) {
        bad(ctx, "added_tokens_decoder: a key is not an id");
      }
      id = std::stoull(key);
      if (id >= kMaxVocabSize) bad(ctx, "added_tokens_decoder: id exceeds the cap");
      const bool known = std::any_of(spec.added_tokens.begin(), spec.added_tokens.end(),
                                     [&](const AddedToken& t) { return t.id == id; });
      if (known) continue;
      json entry = it.value();
      if (!entry.is_object()) bad(ctx, "added_tokens_decoder: an entry is not an object");
      entry["id"] = id;
      auto one = parse_added_tokens(ctx, json::array({entry}));
      spec.added_tokens.push_back(std::move(one[0]));
    }
  }
  spec.bos_token = config_token(ctx, config, "bos_token");
  spec.eos_token = config_token(ctx, config, "eos_token");
  spec.unk_token = config_token(ctx, config, "unk_token");
  spec.pad_token = config_token(ctx, config, "pad_token");
  spec.chat_template = config_chat_template(ctx, config);
  spec.clean_up_tokenization_spaces = get_bool(ctx, config, "clean_up_tokenization_spaces", "tokenizer_config", false);

  const json* post = field(j, "post_processor");
  const bool explicit_flags = field(config, "add_bos_token") != nullptr || field(config, "add_eos_token") != nullptr;
  if (post != nullptr && !explicit_flags) {
    parse_post_processor(ctx, *post, spec.post, 0);
  }
  Tokenizer tok(std::move(spec));
  if (post == nullptr || explicit_flags) {
    // transformers rebuilds the template from the flags: [bos] $A [eos].
    PostTemplate t;
    if (get_bool(ctx, config, "add_bos_token", "tokenizer_config", false) && tok.bos_id())
      t.prefix.push_back(*tok.bos_id());
    if (get_bool(ctx, config, "add_eos_token", "tokenizer_config", false) && tok.eos_id())
      t.suffix.push_back(*tok.eos_id());
    tok.spec_.post = std::move(t);
  }
  return tok;
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    const fs::path tj = p / "tokenizer.json";
    if (!fs::exists(tj, ec)) fail(ErrorCode::kNotFound, "{}: no tokenizer.json in this folder", path);
    const fs::path cj = p / "tokenizer_config.json";
    const std::string config = fs::exists(cj, ec) ? read_text_file(cj.string(), kMaxJsonBytes) : std::string();
    return from_json(read_text_file(tj.string(), kMaxJsonBytes), config, tj.string());
  }
  if (p.extension() == ".gguf") return from_gguf(gguf::File::open(path));
  const fs::path cj = p.parent_path() / "tokenizer_config.json";
  const std::string config = fs::exists(cj, ec) ? read_text_file(cj.string(), kMaxJsonBytes) : std::string();
  return from_json(read_text_file(path, kMaxJsonBytes), config, path);
}

}  // namespace pagoda::tokenizer
