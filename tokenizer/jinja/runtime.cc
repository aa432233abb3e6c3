#include "tokenizer/jinja/runtime.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/py_string.h"

namespace prefixd::jinja {
namespace {

// Native stack a Render may use for recursion (macro calls nest, each with the AST's
// depth of frames); past it the render fails instead of overflowing the thread's stack.
// AddressSanitizer builds have frames several times larger.
#if defined(__SANITIZE_ADDRESS__)
constexpr uintptr_t kStackBudget = 6u << 20;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr uintptr_t kStackBudget = 6u << 20;
#else
constexpr uintptr_t kStackBudget = 2u << 20;
#endif
#else
constexpr uintptr_t kStackBudget = 2u << 20;
#endif

constexpr std::string_view kLoopName = "loop";
constexpr std::string_view kVarargsName = "varargs";
constexpr std::string_view kKwargsName = "kwargs";
constexpr std::string_view kCallerName = "caller";

uintptr_t FrameAddress() { return reinterpret_cast<uintptr_t>(__builtin_frame_address(0)); }

std::string QuotedRepr(std::string_view s) {
  std::string out;
  AppendPyRepr(s, &out);
  return out;
}

class MacroObject final : public Object {
 public:
  MacroObject(const MacroStmt* macro, std::shared_ptr<Scope> closure)
      : macro_(macro), closure_(std::move(closure)) {}
  std::string_view TypeName() const override { return "Macro"; }
  std::string ObjectTypeRepr() const override { return "jinja2.runtime.Macro object"; }
  bool IsCallable() const override { return true; }
  Value Call(Interpreter& interp, CallArgs& args) override {
    return interp.InvokeMacro(*macro_, closure_, args);
  }
  void AppendRepr(std::string* out) const override {
    CatTo(out, "<Macro ", QuotedRepr(macro_->name), ">");
  }

 private:
  const MacroStmt* macro_;  // owned by the template, which outlives the render
  std::shared_ptr<Scope> closure_;
};

// The `loop` variable of a for loop; one object per loop run, advanced per iteration.
class LoopObject final : public Object, public std::enable_shared_from_this<LoopObject> {
 public:
  explicit LoopObject(Value items) : items_(std::move(items)) {}
  std::string_view TypeName() const override { return "LoopContext"; }
  std::string ObjectTypeRepr() const override { return "jinja2.runtime.LoopContext object"; }
  void AppendRepr(std::string* out) const override {
    CatTo(out, "<LoopContext ", index0 + 1, "/", length(), ">");
  }
  bool GetAttr(std::string_view name, Value* out) const override;
  Value Cycle(CallArgs& args) const {
    if (args.positional.empty()) Fail("TypeError", "no items for cycling given");
    return args.positional[index0 % args.positional.size()];
  }
  Value Changed(CallArgs& args) {
    Value current = Value::List(std::vector<Value>(args.positional.begin(), args.positional.end()),
                                SeqKind::kTuple);
    if (has_last_changed_ && Equal(current, last_changed_)) return Value::Bool(false);
    has_last_changed_ = true;
    last_changed_ = std::move(current);
    return Value::Bool(true);
  }

  size_t index0 = 0;

 private:
  int64_t length() const { return static_cast<int64_t>(items_.list().items.size()); }

  Value items_;  // a list value
  Value last_changed_;
  bool has_last_changed_ = false;
};

class LoopMethodObject final : public Object {
 public:
  LoopMethodObject(std::shared_ptr<LoopObject> loop, bool cycle)
      : loop_(std::move(loop)), cycle_(cycle) {}
  std::string_view TypeName() const override { return "method"; }
  bool IsCallable() const override { return true; }
  Value Call(Interpreter&, CallArgs& args) override {
    return cycle_ ? loop_->Cycle(args) : loop_->Changed(args);
  }

 private:
  std::shared_ptr<LoopObject> loop_;
  bool cycle_;
};

bool LoopObject::GetAttr(std::string_view name, Value* out) const {
  int64_t i = static_cast<int64_t>(index0);
  int64_t n = length();
  const auto& items = items_.list().items;
  if (name == "index") {
    *out = Value::Int(i + 1);
  } else if (name == "index0") {
    *out = Value::Int(i);
  } else if (name == "revindex") {
    *out = Value::Int(n - i);
  } else if (name == "revindex0") {
    *out = Value::Int(n - i - 1);
  } else if (name == "first") {
    *out = Value::Bool(i == 0);
  } else if (name == "last") {
    *out = Value::Bool(i == n - 1);
  } else if (name == "length") {
    *out = Value::Int(n);
  } else if (name == "depth") {
    *out = Value::Int(1);
  } else if (name == "depth0") {
    *out = Value::Int(0);
  } else if (name == "previtem") {
    *out = i > 0 ? items[i - 1] : Value::Undefined("there is no previous item");
  } else if (name == "nextitem") {
    *out = i + 1 < n ? items[i + 1] : Value::Undefined("there is no next item");
  } else if (name == "cycle" || name == "changed") {
    auto self = std::const_pointer_cast<LoopObject>(shared_from_this());
    *out = Value::FromObject(std::make_shared<LoopMethodObject>(self, name == "cycle"));
  } else {
    return false;
  }
  return true;
}

}  // namespace

// ---- namespace ----

bool NamespaceObject::GetAttr(std::string_view name, Value* out) const {
  for (const auto& [key, value] : attrs_) {
    if (key == name) {
      *out = value;
      return true;
    }
  }
  return false;
}

void NamespaceObject::AppendRepr(std::string* out) const {
  out->append("<Namespace {");
  bool first = true;
  for (const auto& [key, value] : attrs_) {
    if (!first) out->append(", ");
    first = false;
    AppendPyRepr(key, out);
    out->append(": ");
    jinja::AppendRepr(value, out);
  }
  out->append("}>");
}

void NamespaceObject::SetAttr(std::string name, Value value) {
  if (value.contains_object()) {
    Fail("TypeError",
         "a namespace attribute cannot hold a namespace, macro, loop or function (prefixd's "
         "interpreter keeps namespaces acyclic)");
  }
  for (auto& [key, slot] : attrs_) {
    if (key == name) {
      slot = std::move(value);
      return;
    }
  }
  attrs_.emplace_back(std::move(name), std::move(value));
}

// ---- interpreter ----

Interpreter::Interpreter(const RenderOptions& options) : options_(options) {}

Interpreter::~Interpreter() {
  // Break scope -> macro -> scope cycles: empty every scope a macro captured (and their
  // parents) before anything is destroyed, so destruction never recurses through scopes.
  std::vector<Value> graveyard;
  for (const auto& closure : closure_scopes_) {
    for (Scope* s = closure.get(); s != nullptr; s = s->parent.get()) {
      for (auto& [name, value] : s->vars) graveyard.push_back(std::move(value));
      s->vars.clear();
    }
  }
  graveyard.clear();
  closure_scopes_.clear();
  scope_.reset();
}

void Interpreter::FailSteps() const {
  FailLimit(Cat("rendering took more than ", options_.limits.max_steps, " steps"));
}

void Interpreter::FailSize() const {
  FailLimit(Cat("the rendered text would exceed ", options_.limits.max_output_bytes, " bytes"));
}

void Interpreter::CheckStack() const {
  uintptr_t here = FrameAddress();
  uintptr_t used = here > stack_base_ ? here - stack_base_ : stack_base_ - here;
  if (used > kStackBudget) FailLimit("the template recurses too deeply");
}

std::string Interpreter::Render(const TemplateRoot& root, const nlohmann::ordered_json& variables) {
  stack_base_ = FrameAddress();
  WorkMeter meter(&steps_, options_.limits.max_steps, options_.limits.max_output_bytes);
  auto globals = std::make_shared<Scope>();
  if (variables.is_object()) {
    for (const auto& [key, value] : variables.get_ref<const nlohmann::ordered_json::object_t&>())
      globals->Set(key, FromJson(value));
  } else if (!variables.is_null()) {
    Fail("TypeError", "the template variables must be a JSON object");
  }
  scope_ = std::move(globals);
  std::string out;
  out.reserve(4096);
  Exec(root.body, &out);
  return out;
}

Interpreter::Flow Interpreter::Exec(const Body& body, std::string* out) {
  for (const StmtPtr& stmt : body) {
    Flow flow = ExecStmt(*stmt, out);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

// Statement and expression handlers are separate, non-inlined functions so that the frames
// on the recursion path (Exec -> ExecStmt -> Eval -> EvalInner -> a call -> Exec ...) stay
// small: recursion depth per byte of stack is what the stack guard trades on.
Interpreter::Flow Interpreter::ExecStmt(const Stmt& stmt, std::string* out) {
  Step();
  try {
    switch (stmt.kind) {
      case StmtKind::kText:
        Append(out, static_cast<const TextStmt&>(stmt).text);
        return Flow::kNormal;
      case StmtKind::kOutput:
        ExecOutput(static_cast<const OutputStmt&>(stmt), out);
        return Flow::kNormal;
      case StmtKind::kIf:
        return ExecIf(static_cast<const IfStmt&>(stmt), out);
      case StmtKind::kFor:
        return ExecFor(static_cast<const ForStmt&>(stmt), out);
      case StmtKind::kSet:
        ExecSet(static_cast<const SetStmt&>(stmt));
        return Flow::kNormal;
      case StmtKind::kSetBlock:
        return ExecSetBlock(static_cast<const SetBlockStmt&>(stmt));
      case StmtKind::kMacro:
        ExecMacroDef(static_cast<const MacroStmt&>(stmt));
        return Flow::kNormal;
      case StmtKind::kCallBlock:
        ExecCallBlock(static_cast<const CallBlockStmt&>(stmt), out);
        return Flow::kNormal;
      case StmtKind::kFilterBlock:
        return ExecFilterBlock(static_cast<const FilterBlockStmt&>(stmt), out);
      case StmtKind::kWith:
        return ExecWith(static_cast<const WithStmt&>(stmt), out);
      case StmtKind::kScope:
        return ExecScope(static_cast<const ScopeStmt&>(stmt), out);
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
    }
  } catch (Error& e) {
    if (e.line == 0) {
      e.line = stmt.line;
      e.column = stmt.column;
    }
    throw;
  }
  return Flow::kNormal;
}

void Interpreter::ExecOutput(const OutputStmt& node, std::string* out) {
  Value v = Eval(*node.expr);
  AppendStr(v, out);
  CheckSize(out->size());
}

Interpreter::Flow Interpreter::ExecIf(const IfStmt& node, std::string* out) {
  for (const auto& [cond, body] : node.branches)
    if (Truthy(Eval(*cond))) return Exec(body, out);
  return Exec(node.else_body, out);
}

void Interpreter::ExecSet(const SetStmt& node) { Assign(node.target, Eval(*node.value)); }

// jinja2 inlines a block's body, so a break/continue in it acts on the enclosing loop and
// the block's text is dropped.
Interpreter::Flow Interpreter::ExecSetBlock(const SetBlockStmt& node) {
  std::string body;
  Flow flow = RenderBody(node.body, &body);
  if (flow != Flow::kNormal) return flow;
  Value text = Value::String(std::move(body));
  if (node.filter) text = ApplyFilterChain(*node.filter, std::move(text));
  Assign(node.target, std::move(text));
  return Flow::kNormal;
}

void Interpreter::ExecCallBlock(const CallBlockStmt& node, std::string* out) {
  if (!scope_->holds_closure) {
    scope_->holds_closure = true;
    closure_scopes_.push_back(scope_);
  }
  Value caller = Value::FromObject(std::make_shared<MacroObject>(node.caller.get(), scope_));
  Value callee = Eval(*node.call->callee);
  CallArgs args;
  std::vector<Value> keep_alive;
  EvalArgs(node.call->args, &args, &keep_alive);
  args.kwargs.emplace_back(kCallerName, std::move(caller));
  AppendStr(Call(callee, args), out);
  CheckSize(out->size());
}

Interpreter::Flow Interpreter::ExecFilterBlock(const FilterBlockStmt& node, std::string* out) {
  std::string body;
  Flow flow = RenderBody(node.body, &body);
  if (flow != Flow::kNormal) return flow;
  Value text = ApplyFilterChain(*node.filter, Value::String(std::move(body)));
  AppendStr(text, out);
  CheckSize(out->size());
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::ExecWith(const WithStmt& node, std::string* out) {
  std::vector<Value> values;
  for (const auto& [target, expr] : node.assignments) values.push_back(Eval(*expr));
  auto saved = scope_;
  scope_ = std::make_shared<Scope>();
  scope_->parent = saved;
  for (size_t i = 0; i < values.size(); ++i)
    AssignIn(scope_.get(), node.assignments[i].first, std::move(values[i]));
  Flow flow = Exec(node.body, out);
  scope_ = std::move(saved);
  return flow;
}

Interpreter::Flow Interpreter::ExecScope(const ScopeStmt& node, std::string* out) {
  auto saved = scope_;
  scope_ = std::make_shared<Scope>();
  scope_->parent = saved;
  Flow flow = Exec(node.body, out);
  scope_ = std::move(saved);
  return flow;
}

Interpreter::Flow Interpreter::RenderBody(const Body& body, std::string* text) {
  auto saved = scope_;
  scope_ = std::make_shared<Scope>();
  scope_->parent = saved;
  Flow flow = Exec(body, text);
  scope_ = std::move(saved);
  return flow;
}

Value Interpreter::ApplyFilterChain(const Expr& expr, Value input) {
  const auto& filter = static_cast<const FilterExpr&>(expr);
  Value operand =
      filter.operand ? ApplyFilterChain(*filter.operand, std::move(input)) : std::move(input);
  CallArgs args;
  std::vector<Value> keep_alive;
  EvalArgs(filter.args, &args, &keep_alive);
  return filter.fn(*this, operand, args);
}

Interpreter::Flow Interpreter::ExecFor(const ForStmt& stmt, std::string* out) {
  Value iterable = Eval(*stmt.iter);
  Value seq;  // a list value holding the items
  if (iterable.is_list()) {
    seq = std::move(iterable);
  } else if (iterable.is_undefined()) {
    seq = Value::List({});
  } else {
    seq = Value::List(Iterate(iterable));
  }
  auto saved = scope_;
  if (stmt.filter) {
    std::vector<Value> kept;
    auto filter_scope = std::make_shared<Scope>();
    filter_scope->parent = saved;
    scope_ = filter_scope;
    for (const Value& item : seq.list().items) {
      Step();
      filter_scope->vars.clear();
      AssignIn(filter_scope.get(), stmt.target, item);
      if (Truthy(Eval(*stmt.filter))) kept.push_back(item);
    }
    scope_ = saved;
    seq = Value::List(std::move(kept));
  }
  const std::vector<Value>& items = seq.list().items;
  std::shared_ptr<LoopObject> loop;
  Value loop_value;
  if (stmt.uses_loop) {
    loop = std::make_shared<LoopObject>(seq);
    loop_value = Value::FromObject(loop);
  }
  std::shared_ptr<Scope> iteration;
  // jinja2 clears its "no iteration" flag at the end of the body, so the else block runs
  // unless some iteration reached the end of the body (break/continue skip that).
  bool run_else = true;
  for (size_t i = 0; i < items.size(); ++i) {
    Step();
    // Each iteration gets fresh variables (jinja2: a set inside the body does not carry
    // over); reuse the scope object unless a macro captured it.
    if (iteration == nullptr || iteration.use_count() > 1) {
      iteration = std::make_shared<Scope>();
      iteration->parent = saved;
    } else {
      iteration->vars.clear();
    }
    if (loop) {
      loop->index0 = i;
      iteration->vars.emplace_back(kLoopName, loop_value);
    }
    AssignIn(iteration.get(), stmt.target, items[i]);
    scope_ = iteration;
    Flow flow = Exec(stmt.body, out);
    scope_ = saved;
    if (flow == Flow::kBreak) break;
    if (flow == Flow::kNormal) run_else = false;
  }
  if (run_else) return Exec(stmt.else_body, out);
  return Flow::kNormal;
}

void Interpreter::ExecMacroDef(const MacroStmt& stmt) {
  if (!scope_->holds_closure) {
    scope_->holds_closure = true;
    closure_scopes_.push_back(scope_);
  }
  scope_->Set(stmt.name, Value::FromObject(std::make_shared<MacroObject>(&stmt, scope_)));
}

void Interpreter::Assign(const Target& target, Value value) {
  if (target.kind == Target::Kind::kNamespaceAttr) {
    Value* slot = nullptr;
    for (Scope* s = scope_.get(); s != nullptr && slot == nullptr; s = s->parent.get())
      slot = s->Find(target.name);
    auto* ns = slot != nullptr && slot->is_object() ? dynamic_cast<NamespaceObject*>(slot->object())
                                                    : nullptr;
    if (ns == nullptr)
      Fail("TemplateRuntimeError", "cannot assign attribute on non-namespace object");
    ns->SetAttr(target.attr, std::move(value));
    return;
  }
  AssignIn(scope_.get(), target, std::move(value));
}

void Interpreter::AssignIn(Scope* scope, const Target& target, Value value) {
  switch (target.kind) {
    case Target::Kind::kName:
      scope->Set(target.name, std::move(value));
      return;
    case Target::Kind::kNamespaceAttr:
      Assign(target, std::move(value));
      return;
    case Target::Kind::kTuple: {
      std::vector<Value> owned;
      const std::vector<Value>* items;
      if (value.is_list()) {
        items = &value.list().items;
      } else {
        owned = Iterate(value);
        items = &owned;
      }
      size_t want = target.items.size();
      if (items->size() < want) {
        Fail("ValueError",
             Cat("not enough values to unpack (expected ", want, ", got ", items->size(), ")"));
      }
      if (items->size() > want)
        Fail("ValueError", Cat("too many values to unpack (expected ", want, ")"));
      for (size_t i = 0; i < want; ++i) AssignIn(scope, target.items[i], (*items)[i]);
      return;
    }
  }
}

Value Interpreter::InvokeMacro(const MacroStmt& macro, const std::shared_ptr<Scope>& closure,
                               CallArgs& args) {
  if (++call_depth_ > options_.limits.max_call_depth) {
    FailLimit(Cat("macro calls nest deeper than ", options_.limits.max_call_depth));
  }
  CheckStack();
  auto scope = std::make_shared<Scope>();
  scope->parent = closure;
  const size_t num_params = macro.params.size();
  const size_t num_positional = args.positional.size();
  std::vector<bool> bound(num_params, false);
  for (size_t i = 0; i < num_params && i < num_positional; ++i) {
    scope->vars.emplace_back(macro.params[i], args.positional[i]);
    bound[i] = true;
  }
  std::vector<bool> used(args.kwargs.size(), false);
  for (size_t i = num_positional; i < num_params; ++i) {
    for (size_t k = 0; k < args.kwargs.size(); ++k) {
      if (!used[k] && args.kwargs[k].first == macro.params[i]) {
        scope->vars.emplace_back(macro.params[i], args.kwargs[k].second);
        bound[i] = true;
        used[k] = true;
        break;
      }
    }
  }
  auto extra_kwargs = std::make_shared<DictData>();
  for (size_t k = 0; k < args.kwargs.size(); ++k) {
    if (used[k]) continue;
    if (args.kwargs[k].first == kCallerName) {
      scope->vars.emplace_back(kCallerName, args.kwargs[k].second);
    } else if (macro.catch_kwargs) {
      extra_kwargs->Set(Value::String(args.kwargs[k].first), args.kwargs[k].second);
    } else {
      Fail("TypeError", Cat("macro ", QuotedRepr(macro.name), " takes no keyword argument ",
                            QuotedRepr(args.kwargs[k].first)));
    }
  }
  if (macro.catch_kwargs) {
    extra_kwargs->Finish();
    scope->vars.emplace_back(kKwargsName, Value::Dict(std::move(extra_kwargs)));
  }
  if (macro.catch_varargs) {
    std::vector<Value> rest;
    for (size_t i = num_params; i < num_positional; ++i) rest.push_back(args.positional[i]);
    scope->vars.emplace_back(kVarargsName, Value::List(std::move(rest), SeqKind::kTuple));
  } else if (num_positional > num_params) {
    Fail("TypeError", Cat("macro ", QuotedRepr(macro.name), " takes not more than ", num_params,
                          " argument(s)"));
  }
  auto saved = scope_;
  scope_ = scope;
  for (size_t i = 0; i < num_params; ++i) {
    if (bound[i]) continue;
    Value v =
        macro.defaults[i]
            ? Eval(*macro.defaults[i])
            : Value::Undefined(Cat("parameter ", QuotedRepr(macro.params[i]), " was not provided"));
    scope->vars.emplace_back(macro.params[i], std::move(v));
  }
  std::string text;
  Exec(macro.body, &text);
  scope_ = std::move(saved);
  --call_depth_;
  return Value::String(std::move(text));
}

}  // namespace prefixd::jinja
