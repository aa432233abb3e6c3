// Methods of str/dict/list, tests, globals, and the helpers builtins share. Filters are in
// filters.cc.
#include "tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "tokenizer/jinja/format.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/runtime.h"

namespace prefixd::jinja {

// ---- shared helpers ----

ArgReader::ArgReader(std::string_view function, CallArgs& args,
                     std::initializer_list<const char*> params)
    : bound_(params.size(), nullptr) {
  if (args.positional.size() > params.size()) {
    Fail("TypeError", Cat(function, "() takes at most ", params.size(), " argument(s) (",
                          args.positional.size(), " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) bound_[i] = &args.positional[i];
  for (const auto& [name, value] : args.kwargs) {
    size_t i = 0;
    for (const char* param : params) {
      if (name == param) break;
      ++i;
    }
    if (i == params.size()) {
      Fail("TypeError", Cat(function, "() got an unexpected keyword argument '", name, "'"));
    }
    if (bound_[i] != nullptr) {
      Fail("TypeError", Cat(function, "() got multiple values for argument '", name, "'"));
    }
    bound_[i] = &value;
  }
}

int64_t RequireInt(const Value& v, std::string_view what) {
  if (v.is_int() || v.is_bool()) return v.AsInt();
  if (v.is_undefined()) FailUndefined(v);
  Fail("TypeError", Cat(what, " must be an integer, not '", PyTypeName(v), "'"));
}

const std::string& RequireString(const Value& v, std::string_view what) {
  if (v.is_string()) return v.str();
  if (v.is_undefined()) FailUndefined(v);
  Fail("TypeError", Cat(what, " must be a string, not '", PyTypeName(v), "'"));
}

std::vector<Value> StringChars(const std::string& s) {
  std::vector<Value> out;
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    DecodeUtf8(s, &i);
    out.push_back(Value::String(s.substr(start, i - start)));
  }
  return out;
}

std::vector<Value> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kList:
    case Value::Kind::kDict:
    case Value::Kind::kString:
      WorkMeter::Charge(v.is_list()   ? static_cast<int64_t>(v.list().items.size())
                        : v.is_dict() ? static_cast<int64_t>(v.dict().entries.size())
                                      : static_cast<int64_t>(v.str().size()));
      break;
    default:
      break;
  }
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.list().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().entries.size());
      for (const auto& [key, value] : v.dict().entries) keys.push_back(key);
      return keys;
    }
    case Value::Kind::kString:
      return StringChars(v.str());
    default:
      Fail("TypeError", Cat("'", PyTypeName(v), "' object is not iterable"));
  }
}

namespace {

Value Tuple(std::vector<Value> items) { return Value::List(std::move(items), SeqKind::kTuple); }

Value Str(std::string s) { return Value::String(std::move(s)); }

// str.startswith / endswith: a prefix or a tuple of them.
bool AffixMatch(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    const std::string& p = RequireString(a, prefix ? "startswith arg" : "endswith arg");
    if (p.size() > s.size()) return false;
    return prefix ? s.compare(0, p.size(), p) == 0
                  : s.compare(s.size() - p.size(), p.size(), p) == 0;
  };
  if (affix.is_list() && affix.list().kind == SeqKind::kTuple) {
    for (const Value& a : affix.list().items)
      if (one(a)) return true;
    return false;
  }
  return one(affix);
}

// Code point offset <-> byte offset for find()/index() results.
int64_t CodePointIndex(const std::string& s, size_t byte_offset) {
  return static_cast<int64_t>(CodePointCount(std::string_view(s).substr(0, byte_offset)));
}

// A [start, end) code point window of s as bytes, for find/count/startswith ranges.
std::pair<size_t, size_t> ByteWindow(const std::string& s, const Value* start, const Value* end) {
  std::vector<size_t> offsets = CodePointOffsets(s);
  int64_t n = static_cast<int64_t>(offsets.size()) - 1;
  auto clamp = [&](const Value* v, int64_t fallback) {
    if (v == nullptr || v->is_none()) return fallback;
    int64_t i = RequireInt(*v, "slice index");
    if (i < 0) i = std::max<int64_t>(0, i + n);
    return std::min(i, n);
  };
  int64_t b = clamp(start, 0), e = clamp(end, n);
  if (e < b) e = b;
  return {offsets[b], offsets[e]};
}

Value PadString(const std::string& s, int64_t width, const std::string& fill, int align) {
  int64_t len = static_cast<int64_t>(CodePointCount(s));
  if (width <= len) return Str(s);
  int64_t pad = width - len;
  int64_t left = align < 0 ? 0 : align > 0 ? pad : pad / 2 + (pad & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < pad - left; ++i) out += fill;
  return Str(std::move(out));
}

Value StringMethod(Interpreter& interp, const std::string& s, std::string_view name,
                   CallArgs& args) {
  interp.Step(static_cast<int64_t>(s.size() >> 8));  // every method scans the string
  std::string fn = Cat("str.", name);
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    ArgReader a(fn, args, {"chars"});
    const Value* chars = a.Get(0);
    const std::string* set = nullptr;
    if (chars != nullptr && !chars->is_none()) set = &RequireString(*chars, "strip arg");
    return Str(std::string(PyStrip(s, set, name != "rstrip", name != "lstrip")));
  }
  if (name == "split" || name == "rsplit") {
    ArgReader a(fn, args, {"sep", "maxsplit"});
    const std::string* sep = nullptr;
    if (a.Get(0) != nullptr && !a.Get(0)->is_none()) {
      sep = &RequireString(*a.Get(0), "sep");
      if (sep->empty()) Fail("ValueError", "empty separator");
    }
    int64_t maxsplit = a.Get(1) ? RequireInt(*a.Get(1), "maxsplit") : -1;
    std::vector<std::string> parts =
        name == "split" ? PySplit(s, sep, maxsplit) : PyRSplit(s, sep, maxsplit);
    interp.Step(static_cast<int64_t>(parts.size()));
    std::vector<Value> out;
    out.reserve(parts.size());
    for (std::string& p : parts) out.push_back(Str(std::move(p)));
    return Value::List(std::move(out));
  }
  if (name == "splitlines") {
    ArgReader a(fn, args, {"keepends"});
    std::vector<Value> out;
    for (std::string& p : PySplitLines(s, a.Get(0) && Truthy(*a.Get(0))))
      out.push_back(Str(std::move(p)));
    return Value::List(std::move(out));
  }
  if (name == "startswith" || name == "endswith") {
    ArgReader a(fn, args, {"prefix", "start", "end"});
    if (a.Get(0) == nullptr) Fail("TypeError", Cat(fn, "() takes at least 1 argument"));
    if (a.Get(1) == nullptr && a.Get(2) == nullptr)
      return Value::Bool(AffixMatch(s, *a.Get(0), name == "startswith"));
    auto [b, e] = ByteWindow(s, a.Get(1), a.Get(2));
    return Value::Bool(AffixMatch(s.substr(b, e - b), *a.Get(0), name == "startswith"));
  }
  if (name == "replace") {
    ArgReader a(fn, args, {"old", "new", "count"});
    if (a.Get(1) == nullptr) Fail("TypeError", "replace expected at least 2 arguments");
    int64_t count = a.Get(2) ? RequireInt(*a.Get(2), "count") : -1;
    std::string out = PyReplace(s, RequireString(*a.Get(0), "replace arg"),
                                RequireString(*a.Get(1), "replace arg"), count);
    interp.CheckSize(out.size());
    return Str(std::move(out));
  }
  if (name == "lower") return Str(PyLower(s));
  if (name == "casefold") {  // no final sigma: casefold() folds both sigmas to U+03C3
    std::string folded = PyLower(s);
    for (size_t at = 0; (at = folded.find("\xCF\x82", at)) != std::string::npos; at += 2)
      folded[at + 1] = '\x83';
    return Str(std::move(folded));
  }
  if (name == "upper") return Str(PyUpper(s));
  if (name == "title") return Str(PyTitle(s));
  if (name == "capitalize") return Str(PyCapitalize(s));
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    ArgReader a(fn, args, {"sub", "start", "end"});
    if (a.Get(0) == nullptr) Fail("TypeError", Cat(fn, "() takes at least 1 argument"));
    const std::string& sub = RequireString(*a.Get(0), "substring");
    auto [b, e] = ByteWindow(s, a.Get(1), a.Get(2));
    std::string_view window = std::string_view(s).substr(b, e - b);
    if (name == "count") {
      if (sub.empty()) return Value::Int(static_cast<int64_t>(CodePointCount(window)) + 1);
      int64_t n = 0;
      for (size_t p = window.find(sub); p != std::string_view::npos;
           p = window.find(sub, p + sub.size()))
        ++n;
      return Value::Int(n);
    }
    bool reverse = name[0] == 'r';
    size_t p = reverse ? window.rfind(sub) : window.find(sub);
    if (p == std::string_view::npos) {
      if (name == "index" || name == "rindex") Fail("ValueError", "substring not found");
      return Value::Int(-1);
    }
    return Value::Int(CodePointIndex(s, b + p));
  }
  if (name == "join") {
    ArgReader a(fn, args, {"iterable"});
    if (a.Get(0) == nullptr) Fail("TypeError", "join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const Value& item : Iterate(*a.Get(0))) {
      if (!item.is_string()) {
        Fail("TypeError",
             Cat("sequence item: expected str instance, ", PyTypeName(item), " found"));
      }
      if (!first) out += s;
      first = false;
      out += item.str();
      interp.CheckSize(out.size());
    }
    return Str(std::move(out));
  }
  if (name == "format") return Str(PyStrFormat(interp, s, args));
  if (name == "center" || name == "ljust" || name == "rjust") {
    ArgReader a(fn, args, {"width", "fillchar"});
    if (a.Get(0) == nullptr) Fail("TypeError", Cat(fn, "() takes at least 1 argument"));
    int64_t width = RequireInt(*a.Get(0), "width");
    interp.CheckSize(static_cast<size_t>(std::max<int64_t>(0, width)));
    std::string fill = a.Get(1) ? RequireString(*a.Get(1), "fillchar") : " ";
    if (CodePointCount(fill) != 1)
      Fail("TypeError", "The fill character must be exactly one character long");
    return PadString(s, width, fill, name == "center" ? 0 : name == "ljust" ? -1 : 1);
  }
  if (name == "zfill") {
    ArgReader a(fn, args, {"width"});
    int64_t width = a.Get(0) ? RequireInt(*a.Get(0), "width") : 0;
    interp.CheckSize(static_cast<size_t>(std::max<int64_t>(0, width)));
    int64_t len = static_cast<int64_t>(CodePointCount(s));
    if (width <= len) return Str(s);
    size_t sign = !s.empty() && (s[0] == '+' || s[0] == '-') ? 1 : 0;
    return Str(s.substr(0, sign) + std::string(width - len, '0') + s.substr(sign));
  }
  if (name == "partition" || name == "rpartition") {
    ArgReader a(fn, args, {"sep"});
    if (a.Get(0) == nullptr) Fail("TypeError", Cat(fn, "() takes exactly one argument"));
    const std::string& sep = RequireString(*a.Get(0), "sep");
    if (sep.empty()) Fail("ValueError", "empty separator");
    size_t p = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (p == std::string::npos) {
      return name == "partition" ? Tuple({Str(s), Str(""), Str("")})
                                 : Tuple({Str(""), Str(""), Str(s)});
    }
    return Tuple({Str(s.substr(0, p)), Str(sep), Str(s.substr(p + sep.size()))});
  }
  if (name == "removeprefix" || name == "removesuffix") {
    ArgReader a(fn, args, {"affix"});
    if (a.Get(0) == nullptr) Fail("TypeError", Cat(fn, "() takes exactly one argument"));
    const std::string& affix = RequireString(*a.Get(0), "affix");
    if (name == "removeprefix")
      return Str(s.compare(0, affix.size(), affix) == 0 ? s.substr(affix.size()) : s);
    if (affix.size() <= s.size() && s.compare(s.size() - affix.size(), affix.size(), affix) == 0)
      return Str(s.substr(0, s.size() - affix.size()));
    return Str(s);
  }
  // Character class predicates.
  ArgReader none(fn, args, {});
  if (name == "islower") return Value::Bool(PyIsLower(s));
  if (name == "isupper") return Value::Bool(PyIsUpper(s));
  bool all = !s.empty();
  for (size_t i = 0; i < s.size() && all;) {
    char32_t c = DecodeUtf8(s, &i);
    if (name == "isspace") {
      all = IsPySpace(c);
    } else if (name == "isdigit" || name == "isnumeric" || name == "isdecimal") {
      all = IsPyDigit(c);
    } else if (name == "isalpha") {
      all = IsPyAlpha(c);
    } else {  // isalnum
      all = IsPyAlpha(c) || IsPyDigit(c);
    }
  }
  return Value::Bool(all);
}

Value DictMethod(Interpreter&, const Value& receiver, std::string_view name, CallArgs& args) {
  const DictData& dict = receiver.dict();
  std::string fn = Cat("dict.", name);
  if (name == "get") {
    ArgReader a(fn, args, {"key", "default"});
    if (a.Get(0) == nullptr) Fail("TypeError", "get expected at least 1 argument, got 0");
    if (!IsHashable(*a.Get(0)))
      Fail("TypeError", Cat("unhashable type: '", PyTypeName(*a.Get(0)), "'"));
    if (const Value* v = dict.Find(*a.Get(0))) return *v;
    return a.Get(1) ? *a.Get(1) : Value::None();
  }
  ArgReader none(fn, args, {});
  if (name == "copy") return receiver;
  WorkMeter::Charge(static_cast<int64_t>(dict.entries.size()));
  std::vector<Value> out;
  out.reserve(dict.entries.size());
  for (const auto& [key, value] : dict.entries) {
    if (name == "keys") {
      out.push_back(key);
    } else if (name == "values") {
      out.push_back(value);
    } else {
      out.push_back(Tuple({key, value}));
    }
  }
  SeqKind kind = name == "keys"     ? SeqKind::kDictKeys
                 : name == "values" ? SeqKind::kDictValues
                                    : SeqKind::kDictItems;
  return Value::List(std::move(out), kind);
}

Value ListMethod(Interpreter&, const Value& receiver, std::string_view name, CallArgs& args) {
  const auto& items = receiver.list().items;
  std::string fn = Cat(PyTypeName(receiver), ".", name);
  if (name == "copy") {
    ArgReader none(fn, args, {});
    return Value::List(items, SeqKind::kList);
  }
  ArgReader a(fn, args, {"value", "start", "stop"});
  if (a.Get(0) == nullptr) Fail("TypeError", Cat(fn, "() takes at least 1 argument"));
  if (name == "count") {
    int64_t n = 0;
    for (const Value& v : items) n += Equal(v, *a.Get(0)) ? 1 : 0;
    return Value::Int(n);
  }
  for (size_t i = 0; i < items.size(); ++i)
    if (Equal(items[i], *a.Get(0))) return Value::Int(static_cast<int64_t>(i));
  Fail("ValueError", Cat(Repr(*a.Get(0)), " is not in list"));
}

constexpr std::string_view kStringMethods[] = {
    "strip",        "lstrip",  "rstrip",  "split",   "rsplit",    "splitlines", "startswith",
    "endswith",     "replace", "lower",   "upper",   "title",     "capitalize", "casefold",
    "find",         "rfind",   "index",   "rindex",  "count",     "join",       "format",
    "center",       "ljust",   "rjust",   "zfill",   "partition", "rpartition", "removeprefix",
    "removesuffix", "islower", "isupper", "isspace", "isdigit",   "isnumeric",  "isdecimal",
    "isalpha",      "isalnum"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get", "copy"};
constexpr std::string_view kDictUnsafe[] = {"update", "pop", "popitem", "setdefault", "clear"};
constexpr std::string_view kListMethods[] = {"count", "index", "copy"};
constexpr std::string_view kListUnsafe[] = {"append", "extend",  "insert", "pop",
                                            "remove", "reverse", "sort",   "clear"};

template <size_t N>
bool InTable(const std::string_view (&table)[N], std::string_view name) {
  for (std::string_view entry : table)
    if (entry == name) return true;
  return false;
}

bool IsPlainSeq(const Value& v) {
  return v.is_list() && (v.list().kind == SeqKind::kList || v.list().kind == SeqKind::kTuple);
}

class BoundMethodObject final : public Object {
 public:
  BoundMethodObject(Value receiver, std::string name)
      : receiver_(std::move(receiver)), name_(std::move(name)) {}
  std::string_view TypeName() const override { return "builtin_function_or_method"; }
  bool IsCallable() const override { return true; }
  Value Call(Interpreter& interp, CallArgs& args) override {
    return CallMethod(interp, receiver_, name_, args);
  }
  void AppendRepr(std::string* out) const override {
    CatTo(out, "<built-in method ", name_, " of ", PyTypeName(receiver_), " object>");
  }

 private:
  Value receiver_;
  std::string name_;
};

}  // namespace

bool HasMethod(const Value& receiver, std::string_view name) {
  if (receiver.is_string()) return InTable(kStringMethods, name);
  if (receiver.is_dict()) return InTable(kDictMethods, name);
  if (IsPlainSeq(receiver)) {
    if (name == "copy") return receiver.list().kind == SeqKind::kList;
    return InTable(kListMethods, name);
  }
  return false;
}

bool IsUnsafeMethod(const Value& receiver, std::string_view name) {
  if (receiver.is_dict()) return InTable(kDictUnsafe, name);
  if (receiver.is_list() && receiver.list().kind == SeqKind::kList)
    return InTable(kListUnsafe, name);
  return false;
}

Value CallMethod(Interpreter& interp, const Value& receiver, std::string_view name,
                 CallArgs& args) {
  interp.Step();
  if (receiver.is_string()) return StringMethod(interp, receiver.str(), name, args);
  if (receiver.is_dict()) return DictMethod(interp, receiver, name, args);
  return ListMethod(interp, receiver, name, args);
}

Value BoundMethod(const Value& receiver, std::string_view name) {
  return Value::FromObject(std::make_shared<BoundMethodObject>(receiver, std::string(name)));
}

// ---- globals ----

namespace {

using GlobalFn = Value (*)(Interpreter& interp, CallArgs& args);

class BuiltinFunction final : public Object {
 public:
  BuiltinFunction(std::string_view name, GlobalFn fn) : name_(name), fn_(fn) {}
  std::string_view TypeName() const override { return "function"; }
  bool IsCallable() const override { return true; }
  Value Call(Interpreter& interp, CallArgs& args) override { return fn_(interp, args); }
  void AppendRepr(std::string* out) const override { CatTo(out, "<function ", name_, ">"); }

 private:
  std::string_view name_;
  GlobalFn fn_;
};

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

Value RangeFn(Interpreter& interp, CallArgs& args) {
  if (!args.kwargs.empty()) Fail("TypeError", "range() takes no keyword arguments");
  size_t n = args.positional.size();
  if (n == 0 || n > 3) Fail("TypeError", Cat("range expected 1 to 3 arguments, got ", n));
  int64_t start = 0, stop, step = 1;
  if (n == 1) {
    stop = RequireInt(args.positional[0], "range() argument");
  } else {
    start = RequireInt(args.positional[0], "range() argument");
    stop = RequireInt(args.positional[1], "range() argument");
    if (n == 3) step = RequireInt(args.positional[2], "range() argument");
  }
  if (step == 0) Fail("ValueError", "range() arg 3 must not be zero");
  // The length in 128 bits: start, stop and step may be anywhere in int64.
  __int128 span = static_cast<__int128>(stop) - start;
  __int128 magnitude = step > 0 ? step : -static_cast<__int128>(step);
  int64_t length = 0;
  if ((span > 0 && step > 0) || (span < 0 && step < 0)) {
    __int128 n = ((span > 0 ? span : -span) + magnitude - 1) / magnitude;
    length = n > kMaxRange ? kMaxRange + 1 : static_cast<int64_t>(n);
  }
  if (length > kMaxRange) {
    Fail("OverflowError",
         "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  interp.Step(length);
  std::vector<Value> out;
  out.reserve(length);
  int64_t value = start;
  for (int64_t i = 0; i < length; ++i) {
    out.push_back(Value::Int(value));
    if (i + 1 < length) value += step;  // stays within [start, stop): no overflow
  }
  return Value::List(std::move(out));
}

// dict(*args, **kwargs) as key/value pairs.
std::shared_ptr<DictData> DictFromArgs(std::string_view fn, CallArgs& args) {
  auto dict = std::make_shared<DictData>();
  if (args.positional.size() > 1) {
    Fail("TypeError", Cat(fn, " expected at most 1 argument, got ", args.positional.size()));
  }
  if (args.positional.size() == 1) {
    const Value& source = args.positional[0];
    if (source.is_dict()) {
      for (const auto& [k, v] : source.dict().entries) dict->Set(k, v);
    } else {
      for (const Value& pair : Iterate(source)) {
        std::vector<Value> kv = Iterate(pair);
        if (kv.size() != 2) {
          Fail("ValueError",
               Cat("dictionary update sequence element has length ", kv.size(), "; 2 is required"));
        }
        if (!IsHashable(kv[0]))
          Fail("TypeError", Cat("unhashable type: '", PyTypeName(kv[0]), "'"));
        dict->Set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [name, value] : args.kwargs) dict->Set(Value::String(name), value);
  dict->Finish();
  return dict;
}

Value DictFn(Interpreter&, CallArgs& args) { return Value::Dict(DictFromArgs("dict", args)); }

Value NamespaceFn(Interpreter&, CallArgs& args) {
  auto dict = DictFromArgs("namespace", args);
  auto ns = std::make_shared<NamespaceObject>();
  for (const auto& [key, value] : dict->entries) {
    if (!key.is_string()) Fail("TypeError", "namespace attribute names must be strings");
    ns->SetAttr(key.str(), value);
  }
  return Value::FromObject(std::move(ns));
}

Value RaiseExceptionFn(Interpreter&, CallArgs& args) {
  ArgReader a("raise_exception", args, {"message"});
  if (a.Get(0) == nullptr)
    Fail("TypeError", "raise_exception() missing 1 required positional argument: 'message'");
  throw Error(absl::StatusCode::kInvalidArgument, "TemplateError", ToStr(*a.Get(0)));
}

Value StrftimeNowFn(Interpreter& interp, CallArgs& args) {
  ArgReader a("strftime_now", args, {"format"});
  if (a.Get(0) == nullptr)
    Fail("TypeError", "strftime_now() missing 1 required positional argument: 'format'");
  const std::string& format = RequireString(*a.Get(0), "format");
  if (interp.options().strftime_now) {
    std::string out = interp.options().strftime_now(format);
    interp.CheckSize(out.size());
    return Value::String(std::move(out));
  }
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  if (format.empty()) return Value::String("");
  for (size_t size = 256; size <= (1u << 20); size *= 4) {
    std::string buf(size, '\0');
    size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &local);
    if (n > 0) {
      buf.resize(n);
      return Value::String(std::move(buf));
    }
  }
  return Value::String("");
}

const Value& GlobalValue(std::string_view name, GlobalFn fn) {
  // Leaked on purpose: shared by every render on every thread, never destroyed.
  return *new Value(Value::FromObject(std::make_shared<BuiltinFunction>(name, fn)));
}

}  // namespace

Value LookupGlobal(std::string_view name) {
  static const Value& range = GlobalValue("range", RangeFn);
  static const Value& dict = GlobalValue("dict", DictFn);
  static const Value& ns = GlobalValue("namespace", NamespaceFn);
  static const Value& raise = GlobalValue("raise_exception", RaiseExceptionFn);
  static const Value& strftime = GlobalValue("strftime_now", StrftimeNowFn);
  if (name == "range") return range;
  if (name == "dict") return dict;
  if (name == "namespace") return ns;
  if (name == "raise_exception") return raise;
  if (name == "strftime_now") return strftime;
  return Value();
}

}  // namespace prefixd::jinja
