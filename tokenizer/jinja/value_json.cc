// JSON in (the render's variables) and out (tojson: Python's json.dumps formatting).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/value.h"

namespace prefixd::jinja {

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

void AppendJsonString(std::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    // A run that needs no escaping is copied at once.
    size_t run = i;
    while (run < s.size()) {
      unsigned char c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c == '"' || c == '\\' || (ensure_ascii && c >= 0x80)) break;
      ++run;
    }
    out->append(s.substr(i, run - i));
    i = run;
    if (i >= s.size()) break;
    char c = s[i];
    if (static_cast<unsigned char>(c) >= 0x80) {  // ensure_ascii
      size_t start = i;
      char32_t cp = DecodeUtf8(s, &i);
      if (cp == 0xFFFD && i - start == 1) {
        out->push_back(c);  // an invalid byte, as is
        continue;
      }
      char buf[16];
      if (cp >= 0x10000) {
        cp -= 0x10000;
        snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (cp >> 10)),
                 static_cast<unsigned>(0xDC00 + (cp & 0x3FF)));
      } else {
        snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      }
      out->append(buf);
      continue;
    }
    ++i;
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
      default: {
        char buf[8];
        snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
        out->append(buf);
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
  Fail("TypeError", Cat("Object of type ", PyTypeName(v), " is not JSON serializable"));
}

void AppendJsonAt(const Value& v, const JsonFormat& format, int depth, std::string* out);

void NewlineIndent(const JsonFormat& format, int depth, std::string* out) {
  if (out->size() > format.max_bytes) FailLimit("the JSON text is too large");
  out->push_back('\n');
  for (int i = 0; i < depth; ++i) out->append(format.indent_unit);
}

void AppendJsonKey(const Value& key, bool ensure_ascii, std::string* out) {
  switch (key.kind()) {
    case Value::Kind::kString:
      AppendJsonString(key.str(), ensure_ascii, out);
      return;
    case Value::Kind::kInt:
      CatTo(out, "\"", key.as_int(), "\"");
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
      Fail("TypeError", Cat("keys must be str, int, float, bool or None, not ", PyTypeName(key)));
  }
}

void AppendJsonAt(const Value& v, const JsonFormat& format, int depth, std::string* out) {
  CheckPrintDepth(depth);
  WorkMeter::Charge(1);
  if (out->size() > format.max_bytes) FailLimit("the JSON text is too large");
  switch (v.kind()) {
    case Value::Kind::kNone:
      out->append("null");
      return;
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "true" : "false");
      return;
    case Value::Kind::kInt:
      CatTo(out, v.as_int());
      return;
    case Value::Kind::kFloat:
      AppendJsonFloat(v.as_float(), out);
      return;
    case Value::Kind::kString:
      AppendJsonString(v.str(), format.ensure_ascii, out);
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
        AppendJsonKey(entries[i]->first, format.ensure_ascii, out);
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
