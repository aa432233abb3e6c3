#include "tokenizer/jinja/py_string.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <type_traits>

namespace prefixd::jinja {

char32_t DecodeUtf8(std::string_view s, size_t* pos) {
  size_t i = *pos;
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *pos = i + 1;
    return c;
  }
  int len = 0;
  char32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  } else {
    *pos = i + 1;
    return 0xFFFD;
  }
  if (i + len > s.size()) {
    *pos = i + 1;
    return 0xFFFD;
  }
  for (int k = 1; k < len; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) {
      *pos = i + 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid.
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    *pos = i + 1;
    return 0xFFFD;
  }
  *pos = i + len;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsAscii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

size_t CodePointCount(std::string_view s) {
  if (IsAscii(s)) return s.size();
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) DecodeUtf8(s, &i);
  return n;
}

std::vector<size_t> CodePointOffsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    offsets.push_back(i);
    DecodeUtf8(s, &i);
  }
  offsets.push_back(s.size());
  return offsets;
}

bool IsPySpace(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

namespace {

// Simple one-to-one case pairs; 0 when the code point has no mapping here.
char32_t LowerOf(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : 0;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
  if (c >= 0x100 && c <= 0x137 && c != 0x130) return (c % 2 == 0) ? c + 1 : 0;
  if (c >= 0x139 && c <= 0x148) return (c % 2 == 1) ? c + 1 : 0;
  if (c >= 0x14A && c <= 0x177) return (c % 2 == 0) ? c + 1 : 0;
  if (c == 0x178) return 0xFF;
  if (c >= 0x179 && c <= 0x17E) return (c % 2 == 1) ? c + 1 : 0;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 0x20;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 0x25;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 0x3F;
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return (c % 2 == 0) ? c + 1 : 0;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 0x20;
  return 0;
}

char32_t UpperOf(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : 0;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 0x20;
  if (c == 0xFF) return 0x178;
  if (c == 0xB5) return 0x39C;
  if (c >= 0x100 && c <= 0x137 && c != 0x131) return (c % 2 == 1) ? c - 1 : 0;
  if (c == 0x131) return 'I';
  if (c >= 0x139 && c <= 0x148) return (c % 2 == 0) ? c - 1 : 0;
  if (c >= 0x14A && c <= 0x177) return (c % 2 == 1) ? c - 1 : 0;
  if (c >= 0x179 && c <= 0x17E) return (c % 2 == 0) ? c - 1 : 0;
  if (c == 0x17F) return 'S';
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 0x20;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 0x25;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 0x3F;
  if (c >= 0x430 && c <= 0x44F) return c - 0x20;
  if (c >= 0x450 && c <= 0x45F) return c - 0x50;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return (c % 2 == 1) ? c - 1 : 0;
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 0x20;
  return 0;
}

bool IsCased(char32_t c) { return LowerOf(c) != 0 || UpperOf(c) != 0 || c == 0xDF; }
bool IsLowerCp(char32_t c) { return UpperOf(c) != 0 || c == 0xDF || c == 0x138 || c == 0x149; }
bool IsUpperCp(char32_t c) { return LowerOf(c) != 0 || c == 0x130; }

void AppendLower(char32_t c, std::string* out) {
  if (c == 0x130) {  // İ -> i + combining dot above
    out->append("i\xCC\x87");
    return;
  }
  char32_t l = LowerOf(c);
  AppendUtf8(l ? l : c, out);
}

// Unicode Case_Ignorable (Mn, Me, Cf, Lm, Sk and Word_Break MidLetter/MidNumLet/Single_Quote),
// for the scripts PyLower knows.
bool IsCaseIgnorable(char32_t c) {
  return c == '\'' || c == '.' || c == ':' || c == '^' || c == '`' || c == 0xA8 || c == 0xAD ||
         c == 0xAF || c == 0xB4 || c == 0xB7 || c == 0xB8 || (c >= 0x2B0 && c <= 0x36F) ||
         c == 0x374 || c == 0x375 || c == 0x37A || c == 0x384 || c == 0x385 || c == 0x387 ||
         (c >= 0x483 && c <= 0x489) || (c >= 0x200B && c <= 0x200F) || c == 0x2018 || c == 0x2019 ||
         c == 0x2024 || c == 0x2027 || (c >= 0x2060 && c <= 0x2064) || c == 0xFEFF;
}

// Python's lower() of U+03A3 at s[start, end): final sigma (U+03C2) when a cased letter
// precedes it and none follows, case-ignorable code points skipped either way.
void AppendLowerSigma(std::string_view s, size_t start, size_t end, std::string* out) {
  bool final_sigma = false;
  for (size_t j = start; j > 0;) {
    size_t k = j - 1;  // find the start of the code point before j
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80 && j - k < 4) --k;
    size_t pos = k;
    char32_t c = DecodeUtf8(s, &pos);
    if (pos != j) {  // not a valid sequence ending at j: one invalid byte
      k = j - 1;
      c = 0xFFFD;
    }
    j = k;
    if (IsCaseIgnorable(c)) continue;
    final_sigma = IsCased(c);
    break;
  }
  for (size_t j = end; final_sigma && j < s.size();) {
    char32_t c = DecodeUtf8(s, &j);
    if (IsCaseIgnorable(c)) continue;
    final_sigma = !IsCased(c);
    break;
  }
  AppendUtf8(final_sigma ? 0x3C2 : 0x3C3, out);
}

void AppendUpper(char32_t c, std::string* out) {
  if (c == 0xDF) {  // ß -> SS
    out->append("SS");
    return;
  }
  char32_t u = UpperOf(c);
  AppendUtf8(u ? u : c, out);
}

// Copies s[start, end) if it is a run of valid UTF-8, else the bytes as they are.
// fn(c, out), or fn(c, out, s, start, end) where it needs the context of s[start, end).
template <typename Fn>
std::string MapCodePoints(std::string_view s, Fn fn) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = DecodeUtf8(s, &i);
    if (c == 0xFFFD && i - start == 1 && static_cast<unsigned char>(s[start]) >= 0x80) {
      out.push_back(s[start]);  // an invalid byte: copied through
      continue;
    }
    if constexpr (std::is_invocable_v<Fn, char32_t, std::string*>) {
      fn(c, &out);
    } else {
      fn(c, &out, s, start, i);
    }
  }
  return out;
}

// AppendLower with Python's Final_Sigma rule for U+03A3.
void AppendLowerInContext(char32_t c, std::string* out, std::string_view s, size_t start,
                          size_t end) {
  if (c == 0x3A3) {
    AppendLowerSigma(s, start, end, out);
  } else {
    AppendLower(c, out);
  }
}

bool IsPrintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c < 0x300) return true;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) || c == 0x3000 || c == 0xFEFF ||
      (c >= 0xFFF9 && c <= 0xFFFB) || c == 0xFFFE || c == 0xFFFF || (c >= 0x600 && c <= 0x605) ||
      c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E)
    return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || c >= 0xF0000) return false;  // surrogates, private use
  if (c >= 0xE0000 && c <= 0xE0FFF) return false;
  return true;
}

}  // namespace

bool IsPyAlpha(char32_t c) {
  if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
  return IsCased(c) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3040 && c <= 0x30FF) ||
         (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0x5D0 && c <= 0x5EA) || (c >= 0x620 && c <= 0x64A);
}

bool IsPyDigit(char32_t c) { return c >= '0' && c <= '9'; }

std::string PyLower(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return out;
  }
  return MapCodePoints(s, AppendLowerInContext);
}

std::string PyUpper(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    return out;
  }
  return MapCodePoints(s, AppendUpper);
}

std::string PyCapitalize(std::string_view s) {
  bool first = true;
  return MapCodePoints(
      s, [&](char32_t c, std::string* out, std::string_view text, size_t start, size_t end) {
        if (first) {
          AppendUpper(c, out);
          first = false;
        } else {
          AppendLowerInContext(c, out, text, start, end);
        }
      });
}

std::string PyTitle(std::string_view s) {
  bool previous_cased = false;
  return MapCodePoints(
      s, [&](char32_t c, std::string* out, std::string_view text, size_t start, size_t end) {
        if (previous_cased) {
          AppendLowerInContext(c, out, text, start, end);
        } else {
          AppendUpper(c, out);
        }
        previous_cased = IsCased(c);
      });
}

bool PyIsLower(std::string_view s) {
  bool any_cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = DecodeUtf8(s, &i);
    if (IsUpperCp(c)) return false;
    if (IsLowerCp(c)) any_cased = true;
  }
  return any_cased;
}

bool PyIsUpper(std::string_view s) {
  bool any_cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = DecodeUtf8(s, &i);
    if (IsLowerCp(c)) return false;
    if (IsUpperCp(c)) any_cased = true;
  }
  return any_cased;
}

namespace {

bool InChars(char32_t c, const std::string* chars) {
  if (chars == nullptr) return IsPySpace(c);
  for (size_t i = 0; i < chars->size();)
    if (DecodeUtf8(*chars, &i) == c) return true;
  return false;
}

// Start of the code point that ends at byte `end` (exclusive).
size_t PreviousCodePoint(std::string_view s, size_t end) {
  size_t i = end - 1;
  int back = 0;
  while (i > 0 && back < 3 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  size_t probe = i;
  DecodeUtf8(s, &probe);
  return probe == end ? i : end - 1;
}

}  // namespace

std::string_view PyStrip(std::string_view s, const std::string* chars, bool left, bool right) {
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end) {
      size_t next = begin;
      char32_t c = DecodeUtf8(s, &next);
      if (!InChars(c, chars)) break;
      begin = next;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = PreviousCodePoint(s, end);
      size_t probe = start;
      char32_t c = DecodeUtf8(s, &probe);
      if (!InChars(c, chars)) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

std::vector<std::string> PySplit(std::string_view s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep != nullptr) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t found = s.find(*sep, pos);
      if (found == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, found - pos));
      pos = found + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  size_t i = 0;
  while (i < s.size()) {
    // Skip whitespace.
    while (i < s.size()) {
      size_t next = i;
      if (!IsPySpace(DecodeUtf8(s, &next))) break;
      i = next;
    }
    if (i >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
      std::string_view rest = PyStrip(s.substr(i), nullptr, false, true);
      out.emplace_back(rest);
      break;
    }
    size_t start = i;
    while (i < s.size()) {
      size_t next = i;
      if (IsPySpace(DecodeUtf8(s, &next))) break;
      i = next;
    }
    out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

std::vector<std::string> PyRSplit(std::string_view s, const std::string* sep, int64_t maxsplit) {
  if (maxsplit < 0) return PySplit(s, sep, maxsplit);
  std::vector<std::string> out;
  if (sep != nullptr) {
    size_t end = s.size();
    while (static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t found = s.rfind(*sep, end - sep->size());
      if (found == std::string_view::npos) break;
      out.emplace_back(s.substr(found + sep->size(), end - found - sep->size()));
      end = found;
    }
    out.emplace_back(s.substr(0, end));
  } else {
    size_t end = s.size();
    while (end > 0) {
      while (end > 0) {
        size_t start = PreviousCodePoint(s, end);
        size_t probe = start;
        if (!IsPySpace(DecodeUtf8(s, &probe))) break;
        end = start;
      }
      if (end == 0) break;
      if (static_cast<int64_t>(out.size()) >= maxsplit) {
        out.emplace_back(PyStrip(s.substr(0, end), nullptr, true, false));
        break;
      }
      size_t begin = end;
      while (begin > 0) {
        size_t start = PreviousCodePoint(s, begin);
        size_t probe = start;
        if (IsPySpace(DecodeUtf8(s, &probe))) break;
        begin = start;
      }
      out.emplace_back(s.substr(begin, end - begin));
      end = begin;
    }
  }
  return {out.rbegin(), out.rend()};
}

std::vector<std::string> PySplitLines(std::string_view s, bool keepends) {
  std::vector<std::string> out;
  size_t line_start = 0;
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = DecodeUtf8(s, &i);
    bool is_break = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
                    c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!is_break) continue;
    if (c == '\r' && i < s.size() && s[i] == '\n') ++i;
    out.emplace_back(s.substr(line_start, (keepends ? i : start) - line_start));
    line_start = i;
  }
  if (line_start < s.size()) out.emplace_back(s.substr(line_start));
  return out;
}

std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts `repl` before every code point and at the end.
    int64_t done = 0;
    size_t i = 0;
    while (i < s.size()) {
      if (count >= 0 && done >= count) break;
      out.append(repl);
      ++done;
      size_t start = i;
      DecodeUtf8(s, &i);
      out.append(s.substr(start, i - start));
    }
    if (i < s.size()) {
      out.append(s.substr(i));
    } else if (count < 0 || done < count) {
      out.append(repl);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t found = s.find(old, pos);
    if (found == std::string_view::npos) break;
    out.append(s.substr(pos, found - pos));
    out.append(repl);
    pos = found + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

void AppendPyRepr(std::string_view s, std::string* out) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  out->push_back(quote);
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = DecodeUtf8(s, &i);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '\r') {
      out->append("\\r");
    } else if (c == '\t') {
      out->append("\\t");
    } else if (c == 0xFFFD && i - start == 1 && static_cast<unsigned char>(s[start]) >= 0x80) {
      out->push_back(s[start]);  // an invalid byte: copied through
    } else if (IsPrintable(c)) {
      out->append(s.substr(start, i - start));
    } else {
      char buf[16];
      if (c < 0x100) {
        snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      } else {
        snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(c));
      }
      out->append(buf);
    }
  }
  out->push_back(quote);
}

void AppendPyFloat(double x, std::string* out) {
  if (std::isnan(x)) {
    out->append("nan");
    return;
  }
  if (std::isinf(x)) {
    out->append(x < 0 ? "-inf" : "inf");
    return;
  }
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof(buf), x, std::chars_format::scientific);
  std::string_view sci(buf, result.ptr - buf);
  // sci is "[-]d[.ddd]e[+-]xx": split into sign, digits and exponent.
  bool negative = false;
  if (!sci.empty() && sci[0] == '-') {
    negative = true;
    sci.remove_prefix(1);
  }
  size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '.') digits.push_back(c);
  int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int decpt = exponent + 1;  // x = 0.digits * 10^decpt
  if (negative) out->push_back('-');
  int n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out->push_back(digits[0]);
    if (n > 1) {
      out->push_back('.');
      out->append(digits, 1, std::string::npos);
    }
    char ebuf[16];
    snprintf(ebuf, sizeof(ebuf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out->append(ebuf);
  } else if (decpt <= 0) {
    out->append("0.");
    out->append(static_cast<size_t>(-decpt), '0');
    out->append(digits);
  } else if (decpt >= n) {
    out->append(digits);
    out->append(static_cast<size_t>(decpt - n), '0');
    out->append(".0");
  } else {
    out->append(digits, 0, decpt);
    out->push_back('.');
    out->append(digits, decpt, std::string::npos);
  }
}

}  // namespace prefixd::jinja
