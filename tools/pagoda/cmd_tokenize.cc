// `pagoda tokenize MODEL TEXT` and `pagoda detokenize MODEL IDS`: the model's tokenizer on the
// command line. MODEL is a .gguf file, a Hugging Face folder, or a tokenizer.json. Batch modes
// (--input-jsonl) let tests and benchmarks push thousands of strings through one process.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "core/error.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::cli {
namespace {

using nlohmann::json;
using tokenizer::Tokenizer;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string read_stdin() {
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// One input of --input-jsonl: a JSON string, or {"hex": "..."} for raw (possibly invalid UTF-8)
// bytes.
std::string jsonl_text(const std::string& line, size_t lineno, const std::string& path) {
  json j = json::parse(line, nullptr, false);
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("hex") && j["hex"].is_string()) {
    const auto& h = j["hex"].get_ref<const std::string&>();
    if (h.size() % 2 != 0) fail(ErrorCode::kInvalidArgument, "{}:{}: odd-length hex", path, lineno);
    std::string out;
    for (size_t i = 0; i < h.size(); i += 2) {
      const int hi = hex_value(h[i]);
      const int lo = hex_value(h[i + 1]);
      if (hi < 0 || lo < 0) fail(ErrorCode::kInvalidArgument, "{}:{}: bad hex digit", path, lineno);
      out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return out;
  }
  fail(ErrorCode::kInvalidArgument, "{}:{}: expected a JSON string or {{\"hex\": ...}}", path, lineno);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kNotFound, "{}: cannot open", path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
  }
  return lines;
}

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string input_jsonl;
  bool json = false;
  bool add_special = true;
  bool bench = false;
  int repeat = 1;
};

json ids_and_tokens(const Tokenizer& tok, const std::vector<uint32_t>& ids) {
  json tokens = json::array();
  for (uint32_t id : ids) {
    const std::string* t = tok.id_to_token(id);
    tokens.push_back(t != nullptr ? *t : std::string());
  }
  return json{{"ids", ids}, {"tokens", tokens}};
}

int run_tokenize(const TokenizeOptions& o) {
  const Tokenizer tok = Tokenizer::load(o.model.empty() ? default_model_path() : o.model);
  if (!o.input_jsonl.empty()) {
    const std::vector<std::string> lines = read_lines(o.input_jsonl);
    std::vector<std::string> texts;
    texts.reserve(lines.size());
    for (size_t i = 0; i < lines.size(); ++i)
      texts.push_back(jsonl_text(lines[i], i + 1, o.input_jsonl));
    if (o.bench) {
      // Times encoding only: loading and reading are outside the clock.
      std::vector<uint32_t> ids;
      size_t total_tokens = 0;
      size_t total_bytes = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < o.repeat; ++r) {
        for (const std::string& t : texts) {
          ids.clear();
          tok.encode_into(t, o.add_special, ids);
          total_tokens += ids.size();
          total_bytes += t.size();
        }
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fmt::print("{}\n", dump(json{{"encode_seconds", secs},
                                   {"strings", texts.size() * static_cast<size_t>(o.repeat)},
                                   {"tokens", total_tokens},
                                   {"bytes", total_bytes}}));
      return 0;
    }
    std::string out;
    for (const std::string& t : texts) {
      const auto ids = tok.encode(t, o.add_special);
      out += o.json ? dump(ids_and_tokens(tok, ids)) : dump(json(ids));
      out += '\n';
    }
    fmt::print("{}", out);
    return 0;
  }
  const std::string text = o.text == "-" ? read_stdin() : o.text;
  const auto ids = tok.encode(text, o.add_special);
  if (o.json) {
    fmt::print("{}\n", dump(ids_and_tokens(tok, ids)));
  } else {
    fmt::print("{}\n", fmt::join(ids, " "));
  }
  return 0;
}

struct DetokenizeOptions {
  std::string model;
  std::string ids;
  std::string input_jsonl;
  bool skip_special = false;
  bool stream = false;
};

std::vector<uint32_t> parse_ids(const std::string& s) {
  std::vector<uint32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() &&
           (s[i] == ',' || s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r' || s[i] == '[' || s[i] == ']')) {
      ++i;
    }
    if (i >= s.size()) break;
    uint64_t v = 0;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      v = v * 10 + static_cast<uint64_t>(s[i] - '0');
      if (++digits > 10 || v > 0xFFFFFFFFull) fail(ErrorCode::kInvalidArgument, "token id out of range");
      ++i;
    }
    if (digits == 0) fail(ErrorCode::kInvalidArgument, "'{}' is not a token id", s.substr(i, 16));
    ids.push_back(static_cast<uint32_t>(v));
  }
  return ids;
}

std::vector<std::string> stream_pieces(const Tokenizer& tok, const std::vector<uint32_t>& ids, bool skip) {
  tokenizer::StreamDecoder dec(tok, skip);
  std::vector<std::string> pieces;
  for (uint32_t id : ids) {
    std::string p = dec.push(id);
    if (!p.empty()) pieces.push_back(std::move(p));
  }
  std::string rest = dec.finish();
  if (!rest.empty()) pieces.push_back(std::move(rest));
  return pieces;
}

int run_detokenize(const DetokenizeOptions& o) {
  const Tokenizer tok = Tokenizer::load(o.model.empty() ? default_model_path() : o.model);
  if (!o.input_jsonl.empty()) {
    std::string out;
    for (const std::string& line : read_lines(o.input_jsonl)) {
      const auto ids = parse_ids(line);
      out +=
          o.stream ? dump(json(stream_pieces(tok, ids, o.skip_special))) : dump(json(tok.decode(ids, o.skip_special)));
      out += '\n';
    }
    fmt::print("{}", out);
    return 0;
  }
  const auto ids = parse_ids(o.ids == "-" ? read_stdin() : o.ids);
  if (o.stream) {
    for (const std::string& p : stream_pieces(tok, ids, o.skip_special))
      fmt::print("{}\n", dump(json(p)));
    return 0;
  }
  fmt::print("{}\n", tok.decode(ids, o.skip_special));
  return 0;
}

const CommandRegistration kRegisterTokenize("tokenize", [](CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  cmd->add_option("MODEL", o->model, "A .gguf file, a Hugging Face folder or a tokenizer.json")->required();
  cmd->add_option("TEXT", o->text, "Text to encode ('-' reads stdin)");
  cmd->add_flag("--json", o->json, "Print ids and token strings as JSON");
  cmd->add_flag("--add-special-tokens,!--no-special", o->add_special,
                "Add the template's special tokens such as BOS (default on, as HF's add_special_tokens)");
  cmd->add_option("--input-jsonl", o->input_jsonl,
                  "Encode each line (a JSON string, or {\"hex\": ...} for raw bytes); print one JSON array per line");
  cmd->add_flag("--bench", o->bench, "With --input-jsonl: time encoding only and print the timing as JSON");
  cmd->add_option("--repeat", o->repeat, "With --bench: passes over the input")->check(CLI::Range(1, 1000000));
  return [o] {
    if (o->input_jsonl.empty() && o->text.empty())
      fail(ErrorCode::kInvalidArgument, "tokenize: give TEXT, '-' or --input-jsonl");
    return run_tokenize(*o);
  };
});

const CommandRegistration kRegisterDetokenize("detokenize", [](CLI::App& app) {
  auto o = std::make_shared<DetokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("detokenize", "Print the text of token ids");
  cmd->add_option("MODEL", o->model, "A .gguf file, a Hugging Face folder or a tokenizer.json")->required();
  cmd->add_option("IDS", o->ids, "Token ids separated by commas or spaces ('-' reads stdin)");
  cmd->add_flag("--skip-special-tokens", o->skip_special, "Leave special tokens out");
  cmd->add_flag("--stream", o->stream, "Decode incrementally; print each released piece as a JSON string line");
  cmd->add_option(
      "--input-jsonl", o->input_jsonl,
      "Decode each line (a JSON array of ids); print a JSON string per line (--stream: an array of pieces)");
  return [o] {
    if (o->input_jsonl.empty() && o->ids.empty())
      fail(ErrorCode::kInvalidArgument, "detokenize: give IDS, '-' or --input-jsonl");
    return run_detokenize(*o);
  };
});

}  // namespace
}  // namespace pagoda::cli
