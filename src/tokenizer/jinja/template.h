#pragma once

// pagoda's Jinja2 interpreter for chat templates: parse once, render many times.
//
// It renders what HF transformers' apply_chat_template renders: jinja2's ImmutableSandboxedEnvironment
// with trim_blocks, lstrip_blocks and the loopcontrols extension, transformers' tojson filter and its
// raise_exception / strftime_now / namespace / dict globals. Templates are untrusted: they see data
// only, and every render is bounded in steps, depth, loop iterations and output size. Every failure
// (syntax error, budget exceeded, raise_exception, a runtime error jinja2 would raise) is a
// pagoda::Error with code kInvalidArgument whose message names the template line.
//
// Known differences from jinja2: integers are 64-bit (overflow is an error), ranges, dict views and
// generators (map, select, ...) are plain lists (so printing one directly shows a list), case
// mapping covers Latin, Greek and Cyrillic, and templates cannot include or import others.

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/parser.h"

namespace pagoda::jinja {

using RenderOptions = RenderLimits;

class Template {
 public:
  // Throws pagoda::Error (kInvalidArgument) for anything jinja2 rejects when compiling.
  [[nodiscard]] static Template parse(std::string_view source, const ParseLimits& limits = {});

  // Renders with the top-level keys of `context` (an object, or null for none) as variables.
  // ordered_json keeps the key order Python's dicts have (it shows in tojson and dict iteration).
  [[nodiscard]] std::string render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;
  [[nodiscard]] std::string render(const nlohmann::json& context, const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const StmtList> body_;
};

// The context transformers' apply_chat_template builds, rendered: `messages` (an array of objects;
// keys whose value is null are dropped and reasoning fields are aliased, as transformers does),
// `tools` (null or an array), `documents` (None), `add_generation_prompt`, the special tokens
// `bos_token` and `eos_token`, and `extra_context` (an object or null) on top.
[[nodiscard]] std::string render_chat(const Template& tmpl, const nlohmann::ordered_json& messages,
                                      const nlohmann::ordered_json& tools, bool add_generation_prompt,
                                      std::string_view bos_token, std::string_view eos_token,
                                      const nlohmann::ordered_json& extra_context = nullptr,
                                      const RenderOptions& options = {});

// Converts JSON data to template values (throws pagoda::Error for nesting deeper than kMaxValueDepth).
[[nodiscard]] Value value_from_json(const nlohmann::ordered_json& j);
[[nodiscard]] Value value_from_json(const nlohmann::json& j);

}  // namespace pagoda::jinja
