#include "tokenizer/jinja/format.h"

#include <cmath>
#include <cstdio>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/runtime.h"

namespace prefixd::jinja {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Pads `body` (code points) to `width` with `fill`; align '<', '>', '^'.
std::string Pad(std::string body, int64_t width, char align, const std::string& fill) {
  int64_t len = static_cast<int64_t>(CodePointCount(body));
  if (width <= len) return body;
  int64_t pad = width - len;
  int64_t left = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += body;
  for (int64_t i = 0; i < pad - left; ++i) out += fill;
  return out;
}

std::string Truncate(const std::string& s, int64_t code_points) {
  if (code_points < 0) return s;
  std::vector<size_t> offsets = CodePointOffsets(s);
  if (static_cast<size_t>(code_points) + 1 >= offsets.size()) return s;
  return s.substr(0, offsets[code_points]);
}

double FloatArg(const Value& v, char conversion) {
  if (v.is_number()) return v.AsDouble();
  if (v.is_undefined()) FailUndefined(v);
  Fail("TypeError", Cat("%", std::string(1, conversion), " format: a real number is required, not ",
                        PyTypeName(v)));
}

}  // namespace

std::string PyPercentFormat(Interpreter& interp, const std::string& fmt, const CallArgs& args) {
  const DictData* mapping = nullptr;
  std::shared_ptr<DictData> kwargs_dict;
  if (!args.kwargs.empty()) {
    kwargs_dict = std::make_shared<DictData>();
    for (const auto& [name, value] : args.kwargs) kwargs_dict->Set(Value::String(name), value);
    mapping = kwargs_dict.get();
  } else if (args.positional.size() == 1 && args.positional[0].is_dict()) {
    mapping = &args.positional[0].dict();
  }
  size_t next_arg = 0;
  bool used_mapping = false;
  auto take = [&]() -> const Value& {
    if (next_arg >= args.positional.size())
      Fail("TypeError", "not enough arguments for format string");
    return args.positional[next_arg++];
  };
  std::string out;
  for (size_t i = 0; i < fmt.size();) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i++]);
      continue;
    }
    ++i;
    if (i >= fmt.size()) Fail("ValueError", "incomplete format");
    const Value* value = nullptr;
    if (fmt[i] == '(') {
      size_t close = fmt.find(')', i);
      if (close == std::string::npos) Fail("ValueError", "incomplete format key");
      if (mapping == nullptr) Fail("TypeError", "format requires a mapping");
      std::string key = fmt.substr(i + 1, close - i - 1);
      value = mapping->Find(std::string_view(key));
      if (value == nullptr) Fail("KeyError", Repr(Value::String(key)));
      used_mapping = true;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos)
      flags.push_back(fmt[i++]);
    int64_t width = -1, precision = -1;
    if (i < fmt.size() && fmt[i] == '*') {
      width = RequireInt(take(), "* width");
      ++i;
    } else {
      while (i < fmt.size() && IsDigit(fmt[i]))
        width = std::min<int64_t>(std::max<int64_t>(width, 0) * 10 + (fmt[i++] - '0'), 1 << 30);
    }
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      precision = 0;
      if (i < fmt.size() && fmt[i] == '*') {
        precision = RequireInt(take(), "* precision");
        ++i;
      } else {
        while (i < fmt.size() && IsDigit(fmt[i]))
          precision = std::min<int64_t>(precision * 10 + (fmt[i++] - '0'), 1 << 30);
      }
    }
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) Fail("ValueError", "incomplete format");
    char conversion = fmt[i++];
    if (width > 1'000'000 || precision > 1'000'000) Fail("ValueError", "width too big");
    if (conversion == '%') {
      out.push_back('%');
      continue;
    }
    if (value == nullptr) value = &take();
    bool left = flags.find('-') != std::string::npos;
    switch (conversion) {
      case 's':
      case 'r':
      case 'a': {
        std::string body = conversion == 's' ? ToStr(*value) : Repr(*value);
        out += Pad(Truncate(body, precision), width, left ? '<' : '>', " ");
        break;
      }
      case 'c': {
        std::string body;
        if (value->is_string() && CodePointCount(value->str()) == 1) {
          body = value->str();
        } else if (value->is_int()) {
          if (value->as_int() < 0 || value->as_int() > 0x10FFFF)
            Fail("OverflowError", "%c arg not in range(0x110000)");
          AppendUtf8(static_cast<char32_t>(value->as_int()), &body);
        } else {
          Fail("TypeError", "%c requires int or char");
        }
        out += Pad(body, width, left ? '<' : '>', " ");
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        int64_t n;
        if (value->is_int() || value->is_bool()) {
          n = value->AsInt();
        } else if (value->is_float() &&
                   (conversion == 'd' || conversion == 'i' || conversion == 'u')) {
          double f = value->as_float();
          if (!std::isfinite(f) || std::fabs(f) >= 9.2e18)
            Fail("OverflowError", "cannot convert float to integer");
          n = static_cast<int64_t>(f);
        } else {
          if (value->is_undefined()) FailUndefined(*value);
          Fail("TypeError",
               Cat("%", std::string(1, conversion), " format: ",
                   conversion == 'x' || conversion == 'X' || conversion == 'o' ? "an integer"
                                                                               : "a real number",
                   " is required, not ", PyTypeName(*value)));
        }
        char c = conversion == 'i' || conversion == 'u' ? 'd' : conversion;
        std::string spec = Cat("%", flags, width >= 0 ? Cat(width) : "",
                               precision >= 0 ? Cat(".", precision) : "", "ll", std::string(1, c));
        char buf[128];
        if (c == 'd') {
          snprintf(buf, sizeof(buf), spec.c_str(), static_cast<long long>(n));
          out += buf;
        } else {
          // Python prints negative hex/octal with a sign, not as two's complement.
          std::string sign = n < 0 ? "-" : "";
          unsigned long long magnitude = n < 0 ? 0ull - static_cast<unsigned long long>(n)
                                               : static_cast<unsigned long long>(n);
          std::string body_spec =
              Cat("%", flags.find('#') != std::string::npos ? "#" : "", "ll", std::string(1, c));
          snprintf(buf, sizeof(buf), body_spec.c_str(), magnitude);
          std::string body = buf;
          if (c == 'o' && flags.find('#') != std::string::npos) body = "0o" + body.substr(1);
          if (sign.empty() && flags.find('+') != std::string::npos) sign = "+";
          if (flags.find('0') != std::string::npos && !left) {
            int64_t pad = width - static_cast<int64_t>(sign.size() + body.size());
            out += sign + std::string(pad > 0 ? pad : 0, '0') + body;
          } else {
            out += Pad(sign + body, width, left ? '<' : '>', " ");
          }
        }
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G': {
        double f = FloatArg(*value, conversion);
        std::string spec =
            Cat("%", flags, width >= 0 ? Cat(width) : "", precision >= 0 ? Cat(".", precision) : "",
                std::string(1, conversion));
        int n = snprintf(nullptr, 0, spec.c_str(), f);
        std::string buf(static_cast<size_t>(n) + 1, '\0');
        snprintf(buf.data(), buf.size(), spec.c_str(), f);
        buf.resize(n);
        out += buf;
        break;
      }
      default:
        Fail("ValueError", Cat("unsupported format character '", std::string(1, conversion), "'"));
    }
    interp.CheckSize(out.size());
  }
  if (!used_mapping && next_arg < args.positional.size() && mapping == nullptr)
    Fail("TypeError", "not all arguments converted during string formatting");
  return out;
}

std::string FormatWithSpec(const Value& value, std::string_view spec) {
  if (value.is_undefined() && spec.empty()) return "";
  // [[fill]align][sign][#][0][width][grouping][.precision][type]
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  {
    size_t first_end = 0;
    if (!spec.empty()) DecodeUtf8(spec, &first_end);
    if (first_end < spec.size() &&
        std::string_view("<>^=").find(spec[first_end]) != std::string_view::npos) {
      fill = std::string(spec.substr(0, first_end));
      align = spec[first_end];
      i = first_end + 1;
    } else if (!spec.empty() && std::string_view("<>^=").find(spec[0]) != std::string_view::npos) {
      align = spec[0];
      i = 1;
    }
  }
  char sign = 0;
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec[i++];
  bool alternate = false;
  if (i < spec.size() && spec[i] == '#') {
    alternate = true;
    ++i;
  }
  if (i < spec.size() && spec[i] == '0') {
    if (align == 0) {
      fill = "0";
      align = '=';
    }
    ++i;
  }
  int64_t width = -1;
  while (i < spec.size() && IsDigit(spec[i]))
    width = std::min<int64_t>(std::max<int64_t>(width, 0) * 10 + (spec[i++] - '0'), 1 << 30);
  char grouping = 0;
  if (i < spec.size() && (spec[i] == ',' || spec[i] == '_')) grouping = spec[i++];
  int64_t precision = -1;
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    precision = 0;
    while (i < spec.size() && IsDigit(spec[i]))
      precision = std::min<int64_t>(precision * 10 + (spec[i++] - '0'), 1 << 30);
  }
  char type = 0;
  if (i < spec.size()) type = spec[i++];
  if (i != spec.size() || width > 1'000'000 || precision > 1'000'000)
    Fail("ValueError", "Invalid format specifier");

  if (value.is_string() || (!value.is_number() && spec.empty())) {
    if (type != 0 && type != 's') {
      Fail("ValueError", Cat("Unknown format code '", std::string(1, type),
                             "' for object of type '", PyTypeName(value), "'"));
    }
    if (!value.is_string() && !spec.empty())
      Fail("TypeError",
           Cat("unsupported format string passed to ", PyTypeName(value), ".__format__"));
    std::string body = Truncate(ToStr(value), precision);
    return Pad(std::move(body), width, align == 0 ? '<' : align, fill);
  }
  if (!value.is_number()) {
    Fail("TypeError",
         Cat("unsupported format string passed to ", PyTypeName(value), ".__format__"));
  }
  if (value.is_bool() && type == 0 && spec.empty()) return value.as_bool() ? "True" : "False";
  std::string body;
  bool negative = false;
  bool integral = (value.is_int() || value.is_bool()) &&
                  (type == 0 || type == 'd' || type == 'n' || type == 'x' || type == 'X' ||
                   type == 'o' || type == 'b' || type == 'c');
  if (integral) {
    int64_t n = value.AsInt();
    negative = n < 0;
    unsigned long long m =
        negative ? 0ull - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
    char buf[80];
    if (type == 'x' || type == 'X') {
      snprintf(buf, sizeof(buf), type == 'x' ? "%llx" : "%llX", m);
      body = Cat(alternate ? (type == 'x' ? "0x" : "0X") : "", buf);
    } else if (type == 'o') {
      snprintf(buf, sizeof(buf), "%llo", m);
      body = Cat(alternate ? "0o" : "", buf);
    } else if (type == 'b') {
      std::string bits;
      for (unsigned long long x = m; x > 0; x >>= 1) bits.insert(bits.begin(), '0' + (x & 1));
      body = Cat(alternate ? "0b" : "", bits.empty() ? "0" : bits);
    } else if (type == 'c') {
      AppendUtf8(static_cast<char32_t>(m), &body);
    } else {
      body = Cat(m);
    }
  } else {
    if (value.is_int() && type != 0 &&
        std::string_view("eEfFgG%").find(type) == std::string_view::npos) {
      Fail("ValueError",
           Cat("Unknown format code '", std::string(1, type), "' for object of type 'int'"));
    }
    double f = value.AsDouble();
    negative = std::signbit(f) && !std::isnan(f);
    double m = std::fabs(f);
    if (type == 0 && precision < 0) {
      AppendPyFloat(m, &body);
    } else {
      char t = type == 0 ? 'g' : type == '%' ? 'f' : type;
      if (type == '%') m *= 100;
      int p = precision < 0 ? 6 : static_cast<int>(precision);
      std::string cspec = Cat("%", alternate ? "#" : "", ".", p, std::string(1, t));
      int n = snprintf(nullptr, 0, cspec.c_str(), m);
      body.resize(static_cast<size_t>(n) + 1);
      snprintf(body.data(), body.size(), cspec.c_str(), m);
      body.resize(n);
      if (type == '%') body += "%";
    }
    if (type == 0 && precision >= 0 && body.find_first_of(".einf") == std::string::npos)
      body += ".0";
  }
  if (grouping != 0) {
    size_t digits_end = body.find_first_not_of("0123456789");
    if (digits_end == std::string::npos) digits_end = body.size();
    std::string grouped;
    for (size_t k = 0; k < digits_end; ++k) {
      if (k > 0 && (digits_end - k) % 3 == 0) grouped.push_back(grouping);
      grouped.push_back(body[k]);
    }
    body = grouped + body.substr(digits_end);
  }
  std::string sign_text = negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
  if (align == '=') {
    int64_t len = static_cast<int64_t>(sign_text.size() + CodePointCount(body));
    std::string out = sign_text;
    for (int64_t k = len; k < width; ++k) out += fill;
    return out + body;
  }
  return Pad(sign_text + body, width, align == 0 ? '>' : align, fill);
}

namespace {

std::string StrFormatAt(Interpreter& interp, const std::string& fmt, const CallArgs& args,
                        int depth) {
  if (depth > 2) Fail("ValueError", "Max string recursion exceeded");
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size();) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        i += 2;
        continue;
      }
      Fail("ValueError", "Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      i += 2;
      continue;
    }
    // A field: find its matching '}' (one nested level for the spec).
    size_t j = i + 1;
    int depth = 1;
    while (j < fmt.size() && depth > 0) {
      if (fmt[j] == '{') ++depth;
      if (fmt[j] == '}') --depth;
      if (depth > 0) ++j;
    }
    if (j >= fmt.size()) Fail("ValueError", "expected '}' before end of string");
    std::string field = fmt.substr(i + 1, j - i - 1);
    i = j + 1;
    std::string spec;
    char conversion = 0;
    size_t colon = field.find(':');
    if (colon != std::string::npos) {
      spec = StrFormatAt(interp, field.substr(colon + 1), args, depth + 1);  // nested fields
      field.resize(colon);
    }
    size_t bang = field.find('!');
    if (bang != std::string::npos) {
      if (bang + 2 != field.size()) Fail("ValueError", "expected ':' after conversion specifier");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    size_t name_end = field.find_first_of(".[");
    std::string name = field.substr(0, name_end);
    Value value;
    if (name.empty() || IsDigit(name[0])) {
      size_t index = auto_index;
      if (name.empty()) {
        ++auto_index;
      } else {
        index = std::stoul(name.substr(0, 9));
      }
      if (index >= args.positional.size())
        Fail("IndexError", Cat("Replacement index ", index,
                               " out of range for "
                               "positional args tuple"));
      value = args.positional[index];
    } else {
      bool found = false;
      for (const auto& [key, v] : args.kwargs) {
        if (key == name) {
          value = v;
          found = true;
        }
      }
      if (!found) Fail("KeyError", Repr(Value::String(name)));
    }
    // .attr and [key] chains.
    for (size_t k = name_end; k != std::string::npos && k < field.size();) {
      if (field[k] == '.') {
        size_t end = field.find_first_of(".[", k + 1);
        value = interp.GetAttr(
            value, field.substr(k + 1, end == std::string::npos ? std::string::npos : end - k - 1));
        k = end;
      } else {
        size_t end = field.find(']', k);
        if (end == std::string::npos) Fail("ValueError", "Missing ']' in format string");
        std::string key = field.substr(k + 1, end - k - 1);
        bool numeric = !key.empty() && key.find_first_not_of("0123456789") == std::string::npos;
        value = interp.GetItem(
            value, numeric ? Value::Int(std::stoll(key.substr(0, 18))) : Value::String(key));
        k = end + 1;
      }
    }
    if (conversion == 'r' || conversion == 'a') {
      value = Value::String(Repr(value));
    } else if (conversion == 's') {
      value = Value::String(ToStr(value));
    } else if (conversion != 0) {
      Fail("ValueError", Cat("Unknown conversion specifier ", std::string(1, conversion)));
    }
    out += FormatWithSpec(value, spec);
    interp.CheckSize(out.size());
  }
  return out;
}

}  // namespace

std::string PyStrFormat(Interpreter& interp, const std::string& fmt, const CallArgs& args) {
  return StrFormatAt(interp, fmt, args, 0);
}

}  // namespace prefixd::jinja
