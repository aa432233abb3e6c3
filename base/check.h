// base/check.h — crash on a broken invariant, with a message saying which.
//
// Errors that a client or a config can cause are an absl::Status; a broken internal
// invariant (a bug) is a crash. Abseil 20220623 has no absl/log, hence this one macro.
#ifndef PREFIXD_BASE_CHECK_H_
#define PREFIXD_BASE_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace prefixd::internal {

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* condition,
                                     const std::string& message) {
  std::fprintf(stderr, "%s:%d: check failed: %s%s%s\n", file, line, condition,
               message.empty() ? "" : ": ", message.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace prefixd::internal

// PREFIXD_CHECK(cond, parts...) — parts are absl::StrCat arguments, evaluated on failure only.
#define PREFIXD_CHECK(condition, ...)                                  \
  do {                                                                 \
    if (!(condition)) [[unlikely]] {                                   \
      ::prefixd::internal::CheckFailed(__FILE__, __LINE__, #condition, \
                                       ::absl::StrCat(__VA_ARGS__));   \
    }                                                                  \
  } while (false)

#endif  // PREFIXD_BASE_CHECK_H_
