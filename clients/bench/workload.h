// clients/bench/workload.h — the shared-system-prompt workload of prefix-bench.
//
// It follows SGLang's generated-shared-prefix benchmark (bench_serving.py, dataset
// "generated-shared-prefix"): G groups of P prompts; every prompt of a group is the group's
// system prompt (S tokens) followed by a question of its own (Q tokens), and asks for O
// output tokens with ignore_eos. Prompts are token ids drawn from a seeded RNG, so the
// same seed gives the same requests in the same order on every machine.
#ifndef PREFIXD_CLIENTS_BENCH_WORKLOAD_H_
#define PREFIXD_CLIENTS_BENCH_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prefixd::bench {

struct WorkloadShape {
  int num_groups = 64;           // G
  int prompts_per_group = 16;    // P
  int system_prompt_len = 2048;  // S, tokens
  int question_len = 128;        // Q, tokens
  int output_len = 256;          // O, tokens generated per request

  int num_requests() const { return num_groups * prompts_per_group; }
};

// "default" (the shape above, for a GPU), "cpu-small" (4×4, S=256, Q=32, O=16) and
// "cpu-tiny" (2×4, S=64, Q=16, O=8; for tests).
absl::StatusOr<WorkloadShape> WorkloadPreset(absl::string_view name);
std::vector<std::string> WorkloadPresetNames();

struct WorkloadConfig {
  WorkloadShape shape;
  uint64_t seed = 1;
  // Token ids are drawn uniformly from [0, min(vocab_size, max_token_id + 1)). The defaults
  // fit the test model: 512 tokens, of which 504..511 are special (BOS, EOS, ...). For a
  // Llama 3 model: --vocab_size=128256 --max_token_id=127999.
  int vocab_size = 512;
  int max_token_id = 503;
};

absl::Status ValidateWorkloadConfig(const WorkloadConfig& config);

struct BenchRequest {
  int group = 0;
  std::vector<int32_t> prompt_token_ids;  // the group's system prompt, then the question
  int output_len = 0;
};

struct Workload {
  std::vector<std::vector<int32_t>> system_prompts;  // [group] → S token ids
  std::vector<BenchRequest> requests;                // in sending order (shuffled)
};

absl::StatusOr<Workload> GenerateWorkload(const WorkloadConfig& config);

// `count` prompts of `len` random tokens that share nothing with GenerateWorkload's prompts
// (with overwhelming probability): warmup requests that leave no useful prefix behind.
std::vector<BenchRequest> GenerateWarmupRequests(const WorkloadConfig& config, int count);

// The prefix hit rate a perfect cache reaches on this workload, in prompt tokens: the first
// prompt of each group computes its system prompt, the other P-1 find it cached, and no
// question is ever cached: (P-1)/P · S/(S+Q). 88.2 % at the defaults. (With a block-granular
// cache it is exact when S is a multiple of the block size.)
double IdealHitRate(const WorkloadShape& shape);

// Arrival times, in seconds from the start, of `count` requests: a Poisson process of
// `rate` requests/s (exponential gaps, seeded), or all at 0 when `rate` is infinite.
std::vector<double> PoissonArrivalOffsets(int count, double rate, uint64_t seed);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_WORKLOAD_H_
