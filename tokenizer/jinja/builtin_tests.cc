// jinja2's tests (`x is defined`, `x is divisibleby 3`, ...), jinja2/tests.py of 3.1.
#include <cmath>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/runtime.h"

namespace prefixd::jinja {

// ---- tests ----

namespace {

bool IsPlainSeq(const Value& v) {
  return v.is_list() && (v.list().kind == SeqKind::kList || v.list().kind == SeqKind::kTuple);
}

const Value& OneArg(std::string_view test, CallArgs& args) {
  if (args.positional.size() != 1 || !args.kwargs.empty()) {
    Fail("TypeError", Cat("test '", test, "' takes exactly one argument"));
  }
  return args.positional[0];
}

void NoArgs(std::string_view test, CallArgs& args) {
  if (!args.positional.empty() || !args.kwargs.empty())
    Fail("TypeError", Cat("test '", test, "' takes no arguments"));
}

int64_t IntOperand(const Value& v, std::string_view test) {
  if (v.is_undefined()) FailUndefined(v);
  if (v.is_int() || v.is_bool()) return v.AsInt();
  if (v.is_float()) {
    double f = v.as_float();
    if (!std::isfinite(f) || std::fabs(f) >= 9.2e18)
      Fail("OverflowError", "cannot convert float to integer");
    return static_cast<int64_t>(f);
  }
  Fail("TypeError", Cat("test '", test, "' needs a number, not '", PyTypeName(v), "'"));
}

bool TestDefined(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("defined", a);
  return !v.is_undefined();
}
bool TestUndefined(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("undefined", a);
  return v.is_undefined();
}
bool TestNone(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("none", a);
  return v.is_none();
}
bool TestBoolean(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("boolean", a);
  return v.is_bool();
}
bool TestTrue(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("true", a);
  return v.is_bool() && v.as_bool();
}
bool TestFalse(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("false", a);
  return v.is_bool() && !v.as_bool();
}
bool TestInteger(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("integer", a);
  return v.is_int();
}
bool TestFloat(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("float", a);
  return v.is_float();
}
bool TestNumber(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("number", a);
  return v.is_number();
}
bool TestString(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("string", a);
  return v.is_string();
}
bool TestMapping(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("mapping", a);
  return v.is_dict();
}
bool TestIterable(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("iterable", a);
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool TestSequence(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("sequence", a);
  return v.is_undefined() || v.is_string() || v.is_dict() || IsPlainSeq(v);
}
bool TestCallable(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("callable", a);
  return v.is_undefined() || (v.is_object() && v.object()->IsCallable());  // Undefined has __call__
}
bool TestLower(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("lower", a);
  return PyIsLower(ToStr(v));
}
bool TestUpper(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("upper", a);
  return PyIsUpper(ToStr(v));
}
bool TestOdd(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("odd", a);
  int64_t i = IntOperand(v, "odd");
  return ((i % 2) + 2) % 2 == 1;
}
bool TestEven(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("even", a);
  return IntOperand(v, "even") % 2 == 0;
}
bool TestDivisibleBy(Interpreter&, const Value& v, CallArgs& a) {
  int64_t n = IntOperand(OneArg("divisibleby", a), "divisibleby");
  if (n == 0) Fail("ZeroDivisionError", "integer division or modulo by zero");
  if (n == -1) return true;  // INT64_MIN % -1 overflows in C++
  return IntOperand(v, "divisibleby") % n == 0;
}
bool TestEq(Interpreter&, const Value& v, CallArgs& a) { return Equal(v, OneArg("eq", a)); }
bool TestNe(Interpreter&, const Value& v, CallArgs& a) { return !Equal(v, OneArg("ne", a)); }
bool TestLt(Interpreter&, const Value& v, CallArgs& a) {
  return Ordered(v, OneArg("lt", a), OrderOp::kLt);
}
bool TestLe(Interpreter&, const Value& v, CallArgs& a) {
  return Ordered(v, OneArg("le", a), OrderOp::kLe);
}
bool TestGt(Interpreter&, const Value& v, CallArgs& a) {
  return Ordered(v, OneArg("gt", a), OrderOp::kGt);
}
bool TestGe(Interpreter&, const Value& v, CallArgs& a) {
  return Ordered(v, OneArg("ge", a), OrderOp::kGe);
}
bool TestIn(Interpreter& interp, const Value& v, CallArgs& a) {
  return interp.Contains(OneArg("in", a), v);
}
bool TestSameAs(Interpreter&, const Value& v, CallArgs& a) {
  const Value& other = OneArg("sameas", a);
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined:
      return v.shared() == other.shared();
    case Value::Kind::kBool:
      return v.as_bool() == other.as_bool();
    case Value::Kind::kInt:  // CPython caches small ints
      return v.as_int() == other.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    default:
      return v.shared() == other.shared();
  }
}
bool TestEscaped(Interpreter&, const Value&, CallArgs& a) {
  NoArgs("escaped", a);
  return false;
}
bool TestFilter(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("filter", a);
  return v.is_string() && LookupFilter(v.str()) != nullptr;
}
bool TestTest(Interpreter&, const Value& v, CallArgs& a) {
  NoArgs("test", a);
  return v.is_string() && LookupTest(v.str()) != nullptr;
}

}  // namespace

TestFn LookupTest(std::string_view name) {
  static constexpr std::pair<std::string_view, TestFn> kTests[] = {
      {"defined", TestDefined},
      {"undefined", TestUndefined},
      {"none", TestNone},
      {"boolean", TestBoolean},
      {"true", TestTrue},
      {"false", TestFalse},
      {"integer", TestInteger},
      {"float", TestFloat},
      {"number", TestNumber},
      {"string", TestString},
      {"mapping", TestMapping},
      {"iterable", TestIterable},
      {"sequence", TestSequence},
      {"callable", TestCallable},
      {"lower", TestLower},
      {"upper", TestUpper},
      {"odd", TestOdd},
      {"even", TestEven},
      {"divisibleby", TestDivisibleBy},
      {"eq", TestEq},
      {"equalto", TestEq},
      {"==", TestEq},
      {"ne", TestNe},
      {"!=", TestNe},
      {"lt", TestLt},
      {"lessthan", TestLt},
      {"<", TestLt},
      {"le", TestLe},
      {"<=", TestLe},
      {"gt", TestGt},
      {"greaterthan", TestGt},
      {">", TestGt},
      {"ge", TestGe},
      {">=", TestGe},
      {"in", TestIn},
      {"sameas", TestSameAs},
      {"escaped", TestEscaped},
      {"filter", TestFilter},
      {"test", TestTest},
  };
  for (const auto& [test_name, fn] : kTests)
    if (test_name == name) return fn;
  return nullptr;
}

}  // namespace prefixd::jinja
