// clients/bench/latency_stats.h — percentiles and summaries of latency samples.
#ifndef PREFIXD_CLIENTS_BENCH_LATENCY_STATS_H_
#define PREFIXD_CLIENTS_BENCH_LATENCY_STATS_H_

#include <cstdint>
#include <vector>

namespace prefixd::bench {

// The p-th percentile (p in [0, 100]) of `sorted` (ascending), interpolating linearly
// between the two closest ranks: numpy.percentile's default, which SGLang's and vLLM's
// benchmarks report. 0 for no samples.
double Percentile(const std::vector<double>& sorted, double p);

struct Distribution {
  int64_t count = 0;
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};

// All zero for no samples.
Distribution Summarize(std::vector<double> samples);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_LATENCY_STATS_H_
