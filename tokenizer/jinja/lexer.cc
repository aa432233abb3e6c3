#include "tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "tokenizer/jinja/py_string.h"
#include "tokenizer/jinja/value.h"

namespace prefixd::jinja {
namespace {

// Operators, longest first so that "//" wins over "/".
constexpr std::string_view kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                           "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                           ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};

bool IsNameStart(unsigned char c) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
bool IsNameChar(unsigned char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // Newlines become \n; one trailing newline goes (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      size_t tag = FindTagStart(pos);
      if (tag == std::string::npos) {
        EmitText(pos, std::string_view(src_).substr(pos));
        break;
      }
      char kind = src_[tag + 1];
      char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+')
                      ? src_[tag + 2]
                      : 0;
      size_t raw_content = kind == '%' ? MatchRawBegin(tag) : std::string::npos;
      std::string_view text = std::string_view(src_).substr(pos, tag - pos);
      EmitText(pos, StripBeforeTag(text, sign, kind != '{', line_starting));
      pos = tag + 2 + (sign ? 1 : 0);
      if (raw_content != std::string::npos) {
        pos = LexRaw(raw_content, &line_starting);
      } else if (kind == '#') {
        pos = LexComment(tag, pos);
        line_starting = src_[pos - 1] == '\n';
      } else {
        pos = LexTag(tag, pos, kind == '{');
        line_starting = src_[pos - 1] == '\n';
      }
    }
    Token eof{TokenType::kEof, ""};
    SetPosition(src_.size(), &eof);
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

  std::vector<Token> TakeTokens() { return std::move(tokens_); }

 private:
  [[noreturn]] void SyntaxError(size_t pos, std::string message) {
    Error error(absl::StatusCode::kInvalidArgument, "TemplateSyntaxError", std::move(message));
    Token t;
    SetPosition(pos, &t);
    error.line = t.line;
    error.column = t.column;
    throw error;
  }

  void SetPosition(size_t pos, Token* token) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    size_t line_index = static_cast<size_t>(it - line_starts_.begin()) - 1;
    token->line = static_cast<int>(line_index + 1);
    token->column = static_cast<int>(pos - line_starts_[line_index] + 1);
  }

  size_t FindTagStart(size_t pos) const {
    while (true) {
      pos = src_.find('{', pos);
      if (pos == std::string::npos || pos + 1 >= src_.size()) return std::string::npos;
      char next = src_[pos + 1];
      if (next == '{' || next == '%' || next == '#') return pos;
      ++pos;
    }
  }

  bool SpaceAt(size_t pos, size_t* next) const {
    size_t i = pos;
    if (i >= src_.size() || !IsPySpace(DecodeUtf8(src_, &i))) return false;
    *next = i;
    return true;
  }
  size_t SkipSpace(size_t pos) const {
    size_t next;
    while (SpaceAt(pos, &next)) pos = next;
    return pos;
  }
  bool MatchWord(size_t pos, std::string_view word, size_t* end) const {
    if (src_.compare(pos, word.size(), word) != 0) return false;
    *end = pos + word.size();
    return true;
  }

  // lstrip_blocks and `-`: what of `text` stays before a tag opened with `sign`.
  static std::string_view StripBeforeTag(std::string_view text, char sign, bool block_or_comment,
                                         bool line_starting) {
    if (sign == '-') return PyStrip(text, nullptr, false, true);
    if (sign == '+' || !block_or_comment) return text;
    size_t line_pos = text.rfind('\n');
    line_pos = line_pos == std::string_view::npos ? 0 : line_pos + 1;
    if (line_pos == 0 && !line_starting) return text;
    std::string_view tail = text.substr(line_pos);
    if (tail.empty() || !PyStrip(tail, nullptr, true, false).empty()) return text;
    return text.substr(0, line_pos);
  }

  void EmitText(size_t pos, std::string_view text) {
    if (text.empty()) return;
    Token t{TokenType::kText, std::string(text)};
    SetPosition(pos, &t);
    tokens_.push_back(std::move(t));
  }

  // After a tag's end marker: `-` strips all following whitespace, plain block/comment ends
  // drop one newline (trim_blocks), `+` keeps everything.
  size_t AfterEnd(size_t pos, char sign, bool trim) const {
    if (sign == '-') return SkipSpace(pos);
    if (sign != '+' && trim && pos < src_.size() && src_[pos] == '\n') return pos + 1;
    return pos;
  }

  // `{%[-+] raw [-]%}` at `tag`: the position after it, or npos.
  size_t MatchRawBegin(size_t tag) const {
    size_t p = tag + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = SkipSpace(p);
    if (!MatchWord(p, "raw", &p)) return std::string::npos;
    p = SkipSpace(p);
    if (MatchWord(p, "-%}", &p)) return SkipSpace(p);
    if (MatchWord(p, "%}", &p)) return p;
    return std::string::npos;
  }

  size_t LexRaw(size_t content, bool* line_starting) {
    *line_starting = src_[content - 1] == '\n';
    size_t search = content;
    while (true) {
      size_t tag = src_.find("{%", search);
      if (tag == std::string::npos) SyntaxError(content, "Missing end of raw directive");
      size_t p = tag + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = SkipSpace(p);
      char end_sign = 0;
      if (MatchWord(p, "endraw", &p)) {
        p = SkipSpace(p);
        if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) end_sign = src_[p++];
        if (MatchWord(p, "%}", &p)) {
          std::string_view text = std::string_view(src_).substr(content, tag - content);
          EmitText(content, StripBeforeTag(text, sign, true, *line_starting));
          size_t end = AfterEnd(p, end_sign, true);
          *line_starting = src_[end - 1] == '\n';
          return end;
        }
      }
      search = tag + 2;
    }
  }

  size_t LexComment(size_t tag, size_t content) {
    size_t end = src_.find("#}", content);
    if (end == std::string::npos) SyntaxError(tag, "Missing end of comment tag");
    char sign = end > content && (src_[end - 1] == '-' || src_[end - 1] == '+') ? src_[end - 1] : 0;
    return AfterEnd(end + 2, sign, true);
  }

  // Tokens of {{ ... }} or {% ... %} from `pos` (after the opening marker and its sign).
  size_t LexTag(size_t tag, size_t pos, bool variable) {
    Token begin{variable ? TokenType::kVariableBegin : TokenType::kBlockBegin, ""};
    SetPosition(tag, &begin);
    tokens_.push_back(std::move(begin));
    const char close = variable ? '}' : '%';
    std::vector<char> balance;  // open brackets awaiting their closer
    while (true) {
      pos = SkipSpace(pos);
      if (pos >= src_.size()) {
        SyntaxError(pos, variable ? "unexpected end of template, expected 'end of print "
                                    "statement'."
                                  : "unexpected end of template, expected 'end of statement "
                                    "block'.");
      }
      if (balance.empty()) {
        char sign = 0;
        size_t p = pos;
        if (src_[p] == '-' || (src_[p] == '+' && !variable)) sign = src_[p++];
        if (p + 1 < src_.size() && src_[p] == close && src_[p + 1] == '}') {
          Token end{variable ? TokenType::kVariableEnd : TokenType::kBlockEnd, ""};
          SetPosition(pos, &end);
          tokens_.push_back(std::move(end));
          return AfterEnd(p + 2, sign, !variable);
        }
      }
      pos = LexToken(pos, &balance);
    }
  }

  size_t LexToken(size_t pos, std::vector<char>* balance) {
    Token t;
    SetPosition(pos, &t);
    char c = src_[pos];
    size_t end;
    if (IsDigit(c)) {
      end = LexNumber(pos, &t);
    } else if (IsNameStart(static_cast<unsigned char>(c))) {
      end = pos;
      while (end < src_.size() && IsNameChar(static_cast<unsigned char>(src_[end]))) {
        size_t next = end;
        if (static_cast<unsigned char>(src_[end]) >= 0x80 && IsPySpace(DecodeUtf8(src_, &next)))
          break;
        ++end;
      }
      t.type = TokenType::kName;
      t.value = src_.substr(pos, end - pos);
    } else if (c == '\'' || c == '"') {
      end = LexString(pos, &t);
    } else {
      end = std::string::npos;
      for (std::string_view op : kOperators) {
        if (src_.compare(pos, op.size(), op) == 0) {
          t.type = TokenType::kOperator;
          t.value = std::string(op);
          end = pos + op.size();
          break;
        }
      }
      if (end == std::string::npos) {
        std::string shown;
        AppendPyRepr(std::string_view(src_).substr(pos, 1), &shown);
        SyntaxError(pos, Cat("unexpected char ", shown, " at ", pos));
      }
      if (c == '(' || c == '[' || c == '{') {
        balance->push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (c == ')' || c == ']' || c == '}') {
        if (balance->empty()) SyntaxError(pos, Cat("unexpected '", t.value, "'"));
        if (balance->back() != c) {
          SyntaxError(pos, Cat("unexpected '", t.value, "', expected '",
                               std::string(1, balance->back()), "'"));
        }
        balance->pop_back();
      }
    }
    tokens_.push_back(std::move(t));
    return end;
  }

  // Digits with optional single underscores between them, from `pos`; returns the end.
  size_t Digits(size_t pos, bool (*is_digit)(char)) const {
    size_t p = pos;
    if (p >= src_.size() || !is_digit(src_[p])) return pos;
    ++p;
    while (p < src_.size()) {
      if (is_digit(src_[p])) {
        ++p;
      } else if (src_[p] == '_' && p + 1 < src_.size() && is_digit(src_[p + 1])) {
        p += 2;
      } else {
        break;
      }
    }
    return p;
  }

  size_t LexNumber(size_t pos, Token* t) {
    auto text_without_underscores = [&](size_t from, size_t to) {
      std::string s;
      for (size_t i = from; i < to; ++i)
        if (src_[i] != '_') s.push_back(src_[i]);
      return s;
    };
    // Prefixed integers.
    if (src_[pos] == '0' && pos + 1 < src_.size()) {
      char p = static_cast<char>(src_[pos + 1] | 0x20);
      int base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
      if (base != 0) {
        size_t q = pos + 2;
        uint64_t v = 0;
        bool any = false;
        while (q < src_.size()) {
          char d = src_[q];
          if (d == '_' && q + 1 < src_.size()) {
            ++q;
            continue;
          }
          int digit = IsDigit(d)                                 ? d - '0'
                      : ((d | 0x20) >= 'a' && (d | 0x20) <= 'f') ? (d | 0x20) - 'a' + 10
                                                                 : 99;
          if (digit >= base) break;
          if (v > (static_cast<uint64_t>(INT64_MAX) - digit) / base)
            SyntaxError(pos, "integer literal is too large");
          v = v * base + digit;
          any = true;
          ++q;
        }
        if (any) {
          t->type = TokenType::kInteger;
          t->int_value = static_cast<int64_t>(v);
          return q;
        }
      }
    }
    size_t int_end = Digits(pos, IsDigit);
    size_t end = int_end;
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && IsDigit(src_[end + 1])) {
      end = Digits(end + 1, IsDigit);
      is_float = true;
    }
    if (end < src_.size() && (src_[end] | 0x20) == 'e') {
      size_t q = end + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      size_t exp_end = Digits(q, IsDigit);
      if (exp_end > q) {
        end = exp_end;
        is_float = true;
      }
    }
    if (!is_float && src_[pos] == '0') {
      // jinja2's integer rule is [1-9](_?\d)* | 0(_?0)*: "09" is 0 followed by 9.
      end = pos + 1;
      while (end < src_.size()) {
        if (src_[end] == '0') {
          ++end;
        } else if (src_[end] == '_' && end + 1 < src_.size() && src_[end + 1] == '0') {
          end += 2;
        } else {
          break;
        }
      }
    }
    std::string digits = text_without_underscores(pos, end);
    if (is_float) {
      t->type = TokenType::kFloat;
      t->float_value = std::strtod(digits.c_str(), nullptr);
    } else {
      t->type = TokenType::kInteger;
      errno = 0;
      char* parse_end = nullptr;
      long long v = std::strtoll(digits.c_str(), &parse_end, 10);
      if (errno == ERANGE) SyntaxError(pos, "integer literal is too large");
      t->int_value = v;
    }
    return end;
  }

  size_t LexString(size_t pos, Token* t) {
    char quote = src_[pos];
    std::string out;
    size_t i = pos + 1;
    while (true) {
      if (i >= src_.size()) {
        std::string shown;
        AppendPyRepr(std::string(1, quote), &shown);
        SyntaxError(pos, Cat("unexpected char ", shown, " at ", pos));
      }
      char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        out.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) {
        ++i;
        continue;  // reaches the end: reported above
      }
      i = DecodeEscape(i, &out);
    }
    t->type = TokenType::kString;
    t->value = std::move(out);
    return i + 1;
  }

  // Python's unicode-escape decoding of the escape at src_[i] == '\\'.
  size_t DecodeEscape(size_t i, std::string* out) {
    char e = src_[i + 1];
    auto hex = [&](size_t from, int count) -> int64_t {
      int64_t v = 0;
      for (int k = 0; k < count; ++k) {
        size_t p = from + k;
        char d = p < src_.size() ? src_[p] : 0;
        int digit = IsDigit(d)                                 ? d - '0'
                    : ((d | 0x20) >= 'a' && (d | 0x20) <= 'f') ? (d | 0x20) - 'a' + 10
                                                               : -1;
        if (digit < 0) return -1;
        v = v * 16 + digit;
      }
      return v;
    };
    switch (e) {
      case '\n':
        return i + 2;
      case '\\':
      case '\'':
      case '"':
        out->push_back(e);
        return i + 2;
      case 'a':
        out->push_back('\a');
        return i + 2;
      case 'b':
        out->push_back('\b');
        return i + 2;
      case 'f':
        out->push_back('\f');
        return i + 2;
      case 'n':
        out->push_back('\n');
        return i + 2;
      case 'r':
        out->push_back('\r');
        return i + 2;
      case 't':
        out->push_back('\t');
        return i + 2;
      case 'v':
        out->push_back('\v');
        return i + 2;
      case 'x':
      case 'u':
      case 'U': {
        int count = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        int64_t cp = hex(i + 2, count);
        if (cp < 0) {
          SyntaxError(i, Cat("truncated \\", std::string(1, e == 'x' ? 'x' : e),
                             std::string(count, 'X'), " escape"));
        }
        if (cp > 0x10FFFF) SyntaxError(i, "illegal Unicode character");
        AppendUtf8(cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : static_cast<char32_t>(cp), out);
        return i + 2 + count;
      }
      case 'N':  // named escapes need Unicode's name table, which this lexer lacks
        SyntaxError(i, i + 2 < src_.size() && src_[i + 2] == '{'
                           ? "\\N{...} escapes are not supported"
                           : "malformed \\N character escape");
      default:
        break;
    }
    if (e >= '0' && e <= '7') {
      int v = 0;
      size_t p = i + 1;
      for (int k = 0; k < 3 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k, ++p)
        v = v * 8 + (src_[p] - '0');
      AppendUtf8(static_cast<char32_t>(v), out);
      return p;
    }
    if (static_cast<unsigned char>(e) >= 0x80) {
      // backslashreplace turned the character into its escape text before decoding.
      size_t next = i + 1;
      char32_t cp = DecodeUtf8(src_, &next);
      char buf[16];
      if (cp < 0x100) {
        snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(cp));
      } else if (cp < 0x10000) {
        snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      } else {
        snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(cp));
      }
      out->append(buf);
      return next;
    }
    out->push_back('\\');  // unknown escapes stay as written
    return i + 1;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Tokenize(std::string_view source) {
  Lexer lexer(source);
  try {
    return lexer.Run();
  } catch (const Error& error) {
    std::vector<Token> tokens = lexer.TakeTokens();
    Token t{TokenType::kError, error.message};
    t.line = error.line;
    t.column = error.column;
    tokens.push_back(std::move(t));
    return tokens;
  }
}

std::string DescribeToken(const Token& token) {
  switch (token.type) {
    case TokenType::kText:
      return "template data / text";
    case TokenType::kVariableBegin:
      return "begin of print statement";
    case TokenType::kVariableEnd:
      return "end of print statement";
    case TokenType::kBlockBegin:
      return "begin of statement block";
    case TokenType::kBlockEnd:
      return "end of statement block";
    case TokenType::kName:
    case TokenType::kOperator:
      return token.value;
    case TokenType::kString:
      return "string";
    case TokenType::kInteger:
      return "integer";
    case TokenType::kFloat:
      return "float";
    case TokenType::kEof:
      return "end of template";
    case TokenType::kError:
      return "error";
  }
  return "?";
}

}  // namespace prefixd::jinja
