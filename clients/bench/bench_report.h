// clients/bench/bench_report.h — what prefix-bench measures per request, and the report it
// builds from those measurements (throughput, latency percentiles, prefix hit rate, errors).
#ifndef PREFIXD_CLIENTS_BENCH_BENCH_REPORT_H_
#define PREFIXD_CLIENTS_BENCH_BENCH_REPORT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "clients/bench/latency_stats.h"
#include "nlohmann/json.hpp"

namespace prefixd::bench {

// What the client saw of one Generate stream. Times are seconds from the start of the run.
struct RequestRecord {
  absl::StatusCode code = absl::StatusCode::kUnknown;  // the stream's final status
  std::string message;                                 // its message, when not OK
  int expected_output_len = 0;                         // max_tokens with ignore_eos

  double start_s = 0;
  double first_token_s = -1;  // the first message carrying tokens; -1: none came
  double last_token_s = -1;   // the latest message carrying tokens
  double end_s = 0;           // the final status
  // Gaps between consecutive token-carrying messages (SGLang's and vLLM's "ITL").
  std::vector<double> inter_token_s;

  int streamed_tokens = 0;  // token ids received over all messages
  int final_messages = 0;   // messages with a finish_reason
  int messages_after_final = 0;
  int finish_reason = 0;  // prefixd.v1.FinishReason of the final message
  int prompt_tokens = 0;  // from the final message's usage
  int cached_tokens = 0;
  int completion_tokens = 0;
};

// Why a request counts as failed: "" when it succeeded; the status code's name
// ("UNAVAILABLE", ...) when the stream ended in an error; otherwise the broken promise:
//   NO_FINAL_MESSAGE      OK status, but no message carried a finish_reason
//   MESSAGE_AFTER_FINAL   a message came after the one with the finish_reason
//   TOKEN_COUNT_MISMATCH  usage.completion_tokens != the token ids streamed
//   WRONG_OUTPUT_LENGTH   fewer or more tokens than max_tokens although ignore_eos was set
//   FINISH_CANCELLED      the server cancelled the request (finish_reason CANCELLED)
std::string FailureReason(const RequestRecord& record);

struct BenchReport {
  int64_t requests = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  double duration_s = 0;  // first request sent → last request ended

  double request_throughput = 0;  // succeeded requests / s
  double input_throughput = 0;    // prompt tokens of succeeded requests / s
  double output_throughput = 0;   // completion tokens of succeeded requests / s
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;

  double achieved_hit_rate = 0;  // cached_tokens / prompt_tokens over succeeded requests
  double ideal_hit_rate = 0;

  // Milliseconds, over succeeded requests.
  Distribution ttft_ms;  // time to first token
  Distribution itl_ms;   // inter-token latency
  Distribution tpot_ms;  // time per output token after the first, per request
  Distribution e2e_ms;   // end-to-end latency

  std::map<std::string, int64_t> errors;              // FailureReason → count
  std::map<std::string, std::string> error_examples;  // FailureReason → one message
};

BenchReport BuildReport(const std::vector<RequestRecord>& records, double duration_s,
                        double ideal_hit_rate);

// The run with the prefix cache against the run without it, same workload.
// Two runs of one workload: with the cache against without it, or (same fields) the
// OpenAI API against gRPC.
struct Comparison {
  double output_throughput_ratio = 0;   // cache / no cache (higher is better)
  double request_throughput_ratio = 0;  // cache / no cache
  double ttft_p50_speedup = 0;          // no cache / cache (higher is better)
  double ttft_p99_speedup = 0;
};

Comparison Compare(const BenchReport& with_cache, const BenchReport& without_cache);

// A human-readable block of text, SGLang style.
std::string FormatReport(const BenchReport& report, const std::string& title);
std::string FormatComparison(const Comparison& comparison,
                             const std::string& title = "prefix cache vs. no prefix cache");

nlohmann::ordered_json ReportToJson(const BenchReport& report);
nlohmann::ordered_json ComparisonToJson(const Comparison& comparison);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_BENCH_REPORT_H_
