// The interpreter's expressions: names, attribute and item access, calls, operators.
// Statements, scopes and macros are in runtime.cc.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/runtime.h"

namespace prefixd::jinja {
namespace {

std::string QuotedRepr(std::string_view s) {
  std::string out;
  AppendPyRepr(s, &out);
  return out;
}

// An undefined for a missing attribute: "'dict object' has no attribute 'x'".
Value MissingAttribute(const Value& object, std::string_view name, const Value* name_value) {
  return Value::Missing(object, name_value ? *name_value : Value::String(name),
                        /*element=*/false);
}

// The sandbox's answer to list.append and friends: usable as a value, fails when called.
Value UnsafeAttribute(const Value& object, std::string_view name) {
  return Value::Undefined(Cat("access to attribute ", QuotedRepr(name), " of ",
                              QuotedRepr(PyTypeName(object)), " object is unsafe."),
                          /*security=*/true);
}

// Python's slice.indices(length) walk.
std::vector<size_t> SliceIndices(int64_t length, const Value& start_v, const Value& stop_v,
                                 const Value& step_v) {
  auto as_index = [](const Value& v) -> int64_t {
    if (v.is_int() || v.is_bool()) return v.AsInt();
    Fail("TypeError", "slice indices must be integers or None or have an __index__ method");
  };
  int64_t step = step_v.is_none() || step_v.is_undefined() ? 1 : as_index(step_v);
  if (step == 0) Fail("ValueError", "slice step cannot be zero");
  int64_t lower = step < 0 ? -1 : 0;
  int64_t upper = step < 0 ? length - 1 : length;
  auto adjust = [&](const Value& v, int64_t fallback) {
    if (v.is_none() || v.is_undefined()) return fallback;
    int64_t i = as_index(v);
    if (i < 0) {
      i += length;
      if (i < lower) i = lower;
    } else if (i > upper) {
      i = upper;
    }
    return i;
  };
  int64_t start = adjust(start_v, step < 0 ? upper : lower);
  int64_t stop = adjust(stop_v, step < 0 ? lower : upper);
  std::vector<size_t> out;
  // The slice's length, for the work meter.
  WorkMeter::Charge(step > 0 ? (stop > start ? (stop - start) / step : 0)
                             : (start > stop ? (start - stop) / -step : 0));
  if (step > 0) {
    for (int64_t i = start; i < stop;) {
      out.push_back(static_cast<size_t>(i));
      if (__builtin_add_overflow(i, step, &i)) break;
    }
  } else {
    for (int64_t i = start; i > stop;) {
      out.push_back(static_cast<size_t>(i));
      if (__builtin_add_overflow(i, step, &i)) break;
    }
  }
  return out;
}

}  // namespace

// ---- expressions ----

Value Interpreter::Eval(const Expr& expr) {
  try {
    return EvalInner(expr);
  } catch (Error& e) {
    if (e.line == 0) {
      e.line = expr.line;
      e.column = expr.column;
    }
    throw;
  }
}

Value Interpreter::Lookup(const NameExpr& name) {
  for (Scope* s = scope_.get(); s != nullptr; s = s->parent.get())
    if (const Value* v = s->Find(name.name)) return *v;
  Value global = LookupGlobal(name.name);
  if (!global.is_undefined()) return global;
  return name.undefined;
}

Value Interpreter::EvalInner(const Expr& expr) {
  Step();
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return static_cast<const LiteralExpr&>(expr).value;
    case ExprKind::kName:
      return Lookup(static_cast<const NameExpr&>(expr));
    case ExprKind::kList:
    case ExprKind::kTuple:
      return EvalSequence(static_cast<const SequenceExpr&>(expr));
    case ExprKind::kDict:
      return EvalDict(static_cast<const DictExpr&>(expr));
    case ExprKind::kGetAttr:
      return EvalGetAttr(static_cast<const GetAttrExpr&>(expr));
    case ExprKind::kGetItem:
      return EvalGetItem(static_cast<const GetItemExpr&>(expr));
    case ExprKind::kSlice:
      return EvalSlice(static_cast<const SliceExpr&>(expr));
    case ExprKind::kCall:
      return EvalCall(static_cast<const CallExpr&>(expr));
    case ExprKind::kFilter:
      return EvalFilter(static_cast<const FilterExpr&>(expr));
    case ExprKind::kTest:
      return EvalTest(static_cast<const TestExpr&>(expr));
    case ExprKind::kNeg:
    case ExprKind::kPos:
      return EvalUnary(static_cast<const UnaryExpr&>(expr));
    case ExprKind::kNot:
      return Value::Bool(!Truthy(Eval(*static_cast<const UnaryExpr&>(expr).operand)));
    case ExprKind::kAnd:
    case ExprKind::kOr:
      return EvalLogical(static_cast<const LogicalExpr&>(expr));
    case ExprKind::kBinary:
      return EvalBinary(static_cast<const BinaryExpr&>(expr));
    case ExprKind::kCompare:
      return Value::Bool(EvalCompare(static_cast<const CompareExpr&>(expr)));
    case ExprKind::kCondExpr:
      return EvalCond(static_cast<const CondExpr&>(expr));
    case ExprKind::kConcat:
      return EvalConcat(static_cast<const ConcatExpr&>(expr));
  }
  return Value();
}

Value Interpreter::EvalSequence(const SequenceExpr& node) {
  std::vector<Value> items;
  items.reserve(node.items.size());
  for (const ExprPtr& item : node.items) items.push_back(Eval(*item));
  return Value::List(std::move(items),
                     node.kind == ExprKind::kList ? SeqKind::kList : SeqKind::kTuple);
}

Value Interpreter::EvalDict(const DictExpr& node) {
  auto dict = std::make_shared<DictData>();
  for (const auto& [key_expr, value_expr] : node.items) {
    Value key = Eval(*key_expr);
    if (!IsHashable(key)) Fail("TypeError", Cat("unhashable type: '", PyTypeName(key), "'"));
    dict->Set(std::move(key), Eval(*value_expr));
  }
  dict->Finish();
  return Value::Dict(std::move(dict));
}

Value Interpreter::EvalGetAttr(const GetAttrExpr& node) {
  return GetAttr(Eval(*node.object), node.name, &node.name_value);
}

Value Interpreter::EvalGetItem(const GetItemExpr& node) {
  Value object = Eval(*node.object);
  return GetItem(object, Eval(*node.index));
}

Value Interpreter::EvalSlice(const SliceExpr& node) {
  Value object = Eval(*node.object);
  Value start = node.start ? Eval(*node.start) : Value::None();
  Value stop = node.stop ? Eval(*node.stop) : Value::None();
  Value step = node.step ? Eval(*node.step) : Value::None();
  if (object.is_undefined()) FailUndefined(object);
  if (object.is_string()) {
    const std::string& s = object.str();
    std::string out;
    if (IsAscii(s)) {
      for (size_t i : SliceIndices(static_cast<int64_t>(s.size()), start, stop, step))
        out.push_back(s[i]);
    } else {
      std::vector<size_t> offsets = CodePointOffsets(s);
      int64_t n = static_cast<int64_t>(offsets.size()) - 1;
      for (size_t i : SliceIndices(n, start, stop, step))
        out.append(s, offsets[i], offsets[i + 1] - offsets[i]);
    }
    return Value::String(std::move(out));
  }
  if (object.is_list() &&
      (object.list().kind == SeqKind::kList || object.list().kind == SeqKind::kTuple)) {
    const auto& items = object.list().items;
    std::vector<Value> out;
    for (size_t i : SliceIndices(static_cast<int64_t>(items.size()), start, stop, step))
      out.push_back(items[i]);
    return Value::List(std::move(out), object.list().kind);
  }
  if (object.is_dict()) Fail("TypeError", "unhashable type: 'slice'");
  return Value::Undefined(Cat(ObjectTypeRepr(object), " has no element slice"));
}

Value Interpreter::EvalFilter(const FilterExpr& node) {
  Value input = Eval(*node.operand);
  CallArgs args;
  std::vector<Value> keep_alive;
  EvalArgs(node.args, &args, &keep_alive);
  return node.fn(*this, input, args);
}

Value Interpreter::EvalTest(const TestExpr& node) {
  Value input = Eval(*node.operand);
  CallArgs args;
  std::vector<Value> keep_alive;
  EvalArgs(node.args, &args, &keep_alive);
  return Value::Bool(node.fn(*this, input, args) != node.negated);
}

Value Interpreter::EvalUnary(const UnaryExpr& node) {
  Value v = Eval(*node.operand);
  if (v.is_undefined()) FailUndefined(v);
  bool neg = node.kind == ExprKind::kNeg;
  if (v.is_float()) return Value::Float(neg ? -v.as_float() : v.as_float());
  if (v.is_int() || v.is_bool()) {
    int64_t i = v.AsInt();
    if (!neg) return Value::Int(i);
    if (i == std::numeric_limits<int64_t>::min()) Fail("OverflowError", "integer overflow");
    return Value::Int(-i);
  }
  Fail("TypeError", Cat("bad operand type for unary ", neg ? "-" : "+", ": '", PyTypeName(v), "'"));
}

Value Interpreter::EvalLogical(const LogicalExpr& node) {
  Value left = Eval(*node.left);
  if (Truthy(left) == (node.kind == ExprKind::kAnd)) return Eval(*node.right);
  return left;
}

Value Interpreter::EvalCond(const CondExpr& node) {
  if (Truthy(Eval(*node.cond))) return Eval(*node.then);
  if (node.otherwise) return Eval(*node.otherwise);
  return Value::Undefined(Cat("the inline if-expression on line ", node.line,
                              " evaluated to false and no else section was defined."));
}

Value Interpreter::EvalConcat(const ConcatExpr& node) {
  std::string out;
  for (const ExprPtr& item : node.items) {
    AppendStr(Eval(*item), &out);
    CheckSize(out.size());
  }
  return Value::String(std::move(out));
}

void Interpreter::EvalArgs(const Arguments& args, CallArgs* out, std::vector<Value>* keep_alive) {
  for (const ExprPtr& arg : args.positional) out->positional.push_back(Eval(*arg));
  for (const auto& [name, expr] : args.keyword) out->kwargs.emplace_back(name, Eval(*expr));
  if (args.star_args) {
    for (Value& v : Iterate(Eval(*args.star_args))) out->positional.push_back(std::move(v));
  }
  if (args.star_kwargs) {
    Value kwargs = Eval(*args.star_kwargs);
    if (!kwargs.is_dict()) {
      Fail("TypeError", Cat("argument after ** must be a mapping, not ", PyTypeName(kwargs)));
    }
    for (const auto& [key, value] : kwargs.dict().entries) {
      if (!key.is_string()) Fail("TypeError", "keywords must be strings");
      out->kwargs.emplace_back(key.str(), value);
    }
    keep_alive->push_back(std::move(kwargs));  // owns the key strings
  }
}

Value Interpreter::EvalCall(const CallExpr& call) {
  CallArgs args;
  std::vector<Value> keep_alive;
  if (call.callee->kind == ExprKind::kGetAttr) {
    // receiver.method(...) calls the method directly, without a bound-method object.
    const auto& attr = static_cast<const GetAttrExpr&>(*call.callee);
    Value receiver = Eval(*attr.object);
    if ((receiver.is_string() || receiver.is_list() || receiver.is_dict()) &&
        HasMethod(receiver, attr.name)) {
      EvalArgs(call.args, &args, &keep_alive);
      return CallMethod(*this, receiver, attr.name, args);
    }
    Value callee = GetAttr(receiver, attr.name);
    EvalArgs(call.args, &args, &keep_alive);
    return Call(callee, args);
  }
  Value callee = Eval(*call.callee);
  EvalArgs(call.args, &args, &keep_alive);
  return Call(callee, args);
}

Value Interpreter::Call(const Value& callee, CallArgs& args) {
  Step();
  if (callee.is_object()) {
    CheckStack();
    return callee.object()->Call(*this, args);
  }
  if (callee.is_undefined()) FailUndefined(callee);
  Fail("TypeError", Cat("'", PyTypeName(callee), "' object is not callable"));
}

Value Interpreter::GetAttr(const Value& object, std::string_view name, const Value* name_value) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      FailUndefined(object);
    case Value::Kind::kDict:
      if (HasMethod(object, name)) return BoundMethod(object, name);
      if (IsUnsafeMethod(object, name)) return UnsafeAttribute(object, name);
      if (const Value* v = object.dict().Find(name)) return *v;
      break;
    case Value::Kind::kString:
    case Value::Kind::kList:
      if (HasMethod(object, name)) return BoundMethod(object, name);
      if (IsUnsafeMethod(object, name)) return UnsafeAttribute(object, name);
      break;
    case Value::Kind::kObject: {
      Value out;
      if (object.object()->GetAttr(name, &out)) return out;
      break;
    }
    default:
      break;
  }
  return MissingAttribute(object, name, name_value);
}

Value Interpreter::GetItem(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      FailUndefined(object);
    case Value::Kind::kDict:
      if (IsHashable(key)) {
        if (const Value* v = object.dict().Find(key)) return *v;
      }
      break;
    case Value::Kind::kList: {
      SeqKind kind = object.list().kind;
      if ((kind == SeqKind::kList || kind == SeqKind::kTuple) && (key.is_int() || key.is_bool())) {
        const auto& items = object.list().items;
        int64_t n = static_cast<int64_t>(items.size());
        int64_t i = key.AsInt();
        if (i < 0) i += n;
        if (i >= 0 && i < n) return items[i];
      }
      break;
    }
    case Value::Kind::kString:
      if (key.is_int() || key.is_bool()) {
        const std::string& s = object.str();
        int64_t i = key.AsInt();
        if (IsAscii(s)) {
          int64_t n = static_cast<int64_t>(s.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return Value::String(s.substr(i, 1));
        } else {
          std::vector<size_t> offsets = CodePointOffsets(s);
          int64_t n = static_cast<int64_t>(offsets.size()) - 1;
          if (i < 0) i += n;
          if (i >= 0 && i < n)
            return Value::String(s.substr(offsets[i], offsets[i + 1] - offsets[i]));
        }
      }
      break;
    default:
      break;
  }
  if (key.is_string()) return GetAttr(object, key.str(), &key);
  return Value::Missing(object, key, /*element=*/true);
}

bool Interpreter::Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        Fail("TypeError",
             Cat("'in <string>' requires string as left operand, not ", PyTypeName(item)));
      }
      Step(static_cast<int64_t>(container.str().size() / 256));
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      Step(static_cast<int64_t>(container.list().items.size()));
      for (const Value& v : container.list().items)
        if (Equal(v, item)) return true;
      return false;
    case Value::Kind::kDict:
      if (!IsHashable(item)) Fail("TypeError", Cat("unhashable type: '", PyTypeName(item), "'"));
      return container.dict().Find(item) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      Fail("TypeError", Cat("argument of type '", PyTypeName(container), "' is not iterable"));
  }
}

bool Interpreter::EvalCompare(const CompareExpr& expr) {
  Value left = Eval(*expr.first);
  for (const auto& [op, right_expr] : expr.rest) {
    Value right = Eval(*right_expr);
    bool result;
    switch (op) {
      case CompareOp::kEq:
        result = Equal(left, right);
        break;
      case CompareOp::kNe:
        result = !Equal(left, right);
        break;
      case CompareOp::kLt:
        result = Ordered(left, right, OrderOp::kLt);
        break;
      case CompareOp::kLe:
        result = Ordered(left, right, OrderOp::kLe);
        break;
      case CompareOp::kGt:
        result = Ordered(left, right, OrderOp::kGt);
        break;
      case CompareOp::kGe:
        result = Ordered(left, right, OrderOp::kGe);
        break;
      case CompareOp::kIn:
        result = Contains(right, left);
        break;
      case CompareOp::kNotIn:
        result = !Contains(right, left);
        break;
    }
    if (!result) return false;
    left = std::move(right);
  }
  return true;
}

namespace {

const char* BinaryOpText(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
    case BinaryOp::kFloorDiv:
      return "//";
    case BinaryOp::kMod:
      return "%";
    case BinaryOp::kPow:
      return "** or pow()";
  }
  return "?";
}

[[noreturn]] void Unsupported(BinaryOp op, const Value& a, const Value& b) {
  Fail("TypeError", Cat("unsupported operand type(s) for ", BinaryOpText(op), ": '", PyTypeName(a),
                        "' and '", PyTypeName(b), "'"));
}

[[noreturn]] void Overflow() {
  Fail("OverflowError", "integer overflow (integers are 64-bit in prefixd's interpreter)");
}

int64_t FloorDiv(int64_t a, int64_t b) {
  if (a == std::numeric_limits<int64_t>::min() && b == -1) Overflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t PyMod(int64_t a, int64_t b) {
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

double PyFloatMod(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  if (r == 0) r = std::copysign(0.0, b);
  return r;
}

// CPython's float_divmod floor quotient: the remainder from fmod, then (a - mod) / b
// floored and corrected, so 0.5 // 0.1 is 4.0 as in Python.
double PyFloatFloorDiv(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.0;
  if (div == 0) return std::copysign(0.0, a / b);
  double floordiv = std::floor(div);
  if (div - floordiv > 0.5) floordiv += 1.0;
  return floordiv;
}

bool IsSeq(const Value& v) {
  return v.is_list() && (v.list().kind == SeqKind::kList || v.list().kind == SeqKind::kTuple);
}

}  // namespace

Value Interpreter::EvalBinary(const BinaryExpr& expr) {
  Value a = Eval(*expr.left);
  Value b = Eval(*expr.right);
  if (expr.op == BinaryOp::kAdd && a.is_string() && b.is_string() && a.shared().use_count() == 1) {
    // `a` is a temporary nobody else holds (as in a + b + c): append in place.
    auto& text = const_cast<std::string&>(a.str());
    CheckSize(text.size() + b.str().size());
    text.append(b.str());
    return a;
  }
  return Arith(expr.op, a, b);
}

Value Interpreter::Arith(BinaryOp op, const Value& a, const Value& b) {
  if (a.is_undefined()) FailUndefined(a);
  if (b.is_undefined()) FailUndefined(b);
  const bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
  const bool numbers = a.is_number() && b.is_number();
  switch (op) {
    case BinaryOp::kAdd:
      if (ints) {
        int64_t r;
        if (__builtin_add_overflow(a.AsInt(), b.AsInt(), &r)) Overflow();
        return Value::Int(r);
      }
      if (numbers) return Value::Float(a.AsDouble() + b.AsDouble());
      if (a.is_string()) {
        if (!b.is_string()) {
          Fail("TypeError", Cat("can only concatenate str (not \"", PyTypeName(b), "\") to str"));
        }
        CheckSize(a.str().size() + b.str().size());
        std::string out;
        out.reserve(a.str().size() + b.str().size());
        out.append(a.str()).append(b.str());
        return Value::String(std::move(out));
      }
      if (IsSeq(a)) {
        if (!IsSeq(b) || a.list().kind != b.list().kind) {
          Fail("TypeError", Cat("can only concatenate ", PyTypeName(a), " (not \"", PyTypeName(b),
                                "\") to ", PyTypeName(a)));
        }
        std::vector<Value> items;
        items.reserve(a.list().items.size() + b.list().items.size());
        Step(static_cast<int64_t>(a.list().items.size() + b.list().items.size()));
        items.insert(items.end(), a.list().items.begin(), a.list().items.end());
        items.insert(items.end(), b.list().items.begin(), b.list().items.end());
        return Value::List(std::move(items), a.list().kind);
      }
      Unsupported(op, a, b);
    case BinaryOp::kSub:
      if (ints) {
        int64_t r;
        if (__builtin_sub_overflow(a.AsInt(), b.AsInt(), &r)) Overflow();
        return Value::Int(r);
      }
      if (numbers) return Value::Float(a.AsDouble() - b.AsDouble());
      Unsupported(op, a, b);
    case BinaryOp::kMul: {
      if (ints) {
        int64_t r;
        if (__builtin_mul_overflow(a.AsInt(), b.AsInt(), &r)) Overflow();
        return Value::Int(r);
      }
      if (numbers) return Value::Float(a.AsDouble() * b.AsDouble());
      const Value* seq = nullptr;
      const Value* count = nullptr;
      if ((a.is_string() || IsSeq(a)) && (b.is_int() || b.is_bool())) {
        seq = &a;
        count = &b;
      } else if ((b.is_string() || IsSeq(b)) && (a.is_int() || a.is_bool())) {
        seq = &b;
        count = &a;
      }
      if (seq == nullptr) {
        if (a.is_string() || IsSeq(a) || b.is_string() || IsSeq(b)) {
          const Value& other = (a.is_string() || IsSeq(a)) ? b : a;
          Fail("TypeError",
               Cat("can't multiply sequence by non-int of type '", PyTypeName(other), "'"));
        }
        Unsupported(op, a, b);
      }
      int64_t n = std::max<int64_t>(0, count->AsInt());
      if (seq->is_string()) {
        const std::string& s = seq->str();
        if (!s.empty() && static_cast<uint64_t>(n) > options_.limits.max_output_bytes / s.size())
          FailSize();
        std::string out;
        out.reserve(s.size() * n);
        for (int64_t i = 0; i < n; ++i) out.append(s);
        return Value::String(std::move(out));
      }
      const auto& items = seq->list().items;
      if (!items.empty()) {
        if (static_cast<uint64_t>(n) > static_cast<uint64_t>(options_.limits.max_steps))
          FailSteps();
        Step(n * static_cast<int64_t>(items.size()));
      }
      std::vector<Value> out;
      out.reserve(items.size() * n);
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
      return Value::List(std::move(out), seq->list().kind);
    }
    case BinaryOp::kDiv:
      if (!numbers) Unsupported(op, a, b);
      if (b.AsDouble() == 0) Fail("ZeroDivisionError", "division by zero");
      return Value::Float(a.AsDouble() / b.AsDouble());
    case BinaryOp::kFloorDiv:
      if (!numbers) Unsupported(op, a, b);
      if (ints) {
        if (b.AsInt() == 0) Fail("ZeroDivisionError", "integer division or modulo by zero");
        return Value::Int(FloorDiv(a.AsInt(), b.AsInt()));
      }
      if (b.AsDouble() == 0) Fail("ZeroDivisionError", "float floor division by zero");
      return Value::Float(PyFloatFloorDiv(a.AsDouble(), b.AsDouble()));
    case BinaryOp::kMod:
      if (a.is_string()) {
        CallArgs format_args;
        if (b.is_list() && b.list().kind == SeqKind::kTuple) {
          for (const Value& v : b.list().items) format_args.positional.push_back(v);
        } else {
          format_args.positional.push_back(b);
        }
        // "%" formatting is the format filter's.
        FilterFn format = LookupFilter("format");
        return format(*this, a, format_args);
      }
      if (!numbers) Unsupported(op, a, b);
      if (ints) {
        if (b.AsInt() == 0) Fail("ZeroDivisionError", "integer modulo by zero");
        return Value::Int(PyMod(a.AsInt(), b.AsInt()));
      }
      if (b.AsDouble() == 0) Fail("ZeroDivisionError", "float modulo");
      return Value::Float(PyFloatMod(a.AsDouble(), b.AsDouble()));
    case BinaryOp::kPow:
      if (!numbers) Unsupported(op, a, b);
      if (ints && b.AsInt() >= 0) {
        int64_t base = a.AsInt(), exp = b.AsInt(), result = 1;
        while (exp > 0) {
          if (exp & 1) {
            if (__builtin_mul_overflow(result, base, &result)) Overflow();
          }
          exp >>= 1;
          if (exp > 0 && __builtin_mul_overflow(base, base, &base)) Overflow();
        }
        return Value::Int(result);
      }
      if (a.AsDouble() == 0 && b.AsDouble() < 0)
        Fail("ZeroDivisionError", "0.0 cannot be raised to a negative power");
      return Value::Float(std::pow(a.AsDouble(), b.AsDouble()));
  }
  return Value();
}

}  // namespace prefixd::jinja
