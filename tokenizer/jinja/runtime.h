// tokenizer/jinja/runtime.h — the interpreter: walks the AST of one template, for one
// Render, with a chain of scopes (the variables, then one per for-loop iteration, macro
// call and with-block) and the bounds of RenderLimits.
#ifndef PREFIXD_TOKENIZER_JINJA_RUNTIME_H_
#define PREFIXD_TOKENIZER_JINJA_RUNTIME_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/template.h"
#include "tokenizer/jinja/value.h"

namespace prefixd::jinja {

// Variables of one frame. Names are borrowed from the AST or the variables' JSON, which
// outlive the Render. Shared: a macro keeps the scope it was defined in.
struct Scope {
  std::shared_ptr<Scope> parent;
  absl::InlinedVector<std::pair<std::string_view, Value>, 4> vars;
  bool holds_closure = false;  // a macro defined here captured this scope

  Value* Find(std::string_view name) {
    for (auto& [key, value] : vars)
      if (key == name) return &value;
    return nullptr;
  }
  void Set(std::string_view name, Value value) {
    if (Value* slot = Find(name)) {
      *slot = std::move(value);
    } else {
      vars.emplace_back(name, std::move(value));
    }
  }
};

// jinja2's Namespace: the one mutable object. Its attributes may hold no object (see
// value.h), so namespaces never form cycles.
class NamespaceObject final : public Object {
 public:
  std::string_view TypeName() const override { return "Namespace"; }
  std::string ObjectTypeRepr() const override { return "jinja2.utils.Namespace object"; }
  bool GetAttr(std::string_view name, Value* out) const override;
  void AppendRepr(std::string* out) const override;
  // Fails (TypeError) for a value that holds an object.
  void SetAttr(std::string name, Value value);

 private:
  std::vector<std::pair<std::string, Value>> attrs_;
};

class Interpreter {
 public:
  explicit Interpreter(const RenderOptions& options);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Throws Error.
  std::string Render(const TemplateRoot& root, const nlohmann::ordered_json& variables);

  // ---- for builtins ----
  const RenderOptions& options() const { return options_; }
  // Counts `n` steps against RenderLimits::max_steps.
  void Step(int64_t n = 1) {
    steps_ += n;
    if (steps_ > options_.limits.max_steps) FailSteps();
  }
  // Fails when a string of `size` bytes would exceed RenderLimits::max_output_bytes.
  void CheckSize(size_t size) const {
    if (size > options_.limits.max_output_bytes) FailSize();
  }
  // Calls a callable value (macro, builtin, bound method).
  Value Call(const Value& callee, CallArgs& args);
  // jinja2's environment.getattr / getitem: methods, keys, items; undefined when missing.
  // `name_value`, when given, is `name` as a string Value (saves building one for hints).
  Value GetAttr(const Value& object, std::string_view name, const Value* name_value = nullptr);
  Value GetItem(const Value& object, const Value& key);
  // Python's a + b, a - b, ... (int overflow is an OverflowError here).
  Value Arith(BinaryOp op, const Value& a, const Value& b);
  // `item in container`.
  bool Contains(const Value& container, const Value& item);
  // Fails when the native stack is nearly used up by recursion.
  void CheckStack() const;

  // Macro support (runtime.cc).
  struct MacroFrame;
  Value InvokeMacro(const MacroStmt& macro, const std::shared_ptr<Scope>& closure, CallArgs& args);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow Exec(const Body& body, std::string* out);
  Flow ExecStmt(const Stmt& stmt, std::string* out);
  [[gnu::noinline]] void ExecOutput(const OutputStmt& node, std::string* out);
  [[gnu::noinline]] Flow ExecIf(const IfStmt& node, std::string* out);
  [[gnu::noinline]] Flow ExecFor(const ForStmt& stmt, std::string* out);
  [[gnu::noinline]] void ExecSet(const SetStmt& node);
  [[gnu::noinline]] Flow ExecSetBlock(const SetBlockStmt& node);
  [[gnu::noinline]] void ExecMacroDef(const MacroStmt& stmt);
  [[gnu::noinline]] void ExecCallBlock(const CallBlockStmt& node, std::string* out);
  [[gnu::noinline]] Flow ExecFilterBlock(const FilterBlockStmt& node, std::string* out);
  [[gnu::noinline]] Flow ExecWith(const WithStmt& node, std::string* out);
  [[gnu::noinline]] Flow ExecScope(const ScopeStmt& node, std::string* out);
  void Assign(const Target& target, Value value);
  void AssignIn(Scope* scope, const Target& target, Value value);
  Flow RenderBody(const Body& body, std::string* text);  // in a child scope
  Value ApplyFilterChain(const Expr& filter, Value input);

  Value Eval(const Expr& expr);
  Value EvalInner(const Expr& expr);
  [[gnu::noinline]] Value EvalSequence(const SequenceExpr& node);
  [[gnu::noinline]] Value EvalDict(const DictExpr& node);
  [[gnu::noinline]] Value EvalGetAttr(const GetAttrExpr& node);
  [[gnu::noinline]] Value EvalGetItem(const GetItemExpr& node);
  [[gnu::noinline]] Value EvalSlice(const SliceExpr& node);
  [[gnu::noinline]] Value EvalCall(const CallExpr& call);
  [[gnu::noinline]] Value EvalFilter(const FilterExpr& node);
  [[gnu::noinline]] Value EvalTest(const TestExpr& node);
  [[gnu::noinline]] Value EvalUnary(const UnaryExpr& node);
  [[gnu::noinline]] Value EvalLogical(const LogicalExpr& node);
  [[gnu::noinline]] Value EvalBinary(const BinaryExpr& expr);
  [[gnu::noinline]] bool EvalCompare(const CompareExpr& expr);
  [[gnu::noinline]] Value EvalCond(const CondExpr& node);
  [[gnu::noinline]] Value EvalConcat(const ConcatExpr& node);
  void EvalArgs(const Arguments& args, CallArgs* out, std::vector<Value>* keep_alive);
  Value Lookup(const NameExpr& name);

  void Append(std::string* out, std::string_view text) const {
    out->append(text);
    CheckSize(out->size());
  }
  [[noreturn]] void FailSteps() const;
  [[noreturn]] void FailSize() const;

  const RenderOptions& options_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  uintptr_t stack_base_ = 0;
  std::shared_ptr<Scope> scope_;  // the innermost scope
  // Scopes macros captured: cleared at the end, which breaks scope -> macro -> scope cycles.
  std::vector<std::shared_ptr<Scope>> closure_scopes_;
};

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_RUNTIME_H_
