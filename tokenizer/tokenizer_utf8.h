// tokenizer/tokenizer_utf8.h — the few UTF-8 facts the tokenizer needs.
//
// Text reaching the tokenizer is bytes: a client may send invalid UTF-8 and a model may
// emit tokens that split a character. These helpers never fail: an invalid or truncated
// sequence counts as one byte that is not a character.
#ifndef PREFIXD_TOKENIZER_TOKENIZER_UTF8_H_
#define PREFIXD_TOKENIZER_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace prefixd {

// Debian's Abseil has its own absl::string_view, which std::string_view does not convert
// to; absl::StrCat and the string-keyed hash maps take this.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

// absl::StrCat that also takes std::string_view arguments.
template <typename T>
const T& StrCatArg(const T& v) {
  return v;
}
inline absl::string_view StrCatArg(std::string_view v) { return AbslView(v); }
template <typename... Parts>
std::string StrCatStd(const Parts&... parts) {
  return absl::StrCat(StrCatArg(parts)...);
}

struct Utf8Char {
  char32_t code_point = 0;  // meaningful only when valid
  int length = 1;           // bytes consumed: 1..4; 1 for an invalid byte
  bool valid = false;
};

// The character starting at text[pos] (pos < text.size()). Strict: overlong forms,
// surrogates and code points above U+10FFFF are invalid.
Utf8Char DecodeUtf8(std::string_view text, size_t pos);

// The start of the character that ends just before text[pos] (0 < pos <= text.size()).
size_t PreviousUtf8Start(std::string_view text, size_t pos);

void AppendUtf8(char32_t code_point, std::string& out);

// The length of the longest prefix of `bytes` that does not end inside a character that
// more bytes could still complete: at most 3 bytes (a valid start of a 2-4 byte sequence)
// are left out. Bytes that can never become valid UTF-8 are part of the prefix.
size_t CompleteUtf8PrefixLength(std::string_view bytes);

// Unicode White_Space (what Rust's char::is_whitespace accepts).
bool IsUnicodeWhitespace(char32_t c);

// `text` in single quotes for an error message: control characters and invalid bytes
// escaped (\n, \x01), cut after 60 bytes.
std::string QuoteForMessage(std::string_view text);

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_TOKENIZER_UTF8_H_
