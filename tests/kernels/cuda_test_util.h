// tests/kernels/cuda_test_util.h — what the CUDA kernel tests share: host-side bf16 rounding,
// moving bf16 data in and out of a backend, and a fixture that skips without a GPU and gives
// each test the CUDA backend and its CPU twin.
#ifndef PREFIXD_TESTS_KERNELS_CUDA_TEST_UTIL_H_
#define PREFIXD_TESTS_KERNELS_CUDA_TEST_UTIL_H_

#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/kernels.h"

namespace prefixd::testing {

// fp32 -> bf16 bits, round to nearest even (what __float2bfloat16_rn does); NaN stays NaN.
inline uint16_t ToBf16Bits(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x0040);
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

inline float FromBf16Bits(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

inline float RoundToBf16(float x) { return FromBf16Bits(ToBf16Bits(x)); }

inline std::vector<float> RoundToBf16(std::vector<float> v) {
  for (float& x : v) x = RoundToBf16(x);
  return v;
}

inline std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// A bf16 tensor holding `data` rounded to bf16 (on the host, independently of the backend's
// own conversion).
inline DeviceTensor UploadBf16(Backend& backend, const std::vector<float>& data,
                               std::initializer_list<int64_t> dims) {
  DeviceTensor t = backend.Allocate(DType::kBF16, dims);
  EXPECT_EQ(t.view().numel(), static_cast<int64_t>(data.size()));
  std::vector<uint16_t> bits(data.size());
  for (size_t i = 0; i < data.size(); ++i) bits[i] = ToBf16Bits(data[i]);
  backend.CopyFromHost(bits.data(), t.view());
  return t;
}

inline std::vector<uint16_t> DownloadBits(Backend& backend, const Tensor& t) {
  std::vector<uint16_t> bits(t.numel());
  backend.Synchronize();
  backend.CopyToHost(t, bits.data());
  return bits;
}

inline std::vector<float> DownloadBf16(Backend& backend, const Tensor& t) {
  std::vector<float> out;
  for (uint16_t bits : DownloadBits(backend, t)) out.push_back(FromBf16Bits(bits));
  return out;
}

// Gives each test the CUDA backend (device 0) and the CPU reference; skips without a GPU.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
    cuda_ = MakeCudaBackend(0);
  }

  std::unique_ptr<Backend> cuda_;
  std::unique_ptr<Backend> cpu_ = MakeCpuBackend(2);
};

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_KERNELS_CUDA_TEST_UTIL_H_
