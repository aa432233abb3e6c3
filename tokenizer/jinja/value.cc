#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/py_string.h"

namespace prefixd::jinja {

void Fail(const char* kind, std::string message) {
  throw Error(absl::StatusCode::kInvalidArgument, kind, std::move(message));
}

void FailLimit(std::string message) {
  throw Error(absl::StatusCode::kResourceExhausted, "ResourceExhausted", std::move(message));
}

namespace {

struct UndefinedHint {
  std::string message;
  bool security;
};

// repr() and tojson recurse this deep at most (lists and dicts are bounded by kMaxNesting,
// a namespace adds one level).
constexpr int kMaxPrintDepth = 2 * kMaxNesting + 8;

}  // namespace

Value Value::String(std::string s) {
  Value v(Kind::kString);
  v.ptr_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::SharedString(std::shared_ptr<const std::string> s) {
  Value v(Kind::kString);
  v.ptr_ = std::move(s);
  return v;
}

Value Value::List(std::vector<Value> items, SeqKind kind) {
  auto data = std::make_shared<ListData>();
  int depth = 0;
  bool contains_object = false;
  for (const Value& item : items) {
    depth = std::max(depth, item.depth());
    contains_object = contains_object || item.contains_object();
  }
  if (depth + 1 > kMaxNesting) FailLimit("lists and dicts nest too deeply");
  data->items = std::move(items);
  data->kind = kind;
  data->depth = depth + 1;
  data->contains_object = contains_object;
  Value v(Kind::kList);
  v.ptr_ = std::move(data);
  return v;
}

Value Value::Dict(std::shared_ptr<const DictData> dict) {
  Value v(Kind::kDict);
  v.ptr_ = std::move(dict);
  return v;
}

Value Value::FromObject(std::shared_ptr<Object> object) {
  Value v(Kind::kObject);
  v.ptr_ = std::move(object);
  return v;
}

Value Value::Undefined(std::string message, bool security) {
  Value v(Kind::kUndefined);
  v.ptr_ = std::make_shared<const UndefinedHint>(UndefinedHint{std::move(message), security});
  return v;
}

std::string_view Value::undefined_message() const {
  if (ptr_ == nullptr) return {};
  return static_cast<const UndefinedHint*>(ptr_.get())->message;
}

bool Value::undefined_is_security() const {
  return ptr_ != nullptr && static_cast<const UndefinedHint*>(ptr_.get())->security;
}

int Value::depth() const {
  if (kind_ == Kind::kList) return list().depth;
  if (kind_ == Kind::kDict) return dict().depth;
  if (kind_ == Kind::kObject) return 1;
  return 0;
}

bool Value::contains_object() const {
  if (kind_ == Kind::kList) return list().contains_object;
  if (kind_ == Kind::kDict) return dict().contains_object;
  return kind_ == Kind::kObject;
}

void FailUndefined(const Value& undefined) {
  std::string_view message = undefined.undefined_message();
  if (message.empty()) Fail("UndefinedError", "undefined value");
  Fail(undefined.undefined_is_security() ? "SecurityError" : "UndefinedError",
       std::string(message));
}

// ---- dict ----

const Value* DictData::Find(std::string_view key) const {
  if (!index_.empty()) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries[it->second].second;
  }
  for (const auto& [k, v] : entries)
    if (k.is_string() && k.str() == key) return &v;
  return nullptr;
}

const Value* DictData::Find(const Value& key) const {
  if (key.is_string()) return Find(std::string_view(key.str()));
  for (const auto& [k, v] : entries)
    if (!k.is_string() && Equal(k, key)) return &v;
  return nullptr;
}

void DictData::Set(Value key, Value value) {
  for (auto& [k, v] : entries) {
    if (Equal(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

void DictData::Finish() {
  int max_depth = 0;
  bool any_object = false;
  for (const auto& [k, v] : entries) {
    max_depth = std::max(max_depth, v.depth());
    any_object = any_object || v.contains_object();
  }
  if (max_depth + 1 > kMaxNesting) FailLimit("lists and dicts nest too deeply");
  depth = max_depth + 1;
  contains_object = any_object;
  if (entries.size() > 8) {
    index_.reserve(entries.size());
    for (uint32_t i = 0; i < entries.size(); ++i)
      if (entries[i].first.is_string()) index_.emplace(entries[i].first.str(), i);
  }
}

// ---- objects ----

Value Object::Call(Interpreter&, CallArgs&) {
  Fail("TypeError", absl::StrCat("'", TypeName(), "' object is not callable"));
}

bool Object::GetAttr(std::string_view, Value*) const { return false; }

void Object::AppendRepr(std::string* out) const {
  absl::StrAppend(out, "<", TypeName(), " object>");
}

// ---- Python protocol ----

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_float() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList: {
      SeqKind kind = v.list().kind;
      if (kind == SeqKind::kGenerator || kind == SeqKind::kReverseIterator) return true;
      return !v.list().items.empty();
    }
    case Value::Kind::kDict:
      return !v.dict().entries.empty();
    case Value::Kind::kObject:
      return true;
  }
  return false;
}

std::string_view PyTypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      switch (v.list().kind) {
        case SeqKind::kList:
          return "list";
        case SeqKind::kTuple:
          return "tuple";
        case SeqKind::kGenerator:
          return "generator";
        case SeqKind::kReverseIterator:
          return "list_reverseiterator";
        case SeqKind::kDictItems:
          return "dict_items";
        case SeqKind::kDictKeys:
          return "dict_keys";
        case SeqKind::kDictValues:
          return "dict_values";
      }
      return "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kObject:
      return v.object()->TypeName();
  }
  return "object";
}

std::string ObjectTypeRepr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_undefined()) return "jinja2.runtime.Undefined object";
  if (v.is_object()) return v.object()->ObjectTypeRepr();
  return absl::StrCat(PyTypeName(v), " object");
}

namespace {

void CheckPrintDepth(int depth) {
  if (depth > kMaxPrintDepth) FailLimit("value nests too deeply to print");
}

void AppendReprAt(const Value& v, int depth, std::string* out);

void AppendSeqRepr(const std::vector<Value>& items, const char* open, const char* close,
                   bool tuple, int depth, std::string* out) {
  out->append(open);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out->append(", ");
    AppendReprAt(items[i], depth + 1, out);
  }
  if (tuple && items.size() == 1) out->push_back(',');
  out->append(close);
}

void AppendReprAt(const Value& v, int depth, std::string* out) {
  CheckPrintDepth(depth);
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      out->append("Undefined");
      return;
    case Value::Kind::kNone:
      out->append("None");
      return;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "True" : "False");
      return;
    case Value::Kind::kInt:
      absl::StrAppend(out, v.as_int());
      return;
    case Value::Kind::kFloat:
      AppendPyFloat(v.as_float(), out);
      return;
    case Value::Kind::kString:
      AppendPyRepr(v.str(), out);
      return;
    case Value::Kind::kList: {
      const ListData& list = v.list();
      switch (list.kind) {
        case SeqKind::kList:
          AppendSeqRepr(list.items, "[", "]", false, depth, out);
          return;
        case SeqKind::kTuple:
          AppendSeqRepr(list.items, "(", ")", true, depth, out);
          return;
        case SeqKind::kGenerator:
          out->append("<generator object>");
          return;
        case SeqKind::kReverseIterator:
          out->append("<list_reverseiterator object>");
          return;
        case SeqKind::kDictItems:
          AppendSeqRepr(list.items, "dict_items([", "])", false, depth, out);
          return;
        case SeqKind::kDictKeys:
          AppendSeqRepr(list.items, "dict_keys([", "])", false, depth, out);
          return;
        case SeqKind::kDictValues:
          AppendSeqRepr(list.items, "dict_values([", "])", false, depth, out);
          return;
      }
      return;
    }
    case Value::Kind::kDict: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, value] : v.dict().entries) {
        if (!first) out->append(", ");
        first = false;
        AppendReprAt(key, depth + 1, out);
        out->append(": ");
        AppendReprAt(value, depth + 1, out);
      }
      out->push_back('}');
      return;
    }
    case Value::Kind::kObject:
      v.object()->AppendRepr(out);
      return;
  }
}

}  // namespace

void AppendRepr(const Value& v, std::string* out) { AppendReprAt(v, 0, out); }

std::string Repr(const Value& v) {
  std::string out;
  AppendRepr(v, &out);
  return out;
}

void AppendStr(const Value& v, std::string* out) {
  if (v.is_string()) {
    out->append(v.str());
  } else if (!v.is_undefined()) {
    AppendRepr(v, out);
  }
}

std::string ToStr(const Value& v) {
  if (v.is_string()) return v.str();
  std::string out;
  AppendStr(v, &out);
  return out;
}

bool Equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.AsDouble() == b.AsDouble();
    return a.AsInt() == b.AsInt();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined:
    case K::kNone:
      return true;
    case K::kString:
      return a.shared() == b.shared() || a.str() == b.str();
    case K::kList: {
      const ListData& x = a.list();
      const ListData& y = b.list();
      if (&x == &y) return true;
      if (x.kind != y.kind) return false;
      if (x.kind == SeqKind::kGenerator || x.kind == SeqKind::kReverseIterator) return false;
      if (x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!Equal(x.items[i], y.items[i])) return false;
      return true;
    }
    case K::kDict: {
      const DictData& x = a.dict();
      const DictData& y = b.dict();
      if (&x == &y) return true;
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [key, value] : x.entries) {
        const Value* other = y.Find(key);
        if (other == nullptr || !Equal(value, *other)) return false;
      }
      return true;
    }
    case K::kObject:
      return a.object() == b.object();
    default:
      return false;
  }
}

namespace {

const char* OpText(OrderOp op) {
  switch (op) {
    case OrderOp::kLt:
      return "<";
    case OrderOp::kLe:
      return "<=";
    case OrderOp::kGt:
      return ">";
    case OrderOp::kGe:
      return ">=";
  }
  return "<";
}

template <typename T>
bool Apply(const T& a, const T& b, OrderOp op) {
  switch (op) {
    case OrderOp::kLt:
      return a < b;
    case OrderOp::kLe:
      return a <= b;
    case OrderOp::kGt:
      return a > b;
    case OrderOp::kGe:
      return a >= b;
  }
  return false;
}

}  // namespace

bool Ordered(const Value& a, const Value& b, OrderOp op) {
  if (a.is_undefined()) FailUndefined(a);
  if (b.is_undefined()) FailUndefined(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return Apply(a.AsDouble(), b.AsDouble(), op);
    return Apply(a.AsInt(), b.AsInt(), op);
  }
  if (a.is_string() && b.is_string()) return Apply(a.str().compare(b.str()), 0, op);
  if (a.is_list() && b.is_list() && a.list().kind == b.list().kind &&
      (a.list().kind == SeqKind::kList || a.list().kind == SeqKind::kTuple)) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    size_t n = std::min(x.size(), y.size());
    for (size_t i = 0; i < n; ++i)
      if (!Equal(x[i], y[i])) return Ordered(x[i], y[i], op);
    return Apply(x.size(), y.size(), op);
  }
  Fail("TypeError", absl::StrCat("'", OpText(op), "' not supported between instances of '",
                                 PyTypeName(a), "' and '", PyTypeName(b), "'"));
}

bool IsHashable(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kList:
      if (v.list().kind != SeqKind::kTuple) return false;
      for (const Value& item : v.list().items)
        if (!IsHashable(item)) return false;
      return true;
    case Value::Kind::kDict:
      return false;
    default:
      return true;
  }
}

// ---- JSON ----

namespace {

Value FromJsonAt(const nlohmann::ordered_json& json, int depth) {
  using T = nlohmann::ordered_json::value_t;
  if (depth > kMaxNesting) FailLimit("the variables nest too deeply");
  switch (json.type()) {
    case T::null:
    case T::discarded:
    case T::binary:
      return Value::None();
    case T::boolean:
      return Value::Bool(json.get<bool>());
    case T::number_integer:
      return Value::Int(json.get<int64_t>());
    case T::number_unsigned: {
      uint64_t u = json.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value::Int(static_cast<int64_t>(u));
      return Value::Float(static_cast<double>(u));
    }
    case T::number_float:
      return Value::Float(json.get<double>());
    case T::string:
      return Value::String(json.get_ref<const std::string&>());
    case T::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(FromJsonAt(item, depth + 1));
      return Value::List(std::move(items));
    }
    case T::object: {
      auto dict = std::make_shared<DictData>();
      dict->entries.reserve(json.size());
      for (const auto& [key, value] : json.items())
        dict->Append(Value::String(key), FromJsonAt(value, depth + 1));
      dict->Finish();
      return Value::Dict(std::move(dict));
    }
  }
  return Value::None();
}

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          out->append(buf);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendJsonFloat(double x, std::string* out) {
  if (std::isnan(x)) {
    out->append("NaN");
  } else if (std::isinf(x)) {
    out->append(x < 0 ? "-Infinity" : "Infinity");
  } else {
    AppendPyFloat(x, out);
  }
}

[[noreturn]] void NotSerializable(const Value& v) {
  Fail("TypeError", absl::StrCat("Object of type ", PyTypeName(v), " is not JSON serializable"));
}

void AppendJsonAt(const Value& v, const JsonFormat& format, int depth, std::string* out);

void NewlineIndent(const JsonFormat& format, int depth, std::string* out) {
  out->push_back('\n');
  for (int i = 0; i < depth; ++i) out->append(format.indent_unit);
}

void AppendJsonKey(const Value& key, std::string* out) {
  switch (key.kind()) {
    case Value::Kind::kString:
      AppendJsonString(key.str(), out);
      return;
    case Value::Kind::kInt:
      absl::StrAppend(out, "\"", key.as_int(), "\"");
      return;
    case Value::Kind::kFloat:
      out->push_back('"');
      AppendJsonFloat(key.as_float(), out);
      out->push_back('"');
      return;
    case Value::Kind::kBool:
      out->append(key.as_bool() ? "\"true\"" : "\"false\"");
      return;
    case Value::Kind::kNone:
      out->append("\"null\"");
      return;
    default:
      Fail("TypeError", absl::StrCat("keys must be str, int, float, bool or None, not ",
                                     PyTypeName(key)));
  }
}

void AppendJsonAt(const Value& v, const JsonFormat& format, int depth, std::string* out) {
  CheckPrintDepth(depth);
  switch (v.kind()) {
    case Value::Kind::kNone:
      out->append("null");
      return;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "true" : "false");
      return;
    case Value::Kind::kInt:
      absl::StrAppend(out, v.as_int());
      return;
    case Value::Kind::kFloat:
      AppendJsonFloat(v.as_float(), out);
      return;
    case Value::Kind::kString:
      AppendJsonString(v.str(), out);
      return;
    case Value::Kind::kList: {
      const ListData& list = v.list();
      if (list.kind != SeqKind::kList && list.kind != SeqKind::kTuple) NotSerializable(v);
      if (list.items.empty()) {
        out->append("[]");
        return;
      }
      out->push_back('[');
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i > 0) out->append(format.item_separator);
        if (format.indent) NewlineIndent(format, depth + 1, out);
        AppendJsonAt(list.items[i], format, depth + 1, out);
      }
      if (format.indent) NewlineIndent(format, depth, out);
      out->push_back(']');
      return;
    }
    case Value::Kind::kDict: {
      const DictData& dict = v.dict();
      if (dict.entries.empty()) {
        out->append("{}");
        return;
      }
      std::vector<const std::pair<Value, Value>*> entries;
      entries.reserve(dict.entries.size());
      for (const auto& entry : dict.entries) entries.push_back(&entry);
      if (format.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto* x, const auto* y) { return Less(x->first, y->first); });
      }
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out->append(format.item_separator);
        if (format.indent) NewlineIndent(format, depth + 1, out);
        AppendJsonKey(entries[i]->first, out);
        out->append(format.key_separator);
        AppendJsonAt(entries[i]->second, format, depth + 1, out);
      }
      if (format.indent) NewlineIndent(format, depth, out);
      out->push_back('}');
      return;
    }
    default:
      NotSerializable(v);
  }
}

}  // namespace

Value FromJson(const nlohmann::ordered_json& json) { return FromJsonAt(json, 0); }

void AppendJson(const Value& v, const JsonFormat& format, std::string* out) {
  AppendJsonAt(v, format, 0, out);
}

}  // namespace prefixd::jinja
