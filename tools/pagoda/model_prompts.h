#pragma once

// What `pagoda generate` and `pagoda logits` share: turning --prompt / --prompt-ids / --chat into
// token ids with the model's own tokenizer and chat template, and printing floats as JSON.

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/loader/model_files.h"
#include "tokenizer/jinja/template.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::cli {

inline constexpr size_t kMaxPrompts = 4096;
inline constexpr size_t kMaxPromptIds = size_t{1} << 22;

// "1,2,3" (spaces allowed) → ids. Every id must fit int32; the model checks the vocabulary.
inline std::vector<int32_t> parse_prompt_ids(std::string_view text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  auto skip = [&] {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n'))
      ++i;
  };
  skip();
  while (i < text.size()) {
    bool negative = false;
    if (text[i] == '-') {
      negative = true;
      ++i;
    }
    int64_t v = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      v = v * 10 + (text[i] - '0');
      if (++digits > 10 || v > INT32_MAX) {
        fail(ErrorCode::kInvalidArgument, "--prompt-ids: a token id is out of range ({}...)", text.substr(0, 40));
      }
      ++i;
    }
    if (digits == 0) {
      fail(ErrorCode::kInvalidArgument, "--prompt-ids: expected comma-separated token ids, got '{}'",
           text.substr(i, 20));
    }
    ids.push_back(static_cast<int32_t>(negative ? -v : v));
    if (ids.size() > kMaxPromptIds) fail(ErrorCode::kInvalidArgument, "--prompt-ids: more than {} ids", kMaxPromptIds);
    skip();
    if (i < text.size()) {
      if (text[i] != ',') {
        fail(ErrorCode::kInvalidArgument, "--prompt-ids: expected ',' between token ids, got '{}'", text.substr(i, 20));
      }
      ++i;
      skip();
    }
  }
  if (ids.empty()) fail(ErrorCode::kInvalidArgument, "--prompt-ids: no token ids given");
  return ids;
}

inline constexpr uint64_t kMaxChatTemplateBytes = 1ull << 20;

struct PromptInput {
  std::vector<std::string> texts;
  std::vector<std::string> id_lists;
  bool chat = false;
  std::string chat_template_file;  // --chat-template: overrides the model's template (implies --chat)
};

// Adds --chat and --chat-template to a subcommand that fills `in`.
inline void add_chat_options(CLI::App* sub, PromptInput& in) {
  sub->add_flag("--chat", in.chat, "Wrap each --prompt as a user message in the model's chat template");
  sub->add_option("--chat-template", in.chat_template_file,
                  "A Jinja2 chat template file to use instead of the model's (implies --chat)");
}

// The model's tokenizer, or nullptr when it has none.
inline std::unique_ptr<tokenizer::Tokenizer> load_tokenizer(const ModelFiles& files) {
  if (files.tokenizer_kind() == "none") return nullptr;
  return std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(files.path()));
}

// Token ids of every prompt: texts first (encoded as transformers does, or rendered with the chat
// template and then encoded without added special tokens), then the id lists.
inline std::vector<std::vector<int32_t>> prompt_token_ids(const PromptInput& in, const ModelFiles& files,
                                                          const tokenizer::Tokenizer* tok) {
  if (in.texts.empty() && in.id_lists.empty()) fail(ErrorCode::kInvalidArgument, "give --prompt or --prompt-ids");
  if (in.texts.size() + in.id_lists.size() > kMaxPrompts) {
    fail(ErrorCode::kInvalidArgument, "at most {} prompts per run", kMaxPrompts);
  }
  const bool chat = in.chat || !in.chat_template_file.empty();
  if (chat && !in.id_lists.empty()) {
    fail(ErrorCode::kInvalidArgument, "--chat applies the chat template to text: use --prompt, not --prompt-ids");
  }
  std::vector<std::vector<int32_t>> out;
  if (!in.texts.empty()) {
    if (tok == nullptr) {
      fail(ErrorCode::kInvalidArgument, "{}: the model has no tokenizer (tokenizer.json); use --prompt-ids",
           files.path());
    }
    std::optional<jinja::Template> tmpl;
    if (chat) {
      std::string source = !in.chat_template_file.empty() ? read_text_file(in.chat_template_file, kMaxChatTemplateBytes)
                                                          : files.chat_template().value_or(tok->chat_template());
      if (source.empty()) fail(ErrorCode::kInvalidArgument, "{}: the model has no chat template", files.path());
      tmpl = jinja::Template::parse(source);
    }
    for (const std::string& text : in.texts) {
      std::vector<uint32_t> ids;
      if (tmpl) {
        nlohmann::ordered_json messages = nlohmann::ordered_json::array();
        messages.push_back({{"role", "user"}, {"content", text}});
        const std::string rendered = jinja::render_chat(*tmpl, messages, nullptr, true, tok->bos_token().value_or(""),
                                                        tok->eos_token().value_or(""));
        ids = tok->encode(rendered, false);
      } else {
        ids = tok->encode(text, true);
      }
      std::vector<int32_t> prompt;
      for (uint32_t id : ids)
        prompt.push_back(static_cast<int32_t>(id));
      out.push_back(std::move(prompt));
    }
  }
  for (const std::string& list : in.id_lists)
    out.push_back(parse_prompt_ids(list));
  return out;
}

// A float as JSON: the shortest text that reads back as the same float (Python's json reads NaN
// and Infinity).
inline std::string json_float(float f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  return fmt::format("{}", f);
}

inline std::string json_floats(const std::vector<float>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += json_float(values[i]);
  }
  return out + "]";
}

}  // namespace pagoda::cli
