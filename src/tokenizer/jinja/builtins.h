#pragma once

// Filters, tests, global functions and the methods of str, dict and list that templates may call.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja/runtime.h"
#include "tokenizer/jinja/value.h"

namespace pagoda::jinja {

class Interpreter;

// Evaluated call arguments.
struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

// Binds `args` to a Python signature: `params` in order; returns one entry per param (nullopt
// where not passed). Throws for too many positional arguments, unknown or duplicate keywords.
[[nodiscard]] std::vector<std::optional<Value>> bind_args(const Args& args,
                                                          std::initializer_list<std::string_view> params,
                                                          std::string_view function);

[[nodiscard]] bool has_filter(std::string_view name);
[[nodiscard]] bool has_test(std::string_view name);
[[nodiscard]] Value apply_filter(Interpreter& in, std::string_view name, const Value& input, const Args& args);
[[nodiscard]] bool apply_test(Interpreter& in, std::string_view name, const Value& input, const Args& args);

// A global function (range, namespace, dict, raise_exception, strftime_now, joiner), or nullopt.
[[nodiscard]] std::optional<Value> global_function(std::string_view name);
[[nodiscard]] Value call_builtin(Interpreter& in, const CallableData& fn, const Args& args);

// Whether `self` has a method `name` (str.strip, dict.items, list.index, loop.cycle, ...).
[[nodiscard]] bool has_method(const Value& self, std::string_view name);
// Methods that would mutate a list or dict: the immutable sandbox hides them.
[[nodiscard]] bool is_mutating_method(const Value& self, std::string_view name);
[[nodiscard]] Value call_method(Interpreter& in, const Value& self, std::string_view name, const Args& args);

// Python's `format % args` (printf-style) and str.format.
[[nodiscard]] std::string percent_format(Interpreter& in, const std::string& format, const Value& args);
[[nodiscard]] std::string brace_format(Interpreter& in, const std::string& format, const Args& args);

// json.dumps with the options transformers' tojson filter passes.
struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // nullopt: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
[[nodiscard]] std::string to_json(const Value& v, const JsonOptions& options, size_t limit);

}  // namespace pagoda::jinja
