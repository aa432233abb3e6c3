// jinja2's builtin filters (jinja2/filters.py, 3.1) and transformers' tojson.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/format.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/runtime.h"

namespace prefixd::jinja {
namespace {

Value Str(std::string s) { return Value::String(std::move(s)); }
Value Generator(std::vector<Value> items) {
  return Value::List(std::move(items), SeqKind::kGenerator);
}

// Filters without parameters still reject arguments, as Python would.
void NoArgs(std::string_view filter, CallArgs& args) { ArgReader(filter, args, {}); }

Value IgnoreCase(const Value& v) { return v.is_string() ? Str(PyLower(v.str())) : v; }

// jinja2's make_attrgetter: "a.b.0" walks getitem(item, "a"), "b", 0.
Value AttrPath(Interpreter& interp, Value item, const Value& attribute,
               const Value* default_value = nullptr) {
  if (attribute.is_none() || attribute.is_undefined()) return item;
  if (!attribute.is_string()) {
    item = interp.GetItem(item, attribute);
  } else {
    std::string_view path = attribute.str();
    size_t start = 0;
    while (true) {
      size_t dot = path.find('.', start);
      std::string_view part = path.substr(start, dot == std::string_view::npos ? dot : dot - start);
      bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string_view::npos;
      item = interp.GetItem(item,
                            digits && part.size() < 18
                                ? Value::Int(std::strtoll(std::string(part).c_str(), nullptr, 10))
                                : Str(std::string(part)));
      if (default_value != nullptr && item.is_undefined()) item = *default_value;
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }
  return item;
}

int64_t Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      WorkMeter::Charge(static_cast<int64_t>(v.str().size() >> 8));
      return static_cast<int64_t>(CodePointCount(v.str()));
    case Value::Kind::kList:
      if (v.list().kind == SeqKind::kGenerator || v.list().kind == SeqKind::kReverseIterator) break;
      return static_cast<int64_t>(v.list().items.size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.dict().entries.size());
    default:
      break;
  }
  Fail("TypeError", Cat("object of type '", PyTypeName(v), "' has no len()"));
}

Value FilterLength(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("length", args);
  return Value::Int(Length(v));
}

Value FilterString(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("string", args);
  return v.is_string() ? v : Str(ToStr(v));
}

Value FilterLower(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("lower", args);
  return Str(PyLower(ToStr(v)));
}

Value FilterUpper(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("upper", args);
  return Str(PyUpper(ToStr(v)));
}

Value FilterCapitalize(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("capitalize", args);
  return Str(PyCapitalize(ToStr(v)));
}

// jinja2's title: upper-cases the first letter of each word, words starting after
// whitespace or one of - ( { [ <.
Value FilterTitle(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("title", args);
  std::string s = ToStr(v);
  std::string out;
  bool word_start = true;
  std::string tail;  // the rest of the word, lowered as one string as jinja2 does (final sigma)
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = DecodeUtf8(s, &i);
    std::string_view piece(s.data() + start, i - start);
    bool separator = IsPySpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (separator) {
      out += PyLower(tail);
      tail.clear();
      out.append(piece);
      word_start = true;
    } else if (word_start) {
      out += PyUpper(piece);
      word_start = false;
    } else {
      tail.append(piece);
    }
  }
  out += PyLower(tail);
  return Str(std::move(out));
}

Value FilterTrim(Interpreter&, const Value& v, CallArgs& args) {
  ArgReader a("trim", args, {"chars"});
  const std::string* chars = nullptr;
  if (a.Get(0) && !a.Get(0)->is_none()) chars = &RequireString(*a.Get(0), "trim chars");
  std::string s = ToStr(v);
  return Str(std::string(PyStrip(s, chars, true, true)));
}

Value FilterSafe(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("safe", args);
  return v.is_string() ? v : Str(ToStr(v));
}

Value FilterEscape(Interpreter& interp, const Value& v, CallArgs& args) {
  NoArgs("escape", args);
  std::string s = ToStr(v);
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  interp.CheckSize(out.size());
  return Str(std::move(out));
}

Value FilterReplace(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("replace", args, {"old", "new", "count"});
  if (!a.Get(0) || !a.Get(1)) Fail("TypeError", "replace() needs the old and new strings");
  int64_t count = a.Get(2) && !a.Get(2)->is_none() ? RequireInt(*a.Get(2), "count") : -1;
  std::string out = PyReplace(ToStr(v), ToStr(*a.Get(0)), ToStr(*a.Get(1)), count);
  interp.CheckSize(out.size());
  return Str(std::move(out));
}

Value FilterDefault(Interpreter&, const Value& v, CallArgs& args) {
  ArgReader a("default", args, {"default_value", "boolean"});
  static const Value kEmpty = Str("");
  bool boolean = a.Get(1) && Truthy(*a.Get(1));
  if (v.is_undefined() || (boolean && !Truthy(v))) return a.GetOr(0, kEmpty);
  return v;
}

Value FilterFirst(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("first", args);
  if (v.is_string()) {
    if (v.str().empty()) return Value::Undefined("No first item, sequence was empty.");
    size_t i = 0;
    DecodeUtf8(v.str(), &i);
    return Str(v.str().substr(0, i));
  }
  if (v.is_dict()) {
    if (v.dict().entries.empty()) return Value::Undefined("No first item, sequence was empty.");
    return v.dict().entries.front().first;
  }
  if (v.is_undefined()) return Value::Undefined("No first item, sequence was empty.");
  if (!v.is_list()) Fail("TypeError", Cat("'", PyTypeName(v), "' object is not iterable"));
  if (v.list().items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return v.list().items.front();
}

Value FilterLast(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("last", args);
  if (v.is_list() &&
      (v.list().kind == SeqKind::kGenerator || v.list().kind == SeqKind::kReverseIterator)) {
    Fail("TypeError", Cat("'", PyTypeName(v), "' object is not reversible"));
  }
  std::vector<Value> items = Iterate(v);
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

Value FilterList(Interpreter& interp, const Value& v, CallArgs& args) {
  NoArgs("list", args);
  if (v.is_list() && v.list().kind == SeqKind::kList) return v;
  std::vector<Value> items = Iterate(v);
  interp.Step(static_cast<int64_t>(items.size()));
  return Value::List(std::move(items));
}

Value FilterItems(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("items", args);
  if (v.is_undefined()) return Generator({});
  if (!v.is_dict()) Fail("TypeError", "Can only get item pairs from a mapping.");
  std::vector<Value> out;
  out.reserve(v.dict().entries.size());
  for (const auto& [key, value] : v.dict().entries)
    out.push_back(Value::List({key, value}, SeqKind::kTuple));
  return Generator(std::move(out));
}

Value FilterJoin(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("join", args, {"d", "attribute"});
  std::string sep = a.Get(0) ? ToStr(*a.Get(0)) : "";
  std::string out;
  bool first = true;
  for (const Value& item : Iterate(v)) {
    if (!first) out += sep;
    first = false;
    AppendStr(a.Get(1) ? AttrPath(interp, item, *a.Get(1)) : item, &out);
    interp.CheckSize(out.size());
  }
  return Str(std::move(out));
}

Value FilterTojson(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonFormat format;
  format.max_bytes = interp.options().limits.max_output_bytes;
  format.ensure_ascii = a.Get(0) && Truthy(*a.Get(0));
  if (const Value* indent = a.Get(1); indent && !indent->is_none()) {
    format.indent = true;
    format.item_separator = ",";
    if (indent->is_string()) {
      format.indent_unit = indent->str();
    } else {
      int64_t n = RequireInt(*indent, "indent");
      format.indent_unit = std::string(static_cast<size_t>(std::clamp<int64_t>(n, 0, 1024)), ' ');
    }
  }
  if (const Value* separators = a.Get(2); separators && !separators->is_none()) {
    std::vector<Value> pair = Iterate(*separators);
    if (pair.size() != 2) Fail("ValueError", "separators must be an (item, key) pair");
    format.item_separator = RequireString(pair[0], "item separator");
    format.key_separator = RequireString(pair[1], "key separator");
  }
  format.sort_keys = a.Get(3) && Truthy(*a.Get(3));
  std::string out;
  AppendJson(v, format, &out);
  interp.CheckSize(out.size());
  return Str(std::move(out));
}

// do_indent of jinja2 3.1: the first line and (unless blank) empty lines stay as they are.
Value FilterIndent(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("indent", args, {"width", "first", "blank"});
  std::string indention;
  if (a.Get(0) && a.Get(0)->is_string()) {
    indention = a.Get(0)->str();
  } else {
    int64_t width = a.Get(0) ? RequireInt(*a.Get(0), "width") : 4;
    interp.CheckSize(static_cast<size_t>(std::max<int64_t>(width, 0)));
    indention = std::string(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
  }
  bool first = a.Get(1) && Truthy(*a.Get(1));
  bool blank = a.Get(2) && Truthy(*a.Get(2));
  std::string s = ToStr(v) + "\n";
  std::vector<std::string> lines = PySplitLines(s, false);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) rv += "\n" + indention;
      rv += lines[i];
      interp.CheckSize(rv.size());
    }
  } else if (!lines.empty()) {
    rv = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += indention;
      rv += lines[i];
      interp.CheckSize(rv.size());
    }
  }
  if (first) rv = indention + rv;
  interp.CheckSize(rv.size());
  return Str(std::move(rv));
}

Value FilterCenter(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("center", args, {"width"});
  int64_t width = a.Get(0) ? RequireInt(*a.Get(0), "width") : 80;
  interp.CheckSize(static_cast<size_t>(std::max<int64_t>(width, 0)));
  std::string s = ToStr(v);
  int64_t len = static_cast<int64_t>(CodePointCount(s));
  if (width <= len) return Str(std::move(s));
  int64_t pad = width - len;
  int64_t left = pad / 2 + (pad & width & 1);
  return Str(std::string(left, ' ') + s + std::string(pad - left, ' '));
}

Value FilterWordcount(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("wordcount", args);
  std::string s = ToStr(v);
  WorkMeter::Charge(static_cast<int64_t>(s.size() >> 8));
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = DecodeUtf8(s, &i);
    bool word_char = c == '_' || IsPyDigit(c) || IsPyAlpha(c) ||
                     (c >= 0x80 && !IsPySpace(c) && !(c >= 0x2000 && c <= 0x206F));
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words);
}

Value FilterTruncate(Interpreter&, const Value& v, CallArgs& args) {
  ArgReader a("truncate", args, {"length", "killwords", "end", "leeway"});
  int64_t length = a.Get(0) ? RequireInt(*a.Get(0), "length") : 255;
  bool killwords = a.Get(1) && Truthy(*a.Get(1));
  std::string end = a.Get(2) ? ToStr(*a.Get(2)) : "...";
  int64_t leeway = a.Get(3) && !a.Get(3)->is_none() ? RequireInt(*a.Get(3), "leeway") : 5;
  int64_t end_len = static_cast<int64_t>(CodePointCount(end));
  if (length < end_len - 1) Fail("AssertionError", "expected length >= len(end) - 1");
  if (leeway < 0) Fail("AssertionError", "expected leeway >= 0");
  std::string s = ToStr(v);
  std::vector<size_t> offsets = CodePointOffsets(s);
  int64_t n = static_cast<int64_t>(offsets.size()) - 1;
  if (n - leeway <= length) return Str(std::move(s));  // n <= length + leeway
  int64_t keep = std::max<int64_t>(0, length - end_len);
  std::string head = s.substr(0, offsets[std::min(keep, n)]);
  if (killwords) return Str(head + end);
  size_t space = head.rfind(' ');
  if (space != std::string::npos) head.resize(space);
  return Str(head + end);
}

Value FilterFormat(Interpreter& interp, const Value& v, CallArgs& args) {
  if (!args.positional.empty() && !args.kwargs.empty()) {
    Fail("FilterArgumentError", "can't handle positional and keyword arguments at the same time");
  }
  return Str(PyPercentFormat(interp, ToStr(v), args));
}

Value FilterPprint(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("pprint", args);
  return Str(Repr(v));
}

Value FilterAbs(Interpreter&, const Value& v, CallArgs& args) {
  NoArgs("abs", args);
  if (v.is_float()) return Value::Float(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    int64_t i = v.AsInt();
    if (i == std::numeric_limits<int64_t>::min()) Fail("OverflowError", "integer overflow");
    return Value::Int(i < 0 ? -i : i);
  }
  if (v.is_undefined()) FailUndefined(v);
  Fail("TypeError", Cat("bad operand type for abs(): '", PyTypeName(v), "'"));
}

// Python's int(str, base): optional sign, digits with single underscores, a prefix when it
// matches the base (or any, for base 0).
bool ParsePyInt(std::string_view text, int64_t base, int64_t* out) {
  std::string_view s = PyStrip(text, nullptr, true, true);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    int64_t prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (prefixed != 0 && (base == 0 || base == prefixed)) {
      base = prefixed;
      s.remove_prefix(2);
      if (!s.empty() && s[0] == '_') s.remove_prefix(1);
    }
  }
  if (base == 0) base = 10;
  if (s.empty() || s.front() == '_' || s.back() == '_') return false;
  uint64_t value = 0;
  char previous = 0;
  for (char c : s) {
    if (c == '_') {
      if (previous == '_') return false;
      previous = c;
      continue;
    }
    previous = c;
    int digit = c >= '0' && c <= '9'                     ? c - '0'
                : (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? (c | 0x20) - 'a' + 10
                                                         : 99;
    if (digit >= base) return false;
    if (value > (static_cast<uint64_t>(INT64_MAX) - digit) / base) return false;
    value = value * base + digit;
  }
  *out = negative ? -static_cast<int64_t>(value) : static_cast<int64_t>(value);
  return true;
}

// Python's float(str).
bool ParsePyFloat(std::string_view text, double* out) {
  std::string s;
  std::string_view t = PyStrip(text, nullptr, true, true);
  if (t.empty()) return false;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '_') {
      if (i == 0 || i + 1 == t.size() || !isdigit(static_cast<unsigned char>(t[i - 1])) ||
          !isdigit(static_cast<unsigned char>(t[i + 1])))
        return false;
      continue;
    }
    s.push_back(t[i]);
  }
  std::string lower = PyLower(s);
  std::string_view body = lower;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.remove_prefix(1);
  if (body == "inf" || body == "infinity" || body == "nan") {
    double x = body == "nan" ? std::numeric_limits<double>::quiet_NaN()
                             : std::numeric_limits<double>::infinity();
    *out = lower[0] == '-' ? -x : x;
    return true;
  }
  for (char c : body)
    if (!(isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == '+' || c == '-'))
      return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

Value FilterInt(Interpreter&, const Value& v, CallArgs& args) {
  ArgReader a("int", args, {"default", "base"});
  static const Value kZero = Value::Int(0);
  const Value& fallback = a.GetOr(0, kZero);
  int64_t base = a.Get(1) ? RequireInt(*a.Get(1), "base") : 10;
  if (v.is_int() || v.is_bool()) return Value::Int(v.AsInt());
  double f;
  if (v.is_float()) {
    f = v.as_float();
  } else if (v.is_string()) {
    int64_t i;
    if (ParsePyInt(v.str(), base, &i)) return Value::Int(i);
    if (!ParsePyFloat(v.str(), &f)) return fallback;
  } else {
    return fallback;
  }
  if (std::isnan(f)) return fallback;
  if (std::isinf(f)) Fail("OverflowError", "cannot convert float infinity to integer");
  if (std::fabs(f) >= 9.2e18) Fail("OverflowError", "integer overflow");
  return Value::Int(static_cast<int64_t>(f));
}

Value FilterFloat(Interpreter&, const Value& v, CallArgs& args) {
  ArgReader a("float", args, {"default"});
  static const Value kZero = Value::Float(0.0);
  if (v.is_number()) return Value::Float(v.AsDouble());
  double f;
  if (v.is_string() && ParsePyFloat(v.str(), &f)) return Value::Float(f);
  return a.GetOr(0, kZero);
}

double RoundHalfEven(double x) { return std::nearbyint(x); }

Value FilterRound(Interpreter&, const Value& v, CallArgs& args) {
  ArgReader a("round", args, {"precision", "method"});
  int64_t precision = a.Get(0) ? RequireInt(*a.Get(0), "precision") : 0;
  std::string method = a.Get(1) ? ToStr(*a.Get(1)) : "common";
  if (method != "common" && method != "ceil" && method != "floor")
    Fail("FilterArgumentError", "method must be common, ceil or floor");
  if (v.is_undefined()) FailUndefined(v);
  if (!v.is_number()) {
    Fail("TypeError", Cat("type ", PyTypeName(v), " doesn't define __round__ method"));
  }
  precision = std::clamp<int64_t>(precision, -330, 330);
  if (method != "common") {
    double scale = std::pow(10.0, static_cast<double>(precision));
    double x = v.AsDouble() * scale;
    // Python's math.floor/ceil return an int, which has no -0: "+ 0.0" drops the sign.
    double whole = (method == "ceil" ? std::ceil(x) : std::floor(x)) + 0.0;
    return Value::Float(whole / scale);
  }
  if (v.is_int() || v.is_bool()) {
    int64_t i = v.AsInt();
    if (precision >= 0) return Value::Int(i);
    if (precision < -18) return Value::Int(0);
    int64_t scale = 1;
    for (int64_t k = 0; k < -precision; ++k) scale *= 10;
    double q = RoundHalfEven(static_cast<double>(i) / static_cast<double>(scale));
    int64_t rounded;
    if (__builtin_mul_overflow(static_cast<int64_t>(q), scale, &rounded))
      Fail("OverflowError", "integer overflow");
    return Value::Int(rounded);
  }
  double x = v.as_float();
  if (!std::isfinite(x)) return Value::Float(x);
  if (precision >= 0) {
    // Correctly rounded, ties to even on the exact binary value, as Python's round().
    char buf[512];
    snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(std::min<int64_t>(precision, 300)), x);
    return Value::Float(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(-precision));
  return Value::Float(RoundHalfEven(x / scale) * scale);
}

// Sort keys per item: one value, or a tuple for "a,b" attributes.
Value SortKey(Interpreter& interp, const Value& item, const Value* attribute, bool case_sensitive) {
  if (attribute == nullptr || attribute->is_none()) {
    return case_sensitive ? item : IgnoreCase(item);
  }
  if (attribute->is_string() && attribute->str().find(',') != std::string::npos) {
    std::vector<Value> keys;
    static const std::string kComma = ",";
    for (const std::string& part : PySplit(attribute->str(), &kComma, -1)) {
      Value key = AttrPath(interp, item, Str(part));
      keys.push_back(case_sensitive ? key : IgnoreCase(key));
    }
    return Value::List(std::move(keys), SeqKind::kTuple);
  }
  Value key = AttrPath(interp, item, *attribute);
  return case_sensitive ? key : IgnoreCase(key);
}

std::vector<Value> Sorted(Interpreter& interp, std::vector<Value> items, const Value* attribute,
                          bool case_sensitive, bool reverse) {
  interp.Step(static_cast<int64_t>(items.size()));
  std::vector<std::pair<Value, Value>> keyed;
  keyed.reserve(items.size());
  for (Value& item : items) {
    Value key = SortKey(interp, item, attribute, case_sensitive);
    keyed.emplace_back(std::move(key), std::move(item));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& x, const auto& y) {
    return reverse ? Less(y.first, x.first) : Less(x.first, y.first);
  });
  std::vector<Value> out;
  out.reserve(keyed.size());
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return out;
}

Value FilterSort(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("sort", args, {"reverse", "case_sensitive", "attribute"});
  return Value::List(Sorted(interp, Iterate(v), a.Get(2), a.Get(1) && Truthy(*a.Get(1)),
                            a.Get(0) && Truthy(*a.Get(0))));
}

Value FilterDictsort(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("dictsort", args, {"case_sensitive", "by", "reverse"});
  bool case_sensitive = a.Get(0) && Truthy(*a.Get(0));
  std::string by = a.Get(1) ? ToStr(*a.Get(1)) : "key";
  if (by != "key" && by != "value")
    Fail("FilterArgumentError", "You can only sort by either \"key\" or \"value\"");
  if (!v.is_dict())
    Fail("AttributeError", Cat("'", PyTypeName(v), "' object has no attribute 'items'"));
  std::vector<Value> pairs;
  for (const auto& [key, value] : v.dict().entries)
    pairs.push_back(Value::List({key, value}, SeqKind::kTuple));
  Value index = Value::Int(by == "key" ? 0 : 1);
  return Value::List(
      Sorted(interp, std::move(pairs), &index, case_sensitive, a.Get(2) && Truthy(*a.Get(2))));
}

Value FilterUnique(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("unique", args, {"case_sensitive", "attribute"});
  bool case_sensitive = a.Get(0) && Truthy(*a.Get(0));
  std::vector<Value> seen, out;
  for (const Value& item : Iterate(v)) {
    Value key = SortKey(interp, item, a.Get(1), case_sensitive);
    if (!IsHashable(key)) Fail("TypeError", Cat("unhashable type: '", PyTypeName(key), "'"));
    interp.Step(static_cast<int64_t>(seen.size()));
    bool found = false;
    for (const Value& s : seen) {
      if (Equal(s, key)) {
        found = true;
        break;
      }
    }
    if (!found) {
      seen.push_back(std::move(key));
      out.push_back(item);
    }
  }
  return Generator(std::move(out));
}

Value MinOrMax(Interpreter& interp, const Value& v, CallArgs& args, bool max) {
  ArgReader a(max ? "max" : "min", args, {"case_sensitive", "attribute"});
  bool case_sensitive = a.Get(0) && Truthy(*a.Get(0));
  std::vector<Value> items = Iterate(v);
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = SortKey(interp, items[0], a.Get(1), case_sensitive);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = SortKey(interp, items[i], a.Get(1), case_sensitive);
    if (max ? Less(best_key, key) : Less(key, best_key)) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Value FilterMin(Interpreter& interp, const Value& v, CallArgs& args) {
  return MinOrMax(interp, v, args, false);
}
Value FilterMax(Interpreter& interp, const Value& v, CallArgs& args) {
  return MinOrMax(interp, v, args, true);
}

Value FilterSum(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("sum", args, {"attribute", "start"});
  Value total = a.Get(1) ? *a.Get(1) : Value::Int(0);
  for (const Value& item : Iterate(v)) {
    total =
        interp.Arith(BinaryOp::kAdd, total, a.Get(0) ? AttrPath(interp, item, *a.Get(0)) : item);
  }
  return total;
}

Value FilterReverse(Interpreter& interp, const Value& v, CallArgs& args) {
  NoArgs("reverse", args);
  if (v.is_string()) {
    const std::string& s = v.str();
    std::vector<size_t> offsets = CodePointOffsets(s);
    std::string out;
    out.reserve(s.size());
    for (size_t i = offsets.size() - 1; i > 0; --i)
      out.append(s, offsets[i - 1], offsets[i] - offsets[i - 1]);
    return Str(std::move(out));
  }
  std::vector<Value> items = Iterate(v);
  interp.Step(static_cast<int64_t>(items.size()));
  std::reverse(items.begin(), items.end());
  bool iterator = !(v.is_list() && (v.list().kind == SeqKind::kGenerator ||
                                    v.list().kind == SeqKind::kReverseIterator));
  return Value::List(std::move(items), iterator ? SeqKind::kReverseIterator : SeqKind::kList);
}

Value FilterBatch(Interpreter&, const Value& v, CallArgs& args) {
  ArgReader a("batch", args, {"linecount", "fill_with"});
  if (!a.Get(0)) Fail("TypeError", "batch() missing 1 required positional argument: 'linecount'");
  int64_t linecount = RequireInt(*a.Get(0), "linecount");
  std::vector<Value> out, tmp;
  for (const Value& item : Iterate(v)) {
    if (static_cast<int64_t>(tmp.size()) == linecount) {
      out.push_back(Value::List(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(item);
  }
  if (!tmp.empty()) {
    if (a.Get(1) && !a.Get(1)->is_none())
      while (static_cast<int64_t>(tmp.size()) < linecount) {
        WorkMeter::Charge(1);
        tmp.push_back(*a.Get(1));
      }
    out.push_back(Value::List(std::move(tmp)));
  }
  return Generator(std::move(out));
}

Value FilterAttr(Interpreter& interp, const Value& v, CallArgs& args) {
  ArgReader a("attr", args, {"name"});
  if (!a.Get(0)) Fail("TypeError", "attr() missing 1 required positional argument: 'name'");
  std::string name = ToStr(*a.Get(0));
  if (v.is_undefined()) FailUndefined(v);
  if (v.is_dict() || v.is_string() || v.is_list()) {
    if (HasMethod(v, name) || IsUnsafeMethod(v, name)) return interp.GetAttr(v, name);
  } else if (v.is_object()) {
    return interp.GetAttr(v, name);
  }
  std::string message;
  AppendPyRepr(ObjectTypeRepr(v), &message);
  message += " has no attribute ";
  AppendPyRepr(name, &message);
  return Value::Undefined(std::move(message));
}

// map/select/reject: call a filter or test by name from the arguments.
Value CallFilterByName(Interpreter& interp, const std::string& name, const Value& item,
                       const CallArgs& rest) {
  FilterFn fn = LookupFilter(name);
  if (fn == nullptr) Fail("TemplateRuntimeError", Cat("No filter named '", name, "'."));
  CallArgs args = rest;
  return fn(interp, item, args);
}

bool CallTestByName(Interpreter& interp, const std::string& name, const Value& item,
                    const CallArgs& rest) {
  TestFn fn = LookupTest(name);
  if (fn == nullptr) Fail("TemplateRuntimeError", Cat("No test named '", name, "'."));
  CallArgs args = rest;
  return fn(interp, item, args);
}

Value FilterMap(Interpreter& interp, const Value& v, CallArgs& args) {
  if (!Truthy(v)) return Generator({});
  std::vector<Value> out;
  if (args.positional.empty()) {
    const Value* attribute = nullptr;
    const Value* default_value = nullptr;
    for (const auto& [name, value] : args.kwargs) {
      if (name == "attribute") {
        attribute = &value;
      } else if (name == "default") {
        default_value = &value;
      } else {
        Fail("FilterArgumentError", Cat("Unexpected keyword argument '", name, "'"));
      }
    }
    if (attribute == nullptr) Fail("FilterArgumentError", "map requires a filter argument");
    for (const Value& item : Iterate(v)) {
      interp.Step();
      out.push_back(AttrPath(interp, item, *attribute,
                             default_value && !default_value->is_none() ? default_value : nullptr));
    }
    return Generator(std::move(out));
  }
  std::string name = ToStr(args.positional[0]);
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.kwargs = args.kwargs;
  for (const Value& item : Iterate(v)) {
    interp.Step();
    out.push_back(CallFilterByName(interp, name, item, rest));
  }
  return Generator(std::move(out));
}

Value SelectOrReject(Interpreter& interp, const Value& v, CallArgs& args, bool select,
                     bool lookup_attr) {
  if (!Truthy(v)) return Generator({});
  size_t off = 0;
  const Value* attribute = nullptr;
  if (lookup_attr) {
    if (args.positional.empty())
      Fail("FilterArgumentError", "Missing parameter for attribute name");
    attribute = &args.positional[0];
    off = 1;
  }
  bool has_test = args.positional.size() > off;
  std::string test = has_test ? ToStr(args.positional[off]) : "";
  CallArgs rest;
  if (has_test) rest.positional.assign(args.positional.begin() + off + 1, args.positional.end());
  rest.kwargs = args.kwargs;
  std::vector<Value> out;
  for (const Value& item : Iterate(v)) {
    interp.Step();
    Value probe = attribute ? AttrPath(interp, item, *attribute) : item;
    bool passed = has_test ? CallTestByName(interp, test, probe, rest) : Truthy(probe);
    if (passed == select) out.push_back(item);
  }
  return Generator(std::move(out));
}

Value FilterSelect(Interpreter& interp, const Value& v, CallArgs& args) {
  return SelectOrReject(interp, v, args, true, false);
}
Value FilterReject(Interpreter& interp, const Value& v, CallArgs& args) {
  return SelectOrReject(interp, v, args, false, false);
}
Value FilterSelectattr(Interpreter& interp, const Value& v, CallArgs& args) {
  return SelectOrReject(interp, v, args, true, true);
}
Value FilterRejectattr(Interpreter& interp, const Value& v, CallArgs& args) {
  return SelectOrReject(interp, v, args, false, true);
}

Value FilterUnsupported(Interpreter&, const Value&, CallArgs&) {
  Fail("TemplateRuntimeError", "this filter is not supported by prefixd's template interpreter");
}

}  // namespace

FilterFn LookupFilter(std::string_view name) {
  static constexpr std::pair<std::string_view, FilterFn> kFilters[] = {
      {"abs", FilterAbs},
      {"attr", FilterAttr},
      {"batch", FilterBatch},
      {"capitalize", FilterCapitalize},
      {"center", FilterCenter},
      {"count", FilterLength},
      {"d", FilterDefault},
      {"default", FilterDefault},
      {"dictsort", FilterDictsort},
      {"e", FilterEscape},
      {"escape", FilterEscape},
      {"filesizeformat", FilterUnsupported},
      {"first", FilterFirst},
      {"float", FilterFloat},
      {"forceescape", FilterEscape},
      {"format", FilterFormat},
      {"groupby", FilterUnsupported},
      {"indent", FilterIndent},
      {"int", FilterInt},
      {"items", FilterItems},
      {"join", FilterJoin},
      {"last", FilterLast},
      {"length", FilterLength},
      {"list", FilterList},
      {"lower", FilterLower},
      {"map", FilterMap},
      {"max", FilterMax},
      {"min", FilterMin},
      {"pprint", FilterPprint},
      {"random", FilterUnsupported},
      {"reject", FilterReject},
      {"rejectattr", FilterRejectattr},
      {"replace", FilterReplace},
      {"reverse", FilterReverse},
      {"round", FilterRound},
      {"safe", FilterSafe},
      {"select", FilterSelect},
      {"selectattr", FilterSelectattr},
      {"slice", FilterUnsupported},
      {"sort", FilterSort},
      {"string", FilterString},
      {"striptags", FilterUnsupported},
      {"sum", FilterSum},
      {"title", FilterTitle},
      {"tojson", FilterTojson},
      {"trim", FilterTrim},
      {"truncate", FilterTruncate},
      {"unique", FilterUnique},
      {"upper", FilterUpper},
      {"urlencode", FilterUnsupported},
      {"urlize", FilterUnsupported},
      {"wordcount", FilterWordcount},
      {"wordwrap", FilterUnsupported},
      {"xmlattr", FilterUnsupported},
  };
  for (const auto& [filter_name, fn] : kFilters)
    if (filter_name == name) return fn;
  return nullptr;
}

}  // namespace prefixd::jinja
