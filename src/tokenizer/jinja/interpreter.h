#pragma once

// Walks the syntax tree and renders it: statements, expressions with Python's semantics, scopes,
// macros and call blocks, loops, and the budgets that keep a hostile template bounded.

#include <cstdint>
#include <memory>
#include <string>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/runtime.h"

namespace pagoda::jinja {

struct RenderLimits {
  uint64_t max_steps = 5'000'000;            // evaluation steps (nodes, loop iterations, items copied)
  size_t max_output_bytes = 16u << 20;       // the rendering and every string built on the way
  int max_depth = 400;                       // nested evaluation, including macro recursion
  uint64_t max_loop_iterations = 1'000'000;  // all loop iterations together
  size_t max_items = 1'000'000;              // elements of any list built
};

class Interpreter {
 public:
  explicit Interpreter(const RenderLimits& limits) : limits_(limits) {}

  // Renders `body` with `context` as the template's variables. Throws pagoda::Error
  // (kInvalidArgument) naming the line for every failure.
  [[nodiscard]] std::string render(const StmtList& body, std::shared_ptr<const DictData> context);

  // ---- services for filters, tests and methods ----
  void charge(uint64_t steps);
  [[nodiscard]] size_t max_string() const { return limits_.max_output_bytes; }
  [[nodiscard]] size_t max_items() const { return limits_.max_items; }
  [[nodiscard]] Value make_string(std::string s);
  [[nodiscard]] std::string str(const Value& v) const { return to_str(v, limits_.max_output_bytes); }
  [[nodiscard]] std::vector<Value> items_of(const Value& v);
  [[nodiscard]] Value getattr(const Value& obj, std::string_view name);
  [[nodiscard]] Value getitem(const Value& obj, const Value& key);
  [[nodiscard]] Value call(const Value& callee, const Args& args);
  [[nodiscard]] int current_line() const { return line_; }

 private:
  enum class Flow : uint8_t { kNormal, kBreak, kContinue };

  struct DepthGuard {
    explicit DepthGuard(Interpreter& in);
    ~DepthGuard() { --in_.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
    Interpreter& in_;
  };

  void emit(std::string& out, std::string_view s) const;
  Flow exec_block(const StmtList& body, const ScopePtr& scope, std::string& out);
  Flow exec(const Stmt& s, const ScopePtr& scope, std::string& out);
  std::string render_body(const StmtList& body, const ScopePtr& parent);
  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string& out);
  void run_loop(const Stmt& s, const ScopePtr& scope, std::vector<Value> items, int depth0, std::string& out);
  void exec_call_block(const Stmt& s, const ScopePtr& scope, std::string& out);
  void assign(const Expr& target, const Value& v, const ScopePtr& scope);

  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_filter(const Expr& e, const ScopePtr& scope);
  Value eval_getitem(const Expr& e, const ScopePtr& scope);
  Args eval_args(const CallArgs& call, const ScopePtr& scope);
  Value eval_compare(const Expr& e, const ScopePtr& scope);
  Value call_macro(const CallableData& m, const Args& args);
  Value call_loop(LoopData& loop, const Args& args);
  Value loop_attribute(const Value& loop, std::string_view name);
  Value apply_filter_chain(const Expr& filter, const Value& input, const ScopePtr& scope);

  RenderLimits limits_;
  uint64_t steps_ = 0;
  uint64_t loop_iterations_ = 0;
  int depth_ = 0;
  int line_ = 1;
  const Value* block_input_ = nullptr;  // input of a filter chain in {% filter %} / {% set %} blocks
};

// Python's binary operators and `in` over values; exposed for filters (sum) and tests.
[[nodiscard]] Value binary_op(BinaryOp op, const Value& a, const Value& b, Interpreter& in);
[[nodiscard]] bool contains(const Value& container, const Value& item);

}  // namespace pagoda::jinja
