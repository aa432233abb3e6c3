// kernels/cpu/check_shape.h — shape checks for op arguments. A tensor of the wrong shape or
// dtype reaching an op is a bug in the caller, so it crashes with both shapes in the message.
#ifndef PREFIXD_KERNELS_CPU_CHECK_SHAPE_H_
#define PREFIXD_KERNELS_CPU_CHECK_SHAPE_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/check.h"
#include "kernels/kernels.h"

namespace prefixd {

inline constexpr int64_t kAnySize = -1;

// Crashes unless `t` is dtype[dims...]; kAnySize matches any size.
inline void CheckShape(const char* op, const char* name, const Tensor& t, DType dtype,
                       std::initializer_list<int64_t> dims) {
  bool ok = t.dtype == dtype && t.rank == static_cast<int>(dims.size());
  for (int i = 0; ok && i < t.rank; ++i) {
    const int64_t want = dims.begin()[i];
    ok = want == kAnySize || want == t.dim(i);
  }
  PREFIXD_CHECK(ok, op, ": ", name, " is ", t.ShapeString(), ", expected ", DTypeName(dtype), "[",
                absl::StrJoin(dims, ", ",
                              [](std::string* out, int64_t d) {
                                absl::StrAppend(out, d == kAnySize ? "*" : absl::StrCat(d));
                              }),
                "]");
}

}  // namespace prefixd

#endif  // PREFIXD_KERNELS_CPU_CHECK_SHAPE_H_
