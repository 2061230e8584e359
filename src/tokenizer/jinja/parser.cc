#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/lexer.h"

namespace pagoda::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, int max_depth) : toks_(std::move(tokens)), max_depth_(max_depth) {}

  StmtList run() {
    StmtList body = subparse({});
    if (!unknown_.empty()) {
      const auto& [line, what] = unknown_.front();
      fail(ErrorCode::kInvalidArgument, "chat template error at line {}: {}", line, what);
    }
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  void advance() {
    if (i_ + 1 < toks_.size()) ++i_;
  }
  bool is_op(std::string_view op) const { return cur().kind == TokenKind::kOperator && cur().text == op; }
  bool is_name(std::string_view name) const { return cur().kind == TokenKind::kName && cur().text == name; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kData: return "template data";
      case TokenKind::kVarBegin: return "begin of print statement";
      case TokenKind::kVarEnd: return "end of print statement";
      case TokenKind::kBlockBegin: return "begin of statement block";
      case TokenKind::kBlockEnd: return "end of statement block";
      case TokenKind::kName:
      case TokenKind::kOperator: return t.text;
      case TokenKind::kString: return "string";
      case TokenKind::kInteger: return "integer";
      case TokenKind::kFloat: return "float";
      case TokenKind::kEof: return "end of template";
    }
    return "token";
  }

  template <typename... Args>
  [[noreturn]] void error(int line, fmt::format_string<Args...> format, Args&&... args) {
    fail(ErrorCode::kInvalidArgument, "chat template syntax error at line {}: {}", line,
         fmt::format(format, std::forward<Args>(args)...));
  }
  [[noreturn]] void unexpected() { error(cur().line, "unexpected '{}'", describe(cur())); }

  void expect_op(std::string_view op) {
    if (!skip_op(op)) error(cur().line, "expected '{}', got '{}'", op, describe(cur()));
  }
  void expect_kind(TokenKind kind, std::string_view what) {
    if (cur().kind != kind) error(cur().line, "expected {}, got '{}'", what, describe(cur()));
    advance();
  }
  std::string expect_name() {
    if (cur().kind != TokenKind::kName) error(cur().line, "expected a name, got '{}'", describe(cur()));
    std::string n = cur().text;
    advance();
    return n;
  }
  void expect_name(std::string_view name) {
    if (!skip_name(name)) error(cur().line, "expected '{}', got '{}'", name, describe(cur()));
  }

  // Recursion guard for the descent itself.
  struct DepthGuard {
    DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > p_.max_depth_)
        p_.error(p_.cur().line, "template is nested more than {} levels deep", p_.max_depth_);
    }
    ~DepthGuard() { --p_.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
    Parser& p_;
  };

  ExprPtr make(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // Sets the subtree height once children are attached; every expression tree is bounded.
  ExprPtr finish(ExprPtr e) {
    int d = 0;
    auto see = [&](const ExprPtr& c) {
      if (c) d = std::max(d, c->depth);
    };
    for (const auto& c : e->children)
      see(c);
    for (const auto& c : e->call.positional)
      see(c);
    for (const auto& [k, c] : e->call.keywords)
      see(c);
    see(e->call.star_args);
    see(e->call.star_kwargs);
    e->depth = d + 1;
    if (e->depth > max_depth_) error(e->line, "expression is nested more than {} levels deep", max_depth_);
    return e;
  }

  // ---- statements ----

  bool at_end_tag(const std::vector<std::string_view>& end_tags) const {
    if (cur().kind != TokenKind::kName) return false;
    return std::find(end_tags.begin(), end_tags.end(), cur().text) != end_tags.end();
  }

  StmtList subparse(const std::vector<std::string_view>& end_tags) {
    DepthGuard guard(*this);
    StmtList body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokenKind::kEof) {
        if (!end_tags.empty()) error(t.line, "unexpected end of template, expected '{}'", end_tags.front());
        return body;
      }
      if (t.kind == TokenKind::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kText;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        advance();
      } else if (t.kind == TokenKind::kVarBegin) {
        int line = t.line;
        advance();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = line;
        s->exprs.push_back(parse_tuple(false, true, {}, false, false));
        expect_kind(TokenKind::kVarEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockBegin) {
        advance();
        if (at_end_tag(end_tags)) return body;
        body.push_back(parse_statement());
        expect_kind(TokenKind::kBlockEnd, "end of statement block");
      } else {
        unexpected();
      }
    }
  }

  // Parses the body of a block tag up to one of `end_tags` (left as the current token).
  StmtList parse_body(const std::vector<std::string_view>& end_tags) {
    skip_op(":");
    expect_kind(TokenKind::kBlockEnd, "end of statement block");
    return subparse(end_tags);
  }
  StmtList parse_body_drop(std::string_view end_tag) {
    StmtList b = parse_body({end_tag});
    advance();
    return b;
  }

  StmtPtr new_stmt(StmtKind kind, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = line;
    return s;
  }

  StmtPtr parse_statement() {
    const Token& t = cur();
    if (t.kind != TokenKind::kName) error(t.line, "tag name expected");
    const std::string tag = t.text;
    const int line = t.line;
    if (tag == "for") return parse_for();
    if (tag == "if") return parse_if();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "break" || tag == "continue") {
      advance();
      if (loop_depth_ == 0) error(line, "'{}' outside loop", tag);
      return new_stmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
    }
    if (tag == "print") {
      advance();
      auto s = new_stmt(StmtKind::kOutput, line);
      while (cur().kind != TokenKind::kBlockEnd) {
        if (!s->exprs.empty()) expect_op(",");
        s->exprs.push_back(parse_expression(true));
      }
      return s;
    }
    if (tag == "block") {
      advance();
      auto s = new_stmt(StmtKind::kScope, line);
      std::string name = expect_name();
      skip_name("scoped");
      skip_name("required");
      if (is_op("-")) error(cur().line, "block names may not contain hyphens");
      SoftReset soft(*this);
      s->bodies.push_back(parse_body_drop("endblock"));
      skip_name(name);
      return s;
    }
    if (tag == "autoescape") {
      advance();
      auto s = new_stmt(StmtKind::kScope, line);
      s->exprs.push_back(parse_expression(true));
      s->bodies.push_back(parse_body_drop("endautoescape"));
      return s;
    }
    if (tag == "generation") {  // transformers' AssistantTracker extension: renders its body
      advance();
      auto s = new_stmt(StmtKind::kScope, line);
      LoopReset loops(*this);
      SoftReset soft(*this);
      s->bodies.push_back(parse_body_drop("endgeneration"));
      return s;
    }
    if (tag == "include" || tag == "import" || tag == "from" || tag == "extends") {
      error(line, "'{}' is not supported: chat templates cannot load other templates", tag);
    }
    std::string expected;
    error(line, "encountered unknown tag '{}'", tag);
  }

  // Frames that are not "soft" (if/else and conditional expressions are): unknown filters there
  // fail at parse time, as in jinja2.
  struct SoftReset {
    explicit SoftReset(Parser& p) : p_(p), saved_(p.soft_) { p_.soft_ = 0; }
    ~SoftReset() { p_.soft_ = saved_; }
    SoftReset(const SoftReset&) = delete;
    SoftReset& operator=(const SoftReset&) = delete;
    Parser& p_;
    int saved_;
  };
  struct LoopReset {
    explicit LoopReset(Parser& p) : p_(p), saved_(p.loop_depth_) { p_.loop_depth_ = 0; }
    ~LoopReset() { p_.loop_depth_ = saved_; }
    LoopReset(const LoopReset&) = delete;
    LoopReset& operator=(const LoopReset&) = delete;
    Parser& p_;
    int saved_;
  };

  StmtPtr parse_for() {
    auto s = new_stmt(StmtKind::kFor, cur().line);
    advance();
    s->target = parse_assign_target(true, false, {"in"}, false);
    expect_name("in");
    s->iter = parse_tuple(false, false, {"recursive"}, false, false);
    if (skip_name("if")) {
      SoftReset soft(*this);
      s->cond = parse_expression(true);
    }
    s->recursive = skip_name("recursive");
    {
      SoftReset soft(*this);
      ++loop_depth_;
      s->bodies.push_back(parse_body({"endfor", "else"}));
      --loop_depth_;
      if (cur().text == "else") {
        advance();
        s->has_else = true;
        s->bodies.push_back(parse_body_drop("endfor"));
      } else {
        advance();
        s->bodies.emplace_back();
      }
    }
    return s;
  }

  StmtPtr parse_if() {
    auto s = new_stmt(StmtKind::kIf, cur().line);
    advance();
    ++soft_;
    while (true) {
      s->exprs.push_back(parse_tuple(false, false, {}, false, false));
      s->bodies.push_back(parse_body({"elif", "else", "endif"}));
      std::string end = cur().text;
      advance();
      if (end == "elif") continue;
      if (end == "else") {
        s->has_else = true;
        s->bodies.push_back(parse_body_drop("endif"));
      }
      break;
    }
    --soft_;
    return s;
  }

  StmtPtr parse_set() {
    int line = cur().line;
    advance();
    ExprPtr target = parse_assign_target(true, false, {}, true);
    if (skip_op("=")) {
      auto s = new_stmt(StmtKind::kSet, line);
      s->target = std::move(target);
      s->exprs.push_back(parse_tuple(false, true, {}, false, false));
      return s;
    }
    auto s = new_stmt(StmtKind::kSetBlock, line);
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter(nullptr, false);
    s->bodies.push_back(parse_body_drop("endset"));
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      int line = cur().line;
      std::string name = expect_name();
      check_assignable_name(name, line);
      if (skip_op("=")) {
        s.defaults.push_back(parse_expression(true));
      } else if (!s.defaults.empty()) {
        error(line, "non-default argument follows default argument");
      }
      s.params.push_back(std::move(name));
    }
    expect_op(")");
  }

  void check_assignable_name(const std::string& name, int line) {
    if (name == "true" || name == "false" || name == "True" || name == "False" || name == "none" || name == "None") {
      error(line, "can't assign to 'const'");
    }
  }

  // Parses a macro or caller body, noting which of varargs, kwargs and caller it mentions.
  StmtList parse_callable_body(Stmt& s, std::string_view end_tag) {
    LoopReset loops(*this);
    SoftReset soft(*this);
    collectors_.emplace_back();
    StmtList body = parse_body_drop(end_tag);
    std::set<std::string> names = std::move(collectors_.back());
    collectors_.pop_back();
    s.uses_varargs = names.count("varargs") > 0;
    s.uses_kwargs = names.count("kwargs") > 0;
    s.uses_caller = names.count("caller") > 0;
    return body;
  }

  StmtPtr parse_macro() {
    auto s = new_stmt(StmtKind::kMacro, cur().line);
    advance();
    int line = cur().line;
    s->name = expect_name();
    check_assignable_name(s->name, line);
    parse_signature(*s);
    s->bodies.push_back(parse_callable_body(*s, "endmacro"));
    return s;
  }

  StmtPtr parse_call_block() {
    auto s = new_stmt(StmtKind::kCallBlock, cur().line);
    advance();
    if (is_op("(")) parse_signature(*s);
    ExprPtr call = parse_expression(true);
    if (call->kind != ExprKind::kCall) error(s->line, "expected call");
    s->exprs.push_back(std::move(call));
    s->bodies.push_back(parse_callable_body(*s, "endcall"));
    return s;
  }

  StmtPtr parse_filter_block() {
    auto s = new_stmt(StmtKind::kFilterBlock, cur().line);
    advance();
    s->filter = parse_filter(nullptr, true);
    SoftReset soft(*this);
    s->bodies.push_back(parse_body_drop("endfilter"));
    return s;
  }

  StmtPtr parse_with() {
    auto s = new_stmt(StmtKind::kWith, cur().line);
    advance();
    std::vector<ExprPtr> targets;
    while (cur().kind != TokenKind::kBlockEnd) {
      if (!targets.empty()) expect_op(",");
      targets.push_back(parse_assign_target(true, false, {}, false));
      expect_op("=");
      s->exprs.push_back(parse_expression(true));
    }
    // The targets travel as a tuple so that the statement keeps one target field.
    auto tuple = make(ExprKind::kTuple, s->line);
    tuple->children = std::move(targets);
    s->target = finish(std::move(tuple));
    SoftReset soft(*this);
    s->bodies.push_back(parse_body_drop("endwith"));
    return s;
  }

  // ---- assignment targets ----

  static bool assignable(const Expr& e) {
    if (e.kind == ExprKind::kName || e.kind == ExprKind::kNsRef) return true;
    if (e.kind == ExprKind::kTuple) {
      return std::all_of(e.children.begin(), e.children.end(), [](const ExprPtr& c) { return assignable(*c); });
    }
    return false;
  }

  ExprPtr parse_assign_target(bool with_tuple, bool name_only, const std::vector<std::string_view>& extra_end,
                              bool with_namespace) {
    ExprPtr target;
    if (name_only) {
      auto e = make(ExprKind::kName, cur().line);
      e->name = expect_name();
      target = finish(std::move(e));
    } else if (with_tuple) {
      target = parse_tuple(true, true, extra_end, false, with_namespace);
    } else {
      target = parse_primary(with_namespace);
    }
    if (!assignable(*target)) error(target->line, "can't assign to this expression");
    return target;
  }

  // ---- expressions ----

  bool is_tuple_end(const std::vector<std::string_view>& extra_end) const {
    if (cur().kind == TokenKind::kVarEnd || cur().kind == TokenKind::kBlockEnd || is_op(")")) return true;
    return at_end_tag(extra_end);
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr, const std::vector<std::string_view>& extra_end,
                      bool explicit_parentheses, bool with_namespace) {
    int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(simplified ? parse_primary(with_namespace) : parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items.front());
      if (!explicit_parentheses) error(cur().line, "expected an expression, got '{}'", describe(cur()));
    }
    auto t = make(ExprKind::kTuple, line);
    t->children = std::move(items);
    return finish(std::move(t));
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    DepthGuard guard(*this);
    size_t mark = unknown_.size();
    int line = cur().line;
    ExprPtr expr1 = parse_or();
    while (skip_name("if")) {
      ExprPtr expr2 = parse_or();
      ExprPtr expr3;
      if (skip_name("else")) expr3 = parse_condexpr();
      auto c = make(ExprKind::kCond, line);
      c->children.push_back(std::move(expr1));
      c->children.push_back(std::move(expr2));
      c->children.push_back(std::move(expr3));
      expr1 = finish(std::move(c));
      // Unknown filters anywhere in a conditional expression only fail when evaluated.
      unknown_.resize(mark);
      line = cur().line;
    }
    return expr1;
  }

  ExprPtr binary_node(ExprKind kind, int line, ExprPtr a, ExprPtr b) {
    auto e = make(kind, line);
    e->children.push_back(std::move(a));
    e->children.push_back(std::move(b));
    return finish(std::move(e));
  }

  ExprPtr parse_or() {
    int line = cur().line;
    ExprPtr left = parse_and();
    while (skip_name("or"))
      left = binary_node(ExprKind::kOr, line, std::move(left), parse_and());
    return left;
  }

  ExprPtr parse_and() {
    int line = cur().line;
    ExprPtr left = parse_not();
    while (skip_name("and"))
      left = binary_node(ExprKind::kAnd, line, std::move(left), parse_not());
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      int line = cur().line;
      advance();
      auto e = make(ExprKind::kNot, line);
      e->children.push_back(parse_not());
      return finish(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr expr = parse_math1();
    std::vector<CompareOp> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      CompareOp op;
      if (is_op("==")) {
        op = CompareOp::kEq;
      } else if (is_op("!=")) {
        op = CompareOp::kNe;
      } else if (is_op("<")) {
        op = CompareOp::kLt;
      } else if (is_op("<=")) {
        op = CompareOp::kLe;
      } else if (is_op(">")) {
        op = CompareOp::kGt;
      } else if (is_op(">=")) {
        op = CompareOp::kGe;
      } else if (is_name("in")) {
        op = CompareOp::kIn;
      } else if (is_name("not") && peek().kind == TokenKind::kName && peek().text == "in") {
        op = CompareOp::kNotIn;
        advance();
      } else {
        break;
      }
      advance();
      ops.push_back(op);
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return expr;
    auto e = make(ExprKind::kCompare, line);
    e->children.push_back(std::move(expr));
    for (auto& o : operands)
      e->children.push_back(std::move(o));
    e->cmp_ops = std::move(ops);
    return finish(std::move(e));
  }

  ExprPtr arith(int line, BinaryOp op, ExprPtr a, ExprPtr b) {
    auto e = make(ExprKind::kBinary, line);
    e->op = op;
    e->children.push_back(std::move(a));
    e->children.push_back(std::move(b));
    return finish(std::move(e));
  }

  ExprPtr parse_math1() {
    int line = cur().line;
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      BinaryOp op = is_op("+") ? BinaryOp::kAdd : BinaryOp::kSub;
      advance();
      left = arith(line, op, std::move(left), parse_concat());
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_concat() {
    int line = cur().line;
    std::vector<ExprPtr> args;
    args.push_back(parse_math2());
    while (skip_op("~"))
      args.push_back(parse_math2());
    if (args.size() == 1) return std::move(args.front());
    auto e = make(ExprKind::kConcat, line);
    e->children = std::move(args);
    return finish(std::move(e));
  }

  ExprPtr parse_math2() {
    int line = cur().line;
    ExprPtr left = parse_pow();
    while (true) {
      BinaryOp op;
      if (is_op("*")) {
        op = BinaryOp::kMul;
      } else if (is_op("/")) {
        op = BinaryOp::kDiv;
      } else if (is_op("//")) {
        op = BinaryOp::kFloorDiv;
      } else if (is_op("%")) {
        op = BinaryOp::kMod;
      } else {
        break;
      }
      advance();
      left = arith(line, op, std::move(left), parse_pow());
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_pow() {
    int line = cur().line;
    ExprPtr left = parse_unary(true);
    while (skip_op("**")) {
      left = arith(line, BinaryOp::kPow, std::move(left), parse_unary(true));
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    int line = cur().line;
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      auto e = make(is_op("-") ? ExprKind::kNeg : ExprKind::kPos, line);
      advance();
      e->children.push_back(parse_unary(false));
      node = finish(std::move(e));
    } else {
      node = parse_primary(false);
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  void note_name(const std::string& name) {
    for (auto& c : collectors_)
      c.insert(name);
  }

  ExprPtr parse_primary(bool with_namespace) {
    DepthGuard guard(*this);
    const Token& t = cur();
    int line = t.line;
    if (t.kind == TokenKind::kName) {
      std::string n = t.text;
      advance();
      if (n == "true" || n == "True" || n == "false" || n == "False") {
        auto e = make(ExprKind::kConst, line);
        e->value = Value::boolean(n == "true" || n == "True");
        return finish(std::move(e));
      }
      if (n == "none" || n == "None") {
        auto e = make(ExprKind::kConst, line);
        e->value = Value::none();
        return finish(std::move(e));
      }
      if (with_namespace && is_op(".")) {
        advance();
        auto e = make(ExprKind::kNsRef, line);
        e->name = n;
        e->attr = expect_name();
        return finish(std::move(e));
      }
      note_name(n);
      auto e = make(ExprKind::kName, line);
      e->name = std::move(n);
      return finish(std::move(e));
    }
    if (t.kind == TokenKind::kString) {
      std::string s;
      while (cur().kind == TokenKind::kString) {
        s += cur().text;
        advance();
      }
      auto e = make(ExprKind::kConst, line);
      e->value = Value::string(std::move(s));
      return finish(std::move(e));
    }
    if (t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat) {
      auto e = make(ExprKind::kConst, line);
      e->value = t.kind == TokenKind::kInteger ? Value::integer(t.int_value) : Value::floating(t.float_value);
      advance();
      return finish(std::move(e));
    }
    if (is_op("(")) {
      advance();
      ExprPtr e = parse_tuple(false, true, {}, true, false);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      advance();
      auto e = make(ExprKind::kList, line);
      while (!is_op("]")) {
        if (!e->children.empty()) expect_op(",");
        if (is_op("]")) break;
        e->children.push_back(parse_expression(true));
      }
      expect_op("]");
      return finish(std::move(e));
    }
    if (is_op("{")) {
      advance();
      auto e = make(ExprKind::kDict, line);
      while (!is_op("}")) {
        if (!e->children.empty()) expect_op(",");
        if (is_op("}")) break;
        e->children.push_back(parse_expression(true));
        expect_op(":");
        e->children.push_back(parse_expression(true));
      }
      expect_op("}");
      return finish(std::move(e));
    }
    unexpected();
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter(std::move(node), false);
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    int line = cur().line;
    if (skip_op(".")) {
      const Token& a = cur();
      if (a.kind == TokenKind::kName) {
        auto e = make(ExprKind::kGetAttr, line);
        e->attr = a.text;
        advance();
        e->children.push_back(std::move(node));
        return finish(std::move(e));
      }
      if (a.kind != TokenKind::kInteger) error(a.line, "expected name or number");
      auto key = make(ExprKind::kConst, a.line);
      key->value = Value::integer(a.int_value);
      advance();
      auto e = make(ExprKind::kGetItem, line);
      e->children.push_back(std::move(node));
      e->children.push_back(finish(std::move(key)));
      return finish(std::move(e));
    }
    expect_op("[");
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = make(ExprKind::kGetItem, line);
    e->children.push_back(std::move(node));
    if (args.size() == 1) {
      e->children.push_back(std::move(args.front()));
    } else {
      auto t = make(ExprKind::kTuple, line);
      t->children = std::move(args);
      e->children.push_back(finish(std::move(t)));
    }
    return finish(std::move(e));
  }

  ExprPtr parse_subscribed() {
    DepthGuard guard(*this);
    int line = cur().line;
    std::vector<ExprPtr> parts;
    if (skip_op(":")) {
      parts.emplace_back();
    } else {
      ExprPtr node = parse_expression(true);
      if (!skip_op(":")) return node;
      parts.push_back(std::move(node));
    }
    if (is_op(":") || is_op("]") || is_op(",")) {
      parts.emplace_back();
    } else {
      parts.push_back(parse_expression(true));
    }
    if (skip_op(":")) {
      if (is_op("]") || is_op(",")) {
        parts.emplace_back();
      } else {
        parts.push_back(parse_expression(true));
      }
    } else {
      parts.emplace_back();
    }
    auto e = make(ExprKind::kSlice, line);
    e->children = std::move(parts);
    return finish(std::move(e));
  }

  CallArgs parse_call_args() {
    int line = cur().line;
    expect_op("(");
    CallArgs a;
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) error(line, "invalid syntax for function call expression");
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!a.star_args && !a.star_kwargs);
        advance();
        a.star_args = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!a.star_kwargs);
        advance();
        a.star_kwargs = parse_expression(true);
      } else if (cur().kind == TokenKind::kName && peek().kind == TokenKind::kOperator && peek().text == "=") {
        ensure(!a.star_kwargs);
        std::string key = cur().text;
        advance();
        advance();
        a.keywords.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!a.star_args && !a.star_kwargs && a.keywords.empty());
        a.positional.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
    return a;
  }

  ExprPtr parse_call(ExprPtr node) {
    auto e = make(ExprKind::kCall, cur().line);
    e->call = parse_call_args();
    e->children.push_back(std::move(node));
    return finish(std::move(e));
  }

  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      int line = cur().line;
      std::string name = expect_name();
      while (skip_op("."))
        name += "." + expect_name();
      auto e = make(ExprKind::kFilter, line);
      if (is_op("(")) e->call = parse_call_args();
      if (!has_filter(name) && soft_ == 0) unknown_.emplace_back(line, fmt::format("no filter named '{}'", name));
      e->name = std::move(name);
      e->children.push_back(std::move(node));
      node = finish(std::move(e));
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    int line = cur().line;
    advance();  // 'is'
    bool negated = skip_name("not");
    std::string name = expect_name();
    while (skip_op("."))
      name += "." + expect_name();
    auto e = make(ExprKind::kTest, line);
    const Token& t = cur();
    if (is_op("(")) {
      e->call = parse_call_args();
    } else if ((t.kind == TokenKind::kName || t.kind == TokenKind::kString || t.kind == TokenKind::kInteger ||
                t.kind == TokenKind::kFloat || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) error(t.line, "you cannot chain multiple tests with is");
      ExprPtr arg = parse_primary(false);
      e->call.positional.push_back(parse_postfix(std::move(arg)));
    }
    if (!has_test(name) && soft_ == 0) unknown_.emplace_back(line, fmt::format("no test named '{}'", name));
    e->name = std::move(name);
    e->children.push_back(std::move(node));
    ExprPtr result = finish(std::move(e));
    if (negated) {
      auto n = make(ExprKind::kNot, line);
      n->children.push_back(std::move(result));
      result = finish(std::move(n));
    }
    return result;
  }

  std::vector<Token> toks_;
  size_t i_ = 0;
  int max_depth_;
  int depth_ = 0;
  int soft_ = 0;
  int loop_depth_ = 0;
  std::vector<std::set<std::string>> collectors_;
  std::vector<std::pair<int, std::string>> unknown_;  // unknown filters/tests outside conditionals
};

}  // namespace

StmtList parse_template(std::string_view source, const ParseLimits& limits) {
  return Parser(tokenize(source, limits.max_tokens), limits.max_depth).run();
}

}  // namespace pagoda::jinja
