// tests/kernels/cuda_kernels_test.cc — the CUDA backend's memory, initialisation, row-wise
// ops and gemm against the CPU backend (attention and sampling have their own files). Every
// test skips without a CUDA device.
//
// Both backends get the same inputs: values rounded to bf16 on the host, uploaded as bf16 to
// the CUDA backend and as the equal f32 values to the CPU. Tolerances are atol + rtol·|ref|:
//   - One rounding of an fp32 result to bf16 (8 significant bits, round to nearest even) is
//     off by at most 2^-9 relative to the result's magnitude, i.e. 2^-8 of its power-of-two
//     interval: rtol 2^-8 ≈ 3.9e-3 covers it; we use 5e-3 for the fp32 arithmetic on top
//     (contractions, expf/sinf ulps: ~1e-6 relative).
//   - An op with two bf16 roundings in a row (AddRmsNorm: the residual is stored in bf16,
//     then normalised) doubles that: rtol 1e-2.
//   - Gemm: the two fp32 accumulations run in different orders; for k terms bounded by
//     |x|,|w| <= 1 they differ by about sqrt(k)·2^-24·k (≈ 4e-3 at k = 4096, far less at the
//     sizes here): atol 1e-2 + the bf16 output's rtol.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/kernels.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::CudaTest;
using ::prefixd::testing::Download;
using ::prefixd::testing::DownloadBf16;
using ::prefixd::testing::DownloadBits;
using ::prefixd::testing::ExpectAllClose;
using ::prefixd::testing::FromBf16Bits;
using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::RoundToBf16;
using ::prefixd::testing::ToBf16Bits;
using ::prefixd::testing::ToDouble;
using ::prefixd::testing::Upload;
using ::prefixd::testing::UploadBf16;
using ::prefixd::testing::UploadI32;

constexpr double kOneRounding = 5e-3;   // rtol of one bf16 rounding (see the file comment)
constexpr double kTwoRoundings = 1e-2;  // ... of two

using CudaKernelsTest = CudaTest;

// IEEE binary16 -> binary32, exact (the CPU backend's conversion, restated).
float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

// bf16 bits equal, or both NaN.
void ExpectSameBf16(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool both_nan = std::isnan(FromBf16Bits(got[i])) && std::isnan(FromBf16Bits(want[i]));
    if (got[i] != want[i] && !both_nan && reported++ < 5) {
      ADD_FAILURE() << what << " element " << i << ": got bits 0x" << std::hex << got[i]
                    << ", want 0x" << want[i] << std::dec;
    }
  }
}

TEST_F(CudaKernelsTest, DescribesItself) {
  EXPECT_EQ(cuda_->device(), DeviceKind::kCuda);
  EXPECT_EQ(cuda_->compute_dtype(), DType::kBF16);
  EXPECT_THAT(cuda_->Describe(), ::testing::StartsWith("cuda:0 ("));
}

// ---- Memory ----

TEST_F(CudaKernelsTest, CopiesRoundTripAndRowsViewsAddressTheRightRows) {
  const std::vector<float> data = RandomFloats(6 * 5, 1);
  DeviceTensor t = Upload(*cuda_, data, {6, 5});
  EXPECT_EQ(Download(*cuda_, t.view()), data);
  EXPECT_EQ(Download(*cuda_, t.view().Rows(2, 4)),
            std::vector<float>(data.begin() + 10, data.begin() + 20));

  const std::vector<int32_t> ids = {3, -1, 7, 1 << 30};
  DeviceTensor i = UploadI32(*cuda_, ids, {4});
  std::vector<int32_t> back(4);
  cuda_->CopyToHost(i.view(), back.data());
  EXPECT_EQ(back, ids);

  DeviceTensor empty = cuda_->Allocate(DType::kBF16, {0, 16});
  EXPECT_FALSE(empty.empty());  // a distinct allocation even for zero elements
}

// The host KV tier's transfers: they start after the ops queued before them, and the ops
// queued after WaitForCopies see them done; an allocation the host refuses is a nullptr.
TEST_F(CudaKernelsTest, HostTransfersRunInOrderWithTheOps) {
  constexpr int64_t kN = 1 << 20;
  DeviceTensor a = cuda_->Allocate(DType::kBF16, {kN});
  void* host = cuda_->AllocateHost(kN * 2);
  ASSERT_NE(host, nullptr);
  cuda_->FillRandom(a.view(), 11, 1.0f);
  const std::vector<uint16_t> first = DownloadBits(*cuda_, a.view());
  // Demotion: the copy reads a before the next fill overwrites it.
  Backend::MemCopy down{host, a.view().data, static_cast<size_t>(kN * 2)};
  cuda_->CopyAsync({&down, 1}, Backend::CopyDirection::kToHost);
  cuda_->WaitForCopies();
  cuda_->Fill(a.view(), 3.0f);
  cuda_->Synchronize();
  std::vector<uint16_t> on_host(kN);
  std::memcpy(on_host.data(), host, kN * 2);
  ExpectSameBf16(on_host, first, "demoted copy");
  // Promotion: the copy lands after the fill before it, and before the download after it.
  Backend::MemCopy up{a.view().data, host, static_cast<size_t>(kN * 2)};
  cuda_->CopyAsync({&up, 1}, Backend::CopyDirection::kToDevice);
  cuda_->WaitForCopies();
  ExpectSameBf16(DownloadBits(*cuda_, a.view()), first, "promoted copy");
  cuda_->FreeHost(host);
  EXPECT_EQ(cuda_->AllocateHost(size_t{1} << 60), nullptr);
  // The device is still fine after the refusal.
  cuda_->Fill(a.view(), 1.0f);
  cuda_->Synchronize();
}

TEST_F(CudaKernelsTest, ConvertFromHostRoundsF32ToNearestEven) {
  std::vector<float> data = RandomFloats(1000, 2, -100.0f, 100.0f);
  const float specials[] = {0.0f,
                            -0.0f,
                            1.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::denorm_min(),
                            std::bit_cast<float>(0x3F808000u),  // a tie: rounds to even (down)
                            std::bit_cast<float>(0x3F818000u),  // a tie: rounds to even (up)
                            1e-40f};
  data.insert(data.end(), std::begin(specials), std::end(specials));
  DeviceTensor t = cuda_->Allocate(DType::kBF16, {static_cast<int64_t>(data.size())});
  cuda_->ConvertFromHost(data.data(), DType::kF32, t.view());
  std::vector<uint16_t> want;
  for (float x : data) want.push_back(ToBf16Bits(x));
  ExpectSameBf16(DownloadBits(*cuda_, t.view()), want, "f32 -> bf16");
}

TEST_F(CudaKernelsTest, ConvertFromHostTakesEveryF16AndBf16Value) {
  std::vector<uint16_t> all(1 << 16);
  std::iota(all.begin(), all.end(), 0);
  DeviceTensor t = cuda_->Allocate(DType::kBF16, {1 << 16});

  cuda_->ConvertFromHost(all.data(), DType::kF16, t.view());
  std::vector<uint16_t> want;
  for (uint16_t h : all) want.push_back(ToBf16Bits(F16ToF32(h)));
  ExpectSameBf16(DownloadBits(*cuda_, t.view()), want, "f16 -> bf16");

  cuda_->ConvertFromHost(all.data(), DType::kBF16, t.view());
  EXPECT_EQ(DownloadBits(*cuda_, t.view()), all);  // bf16 is copied bit for bit
}

// More than one 16 MiB staging chunk, so both staging slots are used and reused.
TEST_F(CudaKernelsTest, ConvertFromHostStagesLargeTensorsInChunks) {
  const int64_t n = 9 * (int64_t{1} << 20) + 77;  // 36 MiB of f32: three chunks
  std::vector<float> data(n);
  for (int64_t i = 0; i < n; ++i) data[i] = static_cast<float>(i % 100003) * 0.5f - 7.0f;
  DeviceTensor t = cuda_->Allocate(DType::kBF16, {n});
  cuda_->ConvertFromHost(data.data(), DType::kF32, t.view());
  data.assign(n, 0.0f);  // src may be reused as soon as the call returns
  const std::vector<uint16_t> got = DownloadBits(*cuda_, t.view());
  for (int64_t i = 0; i < n; i += 4099) {
    ASSERT_EQ(got[i], ToBf16Bits(static_cast<float>(i % 100003) * 0.5f - 7.0f)) << i;
  }
  ASSERT_EQ(got[n - 1], ToBf16Bits(static_cast<float>((n - 1) % 100003) * 0.5f - 7.0f));
}

// ---- Initialisation ----

TEST_F(CudaKernelsTest, FillRandomIsBitExactWithRandomValue) {
  constexpr int64_t kN = 100003;
  for (const auto& [seed, scale] :
       {std::pair<uint64_t, float>{7, 0.02f}, {123456789, 1.0f}, {~uint64_t{0}, 3.5f}}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, " scale ", scale));
    DeviceTensor bf = cuda_->Allocate(DType::kBF16, {kN});
    DeviceTensor f32 = cuda_->Allocate(DType::kF32, {kN});
    cuda_->FillRandom(bf.view(), seed, scale);
    cuda_->FillRandom(f32.view(), seed, scale);
    std::vector<uint16_t> want_bf(kN);
    std::vector<float> want_f32(kN);
    for (int64_t i = 0; i < kN; ++i) {
      want_f32[i] = RandomValue(seed, i, scale);
      want_bf[i] = ToBf16Bits(want_f32[i]);
    }
    EXPECT_EQ(DownloadBits(*cuda_, bf.view()), want_bf);
    EXPECT_EQ(Download(*cuda_, f32.view()), want_f32);
  }
}

TEST_F(CudaKernelsTest, FillWritesTheRoundedValue) {
  DeviceTensor bf = cuda_->Allocate(DType::kBF16, {3, 1000});
  cuda_->Fill(bf.view(), 0.1f);
  EXPECT_EQ(DownloadBits(*cuda_, bf.view()), std::vector<uint16_t>(3000, ToBf16Bits(0.1f)));
  DeviceTensor f32 = cuda_->Allocate(DType::kF32, {77});
  cuda_->Fill(f32.view(), -2.5f);
  EXPECT_EQ(Download(*cuda_, f32.view()), std::vector<float>(77, -2.5f));
}

// ---- Row-wise ops ----

TEST_F(CudaKernelsTest, EmbeddingAndGatherRowsMatchTheCpu) {
  // Hidden sizes 64 (16-byte vectors) and 13 (2-byte words).
  for (int64_t hidden : {64, 13}) {
    SCOPED_TRACE(absl::StrCat("hidden ", hidden));
    const int64_t vocab = 50;
    const std::vector<float> table = RoundToBf16(RandomFloats(vocab * hidden, 3));
    const std::vector<int32_t> ids = {0, 49, 7, 7, 23, 1};
    DeviceTensor table_cuda = UploadBf16(*cuda_, table, {vocab, hidden});
    DeviceTensor ids_cuda = UploadI32(*cuda_, ids, {6});
    DeviceTensor out = cuda_->Allocate(DType::kBF16, {6, hidden});
    cuda_->Embedding(table_cuda.view(), ids_cuda.view(), out.view());

    DeviceTensor table_cpu = Upload(*cpu_, table, {vocab, hidden});
    DeviceTensor ids_cpu = UploadI32(*cpu_, ids, {6});
    DeviceTensor out_cpu = cpu_->Allocate(DType::kF32, {6, hidden});
    cpu_->Embedding(table_cpu.view(), ids_cpu.view(), out_cpu.view());
    EXPECT_EQ(DownloadBf16(*cuda_, out.view()), Download(*cpu_, out_cpu.view()));

    DeviceTensor gathered = cuda_->Allocate(DType::kBF16, {2, hidden});
    DeviceTensor rows = UploadI32(*cuda_, {5, 2}, {2});
    cuda_->GatherRows(out.view(), rows.view(), gathered.view());
    const std::vector<float> all = DownloadBf16(*cuda_, out.view());
    std::vector<float> want(all.begin() + 5 * hidden, all.begin() + 6 * hidden);
    want.insert(want.end(), all.begin() + 2 * hidden, all.begin() + 3 * hidden);
    EXPECT_EQ(DownloadBf16(*cuda_, gathered.view()), want);
  }
}

TEST_F(CudaKernelsTest, GatherRowsTakesF32Logits) {
  const std::vector<float> x = RandomFloats(4 * 10, 4);
  DeviceTensor t = Upload(*cuda_, x, {4, 10});
  DeviceTensor rows = UploadI32(*cuda_, {3, 0, 3}, {3});
  DeviceTensor out = cuda_->Allocate(DType::kF32, {3, 10});
  cuda_->GatherRows(t.view(), rows.view(), out.view());
  std::vector<float> want(x.begin() + 30, x.end());
  want.insert(want.end(), x.begin(), x.begin() + 10);
  want.insert(want.end(), x.begin() + 30, x.end());
  EXPECT_EQ(Download(*cuda_, out.view()), want);
}

TEST_F(CudaKernelsTest, RmsNormMatchesTheCpu) {
  // 4096: Llama's hidden size, vectorised; 100: the element-by-element path.
  for (const auto& [rows, hidden] : {std::pair<int64_t, int64_t>{5, 4096}, {3, 100}, {1, 256}}) {
    SCOPED_TRACE(absl::StrCat(rows, " x ", hidden));
    const std::vector<float> x = RoundToBf16(RandomFloats(rows * hidden, 5, -3.0f, 3.0f));
    const std::vector<float> w = RoundToBf16(RandomFloats(hidden, 6, 0.5f, 1.5f));
    DeviceTensor x_cuda = UploadBf16(*cuda_, x, {rows, hidden});
    DeviceTensor w_cuda = UploadBf16(*cuda_, w, {hidden});
    DeviceTensor out = cuda_->Allocate(DType::kBF16, {rows, hidden});
    cuda_->RmsNorm(x_cuda.view(), w_cuda.view(), 1e-5f, out.view());

    DeviceTensor x_cpu = Upload(*cpu_, x, {rows, hidden});
    DeviceTensor w_cpu = Upload(*cpu_, w, {hidden});
    DeviceTensor out_cpu = cpu_->Allocate(DType::kF32, {rows, hidden});
    cpu_->RmsNorm(x_cpu.view(), w_cpu.view(), 1e-5f, out_cpu.view());
    ExpectAllClose(DownloadBf16(*cuda_, out.view()), ToDouble(Download(*cpu_, out_cpu.view())),
                   1e-5, kOneRounding);

    // In place: out aliases x.
    cuda_->RmsNorm(x_cuda.view(), w_cuda.view(), 1e-5f, x_cuda.view());
    ExpectAllClose(DownloadBf16(*cuda_, x_cuda.view()), ToDouble(Download(*cpu_, out_cpu.view())),
                   1e-5, kOneRounding);
  }
}

TEST_F(CudaKernelsTest, AddRmsNormMatchesTheCpu) {
  for (const auto& [rows, hidden] : {std::pair<int64_t, int64_t>{4, 4096}, {2, 36}}) {
    SCOPED_TRACE(absl::StrCat(rows, " x ", hidden));
    const std::vector<float> residual = RoundToBf16(RandomFloats(rows * hidden, 7, -2.0f, 2.0f));
    const std::vector<float> x = RoundToBf16(RandomFloats(rows * hidden, 8));
    const std::vector<float> w = RoundToBf16(RandomFloats(hidden, 9, 0.5f, 1.5f));
    DeviceTensor res_cuda = UploadBf16(*cuda_, residual, {rows, hidden});
    DeviceTensor x_cuda = UploadBf16(*cuda_, x, {rows, hidden});
    DeviceTensor w_cuda = UploadBf16(*cuda_, w, {hidden});
    DeviceTensor out = cuda_->Allocate(DType::kBF16, {rows, hidden});
    cuda_->AddRmsNorm(res_cuda.view(), x_cuda.view(), w_cuda.view(), 1e-6f, out.view());

    DeviceTensor res_cpu = Upload(*cpu_, residual, {rows, hidden});
    DeviceTensor x_cpu = Upload(*cpu_, x, {rows, hidden});
    DeviceTensor w_cpu = Upload(*cpu_, w, {hidden});
    DeviceTensor out_cpu = cpu_->Allocate(DType::kF32, {rows, hidden});
    cpu_->AddRmsNorm(res_cpu.view(), x_cpu.view(), w_cpu.view(), 1e-6f, out_cpu.view());
    // The stored residual: one rounding of the exact sum.
    ExpectAllClose(DownloadBf16(*cuda_, res_cuda.view()), ToDouble(Download(*cpu_, res_cpu.view())),
                   1e-6, kOneRounding, "residual");
    ExpectAllClose(DownloadBf16(*cuda_, out.view()), ToDouble(Download(*cpu_, out_cpu.view())),
                   1e-5, kTwoRoundings, "out");
  }
}

TEST_F(CudaKernelsTest, SiluMulMatchesTheCpu) {
  // 688: the tiny preset's intermediate size (vectorised); 13: element by element.
  for (const auto& [rows, inter] : {std::pair<int64_t, int64_t>{7, 688}, {3, 13}}) {
    SCOPED_TRACE(absl::StrCat(rows, " x ", inter));
    std::vector<float> gate_up = RoundToBf16(RandomFloats(rows * 2 * inter, 10, -6.0f, 6.0f));
    gate_up[0] = -100.0f;  // silu -> -0, not NaN
    DeviceTensor in_cuda = UploadBf16(*cuda_, gate_up, {rows, 2 * inter});
    DeviceTensor out = cuda_->Allocate(DType::kBF16, {rows, inter});
    cuda_->SiluMul(in_cuda.view(), out.view());
    DeviceTensor in_cpu = Upload(*cpu_, gate_up, {rows, 2 * inter});
    DeviceTensor out_cpu = cpu_->Allocate(DType::kF32, {rows, inter});
    cpu_->SiluMul(in_cpu.view(), out_cpu.view());
    ExpectAllClose(DownloadBf16(*cuda_, out.view()), ToDouble(Download(*cpu_, out_cpu.view())),
                   1e-6, kOneRounding);
  }
}

// ---- Gemm ----

struct GemmCase {
  int64_t m, n, k;
  bool bias;
  DType out;
};

TEST_F(CudaKernelsTest, GemmMatchesTheCpu) {
  const GemmCase cases[] = {
      {1, 256, 512, false, DType::kBF16},   // a decode row
      {5, 384, 256, true, DType::kBF16},    // bias in cuBLASLt's epilogue (Qwen2's qkv)
      {37, 300, 200, false, DType::kBF16},  // sizes that are not multiples of anything
      {37, 302, 200, true, DType::kBF16},   // ... with a bias
      {128, 512, 1024, false, DType::kBF16},
      {3, 1000, 256, false, DType::kF32},  // f32 logits from bf16 inputs (the lm_head)
      {4, 500, 64, true, DType::kF32},     // f32 output with a bias: the bias kernel
      {6, 40, 0, true, DType::kBF16},      // k = 0: bias only
  };
  for (const GemmCase& c : cases) {
    SCOPED_TRACE(
        absl::StrCat("m ", c.m, " n ", c.n, " k ", c.k, c.bias ? " bias " : " ", DTypeName(c.out)));
    const std::vector<float> x = RoundToBf16(RandomFloats(c.m * c.k, 11));
    const std::vector<float> w = RoundToBf16(RandomFloats(c.n * c.k, 12));
    const std::vector<float> b = RoundToBf16(RandomFloats(c.n, 13));
    DeviceTensor x_cuda = UploadBf16(*cuda_, x, {c.m, c.k});
    DeviceTensor w_cuda = UploadBf16(*cuda_, w, {c.n, c.k});
    DeviceTensor b_cuda = UploadBf16(*cuda_, b, {c.n});
    DeviceTensor out = cuda_->Allocate(c.out, {c.m, c.n});
    cuda_->Gemm(x_cuda.view(), w_cuda.view(), c.bias ? &b_cuda.view() : nullptr, out.view());

    DeviceTensor x_cpu = Upload(*cpu_, x, {c.m, c.k});
    DeviceTensor w_cpu = Upload(*cpu_, w, {c.n, c.k});
    DeviceTensor b_cpu = Upload(*cpu_, b, {c.n});
    DeviceTensor out_cpu = cpu_->Allocate(DType::kF32, {c.m, c.n});
    cpu_->Gemm(x_cpu.view(), w_cpu.view(), c.bias ? &b_cpu.view() : nullptr, out_cpu.view());
    const std::vector<float> got =
        c.out == DType::kF32 ? Download(*cuda_, out.view()) : DownloadBf16(*cuda_, out.view());
    const double rtol = c.out == DType::kF32 ? 1e-5 : kOneRounding;
    ExpectAllClose(got, ToDouble(Download(*cpu_, out_cpu.view())), 1e-2, rtol);
  }
}

// A Rows() view of x starts at an odd multiple of the row width: cuBLASLt is told the real
// alignment.
TEST_F(CudaKernelsTest, GemmOnRowsViews) {
  const int64_t m = 9, n = 64, k = 36;
  const std::vector<float> x = RoundToBf16(RandomFloats(m * k, 14));
  const std::vector<float> w = RoundToBf16(RandomFloats(n * k, 15));
  DeviceTensor x_cuda = UploadBf16(*cuda_, x, {m, k});
  DeviceTensor w_cuda = UploadBf16(*cuda_, w, {n, k});
  DeviceTensor out = cuda_->Allocate(DType::kBF16, {m, n});
  const Tensor x_rows = x_cuda.view().Rows(1, m);  // starts 72 bytes in
  Tensor out_rows = out.view().Rows(1, m);
  cuda_->Gemm(x_rows, w_cuda.view(), nullptr, out_rows);

  DeviceTensor x_cpu = Upload(*cpu_, std::vector<float>(x.begin() + k, x.end()), {m - 1, k});
  DeviceTensor w_cpu = Upload(*cpu_, w, {n, k});
  DeviceTensor out_cpu = cpu_->Allocate(DType::kF32, {m - 1, n});
  cpu_->Gemm(x_cpu.view(), w_cpu.view(), nullptr, out_cpu.view());
  ExpectAllClose(DownloadBf16(*cuda_, out_rows), ToDouble(Download(*cpu_, out_cpu.view())), 1e-2,
                 kOneRounding);
}

// ---- RoPE and KV store ----

TEST_F(CudaKernelsTest, RopeAndStoreKvMatchesTheCpu) {
  struct Case {
    AttentionShape shape;
    int block_size;
  };
  // d 128 and 64 (16-byte vectors), d 12 (element by element); GQA and MHA.
  for (const Case& c : {Case{{8, 2, 128}, 16}, Case{{4, 4, 64}, 32}, Case{{6, 2, 12}, 4}}) {
    const int64_t hq = c.shape.num_q_heads, hkv = c.shape.num_kv_heads, d = c.shape.head_dim;
    SCOPED_TRACE(absl::StrCat("Hq ", hq, " Hkv ", hkv, " d ", d));
    const int64_t tokens = 9, num_blocks = 5, width = (hq + 2 * hkv) * d;
    const std::vector<float> qkv = RoundToBf16(RandomFloats(tokens * width, 16, -2.0f, 2.0f));
    // Positions up to 100000: large angles need cosf/sinf's full argument reduction.
    const std::vector<int32_t> positions = {0, 1, 2, 17, 100, 4095, 4096, 65537, 100000};
    std::vector<int32_t> slots(num_blocks * c.block_size);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), std::mt19937(17));
    slots.resize(tokens);
    std::vector<float> inv_freq(d / 2);
    for (int64_t j = 0; j < d / 2; ++j) {
      inv_freq[j] = 1.0f / std::pow(500000.0f, static_cast<float>(2 * j) / d);
    }
    const std::vector<float> cache(num_blocks * hkv * c.block_size * d, 7.0f);

    DeviceTensor qkv_cuda = UploadBf16(*cuda_, qkv, {tokens, width});
    DeviceTensor pos_cuda = UploadI32(*cuda_, positions, {tokens});
    DeviceTensor slots_cuda = UploadI32(*cuda_, slots, {tokens});
    DeviceTensor freq_cuda = Upload(*cuda_, inv_freq, {d / 2});
    DeviceTensor k_cuda = UploadBf16(*cuda_, cache, {num_blocks, hkv, c.block_size, d});
    DeviceTensor v_cuda = UploadBf16(*cuda_, cache, {num_blocks, hkv, c.block_size, d});
    KvCacheLayer kv_cuda{k_cuda.view(), v_cuda.view()};
    cuda_->RopeAndStoreKv(qkv_cuda.view(), pos_cuda.view(), freq_cuda.view(), slots_cuda.view(),
                          c.shape, kv_cuda);

    DeviceTensor qkv_cpu = Upload(*cpu_, qkv, {tokens, width});
    DeviceTensor pos_cpu = UploadI32(*cpu_, positions, {tokens});
    DeviceTensor slots_cpu = UploadI32(*cpu_, slots, {tokens});
    DeviceTensor freq_cpu = Upload(*cpu_, inv_freq, {d / 2});
    DeviceTensor k_cpu = Upload(*cpu_, cache, {num_blocks, hkv, c.block_size, d});
    DeviceTensor v_cpu = Upload(*cpu_, cache, {num_blocks, hkv, c.block_size, d});
    KvCacheLayer kv_cpu{k_cpu.view(), v_cpu.view()};
    cpu_->RopeAndStoreKv(qkv_cpu.view(), pos_cpu.view(), freq_cpu.view(), slots_cpu.view(), c.shape,
                         kv_cpu);

    ExpectAllClose(DownloadBf16(*cuda_, qkv_cuda.view()), ToDouble(Download(*cpu_, qkv_cpu.view())),
                   1e-4, kOneRounding, "qkv");
    ExpectAllClose(DownloadBf16(*cuda_, k_cuda.view()), ToDouble(Download(*cpu_, k_cpu.view())),
                   1e-4, kOneRounding, "k cache");
    // v is copied, not computed: exact.
    EXPECT_EQ(DownloadBf16(*cuda_, v_cuda.view()), Download(*cpu_, v_cpu.view()));
  }
}

}  // namespace
}  // namespace prefixd
