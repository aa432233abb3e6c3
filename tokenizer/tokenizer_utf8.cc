#include "tokenizer/tokenizer_utf8.h"

#include <cstdint>

#include "absl/strings/str_format.h"

namespace prefixd {
namespace {

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Bytes a sequence starting with `lead` has in all; 0 if `lead` cannot start one.
int SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The range the byte after `lead` must lie in; it excludes overlong forms, surrogates
// (ED A0..BF) and code points above U+10FFFF.
bool SecondByteValid(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return IsContinuation(b);
  }
}

}  // namespace

Utf8Char DecodeUtf8(std::string_view text, size_t pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const int n = SequenceLength(lead);
  if (n == 1) return {lead, 1, true};
  if (n == 0 || pos + n > text.size()) return {};
  const auto second = static_cast<uint8_t>(text[pos + 1]);
  if (!SecondByteValid(lead, second)) return {};
  char32_t cp = lead & (0x7F >> n);
  for (int i = 1; i < n; ++i) {
    const auto b = static_cast<uint8_t>(text[pos + i]);
    if (!IsContinuation(b)) return {};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, n, true};
}

size_t PreviousUtf8Start(std::string_view text, size_t pos) {
  // A character is at most 4 bytes; look back for a start whose sequence ends at pos.
  for (size_t back = 1; back <= 4 && back <= pos; ++back) {
    const size_t start = pos - back;
    if (IsContinuation(static_cast<uint8_t>(text[start]))) continue;
    const Utf8Char c = DecodeUtf8(text, start);
    if (c.valid && start + c.length == pos) return start;
    break;
  }
  return pos - 1;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t CompleteUtf8PrefixLength(std::string_view bytes) {
  const size_t len = bytes.size();
  const size_t lowest = len >= 3 ? len - 3 : 0;
  for (size_t i = len; i > lowest; --i) {
    const auto b = static_cast<uint8_t>(bytes[i - 1]);
    if (IsContinuation(b)) continue;
    const size_t start = i - 1;
    const size_t have = len - start;
    const int need = SequenceLength(b);
    if (need <= 1 || have >= static_cast<size_t>(need)) return len;
    // An incomplete sequence: hold it back only if what is there can still be completed.
    if (have >= 2 && !SecondByteValid(b, static_cast<uint8_t>(bytes[start + 1]))) return len;
    return start;
  }
  return len;
}

bool IsUnicodeWhitespace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string QuoteForMessage(std::string_view text) {
  constexpr size_t kMaxBytes = 60;
  std::string out = "'";
  size_t pos = 0;
  while (pos < text.size() && pos < kMaxBytes) {
    const Utf8Char c = DecodeUtf8(text, pos);
    if (!c.valid || c.code_point < 0x20 || c.code_point == 0x7F) {
      const auto b = static_cast<uint8_t>(text[pos]);
      if (b == '\n') {
        out += "\\n";
      } else if (b == '\r') {
        out += "\\r";
      } else if (b == '\t') {
        out += "\\t";
      } else {
        out += absl::StrFormat("\\x%02x", b);
      }
      ++pos;
    } else {
      out.append(text.substr(pos, c.length));
      pos += c.length;
    }
  }
  if (pos < text.size()) out += "...";
  out += "'";
  return out;
}

}  // namespace prefixd
