// tokenizer/jinja/py_string.h — Python str semantics on UTF-8 text: code points for
// length/index/slice, str.isspace(), lower()/upper(), strip/split/splitlines, repr(), and
// float repr. Invalid UTF-8 never crashes: each bad byte reads as one code point, U+FFFD,
// and is copied through unchanged where text is copied.
#ifndef PREFIXD_TOKENIZER_JINJA_PY_STRING_H_
#define PREFIXD_TOKENIZER_JINJA_PY_STRING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace prefixd::jinja {

// Decodes the code point at s[*pos] and advances *pos (by 1 on an invalid byte).
char32_t DecodeUtf8(std::string_view s, size_t* pos);
void AppendUtf8(char32_t cp, std::string* out);

bool IsAscii(std::string_view s);
// len(s): the number of code points.
size_t CodePointCount(std::string_view s);
// Byte offsets of each code point start, plus s.size() at the end (size CodePointCount+1).
std::vector<size_t> CodePointOffsets(std::string_view s);

// str.isspace() of one code point.
bool IsPySpace(char32_t cp);
bool IsPyAlpha(char32_t cp);  // letters of the scripts PyLower/PyUpper know, plus others
bool IsPyDigit(char32_t cp);

// str.lower() / str.upper(): ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and
// full-width Latin. Other scripts are copied unchanged.
std::string PyLower(std::string_view s);
std::string PyUpper(std::string_view s);
std::string PyCapitalize(std::string_view s);  // str.capitalize()
std::string PyTitle(std::string_view s);       // str.title()
bool PyIsLower(std::string_view s);            // str.islower()
bool PyIsUpper(std::string_view s);            // str.isupper()

// str.strip(chars) family. `chars` null: whitespace (str.isspace()).
std::string_view PyStrip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit); sep null: runs of whitespace, empty strings dropped.
std::vector<std::string> PySplit(std::string_view s, const std::string* sep, int64_t maxsplit);
std::vector<std::string> PyRSplit(std::string_view s, const std::string* sep, int64_t maxsplit);
// str.splitlines(keepends).
std::vector<std::string> PySplitLines(std::string_view s, bool keepends);
// str.replace(old, new, count); count < 0: all.
std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count);

// repr(s) as Python writes it: '...' unless s holds ' and no ", escapes for \\, the
// quote, \n \r \t, and \xNN / \uNNNN for what str.isprintable() rejects.
void AppendPyRepr(std::string_view s, std::string* out);
// repr(float): the shortest text that reads back as x, '1.0', '1e-05', '1e+16', 'inf'.
void AppendPyFloat(double x, std::string* out);

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_PY_STRING_H_
