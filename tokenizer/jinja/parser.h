// tokenizer/jinja/parser.h — tokens to an AST, following jinja2's grammar (parser.py):
// operator precedence, tuples without parentheses, `is` tests, filters, and the statements
// chat templates use. Unknown filters and tests fail here, as jinja2 fails at compile time.
#ifndef PREFIXD_TOKENIZER_JINJA_PARSER_H_
#define PREFIXD_TOKENIZER_JINJA_PARSER_H_

#include <memory>
#include <string_view>

#include "tokenizer/jinja/ast.h"

namespace prefixd::jinja {

// Expressions and statements nest at most this deep (a deeper template is a syntax error,
// so parsing and rendering cannot exhaust the stack).
inline constexpr int kMaxParseDepth = 100;

// Throws Error (kind TemplateSyntaxError, line and column set).
std::unique_ptr<TemplateRoot> ParseTemplate(std::string_view source);

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_PARSER_H_
