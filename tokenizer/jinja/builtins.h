// tokenizer/jinja/builtins.h — what templates call by name: filters, tests, the methods of
// str/dict/list, and the globals (range, namespace, dict, raise_exception, strftime_now).
#ifndef PREFIXD_TOKENIZER_JINJA_BUILTINS_H_
#define PREFIXD_TOKENIZER_JINJA_BUILTINS_H_

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace prefixd::jinja {

// Null when jinja2 has no such filter / test. Filters jinja2 has but this interpreter does
// not implement resolve to a function that fails when called.
FilterFn LookupFilter(std::string_view name);
TestFn LookupTest(std::string_view name);

// Whether `receiver.name` is a method (str.strip, dict.items, ...), and calls it. A method
// the immutable sandbox forbids (list.append, dict.update) is no method here: getattr
// gives an undefined value that fails with SecurityError.
bool HasMethod(const Value& receiver, std::string_view name);
bool IsUnsafeMethod(const Value& receiver, std::string_view name);
Value CallMethod(Interpreter& interp, const Value& receiver, std::string_view name, CallArgs& args);
// `receiver.name` as a bound method value.
Value BoundMethod(const Value& receiver, std::string_view name);

// The global functions; the Value is undefined when `name` is none of them.
Value LookupGlobal(std::string_view name);

// Binds a builtin's arguments as Python binds `def f(a, b=..., *, c=...)`.
class ArgReader {
 public:
  // `function` names the builtin in errors; `params` are its parameter names in order.
  ArgReader(std::string_view function, CallArgs& args, std::initializer_list<const char*> params);
  // The argument for parameter i, or null when not given.
  const Value* Get(size_t i) const { return i < bound_.size() ? bound_[i] : nullptr; }
  const Value& GetOr(size_t i, const Value& fallback) const {
    const Value* v = Get(i);
    return v ? *v : fallback;
  }

 private:
  absl::InlinedVector<const Value*, 6> bound_;
};

// Helpers builtins share.
int64_t RequireInt(const Value& v, std::string_view what);
const std::string& RequireString(const Value& v, std::string_view what);
// list(v): items of a list/tuple/dict view/iterator, keys of a dict, characters of a str;
// TypeError for what Python cannot iterate; nothing for undefined.
std::vector<Value> Iterate(const Value& v);
// Characters of a string as one-character string Values.
std::vector<Value> StringChars(const std::string& s);

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_BUILTINS_H_
