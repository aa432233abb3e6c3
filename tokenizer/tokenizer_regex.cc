#include "tokenizer/tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {
namespace {

std::string ErrorMessage(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return StrCatStd("PCRE2 error ", code);
  }
  return reinterpret_cast<const char*>(buffer);
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  // MATCH_INVALID_UTF: subjects may hold invalid UTF-8, which then simply never matches.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error,
                                   &error_offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(StrCatStd("regex /", pattern, "/ does not compile: ",
                                                ErrorMessage(error), " at offset ", error_offset));
  }
  // JIT is an optimisation: where it is unavailable pcre2_match interprets the pattern.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return std::unique_ptr<Regex>(new Regex(std::string(pattern), code));
}

Regex::~Regex() { pcre2_code_free(code_); }

void Regex::ForEachMatch(std::string_view text,
                         absl::FunctionRef<void(size_t, size_t)> on_match) const {
  // One pair is enough: only the whole match is used, and a match with more capture
  // groups than pairs still succeeds (rc == 0).
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> data(pcre2_match_data_create(1, nullptr));
  if (data == nullptr) return;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NOTEMPTY, data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The interpreter keeps its backtracking state on the heap, not the JIT stack.
      rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NOTEMPTY | PCRE2_NO_JIT, data.get(),
                       nullptr);
    }
    if (rc < 0) return;  // PCRE2_ERROR_NOMATCH, or a resource limit
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end <= pos || begin >= end) return;  // cannot happen with NOTEMPTY; never loop
    on_match(begin, end);
    pos = end;
  }
}

}  // namespace prefixd
