// tokenizer/tokenizer_regex.h — PCRE2 patterns for tokenizer.json's Split and Replace.
//
// Hugging Face tokenizers run their patterns with Oniguruma; PCRE2 in UTF mode with
// Unicode properties (\p{L}, \s as White_Space) reads the same patterns the same way.
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
