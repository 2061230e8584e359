#pragma once

// The syntax tree a template parses to. Expressions and statements are plain structs with a kind
// and child vectors; the parser bounds their nesting depth so that evaluating and destroying a tree
// never recurses deeply.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace pagoda::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

enum class ExprKind : uint8_t {
  kConst,    // value
  kName,     // name
  kNsRef,    // name.attr as an assignment target: name, attr
  kList,     // children: items
  kTuple,    // children: items
  kDict,     // children: key, value, key, value, ...
  kGetAttr,  // children[0].name
  kGetItem,  // children[0][children[1]]
  kSlice,    // children: start, stop, step (each may be null)
  kCall,     // children[0](call)
  kFilter,   // children[0] | name(call); children[0] is null in filter blocks and set blocks
  kTest,     // children[0] is name(call)
  kNeg,
  kPos,
  kNot,
  kBinary,   // children[0] op children[1]
  kCompare,  // children[0] cmp_ops[0] children[1] cmp_ops[1] children[2] ...
  kAnd,
  kOr,
  kConcat,  // children joined with ~
  kCond,    // children: then, test, else (else may be null)
};

enum class BinaryOp : uint8_t { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
enum class CompareOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct CallArgs {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  ExprPtr star_args;    // *args
  ExprPtr star_kwargs;  // **kwargs
};

struct Expr {
  ExprKind kind = ExprKind::kConst;
  int line = 1;
  int depth = 1;  // height of the subtree
  Value value;
  std::string name;
  std::string attr;
  BinaryOp op = BinaryOp::kAdd;
  std::vector<ExprPtr> children;
  std::vector<CompareOp> cmp_ops;
  CallArgs call;
};

enum class StmtKind : uint8_t {
  kText,         // text
  kOutput,       // exprs: printed one after another
  kIf,           // exprs: conditions; bodies: one per condition, then the else body if has_else
  kFor,          // target, iter, cond (may be null); bodies: body, else
  kSet,          // target = exprs[0]
  kSetBlock,     // target = filter(render(bodies[0])); filter may be null
  kMacro,        // name, params, defaults; bodies[0]
  kCallBlock,    // params, defaults; call expression in exprs[0]; bodies[0] is the caller
  kFilterBlock,  // filter applied to render(bodies[0])
  kWith,         // targets (names) = exprs; bodies[0]
  kScope,        // bodies[0] rendered in an inner scope (block, generation, autoescape)
  kBreak,
  kContinue,
};

struct Stmt {
  StmtKind kind = StmtKind::kText;
  int line = 1;
  std::string text;
  std::string name;
  ExprPtr target;
  ExprPtr iter;
  ExprPtr cond;
  ExprPtr filter;  // a kFilter chain whose innermost input is null
  std::vector<ExprPtr> exprs;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  std::vector<StmtList> bodies;
  bool has_else = false;
  bool recursive = false;
  // Macros and call blocks: whether the body mentions varargs, kwargs or caller.
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

}  // namespace pagoda::jinja
