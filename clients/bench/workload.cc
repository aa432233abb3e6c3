#include "clients/bench/workload.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/bench/seeded_random.h"

namespace prefixd::bench {
namespace {

struct NamedPreset {
  absl::string_view name;
  WorkloadShape shape;
};

constexpr NamedPreset kPresets[] = {
    {"default", WorkloadShape{64, 16, 2048, 128, 256}},
    {"cpu-small", WorkloadShape{4, 4, 256, 32, 16}},
    {"cpu-tiny", WorkloadShape{2, 4, 64, 16, 8}},
};

// Independent streams derived from one seed, so that e.g. changing the number of groups
// does not change the arrival times.
enum class Stream : uint64_t { kPrompts = 1, kShuffle = 2, kArrivals = 3, kWarmup = 4 };

std::mt19937_64 MakeRng(uint64_t seed, Stream stream) {
  return bench::MakeRng(seed, static_cast<uint64_t>(stream));
}

int TokenRange(const WorkloadConfig& config) {
  return std::min(config.vocab_size, config.max_token_id + 1);
}

std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int len, int range) {
  std::vector<int32_t> tokens(len);
  for (int32_t& t : tokens) t = static_cast<int32_t>(UniformBelow(rng, range));
  return tokens;
}

}  // namespace

absl::StatusOr<WorkloadShape> WorkloadPreset(absl::string_view name) {
  for (const NamedPreset& p : kPresets) {
    if (p.name == name) return p.shape;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown preset '", name, "' (known: ", absl::StrJoin(WorkloadPresetNames(), ", "), ")"));
}

std::vector<std::string> WorkloadPresetNames() {
  std::vector<std::string> names;
  for (const NamedPreset& p : kPresets) names.emplace_back(p.name);
  return names;
}

absl::Status ValidateWorkloadConfig(const WorkloadConfig& config) {
  const WorkloadShape& s = config.shape;
  auto at_least_one = [](const char* name, int v) -> absl::Status {
    if (v >= 1) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(name, " must be at least 1 (got ", v, ")"));
  };
  for (absl::Status status :
       {at_least_one("--num_groups", s.num_groups),
        at_least_one("--prompts_per_group", s.prompts_per_group),
        at_least_one("--system_prompt_len", s.system_prompt_len),
        at_least_one("--question_len", s.question_len), at_least_one("--output_len", s.output_len),
        at_least_one("--vocab_size", config.vocab_size)}) {
    if (!status.ok()) return status;
  }
  if (config.max_token_id < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_token_id must be >= 0 (got ", config.max_token_id, ")"));
  }
  if (static_cast<int64_t>(s.num_groups) * s.prompts_per_group > 10'000'000) {
    return absl::InvalidArgumentError("more than 10 million requests");
  }
  return absl::OkStatus();
}

absl::StatusOr<Workload> GenerateWorkload(const WorkloadConfig& config) {
  if (absl::Status s = ValidateWorkloadConfig(config); !s.ok()) return s;
  const WorkloadShape& shape = config.shape;
  const int range = TokenRange(config);
  std::mt19937_64 rng = MakeRng(config.seed, Stream::kPrompts);

  Workload workload;
  workload.system_prompts.reserve(shape.num_groups);
  for (int g = 0; g < shape.num_groups; ++g) {
    workload.system_prompts.push_back(RandomTokens(rng, shape.system_prompt_len, range));
  }
  workload.requests.reserve(shape.num_requests());
  for (int g = 0; g < shape.num_groups; ++g) {
    for (int p = 0; p < shape.prompts_per_group; ++p) {
      BenchRequest request;
      request.group = g;
      request.output_len = shape.output_len;
      request.prompt_token_ids = workload.system_prompts[g];
      std::vector<int32_t> question = RandomTokens(rng, shape.question_len, range);
      request.prompt_token_ids.insert(request.prompt_token_ids.end(), question.begin(),
                                      question.end());
      workload.requests.push_back(std::move(request));
    }
  }
  // Fisher–Yates, so that a group's prompts arrive spread over the run.
  std::mt19937_64 shuffle_rng = MakeRng(config.seed, Stream::kShuffle);
  for (size_t i = workload.requests.size(); i > 1; --i) {
    std::swap(workload.requests[i - 1], workload.requests[UniformBelow(shuffle_rng, i)]);
  }
  return workload;
}

std::vector<BenchRequest> GenerateWarmupRequests(const WorkloadConfig& config, int count) {
  std::mt19937_64 rng = MakeRng(config.seed, Stream::kWarmup);
  const WorkloadShape& shape = config.shape;
  std::vector<BenchRequest> requests(std::max(count, 0));
  for (BenchRequest& r : requests) {
    r.group = -1;
    r.output_len = shape.output_len;
    r.prompt_token_ids =
        RandomTokens(rng, shape.system_prompt_len + shape.question_len, TokenRange(config));
  }
  return requests;
}

double IdealHitRate(const WorkloadShape& shape) {
  const double p = shape.prompts_per_group;
  const double s = shape.system_prompt_len;
  const double q = shape.question_len;
  if (p <= 0 || s + q <= 0) return 0.0;
  return (p - 1) / p * s / (s + q);
}

std::vector<double> PoissonArrivalOffsets(int count, double rate, uint64_t seed) {
  std::vector<double> offsets(std::max(count, 0), 0.0);
  if (!(rate > 0) || std::isinf(rate)) return offsets;
  std::mt19937_64 rng = MakeRng(seed, Stream::kArrivals);
  double t = 0;
  for (double& offset : offsets) {
    offset = t;
    t += -std::log1p(-UniformUnit(rng)) / rate;  // exponential gap with mean 1/rate
  }
  return offsets;
}

}  // namespace prefixd::bench
