#pragma once

// Parses tokens into statements with jinja2's grammar (its expression precedence, tuple rules,
// filter and test syntax, and the statement tags transformers' environment accepts).

#include <string_view>

#include "tokenizer/jinja/ast.h"

namespace pagoda::jinja {

struct ParseLimits {
  size_t max_tokens = 1'000'000;
  int max_depth = 256;  // nesting of expressions and of statements
};

// Throws pagoda::Error (kInvalidArgument) naming the line for anything jinja2 would reject at
// compile time: syntax errors, unknown tags, unknown filters or tests outside conditionals,
// `break` outside a loop, too deep nesting.
[[nodiscard]] StmtList parse_template(std::string_view source, const ParseLimits& limits);

}  // namespace pagoda::jinja
