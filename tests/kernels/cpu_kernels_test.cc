// tests/kernels/cpu_kernels_test.cc — the CPU backend's memory, initialisation and row-wise
// ops against naive references (attention and sampling have their own files).
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::Download;
using ::prefixd::testing::ExpectAllClose;
using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::Upload;
using ::prefixd::testing::UploadI32;

class CpuKernelsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend_ = MakeCpuBackend(2);
};

// ---- Tensor, dtypes, DeviceTensor ----

TEST(TensorTest, ShapeHelpers) {
  std::vector<float> storage(6 * 4);
  Tensor t(storage.data(), DType::kF32, {6, 4});
  EXPECT_EQ(t.rank, 2);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.ShapeString(), "f32[6, 4]");

  Tensor rows = t.Rows(2, 5);
  EXPECT_EQ(rows.data, storage.data() + 8);
  EXPECT_EQ(rows.ShapeString(), "f32[3, 4]");
  EXPECT_EQ(t.Rows(6, 6).numel(), 0);

  Tensor flat = t.Reshaped({24});
  EXPECT_EQ(flat.data, t.data);
  EXPECT_EQ(flat.ShapeString(), "f32[24]");
  EXPECT_EQ(t.Reshaped({2, 3, 2, 2}).ShapeString(), "f32[2, 3, 2, 2]");

  EXPECT_EQ(Tensor(nullptr, DType::kBF16, {16, 4096}).ShapeString(), "bf16[16, 4096]");
  EXPECT_EQ(Tensor(nullptr, DType::kI32, {3}).nbytes(), 12u);
  EXPECT_EQ(Tensor(nullptr, DType::kF16, {3}).nbytes(), 6u);
  const std::vector<int64_t> dims = {2, 5, 7};
  EXPECT_EQ(Tensor(nullptr, DType::kF32, absl::MakeConstSpan(dims)).ShapeString(), "f32[2, 5, 7]");

  // Rows of a higher-rank tensor advance by whole rows.
  std::vector<float> storage3(4 * 3 * 2);
  Tensor t3(storage3.data(), DType::kF32, {4, 3, 2});
  EXPECT_EQ(t3.Rows(1, 3).data, storage3.data() + 6);
  EXPECT_EQ(t3.Rows(1, 3).ShapeString(), "f32[2, 3, 2]");
}

TEST(TensorTest, NamesAndSizes) {
  EXPECT_STREQ(DTypeName(DType::kF32), "f32");
  EXPECT_STREQ(DTypeName(DType::kBF16), "bf16");
  EXPECT_STREQ(DTypeName(DType::kF16), "f16");
  EXPECT_STREQ(DTypeName(DType::kI32), "i32");
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_STREQ(DeviceKindName(DeviceKind::kCpu), "cpu");
  EXPECT_STREQ(DeviceKindName(DeviceKind::kCuda), "cuda");
}

TEST_F(CpuKernelsTest, DescribesItself) {
  EXPECT_EQ(backend_->device(), DeviceKind::kCpu);
  EXPECT_EQ(backend_->compute_dtype(), DType::kF32);
  EXPECT_THAT(backend_->Describe(), ::testing::StartsWith("cpu (2 threads"));
  EXPECT_THAT(MakeCpuBackend()->Describe(),
              ::testing::MatchesRegex("cpu \\([1-9][0-9]* threads.*"));
}

TEST_F(CpuKernelsTest, AllocationsAreAlignedAndOwned) {
  DeviceTensor a = backend_->Allocate(DType::kF32, {3, 5});
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.view().data) % 64, 0u);
  EXPECT_EQ(a.view().ShapeString(), "f32[3, 5]");
  DeviceTensor empty = backend_->Allocate(DType::kI32, {0});
  EXPECT_FALSE(empty.empty());

  void* data = a.view().data;
  DeviceTensor b = std::move(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.view().data, data);
  b = backend_->Allocate(DType::kBF16, {7});  // frees the first allocation (ASan checks)
  EXPECT_EQ(b.view().ShapeString(), "bf16[7]");
  DeviceTensor c;
  EXPECT_TRUE(c.empty());
}

TEST_F(CpuKernelsTest, CopiesRoundTrip) {
  const std::vector<float> host = RandomFloats(37, 1);
  DeviceTensor t = Upload(*backend_, host, {37});
  EXPECT_EQ(Download(*backend_, t.view()), host);
}

// ---- ConvertFromHost ----

TEST_F(CpuKernelsTest, ConvertsBf16Exactly) {
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC020, 0x0000, 0x8000, 0x7F80,
                                      0xFF80, 0x0001, 0x7F7F, 0x3EAB};
  DeviceTensor t = backend_->Allocate(DType::kF32, {static_cast<int64_t>(bf16.size())});
  backend_->ConvertFromHost(bf16.data(), DType::kBF16, t.view());
  const std::vector<float> got = Download(*backend_, t.view());
  for (size_t i = 0; i < bf16.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(got[i]), static_cast<uint32_t>(bf16[i]) << 16) << i;
  }
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[1], -2.5f);
  EXPECT_TRUE(std::signbit(got[3]));
  EXPECT_EQ(got[4], std::numeric_limits<float>::infinity());
  EXPECT_EQ(got[6], std::ldexp(1.0f, -133));  // smallest bf16 subnormal

  const std::vector<uint16_t> nan = {0x7FC0};
  DeviceTensor one = backend_->Allocate(DType::kF32, {1});
  backend_->ConvertFromHost(nan.data(), DType::kBF16, one.view());
  EXPECT_TRUE(std::isnan(Download(*backend_, one.view())[0]));
}

TEST_F(CpuKernelsTest, ConvertsF16SpecialValues) {
  struct Case {
    uint16_t bits;
    float value;
  };
  const std::vector<Case> cases = {
      {0x3C00, 1.0f},
      {0xC000, -2.0f},
      {0x7BFF, 65504.0f},                  // largest finite
      {0x0001, std::ldexp(1.0f, -24)},     // smallest subnormal
      {0x03FF, std::ldexp(1023.0f, -24)},  // largest subnormal
      {0x8200, -std::ldexp(512.0f, -24)},  // negative subnormal
      {0x0400, std::ldexp(1.0f, -14)},     // smallest normal
      {0x3555, 0.333251953125f},
      {0x7C00, std::numeric_limits<float>::infinity()},
      {0xFC00, -std::numeric_limits<float>::infinity()},
  };
  std::vector<uint16_t> bits;
  for (const Case& c : cases) bits.push_back(c.bits);
  bits.push_back(0x8000);  // -0
  bits.push_back(0x7E00);  // quiet NaN
  bits.push_back(0xFD01);  // negative signalling NaN with a payload
  DeviceTensor t = backend_->Allocate(DType::kF32, {static_cast<int64_t>(bits.size())});
  backend_->ConvertFromHost(bits.data(), DType::kF16, t.view());
  const std::vector<float> got = Download(*backend_, t.view());
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(got[i], cases[i].value) << i;
  EXPECT_EQ(got[cases.size()], 0.0f);
  EXPECT_TRUE(std::signbit(got[cases.size()]));
  EXPECT_TRUE(std::isnan(got[cases.size() + 1]));
  EXPECT_TRUE(std::isnan(got[cases.size() + 2]));
  EXPECT_TRUE(std::signbit(got[cases.size() + 2]));
}

#if defined(__FLT16_MAX__)
// Every one of the 65536 halves against the compiler's own _Float16 conversion.
TEST_F(CpuKernelsTest, ConvertsEveryF16LikeTheCompiler) {
  std::vector<uint16_t> bits(1 << 16);
  std::iota(bits.begin(), bits.end(), 0);
  DeviceTensor t = backend_->Allocate(DType::kF32, {1 << 16});
  backend_->ConvertFromHost(bits.data(), DType::kF16, t.view());
  const std::vector<float> got = Download(*backend_, t.view());
  int mismatches = 0;
  for (uint32_t h = 0; h < bits.size(); ++h) {
    const float want = static_cast<float>(std::bit_cast<_Float16>(static_cast<uint16_t>(h)));
    const bool same = std::isnan(want)
                          ? std::isnan(got[h])
                          : std::bit_cast<uint32_t>(got[h]) == std::bit_cast<uint32_t>(want);
    if (!same && mismatches++ < 5) ADD_FAILURE() << "f16 0x" << std::hex << h;
  }
}
#endif

TEST_F(CpuKernelsTest, ConvertsF32ByCopy) {
  const std::vector<float> host = RandomFloats(9, 2);
  DeviceTensor t = backend_->Allocate(DType::kF32, {9});
  backend_->ConvertFromHost(host.data(), DType::kF32, t.view());
  EXPECT_EQ(Download(*backend_, t.view()), host);
}

// ---- FillRandom, RandomValue, SamplingUniform ----

// SplitMix64 as documented in kernels.h, written out independently.
uint64_t ReferenceSplitMix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

TEST(RandomStreamsTest, MatchTheDocumentedSplitMix64) {
  // Published SplitMix64 outputs for seed 1234567.
  EXPECT_EQ(ReferenceSplitMix64(1234567, 0), 6457827717110365317ull);
  EXPECT_EQ(ReferenceSplitMix64(1234567, 1), 3203168211198807973ull);
  for (uint64_t seed : {uint64_t{0}, uint64_t{1234567}, ~uint64_t{0}}) {
    for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{999}, uint64_t{1} << 40}) {
      const float u = static_cast<float>(ReferenceSplitMix64(seed, i) >> 40) / 16777216.0f;
      EXPECT_EQ(SamplingUniform(seed, i), u);
      EXPECT_EQ(RandomValue(seed, i, 0.5f), 0.5f * (2.0f * u - 1.0f));
    }
  }
}

TEST_F(CpuKernelsTest, FillRandomIsDeterministicUniformAndCentred) {
  constexpr int64_t kCount = 100000;
  constexpr float kScale = 0.02f;
  DeviceTensor a = backend_->Allocate(DType::kF32, {kCount / 100, 100});
  DeviceTensor b = backend_->Allocate(DType::kF32, {kCount});
  backend_->FillRandom(a.view(), 42, kScale);
  backend_->FillRandom(b.view(), 42, kScale);
  const std::vector<float> va = Download(*backend_, a.view());
  const std::vector<float> vb = Download(*backend_, b.view());
  EXPECT_EQ(va, vb);

  double sum = 0.0;
  float lo = kScale, hi = -kScale;
  for (int64_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(va[i], RandomValue(42, i, kScale)) << i;
    lo = std::min(lo, va[i]);
    hi = std::max(hi, va[i]);
    sum += va[i];
  }
  EXPECT_GE(lo, -kScale);
  EXPECT_LT(hi, kScale);
  EXPECT_LT(lo, -0.99f * kScale);  // it spans the range
  EXPECT_GT(hi, 0.99f * kScale);
  // The mean of 1e5 uniforms on [-s, s] has std s / sqrt(3e5) ~ 0.0018 s.
  EXPECT_NEAR(sum / kCount, 0.0, 0.01 * kScale);

  backend_->FillRandom(b.view(), 43, kScale);
  EXPECT_NE(Download(*backend_, b.view()), va);
}

TEST_F(CpuKernelsTest, FillWritesTheValue) {
  DeviceTensor t = backend_->Allocate(DType::kF32, {3, 4});
  backend_->Fill(t.view(), 1.5f);
  EXPECT_EQ(Download(*backend_, t.view()), std::vector<float>(12, 1.5f));
}

// ---- Row-wise ops ----

TEST_F(CpuKernelsTest, EmbeddingGathersTableRows) {
  constexpr int kVocab = 11, kHidden = 13;
  const std::vector<float> table = RandomFloats(kVocab * kHidden, 3);
  const std::vector<int32_t> ids = {4, 0, 10, 4, 7};
  DeviceTensor table_t = Upload(*backend_, table, {kVocab, kHidden});
  DeviceTensor ids_t = UploadI32(*backend_, ids, {5});
  DeviceTensor out = backend_->Allocate(DType::kF32, {5, kHidden});
  backend_->Embedding(table_t.view(), ids_t.view(), out.view());
  const std::vector<float> got = Download(*backend_, out.view());
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int j = 0; j < kHidden; ++j) {
      EXPECT_EQ(got[t * kHidden + j], table[ids[t] * kHidden + j]);
    }
  }
}

std::vector<double> ReferenceRmsNorm(const std::vector<float>& x, const std::vector<float>& w,
                                     float eps, int rows, int hidden) {
  std::vector<double> out(x.size());
  for (int r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int j = 0; j < hidden; ++j) sum += double{x[r * hidden + j]} * x[r * hidden + j];
    const double inv_rms = 1.0 / std::sqrt(sum / hidden + eps);
    for (int j = 0; j < hidden; ++j) out[r * hidden + j] = x[r * hidden + j] * inv_rms * w[j];
  }
  return out;
}

TEST_F(CpuKernelsTest, RmsNormMatchesReference) {
  constexpr int kRows = 9, kHidden = 67;
  constexpr float kEps = 1e-5f;
  std::vector<float> x = RandomFloats(kRows * kHidden, 4, -3.0f, 3.0f);
  std::fill_n(x.begin(), kHidden, 0.0f);  // an all-zero row: eps keeps it finite
  const std::vector<float> w = RandomFloats(kHidden, 5, 0.5f, 1.5f);
  DeviceTensor x_t = Upload(*backend_, x, {kRows, kHidden});
  DeviceTensor w_t = Upload(*backend_, w, {kHidden});
  DeviceTensor out = backend_->Allocate(DType::kF32, {kRows, kHidden});
  backend_->RmsNorm(x_t.view(), w_t.view(), kEps, out.view());
  ExpectAllClose(Download(*backend_, out.view()), ReferenceRmsNorm(x, w, kEps, kRows, kHidden),
                 1e-6, 1e-5, "rmsnorm");
}

TEST_F(CpuKernelsTest, AddRmsNormUpdatesResidualAndNormalises) {
  constexpr int kRows = 300, kHidden = 48;  // enough rows to split across threads
  constexpr float kEps = 1e-6f;
  const std::vector<float> residual = RandomFloats(kRows * kHidden, 6);
  const std::vector<float> x = RandomFloats(kRows * kHidden, 7);
  const std::vector<float> w = RandomFloats(kHidden, 8, 0.5f, 1.5f);
  std::vector<float> sum(residual.size());
  std::vector<double> sum_double(residual.size());
  for (size_t i = 0; i < sum.size(); ++i) {
    sum[i] = residual[i] + x[i];
    sum_double[i] = sum[i];
  }
  DeviceTensor residual_t = Upload(*backend_, residual, {kRows, kHidden});
  DeviceTensor x_t = Upload(*backend_, x, {kRows, kHidden});
  DeviceTensor w_t = Upload(*backend_, w, {kHidden});
  DeviceTensor out = backend_->Allocate(DType::kF32, {kRows, kHidden});
  backend_->AddRmsNorm(residual_t.view(), x_t.view(), w_t.view(), kEps, out.view());
  EXPECT_EQ(Download(*backend_, residual_t.view()), sum);
  const std::vector<double> want = ReferenceRmsNorm(sum, w, kEps, kRows, kHidden);
  ExpectAllClose(Download(*backend_, out.view()), want, 1e-6, 1e-5, "add_rmsnorm");

  // out may be x itself.
  DeviceTensor residual2 = Upload(*backend_, residual, {kRows, kHidden});
  backend_->AddRmsNorm(residual2.view(), x_t.view(), w_t.view(), kEps, x_t.view());
  ExpectAllClose(Download(*backend_, x_t.view()), want, 1e-6, 1e-5, "add_rmsnorm in place");
}

TEST_F(CpuKernelsTest, SiluMulMatchesReference) {
  constexpr int kRows = 5, kInter = 23;
  std::vector<float> gate_up = RandomFloats(kRows * 2 * kInter, 9, -6.0f, 6.0f);
  gate_up[0] = -200.0f;  // exp overflow must give silu = -0, not NaN
  gate_up[1] = 200.0f;
  DeviceTensor in = Upload(*backend_, gate_up, {kRows, 2 * kInter});
  DeviceTensor out = backend_->Allocate(DType::kF32, {kRows, kInter});
  backend_->SiluMul(in.view(), out.view());
  std::vector<double> want(kRows * kInter);
  for (int r = 0; r < kRows; ++r) {
    for (int i = 0; i < kInter; ++i) {
      const double g = gate_up[r * 2 * kInter + i], u = gate_up[r * 2 * kInter + kInter + i];
      want[r * kInter + i] = g / (1.0 + std::exp(-g)) * u;
    }
  }
  ExpectAllClose(Download(*backend_, out.view()), want, 1e-6, 1e-5, "silu_mul");
}

TEST_F(CpuKernelsTest, GatherRowsPicksRows) {
  constexpr int kRows = 7, kWidth = 10;
  const std::vector<float> x = RandomFloats(kRows * kWidth, 10);
  const std::vector<int32_t> rows = {6, 0, 3, 3};
  DeviceTensor x_t = Upload(*backend_, x, {kRows, kWidth});
  DeviceTensor rows_t = UploadI32(*backend_, rows, {4});
  DeviceTensor out = backend_->Allocate(DType::kF32, {4, kWidth});
  backend_->GatherRows(x_t.view(), rows_t.view(), out.view());
  const std::vector<float> got = Download(*backend_, out.view());
  for (size_t b = 0; b < rows.size(); ++b) {
    for (int j = 0; j < kWidth; ++j) EXPECT_EQ(got[b * kWidth + j], x[rows[b] * kWidth + j]);
  }
}

// ---- Gemm ----

TEST_F(CpuKernelsTest, GemmMatchesReference) {
  struct Shape {
    int m, k, n;
  };
  // Decode (m = 1), odd sizes, k = 1, and gemms big enough to be split into column slices
  // (gemv rows, few rows, many rows; each with a partial last slice).
  for (const auto [m, k, n] :
       {Shape{1, 64, 48}, Shape{7, 33, 19}, Shape{130, 97, 71}, Shape{3, 1, 5},
        Shape{2, 4096, 1100}, Shape{20, 1024, 700}, Shape{70, 512, 2100}}) {
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "m " << m << " k " << k << " n " << n << " bias " << with_bias);
      const std::vector<float> x = RandomFloats(m * k, 11);
      const std::vector<float> w = RandomFloats(n * k, 12);
      const std::vector<float> bias = RandomFloats(n, 13);
      DeviceTensor x_t = Upload(*backend_, x, {m, k});
      DeviceTensor w_t = Upload(*backend_, w, {n, k});
      DeviceTensor bias_t = Upload(*backend_, bias, {n});
      DeviceTensor out = backend_->Allocate(DType::kF32, {m, n});
      backend_->Gemm(x_t.view(), w_t.view(), with_bias ? &bias_t.view() : nullptr, out.view());
      std::vector<double> want(m * n);
      for (int r = 0; r < m; ++r) {
        for (int c = 0; c < n; ++c) {
          double sum = with_bias ? bias[c] : 0.0;
          for (int i = 0; i < k; ++i) sum += double{x[r * k + i]} * w[c * k + i];
          want[r * n + c] = sum;
        }
      }
      ExpectAllClose(Download(*backend_, out.view()), want, 1e-5 * std::sqrt(k), 1e-5, "gemm");
    }
  }
}

// Split gemms slice by shape, not by thread count: the same bits on any number of threads.
TEST(CpuGemmTest, SameBitsForAnyThreadCount) {
  for (const auto& [m, k, n] : {std::tuple{2, 4096, 1100}, std::tuple{70, 512, 2100}}) {
    const std::vector<float> x = RandomFloats(m * k, 21);
    const std::vector<float> w = RandomFloats(n * k, 22);
    std::vector<std::vector<float>> results;
    for (const int threads : {1, 2, 5}) {
      std::unique_ptr<Backend> backend = MakeCpuBackend(threads);
      DeviceTensor x_t = Upload(*backend, x, {m, k});
      DeviceTensor w_t = Upload(*backend, w, {n, k});
      DeviceTensor out = backend->Allocate(DType::kF32, {m, n});
      backend->Gemm(x_t.view(), w_t.view(), nullptr, out.view());
      results.push_back(Download(*backend, out.view()));
    }
    EXPECT_EQ(results[1], results[0]) << "m " << m;
    EXPECT_EQ(results[2], results[0]) << "m " << m;
  }
}

// A bad shape reaching an op is a bug in the caller: a crash that names the shapes.
TEST(KernelsDeathTest, ShapeMismatchesCrashNamingTheShapes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  DeviceTensor x = backend->Allocate(DType::kF32, {2, 4});
  DeviceTensor w = backend->Allocate(DType::kF32, {3, 5});
  DeviceTensor out = backend->Allocate(DType::kF32, {2, 3});
  EXPECT_DEATH(backend->Gemm(x.view(), w.view(), nullptr, out.view()),
               "Gemm: w is f32\\[3, 5\\], expected f32\\[\\*, 4\\]");
  EXPECT_DEATH(x.view().Reshaped({3, 3}), "cannot reshape f32\\[2, 4\\] to f32\\[3, 3\\]");
}

// ---- RoPE and KV store ----

TEST_F(CpuKernelsTest, RopeRotatesQAndKAndStoresKv) {
  constexpr int kHq = 4, kHkv = 2, kD = 8, kHalf = kD / 2;  // GQA: 2 query heads per kv head
  constexpr int kNumBlocks = 5, kBlockSize = 4;
  constexpr int kWidth = (kHq + 2 * kHkv) * kD;
  const std::vector<int32_t> positions = {0, 1, 7, 4095, 33000};
  const std::vector<int32_t> slots = {0, 17, 6, 19, 11};  // blocks 0, 4, 1, 4, 2
  const int tokens = static_cast<int>(positions.size());
  std::vector<float> inv_freq(kHalf);
  for (int j = 0; j < kHalf; ++j) {
    inv_freq[j] = static_cast<float>(1.0 / std::pow(10000.0, 2.0 * j / kD));
  }
  const std::vector<float> qkv = RandomFloats(tokens * kWidth, 14);
  constexpr float kUntouched = -77.0f;
  const std::vector<float> cache(kNumBlocks * kHkv * kBlockSize * kD, kUntouched);

  DeviceTensor qkv_t = Upload(*backend_, qkv, {tokens, kWidth});
  DeviceTensor pos_t = UploadI32(*backend_, positions, {tokens});
  DeviceTensor slots_t = UploadI32(*backend_, slots, {tokens});
  DeviceTensor freq_t = Upload(*backend_, inv_freq, {kHalf});
  DeviceTensor k_t = Upload(*backend_, cache, {kNumBlocks, kHkv, kBlockSize, kD});
  DeviceTensor v_t = Upload(*backend_, cache, {kNumBlocks, kHkv, kBlockSize, kD});
  KvCacheLayer kv{k_t.view(), v_t.view()};
  backend_->RopeAndStoreKv(qkv_t.view(), pos_t.view(), freq_t.view(), slots_t.view(),
                           AttentionShape{kHq, kHkv, kD}, kv);

  // Reference: rotate-half on each q and k head; v heads untouched.
  std::vector<double> want(qkv.begin(), qkv.end());
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < kHq + kHkv; ++h) {
      for (int j = 0; j < kHalf; ++j) {
        const double angle = static_cast<float>(positions[t]) * inv_freq[j];  // fp32 angle
        const double x0 = qkv[t * kWidth + h * kD + j];
        const double x1 = qkv[t * kWidth + h * kD + j + kHalf];
        want[t * kWidth + h * kD + j] = x0 * std::cos(angle) - x1 * std::sin(angle);
        want[t * kWidth + h * kD + j + kHalf] = x1 * std::cos(angle) + x0 * std::sin(angle);
      }
    }
  }
  const std::vector<float> rotated = Download(*backend_, qkv_t.view());
  ExpectAllClose(rotated, want, 1e-6, 1e-5, "rope");
  for (int t = 0; t < tokens; ++t) {  // v heads are bit-for-bit unchanged
    for (int i = (kHq + kHkv) * kD; i < kWidth; ++i)
      EXPECT_EQ(rotated[t * kWidth + i], qkv[t * kWidth + i]);
  }

  // Cache: slot s of kv head h is at ((s / bs) * Hkv + h) * bs + s % bs; the rest untouched.
  std::vector<float> want_k = cache, want_v = cache;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < kHkv; ++h) {
      const int at = ((slots[t] / kBlockSize * kHkv + h) * kBlockSize + slots[t] % kBlockSize) * kD;
      for (int j = 0; j < kD; ++j) {
        want_k[at + j] = rotated[t * kWidth + (kHq + h) * kD + j];
        want_v[at + j] = qkv[t * kWidth + (kHq + kHkv + h) * kD + j];
      }
    }
  }
  EXPECT_EQ(Download(*backend_, kv.k), want_k);
  EXPECT_EQ(Download(*backend_, kv.v), want_v);
}

}  // namespace
}  // namespace prefixd
