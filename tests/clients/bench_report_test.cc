#include "clients/bench/bench_report.h"

#include "clients/bench/progress_bar.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::bench {
namespace {

// A request that succeeded: sent at `start`, first token after `ttft`, then `tokens - 1`
// more one `gap` apart.
RequestRecord Succeeded(double start, double ttft, double gap, int tokens, int prompt, int cached) {
  RequestRecord r;
  r.code = absl::StatusCode::kOk;
  r.expected_output_len = tokens;
  r.start_s = start;
  r.first_token_s = start + ttft;
  for (int i = 1; i < tokens; ++i) r.inter_token_s.push_back(gap);
  r.end_s = r.first_token_s + gap * (tokens - 1);
  r.streamed_tokens = tokens;
  r.final_messages = 1;
  r.finish_reason = v1::FINISH_REASON_LENGTH;
  r.prompt_tokens = prompt;
  r.cached_tokens = cached;
  r.completion_tokens = tokens;
  return r;
}

TEST(FailureReasonTest, AcceptsACompleteStream) {
  EXPECT_EQ(FailureReason(Succeeded(0, 0.1, 0.01, 4, 10, 0)), "");
}

TEST(FailureReasonTest, NamesTheStatusCodeOfAFailedStream) {
  RequestRecord r;
  r.code = absl::StatusCode::kResourceExhausted;
  EXPECT_EQ(FailureReason(r), "RESOURCE_EXHAUSTED");
}

TEST(FailureReasonTest, CatchesBrokenStreamPromises) {
  RequestRecord r = Succeeded(0, 0.1, 0.01, 4, 10, 0);
  r.final_messages = 0;
  EXPECT_EQ(FailureReason(r), "NO_FINAL_MESSAGE");
  r = Succeeded(0, 0.1, 0.01, 4, 10, 0);
  r.messages_after_final = 1;
  EXPECT_EQ(FailureReason(r), "MESSAGE_AFTER_FINAL");
  r = Succeeded(0, 0.1, 0.01, 4, 10, 0);
  r.streamed_tokens = 3;
  EXPECT_EQ(FailureReason(r), "TOKEN_COUNT_MISMATCH");
  r = Succeeded(0, 0.1, 0.01, 4, 10, 0);
  r.expected_output_len = 8;
  EXPECT_EQ(FailureReason(r), "WRONG_OUTPUT_LENGTH");
  r = Succeeded(0, 0.1, 0.01, 4, 10, 0);
  r.finish_reason = v1::FINISH_REASON_CANCELLED;
  EXPECT_EQ(FailureReason(r), "FINISH_CANCELLED");
}

TEST(BuildReportTest, ThroughputHitRateAndLatencies) {
  std::vector<RequestRecord> records = {
      Succeeded(0.0, 0.100, 0.010, 5, 100, 0),   // ends at 0.14
      Succeeded(0.0, 0.020, 0.010, 5, 100, 80),  // ends at 0.06
      Succeeded(1.0, 0.030, 0.020, 5, 100, 80),  // ends at 1.11
  };
  RequestRecord failed;
  failed.code = absl::StatusCode::kUnavailable;
  failed.message = "connection refused";
  records.push_back(failed);
  records.push_back(failed);

  const BenchReport report = BuildReport(records, /*duration_s=*/2.0, /*ideal_hit_rate=*/0.6);
  EXPECT_EQ(report.requests, 5);
  EXPECT_EQ(report.succeeded, 3);
  EXPECT_EQ(report.failed, 2);
  EXPECT_THAT(report.errors, ::testing::ElementsAre(::testing::Pair("UNAVAILABLE", 2)));
  EXPECT_EQ(report.error_examples.at("UNAVAILABLE"), "connection refused");

  EXPECT_DOUBLE_EQ(report.request_throughput, 1.5);  // 3 requests / 2 s
  EXPECT_DOUBLE_EQ(report.input_throughput, 150);    // 300 prompt tokens / 2 s
  EXPECT_DOUBLE_EQ(report.output_throughput, 7.5);   // 15 tokens / 2 s
  EXPECT_EQ(report.cached_tokens, 160);
  EXPECT_DOUBLE_EQ(report.achieved_hit_rate, 160.0 / 300.0);
  EXPECT_DOUBLE_EQ(report.ideal_hit_rate, 0.6);

  EXPECT_EQ(report.ttft_ms.count, 3);
  EXPECT_NEAR(report.ttft_ms.p50, 30, 1e-9);
  EXPECT_NEAR(report.ttft_ms.max, 100, 1e-9);
  EXPECT_EQ(report.itl_ms.count, 12);  // 4 gaps per request
  EXPECT_NEAR(report.itl_ms.p50, 10, 1e-9);
  EXPECT_NEAR(report.itl_ms.max, 20, 1e-9);
  EXPECT_NEAR(report.tpot_ms.p50, 10, 1e-9);  // (e2e - ttft) / (tokens - 1)
  EXPECT_NEAR(report.e2e_ms.max, 140, 1e-9);
}

TEST(BuildReportTest, NoRequestsNoDivisionByZero) {
  const BenchReport report = BuildReport({}, 0.0, 0.5);
  EXPECT_EQ(report.request_throughput, 0);
  EXPECT_EQ(report.achieved_hit_rate, 0);
}

TEST(CompareTest, RatiosAndSpeedups) {
  BenchReport cache, no_cache;
  cache.output_throughput = 300;
  no_cache.output_throughput = 100;
  cache.request_throughput = 6;
  no_cache.request_throughput = 2;
  cache.ttft_ms.p50 = 10;
  no_cache.ttft_ms.p50 = 50;
  cache.ttft_ms.p99 = 20;
  no_cache.ttft_ms.p99 = 40;
  const Comparison c = Compare(cache, no_cache);
  EXPECT_DOUBLE_EQ(c.output_throughput_ratio, 3);
  EXPECT_DOUBLE_EQ(c.request_throughput_ratio, 3);
  EXPECT_DOUBLE_EQ(c.ttft_p50_speedup, 5);
  EXPECT_DOUBLE_EQ(c.ttft_p99_speedup, 2);
}

TEST(ReportOutputTest, TextAndJsonCarryTheNumbers) {
  std::vector<RequestRecord> records = {Succeeded(0, 0.1, 0.01, 3, 80, 64)};
  RequestRecord failed;
  failed.code = absl::StatusCode::kDeadlineExceeded;
  records.push_back(failed);
  const BenchReport report = BuildReport(records, 1.0, 0.6);

  const std::string text = FormatReport(report, "prefix-bench: test");
  EXPECT_THAT(text, ::testing::HasSubstr("prefix-bench: test"));
  EXPECT_THAT(text, ::testing::HasSubstr("80.0 % achieved, 60.0 % ideal"));
  EXPECT_THAT(text, ::testing::HasSubstr("Time to first token"));
  EXPECT_THAT(text, ::testing::HasSubstr("DEADLINE_EXCEEDED"));

  const nlohmann::json json = nlohmann::json::parse(ReportToJson(report).dump());
  EXPECT_EQ(json["succeeded"], 1);
  EXPECT_EQ(json["failed"], 1);
  EXPECT_DOUBLE_EQ(json["achieved_hit_rate"].get<double>(), 0.8);
  EXPECT_EQ(json["errors"]["DEADLINE_EXCEEDED"]["count"], 1);
  EXPECT_NEAR(json["ttft_ms"]["p50"].get<double>(), 100, 1e-9);
  for (const char* key : {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"}) {
    for (const char* stat : {"mean", "p50", "p90", "p99", "max", "count"}) {
      EXPECT_TRUE(json[key].contains(stat)) << key << "." << stat;
    }
  }
}

TEST(ProgressLineTest, FillsInProportionToCompletedRequests) {
  EXPECT_EQ(ProgressLine("run", 5, 1, 10, 2.0, 10),
            "run [=====>    ] 5/10 requests, 1 failed, 2.0 s");
  EXPECT_EQ(ProgressLine("run", 10, 0, 10, 3.0, 4), "run [====] 10/10 requests, 0 failed, 3.0 s");
  EXPECT_EQ(ProgressLine("run", 0, 0, 10, 0.0, 4), "run [>   ] 0/10 requests, 0 failed, 0.0 s");
}

}  // namespace
}  // namespace prefixd::bench
