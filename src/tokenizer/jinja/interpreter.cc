#include "tokenizer/jinja/interpreter.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "tokenizer/jinja/text.h"

namespace pagoda::jinja {

namespace {

[[noreturn]] void undefined_error(const Value& v) {
  type_error("{}", v.undefined_hint().empty() ? std::string("value is undefined") : v.undefined_hint());
}

[[noreturn]] void unsupported(std::string_view op, const Value& a, const Value& b) {
  type_error("unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(), b.type_name());
}

[[noreturn]] void overflow() {
  type_error("integer overflow (pagoda's integers are 64-bit)");
}

int64_t add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}
int64_t sub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}
int64_t mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

Value int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) result = mul(result, base);
    exp >>= 1;
    if (exp > 0) base = mul(base, base);
  }
  return Value::integer(result);
}

// Python's float divmod.
std::pair<double, double> float_divmod(double vx, double wx) {
  double mod = std::fmod(vx, wx);
  double div = (vx - mod) / wx;
  if (mod != 0.0) {
    if ((wx < 0) != (mod < 0)) {
      mod += wx;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, wx);
  }
  double floordiv = 0.0;
  if (div != 0.0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, vx / wx);
  }
  return {floordiv, mod};
}

Value repeat(const Value& seq, int64_t n, Interpreter& in) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && static_cast<uint64_t>(n) > in.max_string() / s.size()) {
      type_error("string repetition exceeds the limit of {} bytes", in.max_string());
    }
    in.charge(s.size() * static_cast<uint64_t>(n) / 16);
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      out += s;
    return Value::string(std::move(out));
  }
  const auto& items = seq.as_list();
  if (!items.empty() && static_cast<uint64_t>(n) > in.max_items() / items.size()) {
    type_error("list repetition exceeds the limit of {} items", in.max_items());
  }
  in.charge(items.size() * static_cast<uint64_t>(n));
  std::vector<Value> out;
  out.reserve(items.size() * static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    out.insert(out.end(), items.begin(), items.end());
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

}  // namespace

Value binary_op(BinaryOp op, const Value& a, const Value& b, Interpreter& in) {
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  const bool nums = a.is_number() && b.is_number();
  const bool ints = a.is_integral() && b.is_integral();
  switch (op) {
    case BinaryOp::kAdd:
      if (ints) return Value::integer(add(a.as_int(), b.as_int()));
      if (nums) return Value::floating(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        if (a.as_string().size() + b.as_string().size() > in.max_string()) {
          type_error("string exceeds the limit of {} bytes", in.max_string());
        }
        in.charge((a.as_string().size() + b.as_string().size()) / 16);
        return Value::string(a.as_string() + b.as_string());
      }
      if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
        std::vector<Value> out = a.as_list();
        const auto& extra = b.as_list();
        if (out.size() + extra.size() > in.max_items()) type_error("list exceeds {} items", in.max_items());
        in.charge(out.size() + extra.size());
        out.insert(out.end(), extra.begin(), extra.end());
        return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
      }
      unsupported("+", a, b);
    case BinaryOp::kSub:
      if (ints) return Value::integer(sub(a.as_int(), b.as_int()));
      if (nums) return Value::floating(a.as_double() - b.as_double());
      unsupported("-", a, b);
    case BinaryOp::kMul:
      if (ints) return Value::integer(mul(a.as_int(), b.as_int()));
      if (nums) return Value::floating(a.as_double() * b.as_double());
      if ((a.is_string() || a.is_list()) && b.is_integral()) return repeat(a, b.as_int(), in);
      if (a.is_integral() && (b.is_string() || b.is_list())) return repeat(b, a.as_int(), in);
      unsupported("*", a, b);
    case BinaryOp::kDiv:
      if (nums) {
        if (b.as_double() == 0.0) type_error("division by zero");
        return Value::floating(a.as_double() / b.as_double());
      }
      unsupported("/", a, b);
    case BinaryOp::kFloorDiv:
    case BinaryOp::kMod:
      if (op == BinaryOp::kMod && a.is_string()) return in.make_string(percent_format(in, a.as_string(), b));
      if (ints) {
        int64_t x = a.as_int();
        int64_t y = b.as_int();
        if (y == 0) type_error("integer division or modulo by zero");
        if (x == std::numeric_limits<int64_t>::min() && y == -1) {
          if (op == BinaryOp::kMod) return Value::integer(0);
          type_error("integer overflow (pagoda's integers are 64-bit)");
        }
        int64_t q = x / y;
        int64_t r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return Value::integer(op == BinaryOp::kFloorDiv ? q : r);
      }
      if (nums) {
        if (b.as_double() == 0.0) type_error("float division by zero");
        auto [q, r] = float_divmod(a.as_double(), b.as_double());
        return Value::floating(op == BinaryOp::kFloorDiv ? q : r);
      }
      unsupported(op == BinaryOp::kMod ? "%" : "//", a, b);
    case BinaryOp::kPow:
      if (ints && b.as_int() >= 0) return int_pow(a.as_int(), b.as_int());
      if (nums) {
        double x = a.as_double();
        double y = b.as_double();
        if (x == 0.0 && y < 0) type_error("zero cannot be raised to a negative power");
        if (x < 0 && y != std::floor(y)) type_error("a negative number raised to a fractional power is complex");
        return Value::floating(std::pow(x, y));
      }
      unsupported("**", a, b);
  }
  unsupported("?", a, b);
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (item.is_undefined()) undefined_error(item);
      if (!item.is_string()) type_error("'in <string>' requires string as left operand, not {}", item.type_name());
      return text::find(container.as_string(), item.as_string()) != std::string_view::npos;
    case Value::Kind::kList:
      text::add_work(container.as_list().size());
      for (const Value& v : container.as_list()) {
        if (equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict: return container.as_dict().find(item) != nullptr;
    default: type_error("argument of type '{}' is not iterable", container.type_name());
  }
}

Interpreter::DepthGuard::DepthGuard(Interpreter& in) : in_(in) {
  if (++in_.depth_ > in_.limits_.max_depth) {
    --in_.depth_;
    type_error("evaluation is nested more than {} levels deep (runaway recursion?)", in_.limits_.max_depth);
  }
}

void Interpreter::charge(uint64_t steps) {
  steps_ += steps + text::take_work();
  if (steps_ > limits_.max_steps) type_error("template exceeded its budget of {} evaluation steps", limits_.max_steps);
}

Value Interpreter::make_string(std::string s) {
  if (s.size() > limits_.max_output_bytes) {
    type_error("string exceeds the limit of {} bytes", limits_.max_output_bytes);
  }
  charge(s.size() / 16);
  return Value::string(std::move(s));
}

std::vector<Value> Interpreter::items_of(const Value& v) {
  std::vector<Value> items = iterate(v, limits_.max_items);
  charge(items.size());
  return items;
}

void Interpreter::emit(std::string& out, std::string_view s) const {
  if (out.size() + s.size() > limits_.max_output_bytes) {
    type_error("rendered text exceeds the limit of {} bytes", limits_.max_output_bytes);
  }
  out.append(s);
}

std::string Interpreter::render(const StmtList& body, std::shared_ptr<const DictData> context) {
  auto root = std::make_shared<Scope>(nullptr);
  root->root = std::move(context);
  std::string out;
  (void)text::take_work();  // work from before this render is not this template's
  try {
    (void)exec_block(body, root, out);
  } catch (const TemplateError& e) {
    fail(ErrorCode::kInvalidArgument, "chat template error at line {}: {}", line_, e.what());
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::kInvalidArgument, "chat template error at line {}: out of memory", line_);
  }
  return out;
}

// ---- statements ----

Interpreter::Flow Interpreter::exec_block(const StmtList& body, const ScopePtr& scope, std::string& out) {
  for (const StmtPtr& s : body) {
    Flow f = exec(*s, scope, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

std::string Interpreter::render_body(const StmtList& body, const ScopePtr& parent) {
  auto inner = std::make_shared<Scope>(parent);
  std::string out;
  (void)exec_block(body, inner, out);
  return out;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const ScopePtr& scope, std::string& out) {
  DepthGuard guard(*this);
  charge(1);
  line_ = s.line;
  switch (s.kind) {
    case StmtKind::kText: emit(out, s.text); break;
    case StmtKind::kOutput:
      for (const ExprPtr& e : s.exprs) {
        Value v = eval(*e, scope);
        if (v.is_string()) {
          emit(out, v.as_string());
        } else {
          std::string text = to_str(v, limits_.max_output_bytes);
          emit(out, text);
        }
      }
      break;
    case StmtKind::kIf:
      for (size_t i = 0; i < s.exprs.size(); ++i) {
        if (eval(*s.exprs[i], scope).truthy()) return exec_block(s.bodies[i], scope, out);
      }
      if (s.has_else) return exec_block(s.bodies.back(), scope, out);
      break;
    case StmtKind::kFor: return exec_for(s, scope, out);
    case StmtKind::kSet: assign(*s.target, eval(*s.exprs[0], scope), scope); break;
    case StmtKind::kSetBlock: {
      Value body = make_string(render_body(s.bodies[0], scope));
      assign(*s.target, s.filter ? apply_filter_chain(*s.filter, body, scope) : body, scope);
      break;
    }
    case StmtKind::kMacro: {
      auto m = std::make_shared<CallableData>();
      m->kind = CallableKind::kMacro;
      m->name = s.name;
      m->macro = &s;
      m->closure = scope;
      scope->set(s.name, Value::callable(std::move(m)));
      break;
    }
    case StmtKind::kCallBlock: exec_call_block(s, scope, out); break;
    case StmtKind::kFilterBlock: {
      Value body = make_string(render_body(s.bodies[0], scope));
      Value v = apply_filter_chain(*s.filter, body, scope);
      emit(out, str(v));
      break;
    }
    case StmtKind::kWith: {
      std::vector<Value> values;
      for (const ExprPtr& e : s.exprs)
        values.push_back(eval(*e, scope));
      auto inner = std::make_shared<Scope>(scope);
      for (size_t i = 0; i < values.size(); ++i)
        assign(*s.target->children[i], values[i], inner);
      return exec_block(s.bodies[0], inner, out);
    }
    case StmtKind::kScope: {
      auto inner = std::make_shared<Scope>(scope);
      return exec_block(s.bodies[0], inner, out);
    }
    case StmtKind::kBreak: return Flow::kBreak;
    case StmtKind::kContinue: return Flow::kContinue;
  }
  return Flow::kNormal;
}

void Interpreter::assign(const Expr& target, const Value& v, const ScopePtr& scope) {
  switch (target.kind) {
    case ExprKind::kName: scope->set(target.name, v); return;
    case ExprKind::kNsRef: {
      const Value* ns = scope->find(target.name);
      if (ns == nullptr || !ns->is_namespace()) type_error("cannot assign attribute on non-namespace object");
      if (!target.attr.empty() && target.attr[0] == '_') {
        type_error("chat templates cannot store underscore-prefixed attributes on a namespace ('{}')", target.attr);
      }
      check_storable_in_namespace(v);
      ns->as_namespace().attrs.set(Value::string(target.attr), v);
      return;
    }
    case ExprKind::kTuple: {
      std::vector<Value> items = items_of(v);
      if (items.size() < target.children.size()) {
        type_error("not enough values to unpack (expected {}, got {})", target.children.size(), items.size());
      }
      if (items.size() > target.children.size()) {
        type_error("too many values to unpack (expected {})", target.children.size());
      }
      for (size_t i = 0; i < items.size(); ++i)
        assign(*target.children[i], items[i], scope);
      return;
    }
    default: type_error("cannot assign to this expression");
  }
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
  Value iterable = eval(*s.iter, scope);
  run_loop(s, scope, items_of(iterable), 0, out);
  return Flow::kNormal;
}

void Interpreter::run_loop(const Stmt& s, const ScopePtr& scope, std::vector<Value> items, int depth0,
                           std::string& out) {
  if (s.cond) {
    std::vector<Value> kept;
    for (Value& item : items) {
      charge(1);
      auto test_scope = std::make_shared<Scope>(scope);
      assign(*s.target, item, test_scope);
      if (eval(*s.cond, test_scope).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (s.has_else) (void)exec_block(s.bodies[1], std::make_shared<Scope>(scope), out);
    return;
  }
  auto loop = std::make_shared<LoopData>();
  loop->items = std::move(items);
  loop->depth0 = depth0;
  loop->node = &s;
  loop->outer = scope;
  Value loop_value = Value::loop(loop);
  for (size_t i = 0; i < loop->items.size(); ++i) {
    if (++loop_iterations_ > limits_.max_loop_iterations) {
      type_error("template exceeded its budget of {} loop iterations", limits_.max_loop_iterations);
    }
    charge(1);
    loop->index0 = i;
    auto iter_scope = std::make_shared<Scope>(scope);
    iter_scope->set("loop", loop_value);
    assign(*s.target, loop->items[i], iter_scope);
    if (exec_block(s.bodies[0], iter_scope, out) == Flow::kBreak) break;
  }
}

void Interpreter::exec_call_block(const Stmt& s, const ScopePtr& scope, std::string& out) {
  const Expr& call = *s.exprs[0];
  Value callee = eval(*call.children[0], scope);
  Args args = eval_args(call.call, scope);
  auto caller = std::make_shared<CallableData>();
  caller->kind = CallableKind::kCaller;
  caller->name = "caller";
  caller->macro = &s;
  caller->closure = scope;
  for (const auto& [k, v] : args.keywords) {
    if (k == "caller") type_error("a call block passes its own 'caller'");
  }
  args.keywords.emplace_back("caller", Value::callable(std::move(caller)));
  line_ = s.line;
  Value result = this->call(callee, args);
  emit(out, str(result));
}

// ---- calls ----

Value Interpreter::call(const Value& callee, const Args& args) {
  DepthGuard guard(*this);
  charge(1);
  if (callee.is_undefined()) undefined_error(callee);
  if (callee.is_loop()) return call_loop(callee.as_loop(), args);
  if (!callee.is_callable()) type_error("'{}' object is not callable", callee.type_name());
  const CallableData& fn = callee.as_callable();
  switch (fn.kind) {
    case CallableKind::kBuiltin:
    case CallableKind::kJoiner: return call_builtin(*this, fn, args);
    case CallableKind::kMethod: return call_method(*this, fn.self, fn.name, args);
    case CallableKind::kMacro:
    case CallableKind::kCaller: return call_macro(fn, args);
  }
  type_error("object is not callable");
}

Value Interpreter::call_macro(const CallableData& m, const Args& args) {
  ScopePtr closure = m.closure.lock();
  if (!closure) type_error("macro '{}' was called after its scope ended", m.name);
  const Stmt& def = *m.macro;
  const int saved_line = line_;
  auto scope = std::make_shared<Scope>(closure);
  const size_t np = def.params.size();
  const size_t first_default = np - def.defaults.size();
  std::vector<bool> bound(np, false);
  std::vector<Value> extra_positional;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < np) {
      scope->set(def.params[i], args.positional[i]);
      bound[i] = true;
    } else {
      extra_positional.push_back(args.positional[i]);
    }
  }
  auto kwargs = std::make_shared<DictData>();
  Value caller;
  bool has_caller = false;
  for (const auto& [key, value] : args.keywords) {
    size_t idx = np;
    for (size_t i = 0; i < np; ++i) {
      if (def.params[i] == key) idx = i;
    }
    if (idx < np) {
      if (bound[idx]) type_error("macro '{}' got multiple values for argument '{}'", m.name, key);
      scope->set(key, value);
      bound[idx] = true;
    } else if (key == "caller" && m.kind == CallableKind::kMacro) {
      if (!def.uses_caller) type_error("macro '{}' was invoked with a caller but never calls it", m.name);
      caller = value;
      has_caller = true;
    } else {
      kwargs->set(Value::string(key), value);
    }
  }
  if (!extra_positional.empty() && !def.uses_varargs) {
    type_error("macro '{}' takes not more than {} argument(s)", m.name, np);
  }
  if (!kwargs->empty() && !def.uses_kwargs) {
    type_error("macro '{}' takes no keyword argument '{}'", m.name, kwargs->entries().front().first.as_string());
  }
  for (size_t i = 0; i < np; ++i) {
    if (bound[i]) continue;
    if (i >= first_default) {
      scope->set(def.params[i], eval(*def.defaults[i - first_default], scope));
    } else {
      scope->set(def.params[i], Value::undefined(fmt::format("parameter '{}' was not provided", def.params[i])));
    }
  }
  if (def.uses_varargs) scope->set("varargs", Value::tuple(std::move(extra_positional)));
  if (def.uses_kwargs) scope->set("kwargs", Value::dict(std::move(kwargs)));
  if (has_caller) scope->set("caller", caller);
  std::string out;
  (void)exec_block(def.bodies[0], scope, out);
  line_ = saved_line;
  return make_string(std::move(out));
}

Value Interpreter::call_loop(LoopData& loop, const Args& args) {
  if (loop.node == nullptr || !loop.node->recursive) {
    type_error("the loop must be marked recursive to be called recursively");
  }
  if (args.positional.size() != 1 || !args.keywords.empty()) type_error("loop() takes exactly one argument");
  ScopePtr outer = loop.outer.lock();
  if (!outer) type_error("loop called after it ended");
  std::string out;
  run_loop(*loop.node, outer, items_of(args.positional[0]), loop.depth0 + 1, out);
  return make_string(std::move(out));
}

// ---- attribute and item access (the sandbox: data only, no Python internals) ----

Value Interpreter::loop_attribute(const Value& loop_value, std::string_view name) {
  const LoopData& l = loop_value.as_loop();
  const auto n = static_cast<int64_t>(l.items.size());
  const auto i = static_cast<int64_t>(l.index0);
  if (name == "index") return Value::integer(i + 1);
  if (name == "index0") return Value::integer(i);
  if (name == "revindex") return Value::integer(n - i);
  if (name == "revindex0") return Value::integer(n - i - 1);
  if (name == "first") return Value::boolean(i == 0);
  if (name == "last") return Value::boolean(i == n - 1);
  if (name == "length") return Value::integer(n);
  if (name == "depth") return Value::integer(l.depth0 + 1);
  if (name == "depth0") return Value::integer(l.depth0);
  if (name == "previtem") {
    return i > 0 ? l.items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return i + 1 < n ? l.items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item");
  }
  if (has_method(loop_value, name)) {
    auto m = std::make_shared<CallableData>();
    m->kind = CallableKind::kMethod;
    m->name = std::string(name);
    m->self = loop_value;
    return Value::callable(std::move(m));
  }
  return Value::undefined(fmt::format("'LoopContext object' has no attribute '{}'", name));
}

Value Interpreter::getattr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_loop()) return loop_attribute(obj, name);
  auto missing = [&] {
    return Value::undefined(fmt::format("'{} object' has no attribute '{}'", obj.type_name(), name));
  };
  if (!name.empty() && name[0] == '_') {
    // Python internals (__class__, __globals__, ...) are never reachable; a dict key that merely
    // starts with '_' is, as in jinja2's sandbox.
    if (obj.is_dict() && !(name.size() > 1 && name[1] == '_')) {
      if (const Value* v = obj.as_dict().find(name)) return *v;
    }
    return missing();
  }
  if (is_mutating_method(obj, name)) {
    return Value::undefined(fmt::format("access to attribute '{}' of '{}' object is unsafe", name, obj.type_name()));
  }
  if (has_method(obj, name)) {
    auto m = std::make_shared<CallableData>();
    m->kind = CallableKind::kMethod;
    m->name = std::string(name);
    m->self = obj;
    return Value::callable(std::move(m));
  }
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().find(name)) return *v;
  } else if (obj.is_namespace()) {
    if (const Value* v = obj.as_namespace().attrs.find(name)) return *v;
  }
  return missing();
}

namespace {

// Python's slice.indices(): the positions a[start:stop:step] visits.
std::vector<size_t> slice_positions(int64_t len, const Value& start_v, const Value& stop_v, const Value& step_v) {
  int64_t step = step_v.is_none() ? 1 : step_v.as_int();
  if (step == 0) type_error("slice step cannot be zero");
  int64_t lower = step < 0 ? -1 : 0;
  int64_t upper = step < 0 ? len - 1 : len;
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t x = v.as_int();
    if (x < 0) {
      x += len;
      if (x < lower) x = lower;
    } else if (x > upper) {
      x = upper;
    }
    return x;
  };
  int64_t start = clamp(start_v, step < 0 ? upper : lower);
  int64_t stop = clamp(stop_v, step < 0 ? lower : upper);
  std::vector<size_t> out;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step)
      out.push_back(static_cast<size_t>(i));
  } else {
    for (int64_t i = start; i > stop; i += step)
      out.push_back(static_cast<size_t>(i));
  }
  return out;
}

}  // namespace

Value Interpreter::getitem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) undefined_error(obj);
  auto fallback = [&]() -> Value {
    if (key.is_string()) return getattr(obj, key.as_string());
    return Value::undefined(fmt::format("'{} object' has no item {}", obj.type_name(), to_repr(key, 1024)));
  };
  if (obj.is_dict()) {
    const Value* v = nullptr;
    try {
      v = obj.as_dict().find(key);
    } catch (const TemplateError&) {
      return fallback();  // unhashable key: jinja2 falls back as for a missing one
    }
    if (v != nullptr) return *v;
    return fallback();
  }
  if ((obj.is_list() || obj.is_string()) && key.is_integral()) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const auto n = static_cast<int64_t>(obj.as_list().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("list index out of range");
      return obj.as_list()[static_cast<size_t>(i)];
    }
    const std::string& s = obj.as_string();
    if (i < 0) i += static_cast<int64_t>(text::length(s));
    if (i < 0) return Value::undefined("string index out of range");
    size_t pos = 0;
    text::add_work(static_cast<uint64_t>(i) / 32);
    for (int64_t k = 0; k < i && pos < s.size(); ++k)
      (void)text::next_code_point(s, pos);
    if (pos >= s.size()) return Value::undefined("string index out of range");
    size_t start = pos;
    (void)text::next_code_point(s, pos);
    return Value::string(s.substr(start, pos - start));
  }
  return fallback();
}

// ---- expressions ----

Value Interpreter::eval_getitem(const Expr& e, const ScopePtr& scope) {
  Value obj = eval(*e.children[0], scope);
  const Expr& key = *e.children[1];
  if (key.kind != ExprKind::kSlice) return getitem(obj, eval(key, scope));
  Value parts[3] = {Value::none(), Value::none(), Value::none()};
  for (size_t i = 0; i < 3; ++i) {
    if (key.children[i]) parts[i] = eval(*key.children[i], scope);
  }
  if (obj.is_undefined()) undefined_error(obj);
  for (const Value& p : parts) {
    if (!p.is_none() && !p.is_integral()) return Value::undefined("slice indices must be integers or None");
  }
  if (obj.is_list()) {
    const auto& items = obj.as_list();
    std::vector<size_t> pos = slice_positions(static_cast<int64_t>(items.size()), parts[0], parts[1], parts[2]);
    charge(pos.size());
    std::vector<Value> out;
    out.reserve(pos.size());
    for (size_t p : pos)
      out.push_back(items[p]);
    return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  if (obj.is_string()) {
    std::vector<char32_t> cps = text::decode(obj.as_string());
    std::vector<size_t> pos = slice_positions(static_cast<int64_t>(cps.size()), parts[0], parts[1], parts[2]);
    charge(pos.size() / 16);
    std::string out;
    for (size_t p : pos)
      text::append_utf8(out, cps[p]);
    return Value::string(std::move(out));
  }
  return Value::undefined(fmt::format("'{}' object is not subscriptable", obj.type_name()));
}

Args Interpreter::eval_args(const CallArgs& call, const ScopePtr& scope) {
  Args a;
  for (const ExprPtr& e : call.positional)
    a.positional.push_back(eval(*e, scope));
  for (const auto& [k, e] : call.keywords)
    a.keywords.emplace_back(k, eval(*e, scope));
  if (call.star_args) {
    for (Value& v : items_of(eval(*call.star_args, scope)))
      a.positional.push_back(std::move(v));
  }
  if (call.star_kwargs) {
    Value d = eval(*call.star_kwargs, scope);
    if (!d.is_dict()) type_error("argument after ** must be a mapping, not {}", d.type_name());
    for (const auto& [k, v] : d.as_dict().entries()) {
      if (!k.is_string()) type_error("keywords must be strings");
      a.keywords.emplace_back(k.as_string(), v);
    }
  }
  return a;
}

Value Interpreter::apply_filter_chain(const Expr& filter, const Value& input, const ScopePtr& scope) {
  const Value* saved = block_input_;
  block_input_ = &input;
  Value v = eval(filter, scope);
  block_input_ = saved;
  return v;
}

Value Interpreter::eval_filter(const Expr& e, const ScopePtr& scope) {
  Value input;
  if (e.children[0]) {
    input = eval(*e.children[0], scope);
  } else if (block_input_ != nullptr) {
    input = *block_input_;
  }
  Args args = eval_args(e.call, scope);
  line_ = e.line;
  if (!has_filter(e.name)) type_error("no filter named '{}'", e.name);
  return apply_filter(*this, e.name, input, args);
}

Value Interpreter::eval_compare(const Expr& e, const ScopePtr& scope) {
  Value left = eval(*e.children[0], scope);
  for (size_t i = 0; i < e.cmp_ops.size(); ++i) {
    Value right = eval(*e.children[i + 1], scope);
    bool r = false;
    switch (e.cmp_ops[i]) {
      case CompareOp::kEq: r = equals(left, right); break;
      case CompareOp::kNe: r = !equals(left, right); break;
      case CompareOp::kLt: r = compare(left, right) == -1; break;
      case CompareOp::kLe: {
        int c = compare(left, right);
        r = c == -1 || c == 0;
        break;
      }
      case CompareOp::kGt: r = compare(left, right) == 1; break;
      case CompareOp::kGe: {
        int c = compare(left, right);
        r = c == 1 || c == 0;
        break;
      }
      case CompareOp::kIn: r = contains(right, left); break;
      case CompareOp::kNotIn: r = !contains(right, left); break;
    }
    if (!r) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
  DepthGuard guard(*this);
  charge(1);
  line_ = e.line;
  switch (e.kind) {
    case ExprKind::kConst: return e.value;
    case ExprKind::kName: {
      if (const Value* v = scope->find(e.name)) return *v;
      if (auto g = global_function(e.name)) return *g;
      return Value::undefined(fmt::format("'{}' is undefined", e.name));
    }
    case ExprKind::kNsRef: type_error("namespace references can only be assigned to");
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(e.children.size());
      for (const ExprPtr& c : e.children)
        items.push_back(eval(*c, scope));
      return e.kind == ExprKind::kList ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case ExprKind::kDict: {
      auto d = std::make_shared<DictData>();
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        Value k = eval(*e.children[i], scope);
        Value v = eval(*e.children[i + 1], scope);
        d->set(k, std::move(v));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::kGetAttr: return getattr(eval(*e.children[0], scope), e.attr);
    case ExprKind::kGetItem: return eval_getitem(e, scope);
    case ExprKind::kSlice: type_error("a slice is only valid inside []");
    case ExprKind::kCall: {
      Value callee = eval(*e.children[0], scope);
      Args args = eval_args(e.call, scope);
      line_ = e.line;
      return call(callee, args);
    }
    case ExprKind::kFilter: return eval_filter(e, scope);
    case ExprKind::kTest: {
      Value input = eval(*e.children[0], scope);
      Args args = eval_args(e.call, scope);
      line_ = e.line;
      if (!has_test(e.name)) type_error("no test named '{}'", e.name);
      return Value::boolean(apply_test(*this, e.name, input, args));
    }
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      Value v = eval(*e.children[0], scope);
      if (v.is_undefined()) undefined_error(v);
      if (!v.is_number())
        type_error("bad operand type for unary {}: '{}'", e.kind == ExprKind::kNeg ? '-' : '+', v.type_name());
      if (e.kind == ExprKind::kPos) return v.is_bool() ? Value::integer(v.as_int()) : v;
      if (v.is_float()) return Value::floating(-v.as_double());
      if (v.as_int() == std::numeric_limits<int64_t>::min()) type_error("integer overflow");
      return Value::integer(-v.as_int());
    }
    case ExprKind::kNot: return Value::boolean(!eval(*e.children[0], scope).truthy());
    case ExprKind::kBinary: {
      Value a = eval(*e.children[0], scope);
      Value b = eval(*e.children[1], scope);
      line_ = e.line;
      return binary_op(e.op, a, b, *this);
    }
    case ExprKind::kCompare: return eval_compare(e, scope);
    case ExprKind::kAnd: {
      Value a = eval(*e.children[0], scope);
      return a.truthy() ? eval(*e.children[1], scope) : a;
    }
    case ExprKind::kOr: {
      Value a = eval(*e.children[0], scope);
      return a.truthy() ? a : eval(*e.children[1], scope);
    }
    case ExprKind::kConcat: {
      std::string out;
      for (const ExprPtr& c : e.children) {
        Value v = eval(*c, scope);
        append_str(out, v, limits_.max_output_bytes);
      }
      return make_string(std::move(out));
    }
    case ExprKind::kCond: {
      if (eval(*e.children[1], scope).truthy()) return eval(*e.children[0], scope);
      if (e.children[2]) return eval(*e.children[2], scope);
      return Value::undefined("the condition of an inline if was false and it has no else");
    }
  }
  type_error("unknown expression");
}

}  // namespace pagoda::jinja
