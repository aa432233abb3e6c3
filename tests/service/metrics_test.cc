// The Prometheus text exposition that /metrics serves: format, escaping, histograms,
// thread safety.
#include "service/metrics.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, WritesCountersAndGaugesWithHelpTypeAndSortedLabels) {
  MetricsRegistry registry;
  auto& requests = registry.AddCounter("prefixd_requests_total", "Requests by final status.",
                                       {"code", "finish_reason"});
  requests.WithLabels({"OK", "stop"}).Increment();
  requests.WithLabels({"OK", "stop"}).Increment(2);
  requests.WithLabels({"CANCELLED", "none"}).Increment();
  registry.AddGauge("prefixd_queue_depth_requests", "Requests waiting.").Get().Set(3);

  EXPECT_EQ(registry.Expose(),
            "# HELP prefixd_requests_total Requests by final status.\n"
            "# TYPE prefixd_requests_total counter\n"
            "prefixd_requests_total{code=\"CANCELLED\",finish_reason=\"none\"} 1\n"
            "prefixd_requests_total{code=\"OK\",finish_reason=\"stop\"} 3\n"
            "# HELP prefixd_queue_depth_requests Requests waiting.\n"
            "# TYPE prefixd_queue_depth_requests gauge\n"
            "prefixd_queue_depth_requests 3\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndEndInInf) {
  MetricsRegistry registry;
  Histogram& h =
      registry.AddHistogram("prefixd_time_to_first_token_seconds", "TTFT.", {0.125, 0.5, 1}).Get();
  h.Observe(0.0625);
  h.Observe(0.125);  // "le": on the bound counts in that bucket
  h.Observe(0.75);
  h.Observe(3, 2);
  EXPECT_EQ(registry.Expose(),
            "# HELP prefixd_time_to_first_token_seconds TTFT.\n"
            "# TYPE prefixd_time_to_first_token_seconds histogram\n"
            "prefixd_time_to_first_token_seconds_bucket{le=\"0.125\"} 2\n"
            "prefixd_time_to_first_token_seconds_bucket{le=\"0.5\"} 2\n"
            "prefixd_time_to_first_token_seconds_bucket{le=\"1\"} 3\n"
            "prefixd_time_to_first_token_seconds_bucket{le=\"+Inf\"} 5\n"
            "prefixd_time_to_first_token_seconds_sum 6.9375\n"
            "prefixd_time_to_first_token_seconds_count 5\n");
}

TEST(MetricsTest, LabelledHistogramKeepsLeLast) {
  MetricsRegistry registry;
  registry.AddHistogram("x_seconds", "X.", {1}, {"tenant"}).WithLabels({"acme"}).Observe(0.5);
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("x_seconds_bucket{tenant=\"acme\",le=\"1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("x_seconds_bucket{tenant=\"acme\",le=\"+Inf\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("x_seconds_sum{tenant=\"acme\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("x_seconds_count{tenant=\"acme\"} 1\n"));
}

TEST(MetricsTest, EscapesHelpAndLabelValues) {
  MetricsRegistry registry;
  registry.AddGauge("g", "Back\\slash and\nnewline; \"quotes\" stay.", {"tenant"})
      .WithLabels({"a\"b\\c\nd"})
      .Set(1);
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("# HELP g Back\\\\slash and\\nnewline; \"quotes\" stay.\n"));
  EXPECT_THAT(text, HasSubstr("g{tenant=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(MetricsTest, FormatsSpecialValuesAsPrometheusReadsThem) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(12345678), "12345678");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(1e21), "1e+21");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  // Shortest form that reads back to the same double.
  EXPECT_EQ(std::stod(FormatMetricValue(0.1 + 0.2)), 0.1 + 0.2);
}

TEST(MetricsTest, CollectorsWriteTheirFamiliesAfterTheRegisteredOnes) {
  MetricsRegistry registry;
  registry.AddCounter("a_total", "A.").Get().Increment();
  int calls = 0;
  registry.AddCollector([&calls](TextExposition& out) {
    ++calls;
    out.Gauge("b_ratio", "B.", 0.5);
    out.Family("c_blocks", "C.", MetricType::kGauge);
    out.Sample("", {{"state", "free"}}, 7);
  });
  const std::string text = registry.Expose();
  EXPECT_EQ(calls, 1);
  EXPECT_LT(text.find("a_total 1"), text.find("b_ratio 0.5"));
  EXPECT_THAT(text, HasSubstr("c_blocks{state=\"free\"} 7\n"));
  EXPECT_EQ(registry.Expose(), text);  // collectors run again, same state
  EXPECT_EQ(calls, 2);
}

TEST(MetricsTest, FamilyWithoutChildrenWritesOnlyItsHeader) {
  MetricsRegistry registry;
  registry.AddCounter("prefixd_requests_total", "R.", {"code"});
  EXPECT_EQ(registry.Expose(),
            "# HELP prefixd_requests_total R.\n# TYPE prefixd_requests_total counter\n");
}

TEST(MetricsTest, QuantileInterpolatesInsideTheBucketLikePromQL) {
  HistogramData h;
  h.bounds = {1, 2, 4};
  h.counts = {0, 10, 10, 0};  // 10 in (1, 2], 10 in (2, 4]
  EXPECT_DOUBLE_EQ(h.Quantile(0.5), 2);
  EXPECT_DOUBLE_EQ(h.Quantile(0.25), 1.5);
  EXPECT_DOUBLE_EQ(h.Quantile(0.75), 3);
  EXPECT_TRUE(std::isnan(HistogramData{{1}, {0, 0}, 0}.Quantile(0.5)));
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  auto& counter = registry.AddCounter("c_total", "C.", {"tenant"});
  Histogram& h = registry.AddHistogram("h_seconds", "H.", {0.5}).Get();
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        counter.WithLabels({t % 2 ? "a" : "b"}).Increment();
        h.Observe(i % 2 ? 0.25 : 1);
      }
    });
  }
  // Scrapes while the writers run see consistent histograms (+Inf bucket == count) and
  // counts that never go down.
  uint64_t previous = 0;
  for (int i = 0; i < 20; ++i) {
    const HistogramData data = h.Snapshot();
    EXPECT_GE(data.count(), previous);
    previous = data.count();
    const std::string text = registry.Expose();
    const std::string count = "h_seconds_count ";
    const std::string inf = "h_seconds_bucket{le=\"+Inf\"} ";
    const size_t c = text.find(count), b = text.find(inf);
    ASSERT_NE(c, std::string::npos);
    ASSERT_NE(b, std::string::npos);
    EXPECT_EQ(text.substr(c + count.size(), text.find('\n', c) - c - count.size()),
              text.substr(b + inf.size(), text.find('\n', b) - b - inf.size()));
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter.WithLabels({"a"}).value() + counter.WithLabels({"b"}).value(),
            kThreads * kEach);
  const HistogramData data = h.Snapshot();
  EXPECT_EQ(data.count(), uint64_t{kThreads} * kEach);
  EXPECT_EQ(data.counts[0], uint64_t{kThreads} * kEach / 2);
}

TEST(MetricsDeathTest, RejectsInvalidNamesAndDuplicateFamilies) {
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.AddCounter("bad-name", "x");
      },
      "invalid metric name");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.AddGauge("g", "x", {"__reserved"});
      },
      "invalid label name");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.AddGauge("g", "x");
        r.AddCounter("g", "x");
      },
      "registered twice");
  EXPECT_DEATH(
      {
        MetricsRegistry r;
        r.AddCounter("c_total", "x").Get().Increment(-1);
      },
      "cannot go down");
}

}  // namespace
}  // namespace prefixd
