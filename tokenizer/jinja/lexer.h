// tokenizer/jinja/lexer.h — template source to tokens, with jinja2's whitespace rules as
// transformers sets them: trim_blocks, lstrip_blocks, `-`/`+` whitespace control, comments
// dropped, {% raw %} text kept verbatim, newlines normalised to \n and one trailing
// newline removed (keep_trailing_newline=False).
#ifndef PREFIXD_TOKENIZER_JINJA_LEXER_H_
#define PREFIXD_TOKENIZER_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace prefixd::jinja {

enum class TokenType : uint8_t {
  kText,           // template data between tags
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,  // value: the decoded literal
  kInteger,
  kFloat,
  kOperator,  // value: "+", "//", "==", "(", ...
  kEof,
  kError,  // value: the message; the lexer stopped here (see Tokenize)
};

struct Token {
  TokenType type;
  std::string value;  // text, name, decoded string, operator
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;  // 1-based, of the token's first character
  int column = 1;
};

// Malformed input ends the tokens with a kError token where lexing stopped: jinja2 lexes
// lazily, so the parser reports whichever problem comes first in the source.
std::vector<Token> Tokenize(std::string_view source);

// How jinja2 names a token in "expected token X, got Y" messages.
std::string DescribeToken(const Token& token);

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_LEXER_H_
