// libFuzzer target: parses and renders arbitrary template text against a fixed chat context. Only
// pagoda::Error may escape the library; anything else (a crash, a sanitizer report, another
// exception, a hang past the budgets) is a finding.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/jinja/template.h"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json kContext = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi <b>there</b> é 日本"},
      {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"x": 1, "y": [1.5, null, true]}}}]},
      {"role": "tool", "content": "{\"ok\": true}"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "n": 3, "f": 2.5, "neg": -9223372036854775807, "nothing": null, "items": [3, 1, 2], "d": {"b": 2, "a": 1}
  })");
  return kContext;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view source(reinterpret_cast<const char*>(data), size);
  pagoda::jinja::RenderOptions options;
  options.max_steps = 200'000;
  options.max_output_bytes = 1u << 20;
  options.max_loop_iterations = 100'000;
  options.max_items = 100'000;
  try {
    pagoda::jinja::Template t = pagoda::jinja::Template::parse(source);
    (void)t.render(context(), options);
  } catch (const pagoda::Error&) {
    // Rejecting bad input is the expected outcome.
  }
  return 0;
}
