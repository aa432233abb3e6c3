// tokenizer/jinja/format.h — Python's string formatting: `fmt % args` (and the format
// filter), str.format, and format(value, spec).
#ifndef PREFIXD_TOKENIZER_JINJA_FORMAT_H_
#define PREFIXD_TOKENIZER_JINJA_FORMAT_H_

#include <string>
#include <string_view>

#include "tokenizer/jinja/value.h"

namespace prefixd::jinja {

// printf-style `fmt % args`: positional values, or a mapping (kwargs, or one dict
// positional) for %(name)s.
std::string PyPercentFormat(Interpreter& interp, const std::string& fmt, const CallArgs& args);
// str.format(*args, **kwargs).
std::string PyStrFormat(Interpreter& interp, const std::string& fmt, const CallArgs& args);
// format(value, spec).
std::string FormatWithSpec(const Value& value, std::string_view spec);

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_FORMAT_H_
