#include "tokenizer/added_tokens.h"

#include <utility>

#include "base/check.h"
#include "tokenizer/tokenizer_regex.h"
#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {
namespace {

// Whether the character at text[pos] is a word character (\w of Rust's regex: alphabetic,
// mark, decimal digit, connector, join control): what Hugging Face's single_word test asks
// of the characters beside a match.
bool IsWordChar(std::string_view text, size_t pos) {
  const Utf8Char c = DecodeUtf8(text, pos);
  if (!c.valid) return false;
  if (c.code_point < 0x80) {
    const char32_t a = c.code_point;
    return (a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z') || (a >= '0' && a <= '9') || a == '_';
  }
  static const Regex* const kWordChar = [] {
    absl::StatusOr<std::unique_ptr<Regex>> regex =
        Regex::Compile(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])");
    PREFIXD_CHECK(regex.ok(), regex.status().ToString());
    return regex->release();
  }();
  bool word = false;
  kWordChar->ForEachMatch(text.substr(pos, c.length), [&word](size_t, size_t) { word = true; });
  return word;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedTokenSpec> tokens)
    : tokens_(std::move(tokens)) {
  token_at_node_.push_back(-1);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    starts_token_[static_cast<uint8_t>(tokens_[i].content[0])] = true;
    int32_t node = 0;
    for (char c : tokens_[i].content) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
      auto [it, inserted] = edges_.try_emplace(key, static_cast<int32_t>(token_at_node_.size()));
      if (inserted) token_at_node_.push_back(-1);
      node = it->second;
    }
    if (token_at_node_[node] < 0) token_at_node_[node] = static_cast<int32_t>(i);
  }
}

int AddedTokenMatcher::LongestMatchAt(std::string_view text, size_t pos, size_t& length) const {
  int best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[i]));
    if (it == edges_.end()) break;
    node = it->second;
    if (token_at_node_[node] >= 0) {
      best = token_at_node_[node];
      length = i + 1 - pos;
    }
  }
  return best;
}

void AddedTokenMatcher::Split(
    std::string_view text,
    absl::FunctionRef<void(std::string_view, size_t, std::optional<TokenId>)> on_stretch) const {
  size_t done = 0;  // text[0, done) has been handed out
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    const int index =
        starts_token_[static_cast<uint8_t>(text[pos])] ? LongestMatchAt(text, pos, length) : -1;
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedTokenSpec& token = tokens_[index];
    size_t begin = pos;
    size_t end = pos + length;
    pos = end;  // matches do not overlap, even one refused below
    if (token.single_word) {
      const bool word_before = begin > 0 && IsWordChar(text, PreviousUtf8Start(text, begin));
      const bool word_after = end < text.size() && IsWordChar(text, end);
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      while (begin > done) {
        const size_t prev = PreviousUtf8Start(text, begin);
        const Utf8Char c = DecodeUtf8(text, prev);
        if (!c.valid || !IsUnicodeWhitespace(c.code_point)) break;
        begin = prev;
      }
    }
    if (token.rstrip) {
      while (end < text.size()) {
        const Utf8Char c = DecodeUtf8(text, end);
        if (!c.valid || !IsUnicodeWhitespace(c.code_point)) break;
        end += c.length;
      }
      pos = end;
    }
    if (begin > done) on_stretch(text.substr(done, begin - done), done, std::nullopt);
    on_stretch(text.substr(begin, end - begin), begin, token.id);
    done = end;
  }
  if (done < text.size()) on_stretch(text.substr(done), done, std::nullopt);
}

}  // namespace prefixd
