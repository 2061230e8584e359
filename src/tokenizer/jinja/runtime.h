#pragma once

// Run-time objects behind Value's callable and loop kinds, and the variable scopes.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace pagoda::jinja {

// A variable scope. The root scope holds the render context; each loop iteration, macro call, call
// block, with block and filter block gets a child.
struct Scope {
  explicit Scope(std::shared_ptr<Scope> p) : parent(std::move(p)) {}

  // The innermost binding of `name`, or null.
  [[nodiscard]] const Value* find(std::string_view name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent.get()) {
      for (auto it = s->vars.rbegin(); it != s->vars.rend(); ++it) {
        if (it->first == name) return &it->second;
      }
      if (s->root != nullptr) {
        if (const Value* v = s->root->find(name)) return v;
      }
    }
    return nullptr;
  }

  void set(const std::string& name, Value v) {
    for (auto& [k, old] : vars) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }

  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;
  std::shared_ptr<const DictData> root;  // the render context, in the root scope only
};

using ScopePtr = std::shared_ptr<Scope>;

enum class CallableKind : uint8_t {
  kBuiltin,  // a global function: range, namespace, dict, raise_exception, strftime_now, joiner
  kMethod,   // a method bound to `self` (str.strip, dict.items, loop.cycle, ...)
  kMacro,    // a {% macro %}
  kCaller,   // the body of a {% call %} block
  kJoiner,   // the object joiner() returns
};

struct CallableData {
  CallableKind kind = CallableKind::kBuiltin;
  std::string name;
  Value self;
  const Stmt* macro = nullptr;  // kMacro / kCaller: the defining statement
  // The scope the macro was defined in. Weak, because that scope usually holds the macro itself;
  // a macro never outlives it (values that reach a namespace cannot hold callables).
  std::weak_ptr<Scope> closure;
  std::shared_ptr<bool> joiner_used;  // kJoiner state
};

// The `loop` variable of a for loop.
struct LoopData {
  std::vector<Value> items;
  size_t index0 = 0;
  int depth0 = 0;
  Value last_changed;
  bool changed_called = false;
  const Stmt* node = nullptr;  // for `loop(...)` in recursive loops
  std::weak_ptr<Scope> outer;  // the scope the loop runs in
};

}  // namespace pagoda::jinja
