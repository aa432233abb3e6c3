// tokenizer/jinja/ast.h — the parsed template: small expression and statement nodes, each
// tagged with its kind so the interpreter dispatches with one switch. Immutable after
// parsing; filters and tests are resolved to functions at parse time.
#ifndef PREFIXD_TOKENIZER_JINJA_AST_H_
#define PREFIXD_TOKENIZER_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace prefixd::jinja {

// A filter: `input|name(args)`. A test: `input is name(args)`.
using FilterFn = Value (*)(Interpreter& interp, const Value& input, CallArgs& args);
using TestFn = bool (*)(Interpreter& interp, const Value& input, CallArgs& args);

struct Node {
  virtual ~Node() = default;
  int line = 1;
  int column = 1;
};

// ---- expressions ----

enum class ExprKind {
  kLiteral,
  kName,
  kList,
  kTuple,
  kDict,
  kGetAttr,
  kGetItem,
  kSlice,
  kCall,
  kFilter,
  kTest,
  kNeg,
  kPos,
  kBinary,
  kAnd,
  kOr,
  kNot,
  kCompare,
  kCondExpr,
  kConcat,
};

struct Expr : Node {
  explicit Expr(ExprKind kind) : kind(kind) {}
  const ExprKind kind;
};
using ExprPtr = std::unique_ptr<Expr>;

struct LiteralExpr : Expr {
  LiteralExpr() : Expr(ExprKind::kLiteral) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr() : Expr(ExprKind::kName) {}
  std::string name;
  Value undefined;  // "'name' is undefined", built once
};

struct SequenceExpr : Expr {  // kList or kTuple
  explicit SequenceExpr(ExprKind kind) : Expr(kind) {}
  std::vector<ExprPtr> items;
};

struct DictExpr : Expr {
  DictExpr() : Expr(ExprKind::kDict) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct GetAttrExpr : Expr {  // object.name
  GetAttrExpr() : Expr(ExprKind::kGetAttr) {}
  ExprPtr object;
  std::string name;
  Value name_value;  // the name as a string Value
};

struct GetItemExpr : Expr {  // object[index]
  GetItemExpr() : Expr(ExprKind::kGetItem) {}
  ExprPtr object;
  ExprPtr index;
};

struct SliceExpr : Expr {  // object[start:stop:step], each part optional
  SliceExpr() : Expr(ExprKind::kSlice) {}
  ExprPtr object, start, stop, step;
};

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  ExprPtr star_args;    // *args
  ExprPtr star_kwargs;  // **kwargs
};

struct CallExpr : Expr {
  CallExpr() : Expr(ExprKind::kCall) {}
  ExprPtr callee;
  Arguments args;
};

struct FilterExpr : Expr {
  FilterExpr() : Expr(ExprKind::kFilter) {}
  ExprPtr operand;  // null in {% filter %} and {% set x | f %}: the block's text
  std::string name;
  FilterFn fn = nullptr;
  Arguments args;
};

struct TestExpr : Expr {
  TestExpr() : Expr(ExprKind::kTest) {}
  ExprPtr operand;
  std::string name;
  TestFn fn = nullptr;
  Arguments args;
  bool negated = false;
};

struct UnaryExpr : Expr {  // kNeg, kPos, kNot
  explicit UnaryExpr(ExprKind kind) : Expr(kind) {}
  ExprPtr operand;
};

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };

struct BinaryExpr : Expr {
  BinaryExpr() : Expr(ExprKind::kBinary) {}
  BinaryOp op;
  ExprPtr left, right;
};

struct LogicalExpr : Expr {  // kAnd, kOr
  explicit LogicalExpr(ExprKind kind) : Expr(kind) {}
  ExprPtr left, right;
};

enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct CompareExpr : Expr {  // first op1 x1 op2 x2 ..., chained as Python chains
  CompareExpr() : Expr(ExprKind::kCompare) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};

struct CondExpr : Expr {  // then if cond else otherwise
  CondExpr() : Expr(ExprKind::kCondExpr) {}
  ExprPtr cond, then, otherwise;  // otherwise may be null
};

struct ConcatExpr : Expr {  // a ~ b ~ c
  ConcatExpr() : Expr(ExprKind::kConcat) {}
  std::vector<ExprPtr> items;
};

// ---- statements ----

enum class StmtKind {
  kText,
  kOutput,
  kIf,
  kFor,
  kSet,
  kSetBlock,
  kMacro,
  kCallBlock,
  kFilterBlock,
  kWith,
  kBreak,
  kContinue,
  kScope,
};

struct Stmt : Node {
  explicit Stmt(StmtKind kind) : kind(kind) {}
  const StmtKind kind;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// Where an assignment goes: a name, `ns.attr`, or a tuple of names to unpack into.
struct Target {
  enum class Kind { kName, kNamespaceAttr, kTuple } kind = Kind::kName;
  std::string name;           // kName; the namespace variable for kNamespaceAttr
  std::string attr;           // kNamespaceAttr
  std::vector<Target> items;  // kTuple
};

struct TextStmt : Stmt {
  TextStmt() : Stmt(StmtKind::kText) {}
  std::string text;
};

struct OutputStmt : Stmt {
  OutputStmt() : Stmt(StmtKind::kOutput) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  IfStmt() : Stmt(StmtKind::kIf) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
  Body else_body;
};

struct ForStmt : Stmt {
  ForStmt() : Stmt(StmtKind::kFor) {}
  Target target;
  ExprPtr iter;
  ExprPtr filter;  // `for x in xs if cond`; may be null
  Body body;
  Body else_body;
  bool uses_loop = false;  // the body mentions `loop`
};

struct SetStmt : Stmt {
  SetStmt() : Stmt(StmtKind::kSet) {}
  Target target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {  // {% set x | filters %}body{% endset %}
  SetBlockStmt() : Stmt(StmtKind::kSetBlock) {}
  Target target;
  ExprPtr filter;  // a FilterExpr chain whose innermost operand is null; may be null
  Body body;
};

struct MacroStmt : Stmt {
  MacroStmt() : Stmt(StmtKind::kMacro) {}
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param; null when it has none
  Body body;
  bool catch_varargs = false;  // the body mentions `varargs`
  bool catch_kwargs = false;   // the body mentions `kwargs`
};

struct CallBlockStmt : Stmt {  // {% call(params) macro(args) %}body{% endcall %}
  CallBlockStmt() : Stmt(StmtKind::kCallBlock) {}
  std::unique_ptr<CallExpr> call;
  std::unique_ptr<MacroStmt> caller;  // named "caller"
};

struct FilterBlockStmt : Stmt {
  FilterBlockStmt() : Stmt(StmtKind::kFilterBlock) {}
  ExprPtr filter;  // a FilterExpr chain whose innermost operand is null
  Body body;
};

struct WithStmt : Stmt {
  WithStmt() : Stmt(StmtKind::kWith) {}
  std::vector<std::pair<Target, ExprPtr>> assignments;
  Body body;
};

struct ScopeStmt : Stmt {  // a body run as it is ({% generation %})
  ScopeStmt() : Stmt(StmtKind::kScope) {}
  Body body;
};

struct LoopControlStmt : Stmt {  // kBreak, kContinue
  explicit LoopControlStmt(StmtKind kind) : Stmt(kind) {}
};

struct TemplateRoot : Node {
  Body body;
};

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_AST_H_
