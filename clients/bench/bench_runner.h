// clients/bench/bench_runner.h — sends prefix-bench's requests and records what comes back.
#ifndef PREFIXD_CLIENTS_BENCH_BENCH_RUNNER_H_
#define PREFIXD_CLIENTS_BENCH_BENCH_RUNNER_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "clients/bench/bench_report.h"
#include "clients/bench/workload.h"
#include "clients/cpp/prefixd_client.h"

namespace prefixd::bench {

struct RunOptions {
  // Poisson arrivals at this many requests/s; infinite: all requests at once.
  double request_rate = std::numeric_limits<double>::infinity();
  // At most this many streams in flight (a request waits for a free slot after its arrival
  // time); 0: no limit.
  int concurrency = 0;
  uint64_t seed = 1;  // of the arrival times
  // Drawn as a progress bar on stderr when it is a terminal; empty: no progress bar.
  std::string progress_label;
  std::string request_id_prefix = "bench";
};

struct RunResult {
  std::vector<RequestRecord> records;  // one per request, in the order of `requests`
  double duration_s = 0;               // first request sent → last stream ended
};

// Records one message of a Generate stream that arrived at `now_s`: token timings, counts,
// and the usage of the final message.
void RecordResponse(const v1::GenerateResponse& response, double now_s, RequestRecord* record);

// Sends every request as a greedy Generate stream with ignore_eos and max_tokens =
// output_len, and returns when every stream has ended. Streams run on gRPC's callback API,
// so a high concurrency costs no thread per stream. Every request ends with exactly one
// record, whatever the server does.
RunResult RunRequests(const PrefixdClient& client, const std::vector<BenchRequest>& requests,
                      const RunOptions& options);

class RunState;  // clients/bench/run_state.h
// Starts request `index` as a stream that writes state->records[index] and calls
// state->Finished() exactly once when it ends. Must not block.
using StartStreamFn = std::function<void(std::shared_ptr<RunState> state, size_t index,
                                         const BenchRequest& request, const std::string& id)>;
// Sends `requests` at their arrival times within the concurrency limit, each through
// `start`, and returns when every stream has ended (the runners of both protocols).
RunResult DispatchRequests(const std::vector<BenchRequest>& requests, const RunOptions& options,
                           const StartStreamFn& start);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_BENCH_RUNNER_H_
