#include "tokenizer/jinja/parser.h"

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/py_string.h"

namespace prefixd::jinja {
namespace {

using EndRules = std::initializer_list<std::string_view>;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  std::unique_ptr<TemplateRoot> Run() {
    auto root = std::make_unique<TemplateRoot>();
    root->body = Subparse({});
    return root;
  }

 private:
  // ---- token stream ----
  // Reaching the token where the lexer stopped reports its error.
  const Token& Checked(size_t i) const {
    const Token& t = tokens_[i];
    if (t.type == TokenType::kError) {
      Error error(absl::StatusCode::kInvalidArgument, "TemplateSyntaxError", t.value);
      error.line = t.line;
      error.column = t.column;
      throw error;
    }
    return t;
  }
  const Token& Current() const { return Checked(pos_); }
  const Token& Look() const { return Checked(pos_ + 1 < tokens_.size() ? pos_ + 1 : pos_); }
  const Token& Next() {
    const Token& t = Checked(pos_);
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(std::string_view op) const {
    return Current().type == TokenType::kOperator && Current().value == op;
  }
  bool IsName(std::string_view name) const {
    return Current().type == TokenType::kName && Current().value == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }

  [[noreturn]] void FailAt(const Token& t, std::string message) {
    Error error(absl::StatusCode::kInvalidArgument, "TemplateSyntaxError", std::move(message));
    error.line = t.line;
    error.column = t.column;
    throw error;
  }
  [[noreturn]] void Fail(std::string message) { FailAt(Current(), std::move(message)); }
  [[noreturn]] void FailExpected(std::string_view what) {
    Fail(Cat("expected token '", what, "', got '", DescribeToken(Current()), "'"));
  }
  const Token& ExpectOp(std::string_view op) {
    if (!IsOp(op)) FailExpected(op);
    return Next();
  }
  const Token& ExpectName() {
    if (Current().type != TokenType::kName) FailExpected("name");
    return Next();
  }
  void ExpectBlockEnd() {
    if (Current().type != TokenType::kBlockEnd) FailExpected("end of statement block");
    Next();
  }

  // Bounds recursion: every nesting path passes through one of the guarded functions.
  class DepthGuard {
   public:
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxParseDepth)
        p_->Fail(Cat("the template nests more than ", kMaxParseDepth, " levels deep"));
    }
    ~DepthGuard() { --p_->depth_; }

   private:
    Parser* p_;
  };

  template <typename T>
  std::unique_ptr<T> Make(const Token& at, T* node) {
    node->line = at.line;
    node->column = at.column;
    return std::unique_ptr<T>(node);
  }

  // ---- statements ----

  Body Subparse(EndRules end_tags) {
    Body body;
    while (true) {
      const Token& t = Current();
      switch (t.type) {
        case TokenType::kText: {
          auto text = Make(t, new TextStmt);
          text->text = t.value;
          Next();
          body.push_back(std::move(text));
          break;
        }
        case TokenType::kVariableBegin: {
          const Token& begin = Next();
          auto out = Make(begin, new OutputStmt);
          out->expr = ParseTuple(false, true, {}, false);
          if (Current().type != TokenType::kVariableEnd) FailExpected("end of print statement");
          Next();
          body.push_back(std::move(out));
          break;
        }
        case TokenType::kBlockBegin: {
          Next();
          if (Current().type == TokenType::kName) {
            for (std::string_view end : end_tags)
              if (Current().value == end) return body;
          }
          body.push_back(ParseStatement(end_tags));
          ExpectBlockEnd();
          break;
        }
        case TokenType::kEof:
          if (end_tags.size() != 0) FailEof(end_tags);
          return body;
        default:
          Fail(Cat("unexpected '", DescribeToken(t), "'"));
      }
    }
  }

  [[noreturn]] void FailEof(EndRules end_tags) {
    std::vector<std::string> quoted;
    for (std::string_view tag : end_tags) quoted.push_back(Cat("'", tag, "'"));
    std::string message =
        Cat("Unexpected end of template. Jinja was looking for the following tags: ",
            absl::StrJoin(quoted, " or "), ".");
    if (!open_blocks_.empty()) {
      CatTo(&message, " The innermost block that needs to be closed is '", open_blocks_.back(),
            "'.");
    }
    Fail(std::move(message));
  }

  // Parses `{% tag ... %}` body up to one of `end_tags`; leaves the end tag's name current.
  Body ParseBlockBody(EndRules end_tags) {
    ExpectBlockEnd();
    return Subparse(end_tags);
  }

  StmtPtr ParseStatement(EndRules enclosing_end_tags) {
    DepthGuard guard(this);
    const Token& t = Current();
    if (t.type != TokenType::kName) Fail("tag name expected");
    const std::string& tag = t.value;
    open_blocks_.push_back(tag);
    StmtPtr stmt;
    if (tag == "if") {
      stmt = ParseIf();
    } else if (tag == "for") {
      stmt = ParseFor();
    } else if (tag == "set") {
      stmt = ParseSet();
    } else if (tag == "macro") {
      stmt = ParseMacro();
    } else if (tag == "call") {
      stmt = ParseCallBlock();
    } else if (tag == "filter") {
      stmt = ParseFilterBlock();
    } else if (tag == "with") {
      stmt = ParseWith();
    } else if (tag == "generation") {
      const Token& begin = Next();
      auto scope = Make(begin, new ScopeStmt);
      // transformers' generation block is a CallBlock in jinja2: a function of its own, so
      // break/continue inside it do not reach an enclosing loop.
      int saved_loop_depth = loop_depth_;
      loop_depth_ = 0;
      scope->body = ParseBlockBody({"endgeneration"});
      loop_depth_ = saved_loop_depth;
      Next();
      stmt = std::move(scope);
    } else if (tag == "break" || tag == "continue") {
      const Token& begin = Next();
      if (loop_depth_ == 0) FailAt(begin, Cat("'", tag, "' outside loop"));
      stmt =
          Make(begin, new LoopControlStmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue));
    } else if (tag == "block" || tag == "extends" || tag == "include" || tag == "import" ||
               tag == "from" || tag == "autoescape") {
      Fail(Cat("the '", tag, "' tag is not supported in chat templates"));
    } else {
      std::string message = Cat("Encountered unknown tag '", tag, "'.");
      if (enclosing_end_tags.size() != 0) {
        std::vector<std::string> quoted;
        for (std::string_view end : enclosing_end_tags) quoted.push_back(Cat("'", end, "'"));
        CatTo(&message,
              " Jinja was looking for the following tags: ", absl::StrJoin(quoted, " or "), ".");
        if (open_blocks_.size() >= 2) {
          CatTo(&message, " The innermost block that needs to be closed is '",
                open_blocks_[open_blocks_.size() - 2], "'.");
        }
      }
      Fail(std::move(message));
    }
    open_blocks_.pop_back();
    return stmt;
  }

  StmtPtr ParseIf() {
    const Token& begin = Next();
    auto node = Make(begin, new IfStmt);
    while (true) {
      ExprPtr cond = ParseTuple(false, false, {}, false);
      Body body = ParseBlockBody({"elif", "else", "endif"});
      node->branches.emplace_back(std::move(cond), std::move(body));
      const Token& end = Next();
      if (end.value == "elif") continue;
      if (end.value == "else") {
        node->else_body = ParseBlockBody({"endif"});
        Next();
      }
      break;
    }
    return node;
  }

  StmtPtr ParseFor() {
    const Token& begin = Next();
    auto node = Make(begin, new ForStmt);
    node->target = ParseAssignTarget(false, {"in"});
    if (!SkipName("in")) FailExpected("in");
    node->iter = ParseTuple(false, false, {"recursive"}, false);
    if (SkipName("if")) node->filter = ParseExpression(true);
    if (IsName("recursive")) Fail("recursive for loops are not supported");
    for_loops_.push_back(node.get());
    ++loop_depth_;
    node->body = ParseBlockBody({"endfor", "else"});
    --loop_depth_;
    for_loops_.pop_back();
    if (Next().value == "else") {
      node->else_body = ParseBlockBody({"endfor"});
      Next();
    }
    return node;
  }

  StmtPtr ParseSet() {
    const Token& begin = Next();
    Target target = ParseAssignTarget(true, {});
    if (SkipOp("=")) {
      auto node = Make(begin, new SetStmt);
      node->target = std::move(target);
      node->value = ParseTuple(false, true, {}, false);
      return node;
    }
    auto node = Make(begin, new SetBlockStmt);
    node->target = std::move(target);
    node->filter = ParseFilter(nullptr, false);
    node->body = ParseBlockBody({"endset"});
    Next();
    return node;
  }

  void ParseSignature(MacroStmt* macro) {
    ExpectOp("(");
    bool any_default = false;
    while (!IsOp(")")) {
      if (!macro->params.empty()) ExpectOp(",");
      const Token& name = ExpectName();
      macro->params.push_back(name.value);
      if (SkipOp("=")) {
        macro->defaults.push_back(ParseExpression(true));
        any_default = true;
      } else {
        if (any_default) FailAt(name, "non-default argument follows default argument");
        macro->defaults.push_back(nullptr);
      }
    }
    ExpectOp(")");
  }

  // A macro (or caller) body: `break` does not reach an enclosing loop, and `loop`,
  // `varargs` and `kwargs` are its own.
  void ParseMacroBody(MacroStmt* macro, EndRules end) {
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    std::vector<ForStmt*> saved_loops = std::move(for_loops_);
    for_loops_.clear();
    macros_.push_back(macro);
    macro->body = ParseBlockBody(end);
    macros_.pop_back();
    for_loops_ = std::move(saved_loops);
    loop_depth_ = saved_loop_depth;
    Next();
  }

  StmtPtr ParseMacro() {
    const Token& begin = Next();
    auto node = Make(begin, new MacroStmt);
    node->name = ExpectName().value;
    ParseSignature(node.get());
    ParseMacroBody(node.get(), {"endmacro"});
    return node;
  }

  StmtPtr ParseCallBlock() {
    const Token& begin = Next();
    auto node = Make(begin, new CallBlockStmt);
    node->caller = Make(begin, new MacroStmt);
    node->caller->name = "caller";
    if (IsOp("(")) ParseSignature(node->caller.get());
    ExprPtr call = ParseExpression(true);
    if (call->kind != ExprKind::kCall) FailAt(begin, "expected call");
    node->call.reset(static_cast<CallExpr*>(call.release()));
    ParseMacroBody(node->caller.get(), {"endcall"});
    return node;
  }

  StmtPtr ParseFilterBlock() {
    const Token& begin = Next();
    auto node = Make(begin, new FilterBlockStmt);
    node->filter = ParseFilter(nullptr, true);
    node->body = ParseBlockBody({"endfilter"});
    Next();
    return node;
  }

  StmtPtr ParseWith() {
    const Token& begin = Next();
    auto node = Make(begin, new WithStmt);
    while (Current().type != TokenType::kBlockEnd) {
      if (!node->assignments.empty()) ExpectOp(",");
      Target target = ParseAssignTarget(false, {});
      ExpectOp("=");
      node->assignments.emplace_back(std::move(target), ParseExpression(true));
    }
    node->body = ParseBlockBody({"endwith"});
    Next();
    return node;
  }

  // A name, `ns.attr` (with_namespace), or names in a tuple, as jinja2's
  // parse_assign_target allows.
  Target ParseAssignTarget(bool with_namespace, EndRules extra_end_rules) {
    Target target;
    if (with_namespace && Current().type == TokenType::kName &&
        Look().type == TokenType::kOperator && Look().value == ".") {
      target.kind = Target::Kind::kNamespaceAttr;
      target.name = Next().value;
      Next();
      target.attr = ExpectName().value;
      return target;
    }
    const Token& start = Current();
    ExprPtr expr = ParseTuple(true, true, extra_end_rules, false);
    if (!ToTarget(*expr, &target)) {
      FailAt(start,
             Cat("can't assign to ", expr->kind == ExprKind::kLiteral ? "'const'" : "expression"));
    }
    return target;
  }

  bool ToTarget(const Expr& expr, Target* target) {
    if (expr.kind == ExprKind::kName) {
      const auto& name = static_cast<const NameExpr&>(expr).name;
      if (name == "true" || name == "false" || name == "none" || name == "True" ||
          name == "False" || name == "None")
        return false;
      target->kind = Target::Kind::kName;
      target->name = name;
      return true;
    }
    if (expr.kind == ExprKind::kTuple) {
      target->kind = Target::Kind::kTuple;
      for (const ExprPtr& item : static_cast<const SequenceExpr&>(expr).items) {
        Target sub;
        if (!ToTarget(*item, &sub)) return false;
        target->items.push_back(std::move(sub));
      }
      return true;
    }
    return false;
  }

  // ---- expressions ----

  bool IsTupleEnd(EndRules extra_end_rules) const {
    const Token& t = Current();
    if (t.type == TokenType::kVariableEnd || t.type == TokenType::kBlockEnd ||
        (t.type == TokenType::kOperator && t.value == ")"))
      return true;
    if (t.type == TokenType::kName)
      for (std::string_view rule : extra_end_rules)
        if (t.value == rule) return true;
    return false;
  }

  ExprPtr ParseTuple(bool simplified, bool with_condexpr, EndRules extra_end_rules,
                     bool explicit_parentheses) {
    const Token& start = Current();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) ExpectOp(",");
      if (IsTupleEnd(extra_end_rules)) break;
      if (simplified) {
        items.push_back(ParsePrimary());
      } else {
        items.push_back(ParseExpression(with_condexpr));
      }
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses)
        Fail(Cat("Expected an expression, got '", DescribeToken(Current()), "'"));
    }
    auto tuple = Make(start, new SequenceExpr(ExprKind::kTuple));
    tuple->items = std::move(items);
    return tuple;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  ExprPtr ParseCondExpr() {
    DepthGuard guard(this);
    const Token& start = Current();
    ExprPtr expr = ParseOr();
    while (SkipName("if")) {
      auto cond = Make(start, new CondExpr);
      cond->then = std::move(expr);
      cond->cond = ParseOr();
      if (SkipName("else")) cond->otherwise = ParseCondExpr();
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      const Token& op = Next();
      auto node = Make(op, new LogicalExpr(ExprKind::kOr));
      node->left = std::move(left);
      node->right = ParseAnd();
      left = std::move(node);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      const Token& op = Next();
      auto node = Make(op, new LogicalExpr(ExprKind::kAnd));
      node->left = std::move(left);
      node->right = ParseNot();
      left = std::move(node);
    }
    return left;
  }

  ExprPtr ParseNot() {
    DepthGuard guard(this);
    if (IsName("not")) {
      const Token& op = Next();
      auto node = Make(op, new UnaryExpr(ExprKind::kNot));
      node->operand = ParseNot();
      return node;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const Token& start = Current();
    ExprPtr expr = ParseMath1();
    std::vector<std::pair<CompareOp, ExprPtr>> ops;
    while (true) {
      const Token& t = Current();
      CompareOp op;
      if (t.type == TokenType::kOperator && t.value == "==") {
        op = CompareOp::kEq;
      } else if (t.type == TokenType::kOperator && t.value == "!=") {
        op = CompareOp::kNe;
      } else if (t.type == TokenType::kOperator && t.value == "<") {
        op = CompareOp::kLt;
      } else if (t.type == TokenType::kOperator && t.value == "<=") {
        op = CompareOp::kLe;
      } else if (t.type == TokenType::kOperator && t.value == ">") {
        op = CompareOp::kGt;
      } else if (t.type == TokenType::kOperator && t.value == ">=") {
        op = CompareOp::kGe;
      } else if (t.type == TokenType::kName && t.value == "in") {
        op = CompareOp::kIn;
      } else if (t.type == TokenType::kName && t.value == "not" &&
                 Look().type == TokenType::kName && Look().value == "in") {
        Next();
        op = CompareOp::kNotIn;
      } else {
        break;
      }
      Next();
      ops.emplace_back(op, ParseMath1());
    }
    if (ops.empty()) return expr;
    auto node = Make(start, new CompareExpr);
    node->first = std::move(expr);
    node->rest = std::move(ops);
    return node;
  }

  ExprPtr MakeBinary(const Token& at, BinaryOp op, ExprPtr left, ExprPtr right) {
    auto node = Make(at, new BinaryExpr);
    node->op = op;
    node->left = std::move(left);
    node->right = std::move(right);
    return node;
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& op = Next();
      BinaryOp kind = op.value == "+" ? BinaryOp::kAdd : BinaryOp::kSub;
      left = MakeBinary(op, kind, std::move(left), ParseConcat());
    }
    return left;
  }

  ExprPtr ParseConcat() {
    const Token& start = Current();
    ExprPtr first = ParseMath2();
    if (!IsOp("~")) return first;
    auto node = Make(start, new ConcatExpr);
    node->items.push_back(std::move(first));
    while (SkipOp("~")) node->items.push_back(ParseMath2());
    return node;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& op = Next();
      BinaryOp kind = op.value == "*"    ? BinaryOp::kMul
                      : op.value == "/"  ? BinaryOp::kDiv
                      : op.value == "//" ? BinaryOp::kFloorDiv
                                         : BinaryOp::kMod;
      left = MakeBinary(op, kind, std::move(left), ParsePow());
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const Token& op = Next();
      left = MakeBinary(op, BinaryOp::kPow, std::move(left), ParseUnary(true));
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    DepthGuard guard(this);
    const Token& t = Current();
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      Next();
      bool negate = t.value == "-";
      ExprPtr operand = ParseUnary(false);
      if (negate && operand->kind == ExprKind::kLiteral &&
          (static_cast<LiteralExpr&>(*operand).value.is_int() ||
           static_cast<LiteralExpr&>(*operand).value.is_float())) {
        Value& v = static_cast<LiteralExpr&>(*operand).value;
        if (v.is_float()) {
          v = Value::Float(-v.as_float());
        } else if (v.as_int() != INT64_MIN) {
          v = Value::Int(-v.as_int());
        }
        node = std::move(operand);
      } else {
        auto unary = Make(t, new UnaryExpr(negate ? ExprKind::kNeg : ExprKind::kPos));
        unary->operand = std::move(operand);
        node = std::move(unary);
      }
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Current();
    if (t.type == TokenType::kName) {
      Next();
      auto literal = [&](Value v) {
        auto node = Make(t, new LiteralExpr);
        node->value = std::move(v);
        return node;
      };
      if (t.value == "true" || t.value == "True") return literal(Value::Bool(true));
      if (t.value == "false" || t.value == "False") return literal(Value::Bool(false));
      if (t.value == "none" || t.value == "None") return literal(Value::None());
      NoteName(t.value);
      auto node = Make(t, new NameExpr);
      node->name = t.value;
      std::string message;
      AppendPyRepr(t.value, &message);
      message += " is undefined";
      node->undefined = Value::Undefined(std::move(message));
      return node;
    }
    if (t.type == TokenType::kString) {
      std::string text = Next().value;
      while (Current().type == TokenType::kString) text += Next().value;
      auto node = Make(t, new LiteralExpr);
      node->value = Value::String(std::move(text));
      return node;
    }
    if (t.type == TokenType::kInteger || t.type == TokenType::kFloat) {
      Next();
      auto node = Make(t, new LiteralExpr);
      node->value =
          t.type == TokenType::kInteger ? Value::Int(t.int_value) : Value::Float(t.float_value);
      return node;
    }
    if (IsOp("(")) {
      Next();
      ExprPtr node = ParseTuple(false, true, {}, true);
      ExpectOp(")");
      return node;
    }
    if (IsOp("[")) return ParseList();
    if (IsOp("{")) return ParseDict();
    Fail(Cat("unexpected '", DescribeToken(t), "'"));
  }

  // Which for loop / macro needs its `loop` / `varargs` / `kwargs`.
  void NoteName(const std::string& name) {
    if (name == "loop" && !for_loops_.empty()) for_loops_.back()->uses_loop = true;
    if (!macros_.empty()) {
      if (name == "varargs") macros_.back()->catch_varargs = true;
      if (name == "kwargs") macros_.back()->catch_kwargs = true;
    }
  }

  ExprPtr ParseList() {
    const Token& start = Next();
    auto node = Make(start, new SequenceExpr(ExprKind::kList));
    while (!IsOp("]")) {
      if (!node->items.empty()) ExpectOp(",");
      if (IsOp("]")) break;
      node->items.push_back(ParseExpression(true));
    }
    ExpectOp("]");
    return node;
  }

  ExprPtr ParseDict() {
    const Token& start = Next();
    auto node = Make(start, new DictExpr);
    while (!IsOp("}")) {
      if (!node->items.empty()) ExpectOp(",");
      if (IsOp("}")) break;
      ExprPtr key = ParseExpression(true);
      ExpectOp(":");
      node->items.emplace_back(std::move(key), ParseExpression(true));
    }
    ExpectOp("}");
    return node;
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".") || IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        node = ParseFilter(std::move(node), false);
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    const Token& t = Next();
    if (t.value == ".") {
      const Token& attr = Next();
      if (attr.type == TokenType::kName) {
        auto get = Make(t, new GetAttrExpr);
        get->object = std::move(node);
        get->name = attr.value;
        get->name_value = Value::String(attr.value);
        return get;
      }
      if (attr.type != TokenType::kInteger) FailAt(attr, "expected name or number");
      auto get = Make(t, new GetItemExpr);
      get->object = std::move(node);
      auto index = Make(attr, new LiteralExpr);
      index->value = Value::Int(attr.int_value);
      get->index = std::move(index);
      return get;
    }
    // `[`: one subscript (an index or a slice), or several making a tuple index.
    std::vector<ExprPtr> indexes;
    std::unique_ptr<SliceExpr> slice;
    while (!IsOp("]")) {
      if (!indexes.empty() || slice) ExpectOp(",");
      ExprPtr part = ParseSubscribed(&slice);
      if (part) indexes.push_back(std::move(part));
    }
    ExpectOp("]");
    if (slice) {
      if (!indexes.empty()) FailAt(t, "a slice cannot be part of a tuple index");
      slice->object = std::move(node);
      slice->line = t.line;
      slice->column = t.column;
      return slice;
    }
    auto get = Make(t, new GetItemExpr);
    get->object = std::move(node);
    if (indexes.size() == 1) {
      get->index = std::move(indexes[0]);
    } else {
      auto tuple = Make(t, new SequenceExpr(ExprKind::kTuple));
      tuple->items = std::move(indexes);
      get->index = std::move(tuple);
    }
    return get;
  }

  // One subscript: returns an index expression, or fills *slice and returns null.
  ExprPtr ParseSubscribed(std::unique_ptr<SliceExpr>* slice) {
    const Token& start = Current();
    ExprPtr first;
    if (!IsOp(":")) {
      first = ParseExpression(true);
      if (!IsOp(":")) return first;
    }
    if (*slice) FailAt(start, "a slice cannot be part of a tuple index");
    Next();  // the first ':'
    auto s = Make(start, new SliceExpr);
    s->start = std::move(first);
    if (!IsOp(":") && !IsOp("]") && !IsOp(",")) s->stop = ParseExpression(true);
    if (SkipOp(":")) {
      if (!IsOp("]") && !IsOp(",")) s->step = ParseExpression(true);
    }
    *slice = std::move(s);
    return nullptr;
  }

  void ParseCallArgs(Arguments* args) {
    const Token& open = ExpectOp("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) FailAt(open, "invalid syntax for function call expression");
    };
    while (!IsOp(")")) {
      if (require_comma) {
        ExpectOp(",");
        if (IsOp(")")) break;
      }
      if (IsOp("*")) {
        ensure(!args->star_args && !args->star_kwargs);
        Next();
        args->star_args = ParseExpression(true);
      } else if (IsOp("**")) {
        ensure(!args->star_kwargs);
        Next();
        args->star_kwargs = ParseExpression(true);
      } else if (Current().type == TokenType::kName && Look().type == TokenType::kOperator &&
                 Look().value == "=") {
        ensure(!args->star_kwargs);
        std::string key = Next().value;
        Next();
        args->keyword.emplace_back(std::move(key), ParseExpression(true));
      } else {
        ensure(!args->star_args && !args->star_kwargs && args->keyword.empty());
        args->positional.push_back(ParseExpression(true));
      }
      require_comma = true;
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    const Token& t = Current();
    auto call = Make(t, new CallExpr);
    call->callee = std::move(callee);
    ParseCallArgs(&call->args);
    return call;
  }

  std::string ParseDottedName() {
    std::string name = ExpectName().value;
    while (IsOp(".")) {
      Next();
      name += "." + ExpectName().value;
    }
    return name;
  }

  // `|f(args)|g`..., or (start_inline) `f(args)|g` as {% filter %} writes it.
  ExprPtr ParseFilter(ExprPtr node, bool start_inline) {
    while (IsOp("|") || start_inline) {
      if (!start_inline) Next();
      start_inline = false;
      const Token& name_token = Current();
      auto filter = Make(name_token, new FilterExpr);
      filter->name = ParseDottedName();
      filter->fn = LookupFilter(filter->name);
      if (filter->fn == nullptr) FailAt(name_token, Cat("No filter named '", filter->name, "'."));
      if (IsOp("(")) ParseCallArgs(&filter->args);
      filter->operand = std::move(node);
      node = std::move(filter);
    }
    return node;
  }

  ExprPtr ParseTest(ExprPtr node) {
    const Token& is = Next();
    bool negated = SkipName("not");
    const Token& name_token = Current();
    auto test = Make(is, new TestExpr);
    test->name = ParseDottedName();
    test->fn = LookupTest(test->name);
    if (test->fn == nullptr) FailAt(name_token, Cat("No test named '", test->name, "'."));
    test->negated = negated;
    const Token& t = Current();
    if (IsOp("(")) {
      ParseCallArgs(&test->args);
    } else if ((t.type == TokenType::kName || t.type == TokenType::kString ||
                t.type == TokenType::kInteger || t.type == TokenType::kFloat || IsOp("(") ||
                IsOp("[") || IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) Fail("You cannot chain multiple tests with is");
      test->args.positional.push_back(ParsePostfix(ParsePrimary()));
    }
    test->operand = std::move(node);
    return test;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::string> open_blocks_;
  std::vector<ForStmt*> for_loops_;
  std::vector<MacroStmt*> macros_;
};

}  // namespace

std::unique_ptr<TemplateRoot> ParseTemplate(std::string_view source) {
  return Parser(Tokenize(source)).Run();
}

}  // namespace prefixd::jinja
