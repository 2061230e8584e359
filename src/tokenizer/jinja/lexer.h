#pragma once

// Splits template source into tokens the way jinja2's lexer does with the settings transformers
// uses for chat templates (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False):
// text, {{ }}, {% %} and {# #} with '-' / '+' whitespace control, {% raw %} blocks, and inside tags
// names, numbers, Python string literals and operators.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pagoda::jinja {

enum class TokenKind : uint8_t {
  kData,        // template text
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // value: the unescaped text
  kInteger,
  kFloat,
  kOperator,  // text: the operator
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  int line = 1;
  std::string text;  // data, name, unescaped string, operator
  int64_t int_value = 0;
  double float_value = 0.0;
};

// Throws pagoda::Error (kInvalidArgument) for malformed input, naming the line.
[[nodiscard]] std::vector<Token> tokenize(std::string_view source, size_t max_tokens);

}  // namespace pagoda::jinja
