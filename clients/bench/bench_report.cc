#include "clients/bench/bench_report.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::bench {
namespace {

double Ratio(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : 0.0;
}

std::vector<double> ToMs(const std::vector<double>& seconds) {
  std::vector<double> ms;
  ms.reserve(seconds.size());
  for (double s : seconds) ms.push_back(s * 1000.0);
  return ms;
}

nlohmann::ordered_json DistributionToJson(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"p50", d.p50},
          {"p90", d.p90},     {"p99", d.p99},   {"max", d.max}};
}

std::string DistributionRow(const char* name, const Distribution& d) {
  return absl::StrFormat("%-26s %10.2f %10.2f %10.2f %10.2f %10.2f\n", name, d.mean, d.p50, d.p90,
                         d.p99, d.max);
}

}  // namespace

std::string FailureReason(const RequestRecord& r) {
  if (r.code != absl::StatusCode::kOk) return absl::StatusCodeToString(r.code);
  if (r.final_messages == 0) return "NO_FINAL_MESSAGE";
  if (r.messages_after_final > 0 || r.final_messages > 1) return "MESSAGE_AFTER_FINAL";
  if (r.finish_reason == v1::FINISH_REASON_CANCELLED) return "FINISH_CANCELLED";
  if (r.completion_tokens != r.streamed_tokens) return "TOKEN_COUNT_MISMATCH";
  if (r.expected_output_len > 0 && r.completion_tokens != r.expected_output_len) {
    return "WRONG_OUTPUT_LENGTH";
  }
  return "";
}

BenchReport BuildReport(const std::vector<RequestRecord>& records, double duration_s,
                        double ideal_hit_rate) {
  BenchReport report;
  report.requests = static_cast<int64_t>(records.size());
  report.duration_s = duration_s;
  report.ideal_hit_rate = ideal_hit_rate;
  std::vector<double> ttft, itl, tpot, e2e;
  for (const RequestRecord& r : records) {
    std::string reason = FailureReason(r);
    if (!reason.empty()) {
      ++report.failed;
      if (++report.errors[reason] == 1) {
        report.error_examples[reason] = r.message.empty() ? reason : r.message;
      }
      continue;
    }
    ++report.succeeded;
    report.prompt_tokens += r.prompt_tokens;
    report.cached_tokens += r.cached_tokens;
    report.completion_tokens += r.completion_tokens;
    const double latency = r.end_s - r.start_s;
    e2e.push_back(latency);
    if (r.first_token_s >= 0) {
      const double first = r.first_token_s - r.start_s;
      ttft.push_back(first);
      if (r.completion_tokens > 1) {
        tpot.push_back((latency - first) / static_cast<double>(r.completion_tokens - 1));
      }
    }
    itl.insert(itl.end(), r.inter_token_s.begin(), r.inter_token_s.end());
  }
  report.request_throughput = Ratio(static_cast<double>(report.succeeded), duration_s);
  report.input_throughput = Ratio(static_cast<double>(report.prompt_tokens), duration_s);
  report.output_throughput = Ratio(static_cast<double>(report.completion_tokens), duration_s);
  report.achieved_hit_rate =
      Ratio(static_cast<double>(report.cached_tokens), static_cast<double>(report.prompt_tokens));
  report.ttft_ms = Summarize(ToMs(ttft));
  report.itl_ms = Summarize(ToMs(itl));
  report.tpot_ms = Summarize(ToMs(tpot));
  report.e2e_ms = Summarize(ToMs(e2e));
  return report;
}

Comparison Compare(const BenchReport& with_cache, const BenchReport& without_cache) {
  Comparison c;
  c.output_throughput_ratio = Ratio(with_cache.output_throughput, without_cache.output_throughput);
  c.request_throughput_ratio =
      Ratio(with_cache.request_throughput, without_cache.request_throughput);
  c.ttft_p50_speedup = Ratio(without_cache.ttft_ms.p50, with_cache.ttft_ms.p50);
  c.ttft_p99_speedup = Ratio(without_cache.ttft_ms.p99, with_cache.ttft_ms.p99);
  return c;
}

std::string FormatReport(const BenchReport& r, const std::string& title) {
  std::string out = absl::StrFormat("============ %s ============\n", title);
  absl::StrAppendFormat(&out, "%-34s %d\n", "Successful requests:", r.succeeded);
  absl::StrAppendFormat(&out, "%-34s %d\n", "Failed requests:", r.failed);
  absl::StrAppendFormat(&out, "%-34s %.3f\n", "Duration (s):", r.duration_s);
  absl::StrAppendFormat(&out, "%-34s %d\n", "Total input tokens:", r.prompt_tokens);
  absl::StrAppendFormat(&out, "%-34s %d\n", "Total cached input tokens:", r.cached_tokens);
  absl::StrAppendFormat(&out, "%-34s %d\n", "Total output tokens:", r.completion_tokens);
  absl::StrAppendFormat(&out, "%-34s %.2f\n", "Request throughput (req/s):", r.request_throughput);
  absl::StrAppendFormat(&out, "%-34s %.2f\n",
                        "Input token throughput (tok/s):", r.input_throughput);
  absl::StrAppendFormat(&out, "%-34s %.2f\n",
                        "Output token throughput (tok/s):", r.output_throughput);
  absl::StrAppendFormat(&out, "%-34s %.1f %% achieved, %.1f %% ideal\n",
                        "Prefix hit rate:", 100.0 * r.achieved_hit_rate, 100.0 * r.ideal_hit_rate);
  absl::StrAppendFormat(&out, "%-26s %10s %10s %10s %10s %10s\n", "Latency (ms)", "mean", "p50",
                        "p90", "p99", "max");
  out += DistributionRow("Time to first token", r.ttft_ms);
  out += DistributionRow("Inter-token latency", r.itl_ms);
  out += DistributionRow("Time per output token", r.tpot_ms);
  out += DistributionRow("End-to-end latency", r.e2e_ms);
  if (!r.errors.empty()) {
    out += "Errors:\n";
    for (const auto& [reason, count] : r.errors) {
      absl::StrAppendFormat(&out, "  %-24s %6d  e.g. %s\n", reason, count,
                            r.error_examples.at(reason));
    }
  }
  return out;
}

std::string FormatComparison(const Comparison& c, const std::string& title) {
  std::string out = absl::StrFormat("============ %s ============\n", title);
  absl::StrAppendFormat(&out, "%-34s %.2fx\n", "Output throughput:", c.output_throughput_ratio);
  absl::StrAppendFormat(&out, "%-34s %.2fx\n", "Request throughput:", c.request_throughput_ratio);
  absl::StrAppendFormat(&out, "%-34s %.2fx faster\n", "TTFT p50:", c.ttft_p50_speedup);
  absl::StrAppendFormat(&out, "%-34s %.2fx faster\n", "TTFT p99:", c.ttft_p99_speedup);
  return out;
}

nlohmann::ordered_json ReportToJson(const BenchReport& r) {
  nlohmann::ordered_json errors = nlohmann::ordered_json::object();
  for (const auto& [reason, count] : r.errors) {
    errors[reason] = {{"count", count}, {"example", r.error_examples.at(reason)}};
  }
  return {{"requests", r.requests},
          {"succeeded", r.succeeded},
          {"failed", r.failed},
          {"duration_s", r.duration_s},
          {"request_throughput", r.request_throughput},
          {"input_token_throughput", r.input_throughput},
          {"output_token_throughput", r.output_throughput},
          {"prompt_tokens", r.prompt_tokens},
          {"cached_tokens", r.cached_tokens},
          {"completion_tokens", r.completion_tokens},
          {"achieved_hit_rate", r.achieved_hit_rate},
          {"ideal_hit_rate", r.ideal_hit_rate},
          {"ttft_ms", DistributionToJson(r.ttft_ms)},
          {"itl_ms", DistributionToJson(r.itl_ms)},
          {"tpot_ms", DistributionToJson(r.tpot_ms)},
          {"e2e_ms", DistributionToJson(r.e2e_ms)},
          {"errors", errors}};
}

nlohmann::ordered_json ComparisonToJson(const Comparison& c) {
  return {{"output_throughput_ratio", c.output_throughput_ratio},
          {"request_throughput_ratio", c.request_throughput_ratio},
          {"ttft_p50_speedup", c.ttft_p50_speedup},
          {"ttft_p99_speedup", c.ttft_p99_speedup}};
}

}  // namespace prefixd::bench
