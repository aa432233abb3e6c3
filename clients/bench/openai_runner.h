// clients/bench/openai_runner.h — prefix-bench's requests over prefixd's OpenAI-compatible
// API: each one a streamed `POST /v1/completions` (the prompt as token ids, greedy,
// ignore_eos, max_tokens = output_len, usage and token ids in the stream), read as
// Server-Sent Events. The same records as the gRPC runner, so the two protocols' reports
// compare figure by figure.
#ifndef PREFIXD_CLIENTS_BENCH_OPENAI_RUNNER_H_
#define PREFIXD_CLIENTS_BENCH_OPENAI_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/bench/bench_runner.h"
#include "clients/bench/workload.h"

namespace prefixd::bench {

struct OpenAiTarget {
  std::string host;
  std::string port;
  std::string bearer_token;  // sent as `Authorization: Bearer <token>` when not empty
  absl::Duration deadline = absl::InfiniteDuration();  // per request
};

// "http://HOST:PORT" (a trailing "/v1" or "/" is allowed). https is not supported here.
absl::StatusOr<OpenAiTarget> ParseOpenAiUrl(const std::string& url);

// Sends every request as a streamed completion and returns when every stream has ended.
// One Asio thread drives every connection (a connection per request). Every request ends
// with exactly one record, whatever the server does.
RunResult RunOpenAiRequests(const OpenAiTarget& target, const std::vector<BenchRequest>& requests,
                            const RunOptions& options);

// Records one Server-Sent Event of a completion stream (the JSON after "data: ") that
// arrived at `now_s`; false when it is not a chunk of the expected shape.
bool RecordOpenAiEvent(std::string_view data, double now_s, RequestRecord* record);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_OPENAI_RUNNER_H_
