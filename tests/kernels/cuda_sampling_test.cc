// tests/kernels/cuda_sampling_test.cc — the CUDA Sample against the CPU's on the same f32
// logits: greedy tokens and top logprobs exactly (ids) and within 2e-5 (logprobs: both take
// log(Σ exp) in double of fp32 exps, which differ by an ulp at most); seeded draws exactly,
// except where a draw lands within rounding of the boundary between two tokens in the
// cumulative distribution (summation order and expf ulps move boundaries by ~1e-7 of the
// mass at most; we skip draws within 1e-5 of one, computed in double on the host).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/kernels.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::CudaTest;
using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::Upload;

constexpr double kLogprobTolerance = 2e-5;
constexpr double kBoundaryMargin = 1e-5;

std::vector<SampledToken> SampleOn(Backend& backend, const std::vector<float>& logits,
                                   int64_t vocab, const std::vector<SamplingRow>& rows) {
  DeviceTensor t = Upload(backend, logits, {static_cast<int64_t>(rows.size()), vocab});
  std::vector<SampledToken> out(rows.size());
  backend.Sample(t.view(), rows, absl::MakeSpan(out));
  return out;
}

// How close the draw of `row` on `logits` lands to a boundary of the cumulative distribution
// kernels.h describes, computed in double: a draw nearer than kBoundaryMargin may
// legitimately differ between backends.
double DistanceToBoundary(const float* logits, int64_t vocab, const SamplingRow& row) {
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const int64_t n = row.top_k > 0 && row.top_k < vocab ? row.top_k : vocab;
  std::vector<double> p(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    total += p[i] =
        std::exp((static_cast<double>(logits[order[i]]) - logits[order[0]]) / row.temperature);
  }
  for (double& x : p) x /= total;
  double distance = 1.0, cumulative = 0.0, kept_mass = 1.0;
  if (row.top_p < 1.0f) {
    for (int64_t i = 0; i < n; ++i) {
      cumulative += p[i];
      distance = std::min(distance, std::abs(cumulative - row.top_p));
      if (cumulative >= row.top_p) {
        kept_mass = cumulative;
        break;
      }
    }
  }
  const double target = SamplingUniform(row.seed, row.step) * kept_mass;
  cumulative = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    cumulative += p[i];
    distance = std::min(distance, std::abs(cumulative - target));
    if (cumulative > target + kBoundaryMargin) break;  // later boundaries are farther
  }
  return distance;
}

class CudaSamplingTest : public CudaTest {
 protected:
  // Samples `rows` (row b of logits under rows[b]) on both backends and compares.
  // At least `min_compared` of the draws must land clear of a boundary and be compared.
  void ExpectMatchesCpu(const std::vector<float>& logits, int64_t vocab,
                        const std::vector<SamplingRow>& rows, double min_compared = 0.9) {
    const std::vector<SampledToken> got = SampleOn(*cuda_, logits, vocab, rows);
    const std::vector<SampledToken> want = SampleOn(*cpu_, logits, vocab, rows);
    int compared = 0;
    for (size_t b = 0; b < rows.size(); ++b) {
      SCOPED_TRACE(absl::StrCat("row ", b, " temperature ", rows[b].temperature, " top_k ",
                                rows[b].top_k, " top_p ", rows[b].top_p, " step ", rows[b].step));
      const bool greedy = rows[b].temperature == 0.0f || rows[b].top_k == 1;
      if (greedy ||
          DistanceToBoundary(logits.data() + b * vocab, vocab, rows[b]) > kBoundaryMargin) {
        EXPECT_EQ(got[b].token, want[b].token);
        ++compared;
      }
      EXPECT_NEAR(
          got[b].logprob,
          logits[b * vocab + got[b].token] - logits[b * vocab + want[b].token] + want[b].logprob,
          kLogprobTolerance);
      ASSERT_EQ(got[b].top.size(), want[b].top.size());
      for (size_t i = 0; i < got[b].top.size(); ++i) {
        EXPECT_EQ(got[b].top[i].token, want[b].top[i].token) << "top " << i;
        EXPECT_NEAR(got[b].top[i].logprob, want[b].top[i].logprob, kLogprobTolerance);
      }
    }
    EXPECT_GE(compared, static_cast<int>(rows.size() * min_compared))
        << "too few draws clear of a boundary to compare";
  }
};

TEST_F(CudaSamplingTest, GreedyMatchesTheCpuIncludingTies) {
  constexpr int64_t kVocab = 1000;
  std::vector<float> logits = RandomFloats(8 * kVocab, 1, -5.0f, 5.0f);
  // Row 0: a tie for first place (the lower id wins); row 1: all equal (id 0 wins).
  logits[700] = logits[300] = 9.0f;
  std::fill_n(logits.begin() + kVocab, kVocab, 0.25f);
  std::vector<SamplingRow> rows(8);
  for (size_t b = 0; b < rows.size(); ++b) {
    rows[b].temperature = b % 2 == 0 ? 0.0f : 0.7f;
    rows[b].top_k = b % 2 == 0 ? 0 : 1;  // top_k 1 is greedy too
    rows[b].num_top_logprobs = static_cast<int>(b * 2);
  }
  const std::vector<SampledToken> got = SampleOn(*cuda_, logits, kVocab, rows);
  EXPECT_EQ(got[0].token, 300);
  EXPECT_EQ(got[1].token, 0);
  ExpectMatchesCpu(logits, kVocab, rows);
}

TEST_F(CudaSamplingTest, TopLogprobsAreSortedWithTiesByIdAtFullVocabulary) {
  constexpr int64_t kVocab = 128256;  // Llama 3's
  std::vector<float> logits = RandomFloats(2 * kVocab, 2, -8.0f, 8.0f);
  const float best = *std::max_element(logits.begin(), logits.begin() + kVocab);
  logits[90000] = logits[17] = best;  // a three-way tie for first place
  logits[kVocab + 5] = -0.0f;         // -0 and +0 tie
  logits[kVocab + 6] = 0.0f;
  std::vector<SamplingRow> rows(2);
  rows[0].temperature = 0.0f;
  rows[0].num_top_logprobs = 20;
  rows[1].temperature = 0.8f;
  rows[1].num_top_logprobs = 5;
  ExpectMatchesCpu(logits, kVocab, rows);
}

// Many seeded draws under each kind of parameters, on logits whose probabilities are well
// separated.
TEST_F(CudaSamplingTest, SeededDrawsMatchTheCpu) {
  constexpr int64_t kVocab = 1000;
  struct Params {
    float temperature;
    int top_k;
    float top_p;
  };
  const Params kinds[] = {{1.0f, 0, 1.0f},    {0.7f, 50, 1.0f}, {1.0f, 0, 0.9f},   {1.3f, 0, 1.0f},
                          {0.8f, 200, 0.95f}, {1.5f, 0, 1e-6f}, {0.5f, 999, 0.5f}, {2.0f, 5, 1.0f}};
  const std::vector<float> row_logits = RandomFloats(kVocab, 3, -8.0f, 8.0f);
  std::vector<float> logits;
  std::vector<SamplingRow> rows;
  for (const Params& kind : kinds) {
    for (uint64_t step = 0; step < 25; ++step) {
      SamplingRow row;
      row.temperature = kind.temperature;
      row.top_k = kind.top_k;
      row.top_p = kind.top_p;
      row.seed = 1234 + kind.top_k;
      row.step = step;
      rows.push_back(row);
      logits.insert(logits.end(), row_logits.begin(), row_logits.end());
    }
  }
  // 200 rows: more than one launch's worth (64), so the chunking is exercised too.
  ExpectMatchesCpu(logits, kVocab, rows);
}

TEST_F(CudaSamplingTest, SeededDrawsMatchTheCpuAtFullVocabulary) {
  constexpr int64_t kVocab = 128256;
  const std::vector<float> row_logits = RandomFloats(kVocab, 4, -10.0f, 10.0f);
  std::vector<float> logits;
  std::vector<SamplingRow> rows;
  for (int b = 0; b < 48; ++b) {
    SamplingRow row;
    row.temperature = b % 3 == 0 ? 1.0f : 0.6f;
    row.top_k = b % 4 == 1 ? 40 : 0;
    row.top_p = b % 2 == 0 ? 0.9f : 1.0f;
    row.seed = 99;
    row.step = b;
    rows.push_back(row);
    logits.insert(logits.end(), row_logits.begin(), row_logits.end());
  }
  // Over 128k flat-ish logits the tokens where draws land hold ~1e-4 of the mass each, so
  // about half of the draws fall within the 1e-5 margin of a boundary (seen on an H100: 6 of
  // 12). Every draw clear of one must match; ask that a third at least are compared.
  ExpectMatchesCpu(logits, kVocab, rows, 1.0 / 3);
}

// Equal logits: every probability is 1/64 exactly, so both backends see exactly the same
// cumulative sums, and the order among equals is by id.
TEST_F(CudaSamplingTest, EqualLogitsDrawByIdOrder) {
  constexpr int64_t kVocab = 64;
  std::vector<SamplingRow> rows(100);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].seed = 5;
    rows[i].step = i;
  }
  const std::vector<float> logits(rows.size() * kVocab, 1.5f);
  const std::vector<SampledToken> got = SampleOn(*cuda_, logits, kVocab, rows);
  const std::vector<SampledToken> want = SampleOn(*cpu_, logits, kVocab, rows);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(got[i].token, want[i].token) << i;
}

// top_k cuts inside a run of equal logits: the lower ids are kept.
TEST_F(CudaSamplingTest, TopKTiesAtTheCutGoToTheLowerId) {
  constexpr int64_t kVocab = 6;
  const std::vector<float> row_logits = {1.0f, 3.0f, 3.0f, 5.0f, 3.0f, 0.0f};
  std::vector<float> logits;
  std::vector<SamplingRow> rows(300);
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].top_k = 2;  // token 3, then token 1 of the tied 1, 2, 4
    rows[i].seed = 6;
    rows[i].step = i;
    logits.insert(logits.end(), row_logits.begin(), row_logits.end());
  }
  const std::vector<SampledToken> got = SampleOn(*cuda_, logits, kVocab, rows);
  int ones = 0;
  for (const SampledToken& s : got) {
    EXPECT_TRUE(s.token == 3 || s.token == 1) << s.token;
    ones += s.token == 1;
  }
  EXPECT_GT(ones, 0);
  ExpectMatchesCpu(logits, kVocab, rows);
}

TEST_F(CudaSamplingTest, OneTokenVocabulary) {
  std::vector<SamplingRow> rows(2);
  rows[1].temperature = 0.0f;
  rows[0].num_top_logprobs = 3;
  const std::vector<SampledToken> got = SampleOn(*cuda_, {2.5f, -1.0f}, 1, rows);
  for (const SampledToken& s : got) {
    EXPECT_EQ(s.token, 0);
    EXPECT_FLOAT_EQ(s.logprob, 0.0f);
  }
  ASSERT_EQ(got[0].top.size(), 1u);
  EXPECT_EQ(got[0].top[0].token, 0);
}

}  // namespace
}  // namespace prefixd
