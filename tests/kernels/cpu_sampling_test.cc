// tests/kernels/cpu_sampling_test.cc — Sample's documented semantics: greedy and ties,
// reproducible draws, frequencies that match softmax(logits / T), top-k / top-p cuts, and
// top logprobs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::Upload;

class CpuSamplingTest : public ::testing::Test {
 protected:
  // One row of logits sampled under each of `rows`.
  std::vector<SampledToken> SampleEach(const std::vector<float>& logits,
                                       const std::vector<SamplingRow>& rows) {
    const int64_t vocab = static_cast<int64_t>(logits.size());
    std::vector<float> batch;
    for (size_t b = 0; b < rows.size(); ++b)
      batch.insert(batch.end(), logits.begin(), logits.end());
    DeviceTensor t = Upload(*backend_, batch, {static_cast<int64_t>(rows.size()), vocab});
    std::vector<SampledToken> out(rows.size());
    backend_->Sample(t.view(), rows, absl::MakeSpan(out));
    return out;
  }

  SampledToken SampleOne(const std::vector<float>& logits, const SamplingRow& row) {
    return SampleEach(logits, {row})[0];
  }

  // `n` draws at steps 0..n-1 of one seed, counted per token.
  std::vector<double> Frequencies(const std::vector<float>& logits, SamplingRow row, int n) {
    std::vector<SamplingRow> rows(n, row);
    for (int i = 0; i < n; ++i) rows[i].step = i;
    std::vector<int> count(logits.size());
    for (const SampledToken& s : SampleEach(logits, rows)) ++count[s.token];
    std::vector<double> freq;
    for (int c : count) freq.push_back(static_cast<double>(c) / n);
    return freq;
  }

  std::unique_ptr<Backend> backend_ = MakeCpuBackend(2);
};

std::vector<double> LogSoftmax(const std::vector<float>& logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - max);
  std::vector<double> out;
  for (float x : logits) out.push_back(x - max - std::log(sum));
  return out;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  std::vector<double> p;
  const double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp((x - max) / temperature);
  for (float x : logits) p.push_back(std::exp((x - max) / temperature) / sum);
  return p;
}

TEST_F(CpuSamplingTest, GreedyTakesTheLowestIdAmongTies) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
  SamplingRow greedy;
  greedy.temperature = 0.0f;
  const SampledToken s = SampleOne(logits, greedy);
  EXPECT_EQ(s.token, 1);
  EXPECT_NEAR(s.logprob, LogSoftmax(logits)[1], 1e-6);

  SamplingRow top_k_one;  // temperature 1, but top_k 1 is greedy too
  top_k_one.top_k = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    top_k_one.seed = seed;
    EXPECT_EQ(SampleOne(logits, top_k_one).token, 1);
  }
}

TEST_F(CpuSamplingTest, TinyTopPIsArgmax) {
  const std::vector<float> logits = RandomFloats(1000, 1, -2.0f, 2.0f);
  const int argmax =
      static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  SamplingRow row;
  row.temperature = 1.5f;
  row.top_p = 1e-6f;
  for (uint64_t step = 0; step < 50; ++step) {
    row.step = step;
    EXPECT_EQ(SampleOne(logits, row).token, argmax);
  }
}

TEST_F(CpuSamplingTest, SameSeedAndStepGiveTheSameToken) {
  const std::vector<float> logits(64, 0.0f);  // uniform: any token may come
  SamplingRow row;
  row.seed = 1234;
  std::vector<SamplingRow> rows;
  for (int i = 0; i < 40; ++i) {
    row.step = i % 20;
    rows.push_back(row);
  }
  const std::vector<SampledToken> out = SampleEach(logits, rows);
  int distinct_changes = 0;
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(out[i].token, out[i + 20].token) << "step " << i;
    if (i > 0 && out[i].token != out[i - 1].token) ++distinct_changes;
  }
  EXPECT_GT(distinct_changes, 10);  // different steps draw different tokens
  row.seed = 99;
  row.step = 3;
  const int32_t a = SampleOne(logits, row).token;
  EXPECT_EQ(SampleOne(logits, row).token, a);
}

TEST_F(CpuSamplingTest, UniformDrawIsTheInverseCdfInProbabilityOrder) {
  // Probabilities by id: 0.1, 0.6, 0.3 -> order 1, 2, 0 with cumulative 0.6, 0.9, 1.0.
  const std::vector<float> logits = {std::log(0.1f), std::log(0.6f), std::log(0.3f)};
  SamplingRow row;
  for (uint64_t step = 0; step < 200; ++step) {
    row.step = step;
    const float u = SamplingUniform(row.seed, step);
    if (std::abs(u - 0.6f) < 1e-4f || std::abs(u - 0.9f) < 1e-4f) continue;  // at a boundary
    const int want = u < 0.6f ? 1 : (u < 0.9f ? 2 : 0);
    EXPECT_EQ(SampleOne(logits, row).token, want) << "u = " << u;
  }
}

TEST_F(CpuSamplingTest, FrequenciesMatchSoftmaxWithTemperature) {
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -3.0f, 0.25f};
  SamplingRow row;
  row.temperature = 0.7f;
  row.seed = 7;
  constexpr int kDraws = 20000;
  const std::vector<double> freq = Frequencies(logits, row, kDraws);
  const std::vector<double> p = Softmax(logits, row.temperature);
  for (size_t i = 0; i < logits.size(); ++i) {
    // 4 standard deviations of a binomial frequency.
    EXPECT_NEAR(freq[i], p[i], 4 * std::sqrt(p[i] * (1 - p[i]) / kDraws) + 1e-4) << "token " << i;
  }
}

TEST_F(CpuSamplingTest, TopKKeepsTheKMostLikely) {
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -3.0f, 0.25f};
  SamplingRow row;
  row.top_k = 3;  // tokens 4, 5, 0
  row.seed = 8;
  constexpr int kDraws = 10000;
  const std::vector<double> freq = Frequencies(logits, row, kDraws);
  const std::vector<float> top = {logits[4], logits[5], logits[0]};
  const std::vector<double> p = Softmax(top, 1.0);
  EXPECT_NEAR(freq[4], p[0], 0.02);
  EXPECT_NEAR(freq[5], p[1], 0.02);
  EXPECT_NEAR(freq[0], p[2], 0.02);
  EXPECT_NEAR(freq[4] + freq[5] + freq[0], 1.0, 1e-12);  // nothing else is drawn
}

TEST_F(CpuSamplingTest, TopPKeepsTheShortestPrefixReachingP) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled): top_p 0.7 keeps 0.5 and 0.3.
  const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f),
                                     std::log(0.3f)};
  SamplingRow row;
  row.top_p = 0.7f;
  row.seed = 9;
  constexpr int kDraws = 10000;
  std::vector<double> freq = Frequencies(logits, row, kDraws);
  EXPECT_EQ(freq[0], 0.0);
  EXPECT_EQ(freq[2], 0.0);
  EXPECT_NEAR(freq[1], 0.5 / 0.8, 0.02);
  EXPECT_NEAR(freq[3], 0.3 / 0.8, 0.02);

  row.top_p = 0.9f;  // 0.5 + 0.3 + 0.15 reaches it: three tokens
  freq = Frequencies(logits, row, kDraws);
  EXPECT_EQ(freq[2], 0.0);
  EXPECT_NEAR(freq[0], 0.15 / 0.95, 0.02);

  row.top_p = 0.4f;  // the top token alone reaches it
  freq = Frequencies(logits, row, 200);
  EXPECT_EQ(freq[1], 1.0);
}

TEST_F(CpuSamplingTest, TopLogprobsAreSortedAndExact) {
  std::vector<float> logits = RandomFloats(5000, 2, -4.0f, 4.0f);
  const int best =
      static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  logits[4321] = logits[best];  // a tie for first place: the lower id comes first
  logits[17] = logits[best];
  SamplingRow row;
  row.num_top_logprobs = 20;
  row.temperature = 0.8f;
  const SampledToken s = SampleOne(logits, row);
  const std::vector<double> want = LogSoftmax(logits);
  EXPECT_NEAR(s.logprob, want[s.token], 1e-5);

  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ASSERT_EQ(s.top.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(s.top[i].token, order[i]) << i;
    EXPECT_NEAR(s.top[i].logprob, want[order[i]], 1e-5) << i;
  }
  EXPECT_EQ(s.top[0].token, std::min({17, best, 4321}));

  row.num_top_logprobs = 0;
  EXPECT_TRUE(SampleOne(logits, row).top.empty());
}

// The naive reading of kernels.h: full sort by (probability desc, id asc), prefix reaching
// top_p, inverse CDF. Probabilities in fp32 and sums in double, as documented in
// cpu_sampling.cc, so the token must be identical.
int32_t NaiveSample(const std::vector<float>& logits, const SamplingRow& row) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (row.top_k > 0 && row.top_k < vocab) ids.resize(row.top_k);
  float max = -INFINITY;
  for (int32_t id : ids) max = std::max(max, logits[id] / row.temperature);
  std::vector<float> e(vocab);
  double total = 0.0;
  for (int32_t id : ids) total += (e[id] = std::exp(logits[id] / row.temperature - max));
  std::vector<float> p(vocab);
  for (int32_t id : ids) p[id] = static_cast<float>(e[id] / total);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  size_t kept = ids.size();
  double mass = 0.0;
  if (row.top_p < 1.0f) {
    for (size_t i = 0; i < ids.size(); ++i) {
      mass += p[ids[i]];
      if (mass >= row.top_p) {
        kept = i + 1;
        break;
      }
    }
  } else {
    std::vector<int32_t> by_id = ids;
    std::sort(by_id.begin(), by_id.end());
    for (int32_t id : by_id) mass += p[id];
  }
  const double target = static_cast<double>(SamplingUniform(row.seed, row.step)) * mass;
  double cumulative = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    if ((cumulative += p[ids[i]]) > target) return ids[i];
  }
  return ids[kept - 1];
}

TEST_F(CpuSamplingTest, LargeVocabularyMatchesNaiveFullSort) {
  constexpr int kVocab = 50000;
  std::vector<float> logits = RandomFloats(kVocab, 3, -1.0f, 1.0f);
  for (int i = 0; i < 300; ++i) logits[(i * 7919) % kVocab] += 6.0f;  // a peaked head
  std::vector<SamplingRow> rows;
  for (float temperature : {0.6f, 1.0f, 3.0f}) {
    for (int top_k : {0, 40}) {
      for (float top_p : {0.5f, 0.95f, 1.0f}) {
        SamplingRow row;
        row.temperature = temperature;
        row.top_k = top_k;
        row.top_p = top_p;
        row.seed = rows.size();
        row.step = 3 * rows.size() + 1;
        rows.push_back(row);
      }
    }
  }
  const std::vector<SampledToken> out = SampleEach(logits, rows);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(out[i].token, NaiveSample(logits, rows[i]))
        << "T " << rows[i].temperature << " top_k " << rows[i].top_k << " top_p " << rows[i].top_p;
  }
}

}  // namespace
}  // namespace prefixd
