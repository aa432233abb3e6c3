#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "tokenizer/jinja/py_string.h"

namespace prefixd::jinja {

void Fail(const char* kind, std::string message) {
  throw Error(absl::StatusCode::kInvalidArgument, kind, std::move(message));
}

void FailLimit(std::string message) {
  throw Error(absl::StatusCode::kResourceExhausted, "ResourceExhausted", std::move(message));
}

namespace {

thread_local WorkMeter* current_meter = nullptr;

}  // namespace

WorkMeter::WorkMeter(int64_t* steps, int64_t max_steps, size_t max_bytes)
    : steps_(steps), max_steps_(max_steps), max_bytes_(max_bytes), previous_(current_meter) {
  current_meter = this;
}

WorkMeter::~WorkMeter() { current_meter = previous_; }

void WorkMeter::Charge(int64_t units) {
  WorkMeter* meter = current_meter;
  if (meter == nullptr) return;
  *meter->steps_ += units;
  if (*meter->steps_ > meter->max_steps_) {
    FailLimit(Cat("rendering took more than ", meter->max_steps_, " steps"));
  }
}

void WorkMeter::CheckBytes(size_t size) {
  WorkMeter* meter = current_meter;
  if (meter != nullptr && size > meter->max_bytes_) {
    FailLimit(Cat("the rendered text would exceed ", meter->max_bytes_, " bytes"));
  }
}

namespace {

struct UndefinedHint {
  std::string message;
  bool security = false;
  // Missing(): the message is built from these when needed.
  bool missing = false;
  bool element = false;
  std::string_view static_type_repr;  // "dict object"; empty: owned_type_repr
  std::string owned_type_repr;
  Value key;
};

// ObjectTypeRepr for the builtin kinds, without allocating; empty for objects.
std::string_view StaticTypeRepr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return "bool object";
    case Value::Kind::kInt:
      return "int object";
    case Value::Kind::kFloat:
      return "float object";
    case Value::Kind::kString:
      return "str object";
    case Value::Kind::kDict:
      return "dict object";
    case Value::Kind::kList:
      switch (v.list().kind) {
        case SeqKind::kList:
          return "list object";
        case SeqKind::kTuple:
          return "tuple object";
        case SeqKind::kGenerator:
          return "generator object";
        case SeqKind::kReverseIterator:
          return "list_reverseiterator object";
        case SeqKind::kDictItems:
          return "dict_items object";
        case SeqKind::kDictKeys:
          return "dict_keys object";
        case SeqKind::kDictValues:
          return "dict_values object";
      }
      return "list object";
    default:
      return {};
  }
}

// repr() and tojson recurse this deep at most (lists and dicts are bounded by kMaxNesting,
// a namespace adds one level).
constexpr int kMaxPrintDepth = 2 * kMaxNesting + 8;

}  // namespace

Value Value::String(std::string s) {
  WorkMeter::Charge(static_cast<int64_t>(s.size() >> 8));  // building it was O(size)
  Value v(Kind::kString);
  v.ptr_ = std::make_shared<std::string>(std::move(s));  // not const: see AppendInPlace
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
  auto hint = std::make_shared<UndefinedHint>();
  hint->message = std::move(message);
  hint->security = security;
  v.ptr_ = std::move(hint);
  return v;
}

Value Value::Missing(const Value& object, Value key, bool element) {
  Value v(Kind::kUndefined);
  auto hint = std::make_shared<UndefinedHint>();
  hint->missing = true;
  hint->element = element;
  hint->static_type_repr = StaticTypeRepr(object);
  if (hint->static_type_repr.empty()) hint->owned_type_repr = ObjectTypeRepr(object);
  hint->key = std::move(key);
  v.ptr_ = std::move(hint);
  return v;
}

std::string Value::undefined_message() const {
  if (ptr_ == nullptr) return {};
  const auto& hint = *static_cast<const UndefinedHint*>(ptr_.get());
  if (!hint.missing) return hint.message;
  std::string_view type_repr =
      hint.static_type_repr.empty() ? hint.owned_type_repr : hint.static_type_repr;
  std::string out;
  if (hint.element) {
    out.append(type_repr);
    out += " has no element ";
    AppendRepr(hint.key, &out);
  } else {
    AppendPyRepr(type_repr, &out);
    out += " has no attribute ";
    AppendRepr(hint.key, &out);
  }
  return out;
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
  std::string message = undefined.undefined_message();
  if (message.empty()) Fail("UndefinedError", "undefined value");
  Fail(undefined.undefined_is_security() ? "SecurityError" : "UndefinedError", std::move(message));
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
  if (key.is_string()) {
    if (entries.size() >= 8 && index_.empty()) {
      for (uint32_t i = 0; i < entries.size(); ++i)
        if (entries[i].first.is_string()) index_.emplace(entries[i].first.str(), i);
    }
    if (!index_.empty()) {
      auto [it, inserted] = index_.emplace(key.str(), static_cast<uint32_t>(entries.size()));
      if (!inserted) {
        entries[it->second].second = std::move(value);
        return;
      }
      entries.emplace_back(std::move(key), std::move(value));
      // The index keys view the entry's string, which the shared key keeps in place.
      return;
    }
  }
  WorkMeter::Charge(static_cast<int64_t>(entries.size()));
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
  if (entries.size() > 8 && index_.empty()) {
    index_.reserve(entries.size());
    for (uint32_t i = 0; i < entries.size(); ++i)
      if (entries[i].first.is_string()) index_.emplace(entries[i].first.str(), i);
  }
}

// ---- objects ----

Value Object::Call(Interpreter&, CallArgs&) {
  Fail("TypeError", Cat("'", TypeName(), "' object is not callable"));
}

bool Object::GetAttr(std::string_view, Value*) const { return false; }

void Object::AppendRepr(std::string* out) const { CatTo(out, "<", TypeName(), " object>"); }

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
  if (v.is_undefined()) return "jinja2.runtime.Undefined object";
  if (v.is_object()) return v.object()->ObjectTypeRepr();
  return std::string(StaticTypeRepr(v));
}

namespace {

void AppendReprAt(const Value& v, int depth, std::string* out);

void AppendSeqRepr(const std::vector<Value>& items, const char* open, const char* close, bool tuple,
                   int depth, std::string* out) {
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
  WorkMeter::Charge(1);
  WorkMeter::CheckBytes(out->size());
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
      CatTo(out, v.as_int());
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

void CheckPrintDepth(int depth) {
  if (depth > kMaxPrintDepth) FailLimit("value nests too deeply to print");
}

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
      if (a.shared() == b.shared()) return true;
      if (a.str().size() != b.str().size()) return false;
      WorkMeter::Charge(static_cast<int64_t>(a.str().size() / 256));
      return a.str() == b.str();
    case K::kList: {
      const ListData& x = a.list();
      const ListData& y = b.list();
      if (&x == &y) return true;
      if (x.kind != y.kind) return false;
      if (x.kind == SeqKind::kGenerator || x.kind == SeqKind::kReverseIterator) return false;
      if (x.items.size() != y.items.size()) return false;
      WorkMeter::Charge(static_cast<int64_t>(x.items.size()));
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!Equal(x.items[i], y.items[i])) return false;
      return true;
    }
    case K::kDict: {
      const DictData& x = a.dict();
      const DictData& y = b.dict();
      if (&x == &y) return true;
      if (x.entries.size() != y.entries.size()) return false;
      WorkMeter::Charge(static_cast<int64_t>(x.entries.size()));
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
  if (a.is_string() && b.is_string()) {
    WorkMeter::Charge(static_cast<int64_t>(std::min(a.str().size(), b.str().size()) / 256));
    return Apply(a.str().compare(b.str()), 0, op);
  }
  if (a.is_list() && b.is_list() && a.list().kind == b.list().kind &&
      (a.list().kind == SeqKind::kList || a.list().kind == SeqKind::kTuple)) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    size_t n = std::min(x.size(), y.size());
    WorkMeter::Charge(static_cast<int64_t>(n));
    for (size_t i = 0; i < n; ++i)
      if (!Equal(x[i], y[i])) return Ordered(x[i], y[i], op);
    return Apply(x.size(), y.size(), op);
  }
  Fail("TypeError", Cat("'", OpText(op), "' not supported between instances of '", PyTypeName(a),
                        "' and '", PyTypeName(b), "'"));
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

}  // namespace prefixd::jinja
