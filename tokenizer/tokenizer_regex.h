// tokenizer/tokenizer_regex.h — PCRE2 patterns for tokenizer.json's Split and Replace.
//
// Hugging Face tokenizers run their patterns with Oniguruma (Ruby syntax) and its
// Unicode 16 tables; Debian's PCRE2 10.42 knows Unicode 14 and reads a few escapes
// otherwise. Compile rewrites those so that PCRE2 matches what Oniguruma matches:
//   \s \S       White_Space (PCRE2's \s also takes U+180E MONGOLIAN VOWEL SEPARATOR)
//   \p{..} \P{..} a general category, short or long name (\p{L}, \p{Letter}, \p{^L}),
//               with the characters Unicode 15-16 added to it (tokenizer/
//               unicode_category_data.inc), which PCRE2 reads as unassigned
//   \d \D       \p{Nd}, as above
//   \w \W       Unicode word characters: Alphabetic, marks, Nd, Pc, and outside a class
//               U+00B2 U+00B3 U+00B9 U+00BC-U+00BE as Oniguruma has it (PCRE2's: letters,
//               numbers, '_'); \b and \B by these word characters
//   \h \H       a hex digit (PCRE2: horizontal space)
//   ^ $         at every line start and end (PCRE2_MULTILINE), as in Ruby
// PCRE2 10.42 cannot take characters out of a set, so some differences stay: inside a
// [class], \D and \P{..} still hold the characters their category gained in Unicode 15-16
// and \W is PCRE2's; \p{Cn} and \p{C} still hold those characters; U+1171E (Mn in 14, Mc
// since) stays Mn. Not rewritten: POSIX classes ([:alpha:] is \p{L} here,
// Alphabetic there), scripts and binary properties (Unicode 14 here), \v (Oniguruma:
// U+000B only), Ruby's (?m) (dot-all there, multiline here), nested classes. And an empty
// match (of \b, a lookaround, x*) cuts the text in Hugging Face's Split, but ForEachMatch
// reports non-empty matches only.
// Text may be invalid UTF-8: invalid bytes never match, so they fall between matches.
#ifndef PREFIXD_TOKENIZER_TOKENIZER_REGEX_H_
#define PREFIXD_TOKENIZER_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

struct pcre2_real_code_8;

namespace prefixd {

// Immutable once compiled: ForEachMatch may run on many threads at once.
class Regex {
 public:
  // InvalidArgument naming the offset and the problem if `pattern` does not compile.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const { return pattern_; }

  // Calls on_match(begin, end) for each non-empty, non-overlapping match, left to right.
  // Should PCRE2 give up on a match (a resource limit; not seen with the patterns in use),
  // the rest of the text counts as unmatched.
  void ForEachMatch(std::string_view text,
                    absl::FunctionRef<void(size_t begin, size_t end)> on_match) const;

 private:
  Regex(std::string pattern, pcre2_real_code_8* code) : pattern_(std::move(pattern)), code_(code) {}

  std::string pattern_;
  pcre2_real_code_8* code_;  // owned
};

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_TOKENIZER_REGEX_H_
