// tests/kernels/kernel_test_util.h — moving test data in and out of a Backend, and the
// `atol + rtol * |ref|` comparison the kernel tests share.
#ifndef PREFIXD_TESTS_KERNELS_KERNEL_TEST_UTIL_H_
#define PREFIXD_TESTS_KERNELS_KERNEL_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/kernels.h"

namespace prefixd::testing {

inline DeviceTensor Upload(Backend& backend, const std::vector<float>& data,
                           std::initializer_list<int64_t> dims) {
  DeviceTensor t = backend.Allocate(DType::kF32, dims);
  EXPECT_EQ(t.view().numel(), static_cast<int64_t>(data.size()));
  backend.CopyFromHost(data.data(), t.view());
  return t;
}

inline DeviceTensor UploadI32(Backend& backend, const std::vector<int32_t>& data,
                              std::initializer_list<int64_t> dims) {
  DeviceTensor t = backend.Allocate(DType::kI32, dims);
  EXPECT_EQ(t.view().numel(), static_cast<int64_t>(data.size()));
  backend.CopyFromHost(data.data(), t.view());
  return t;
}

inline std::vector<float> Download(Backend& backend, const Tensor& t) {
  std::vector<float> host(t.numel());
  backend.Synchronize();
  backend.CopyToHost(t, host.data());
  return host;
}

// Uniform in [lo, hi), reproducible from `seed`.
inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Every element within atol + rtol * |want|; reports the first few that are not.
inline void ExpectAllClose(const std::vector<float>& got, const std::vector<double>& want,
                           double atol, double rtol, const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tolerance = atol + rtol * std::abs(want[i]);
    if (!(std::abs(got[i] - want[i]) <= tolerance) && reported++ < 5) {
      ADD_FAILURE() << what << " element " << i << ": got " << got[i] << ", want " << want[i]
                    << " (tolerance " << tolerance << ")";
    }
  }
}

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_KERNELS_KERNEL_TEST_UTIL_H_
