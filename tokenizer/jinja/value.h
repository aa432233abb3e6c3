// tokenizer/jinja/value.h — the values a template computes with, as Python sees them:
// undefined, None, bool, int (int64), float, str (UTF-8), list/tuple, dict (insertion
// ordered), and objects (callables, namespaces, the loop variable).
//
// Strings, lists and dicts are immutable and shared (copying a Value copies a pointer), as
// the sandbox transformers uses forbids mutating them. Only a namespace is mutable, and it
// may hold no object (namespace, macro, loop, function), not even inside a list: so no
// value graph has a cycle or an unbounded chain, and destroying one cannot exhaust the stack.
#ifndef PREFIXD_TOKENIZER_JINJA_VALUE_H_
#define PREFIXD_TOKENIZER_JINJA_VALUE_H_

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace prefixd::jinja {

// An error inside the interpreter, thrown and turned into a Status at Template's edge.
// `kind` is Python's exception class name ("TypeError", "UndefinedError", ...).
class Error : public std::exception {
 public:
  Error(absl::StatusCode code, const char* kind, std::string message)
      : code(code), kind(kind), message(std::move(message)) {}
  const char* what() const noexcept override { return message.c_str(); }

  absl::StatusCode code;
  const char* kind;
  std::string message;
  int line = 0;  // 0 until the innermost node that knows its line fills it in
  int column = 0;
};

// Concatenates strings, string_views, characters and integers (absl::StrCat's AlphaNum does
// not take std::string_view in the Abseil Debian ships).
namespace internal_cat {
inline void Add(std::string* out, std::string_view s) { out->append(s); }
inline void Add(std::string* out, const char* s) { out->append(s); }
inline void Add(std::string* out, const std::string& s) { out->append(s); }
inline void Add(std::string* out, char c) { out->push_back(c); }
template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, char> &&
                                           !std::is_same_v<T, bool>,
                                       int> = 0>
void Add(std::string* out, T v) {
  out->append(std::to_string(v));
}
}  // namespace internal_cat
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (internal_cat::Add(&out, args), ...);
  return out;
}
template <typename... Args>
void CatTo(std::string* out, const Args&... args) {
  (internal_cat::Add(out, args), ...);
}

[[noreturn]] void Fail(const char* kind, std::string message);
[[noreturn]] void FailLimit(std::string message);  // RESOURCE_EXHAUSTED

// Lists and dicts nest at most this deep (JSON input included).
inline constexpr int kMaxNesting = 512;

// Deep operations on values (==, <, repr, tojson) charge their work to the render running
// on this thread, so that one of them on a huge value cannot outlast RenderLimits: each
// element visited is a step, and text they build may not pass `max_bytes`. Installed for
// the duration of a render by the interpreter; without one nothing is charged.
class WorkMeter {
 public:
  WorkMeter(int64_t* steps, int64_t max_steps, size_t max_bytes);
  ~WorkMeter();
  WorkMeter(const WorkMeter&) = delete;
  WorkMeter& operator=(const WorkMeter&) = delete;

  // Adds `units` steps to the render on this thread; RESOURCE_EXHAUSTED past its limit.
  static void Charge(int64_t units);
  // Fails when text being built on this thread has grown past the render's limit.
  static void CheckBytes(size_t size);

 private:
  int64_t* steps_;
  int64_t max_steps_;
  size_t max_bytes_;
  WorkMeter* previous_;
};

class Value;
class Object;
class Interpreter;
struct ListData;
struct DictData;

// What a list-like value is, in Python: list, tuple, an iterator (generator,
// list_reverseiterator: always true, no len(), no subscript) or a dict view.
enum class SeqKind : uint8_t {
  kList,
  kTuple,
  kGenerator,
  kReverseIterator,
  kDictItems,
  kDictKeys,
  kDictValues
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kObject
  };

  Value() : kind_(Kind::kUndefined), i_(0) {}  // undefined, no hint
  static Value None() { return Value(Kind::kNone); }
  static Value Bool(bool b) {
    Value v(Kind::kBool);
    v.b_ = b;
    return v;
  }
  static Value Int(int64_t i) {
    Value v(Kind::kInt);
    v.i_ = i;
    return v;
  }
  static Value Float(double f) {
    Value v(Kind::kFloat);
    v.f_ = f;
    return v;
  }
  // Strings are created mutable (never const objects), so that a Value that is the only
  // owner of its string may append to it in place (the interpreter does, for a + b + c).
  static Value String(std::string s);
  static Value String(std::string_view s) { return String(std::string(s)); }
  static Value String(const char* s) { return String(std::string(s)); }
  static Value List(std::vector<Value> items, SeqKind kind = SeqKind::kList);
  static Value Dict(std::shared_ptr<const DictData> dict);
  static Value FromObject(std::shared_ptr<Object> object);
  // An undefined value whose use fails with `message` (UndefinedError, or SecurityError
  // when `security` is set).
  static Value Undefined(std::string message, bool security = false);
  // jinja2's undefined for a missing attribute or item of `object`: "'dict object' has no
  // attribute 'x'" (or "list object has no element 5"), formatted only when used.
  static Value Missing(const Value& object, Value key, bool element);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const {  // int, float or bool, as numbers.Number
    return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool;
  }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_object() const { return kind_ == Kind::kObject; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }  // int or bool
  double as_float() const { return f_; }
  double AsDouble() const {  // a number as a double
    return kind_ == Kind::kFloat  ? f_
           : kind_ == Kind::kBool ? (b_ ? 1.0 : 0.0)
                                  : static_cast<double>(i_);
  }
  int64_t AsInt() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }  // int or bool
  const std::string& str() const { return *static_cast<const std::string*>(ptr_.get()); }
  const std::shared_ptr<const void>& shared() const { return ptr_; }
  const ListData& list() const { return *static_cast<const ListData*>(ptr_.get()); }
  const DictData& dict() const { return *static_cast<const DictData*>(ptr_.get()); }
  Object* object() const { return static_cast<Object*>(const_cast<void*>(ptr_.get())); }
  std::shared_ptr<Object> shared_object() const {
    return std::static_pointer_cast<Object>(std::const_pointer_cast<void>(ptr_));
  }
  // The hint of an undefined value ("'x' is undefined"); empty when it has none.
  std::string undefined_message() const;
  bool undefined_is_security() const;

  // Nesting depth (0 for scalars) and whether it holds an object somewhere.
  int depth() const;
  bool contains_object() const;

 private:
  explicit Value(Kind kind) : kind_(kind), i_(0) {}

  Kind kind_;
  union {
    bool b_;
    int64_t i_;
    double f_;
  };
  std::shared_ptr<const void> ptr_;  // string, ListData, DictData, Object or undefined hint
};

// Arguments of a call: positional, then keyword (names borrowed from the AST).
struct CallArgs {
  absl::InlinedVector<Value, 4> positional;
  absl::InlinedVector<std::pair<std::string_view, Value>, 2> kwargs;
};

struct ListData {
  std::vector<Value> items;
  SeqKind kind = SeqKind::kList;
  int depth = 1;
  bool contains_object = false;
};

// Insertion-ordered; keys are unique by Python equality. Immutable once built.
struct DictData {
  std::vector<std::pair<Value, Value>> entries;
  int depth = 1;
  bool contains_object = false;

  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  // Builds: sets `key` (replacing an equal key's value in place) or appends it.
  void Set(Value key, Value value);
  // Builds: appends a key known not to be present yet.
  void Append(Value key, Value value) { entries.emplace_back(std::move(key), std::move(value)); }
  // After the last Set: computes depth and the index.
  void Finish();

 private:
  absl::flat_hash_map<std::string_view, uint32_t> index_;  // string keys, when large
};

// Callables, namespaces and the loop variable.
class Object {
 public:
  virtual ~Object() = default;
  // Python's type name, for messages ("Namespace", "LoopContext", "function", "Macro").
  virtual std::string_view TypeName() const = 0;
  // jinja2's object_type_repr ("jinja2.utils.Namespace object").
  virtual std::string ObjectTypeRepr() const { return std::string(TypeName()) + " object"; }
  virtual bool IsCallable() const { return false; }
  virtual Value Call(Interpreter& interp, CallArgs& args);
  // The attribute, or false when there is none.
  virtual bool GetAttr(std::string_view name, Value* out) const;
  virtual void AppendRepr(std::string* out) const;
};

// A Python truth value.
bool Truthy(const Value& v);
// type(v).__name__: "str", "int", "NoneType", "list", "dict", "Undefined", ...
std::string_view PyTypeName(const Value& v);
// jinja2's object_type_repr: "None", "dict object", "str object", ...
std::string ObjectTypeRepr(const Value& v);

// str(v) (undefined: ""), appended.
void AppendStr(const Value& v, std::string* out);
std::string ToStr(const Value& v);
// For printers (repr, tojson): fails past the depth a value can reach (lists and dicts
// nest kMaxNesting deep, a namespace adds a level).
void CheckPrintDepth(int depth);
// repr(v), appended.
void AppendRepr(const Value& v, std::string* out);
std::string Repr(const Value& v);

// Python ==.
bool Equal(const Value& a, const Value& b);
// Python's ordering operators; TypeError ("'<' not supported between instances of 'int'
// and 'str'") for unorderable types, UndefinedError for an undefined operand.
enum class OrderOp { kLt, kLe, kGt, kGe };
bool Ordered(const Value& a, const Value& b, OrderOp op);
inline bool Less(const Value& a, const Value& b) { return Ordered(a, b, OrderOp::kLt); }
// Fails the way using an undefined value fails (its hint, or "'x' is undefined").
[[noreturn]] void FailUndefined(const Value& undefined);
// Whether a dict key may be this value (str, int, float, bool, None, tuple of those).
bool IsHashable(const Value& v);

// A JSON value as a template value (objects keep their key order).
Value FromJson(const nlohmann::ordered_json& json);

// json.dumps(v, ensure_ascii=False, indent=..., separators=..., sort_keys=...).
struct JsonFormat {
  bool indent = false;
  std::string indent_unit;  // with indent: the text of one level
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;    // escape non-ASCII as \uXXXX
  size_t max_bytes = SIZE_MAX;  // RESOURCE_EXHAUSTED past this
};
void AppendJson(const Value& v, const JsonFormat& format, std::string* out);

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_VALUE_H_
