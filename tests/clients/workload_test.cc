#include "clients/bench/workload.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd::bench {
namespace {

WorkloadConfig SmallConfig(uint64_t seed = 7) {
  WorkloadConfig config;
  config.shape = {.num_groups = 3,
                  .prompts_per_group = 5,
                  .system_prompt_len = 40,
                  .question_len = 9,
                  .output_len = 4};
  config.seed = seed;
  return config;
}

TEST(WorkloadTest, HasGTimesPRequestsOfSPlusQTokens) {
  const WorkloadConfig config = SmallConfig();
  absl::StatusOr<Workload> workload = GenerateWorkload(config);
  ASSERT_TRUE(workload.ok()) << workload.status();
  ASSERT_EQ(workload->system_prompts.size(), 3u);
  ASSERT_EQ(workload->requests.size(), 15u);
  std::vector<int> per_group(3, 0);
  for (const BenchRequest& r : workload->requests) {
    EXPECT_EQ(r.prompt_token_ids.size(), 49u);
    EXPECT_EQ(r.output_len, 4);
    ASSERT_GE(r.group, 0);
    ASSERT_LT(r.group, 3);
    ++per_group[r.group];
  }
  EXPECT_THAT(per_group, ::testing::ElementsAre(5, 5, 5));
}

TEST(WorkloadTest, PromptsOfAGroupShareExactlyTheSystemPrompt) {
  absl::StatusOr<Workload> workload = GenerateWorkload(SmallConfig());
  ASSERT_TRUE(workload.ok());
  std::set<std::vector<int32_t>> questions;
  for (const BenchRequest& r : workload->requests) {
    const std::vector<int32_t>& system = workload->system_prompts[r.group];
    EXPECT_TRUE(std::equal(system.begin(), system.end(), r.prompt_token_ids.begin()));
    questions.insert(
        std::vector<int32_t>(r.prompt_token_ids.begin() + 40, r.prompt_token_ids.end()));
  }
  EXPECT_EQ(questions.size(), 15u) << "every question is unique";
  // Different groups have different system prompts (they share no first token run).
  EXPECT_NE(workload->system_prompts[0], workload->system_prompts[1]);
  EXPECT_NE(workload->system_prompts[1], workload->system_prompts[2]);
}

TEST(WorkloadTest, TokenIdsStayBelowTheSpecialTokens) {
  WorkloadConfig config = SmallConfig();
  config.vocab_size = 512;
  config.max_token_id = 9;  // a small range makes an out-of-range draw near certain to show
  absl::StatusOr<Workload> workload = GenerateWorkload(config);
  ASSERT_TRUE(workload.ok());
  std::set<int32_t> seen;
  for (const BenchRequest& r : workload->requests)
    seen.insert(r.prompt_token_ids.begin(), r.prompt_token_ids.end());
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 9);

  // And the default range fits the test model: ids 0..503, never its specials 504..511.
  absl::StatusOr<Workload> defaults = GenerateWorkload(SmallConfig());
  ASSERT_TRUE(defaults.ok());
  for (const BenchRequest& r : defaults->requests) {
    for (int32_t id : r.prompt_token_ids) ASSERT_LE(id, 503);
  }
  // vocab_size caps the range too.
  config.vocab_size = 4;
  config.max_token_id = 100;
  absl::StatusOr<Workload> capped = GenerateWorkload(config);
  ASSERT_TRUE(capped.ok());
  for (const BenchRequest& r : capped->requests) {
    for (int32_t id : r.prompt_token_ids) ASSERT_LT(id, 4);
  }
}

TEST(WorkloadTest, SameSeedSameWorkloadOtherSeedOtherWorkload) {
  absl::StatusOr<Workload> a = GenerateWorkload(SmallConfig(7));
  absl::StatusOr<Workload> b = GenerateWorkload(SmallConfig(7));
  absl::StatusOr<Workload> c = GenerateWorkload(SmallConfig(8));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_EQ(a->requests.size(), b->requests.size());
  for (size_t i = 0; i < a->requests.size(); ++i) {
    EXPECT_EQ(a->requests[i].prompt_token_ids, b->requests[i].prompt_token_ids);
    EXPECT_EQ(a->requests[i].group, b->requests[i].group);
  }
  EXPECT_NE(a->system_prompts, c->system_prompts);
}

TEST(WorkloadTest, RequestsAreShuffledAcrossGroups) {
  WorkloadConfig config = SmallConfig();
  config.shape.num_groups = 8;
  config.shape.prompts_per_group = 8;
  absl::StatusOr<Workload> workload = GenerateWorkload(config);
  ASSERT_TRUE(workload.ok());
  std::vector<int> groups;
  for (const BenchRequest& r : workload->requests) groups.push_back(r.group);
  EXPECT_FALSE(std::is_sorted(groups.begin(), groups.end()));
}

TEST(WorkloadTest, IdealHitRateIs88Point2PercentAtTheDefaults) {
  absl::StatusOr<WorkloadShape> defaults = WorkloadPreset("default");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->num_groups, 64);
  EXPECT_EQ(defaults->prompts_per_group, 16);
  EXPECT_EQ(defaults->system_prompt_len, 2048);
  EXPECT_EQ(defaults->question_len, 128);
  EXPECT_EQ(defaults->output_len, 256);
  // (P-1)/P · S/(S+Q) = 15/16 · 2048/2176
  EXPECT_NEAR(IdealHitRate(*defaults), 15.0 / 16.0 * 2048.0 / 2176.0, 1e-12);
  EXPECT_NEAR(IdealHitRate(*defaults), 0.882, 0.0005);
  // One prompt per group never hits.
  WorkloadShape one_per_group;
  one_per_group.prompts_per_group = 1;
  EXPECT_EQ(IdealHitRate(one_per_group), 0.0);
}

TEST(WorkloadTest, PresetsForTheCpu) {
  absl::StatusOr<WorkloadShape> small = WorkloadPreset("cpu-small");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->num_requests(), 16);
  EXPECT_EQ(small->system_prompt_len, 256);
  EXPECT_EQ(small->question_len, 32);
  EXPECT_EQ(small->output_len, 16);
  absl::StatusOr<WorkloadShape> tiny = WorkloadPreset("cpu-tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_LT(tiny->num_requests(), small->num_requests());
  EXPECT_EQ(WorkloadPreset("huge").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WorkloadTest, RejectsEmptyShapes) {
  WorkloadConfig config = SmallConfig();
  config.shape.question_len = 0;
  EXPECT_EQ(GenerateWorkload(config).status().code(), absl::StatusCode::kInvalidArgument);
  config = SmallConfig();
  config.max_token_id = -1;
  EXPECT_EQ(GenerateWorkload(config).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WorkloadTest, WarmupPromptsShareNothingWithTheWorkload) {
  const WorkloadConfig config = SmallConfig();
  absl::StatusOr<Workload> workload = GenerateWorkload(config);
  ASSERT_TRUE(workload.ok());
  std::vector<BenchRequest> warmup = GenerateWarmupRequests(config, 3);
  ASSERT_EQ(warmup.size(), 3u);
  for (const BenchRequest& w : warmup) {
    EXPECT_EQ(w.prompt_token_ids.size(), 49u);
    for (const std::vector<int32_t>& system : workload->system_prompts) {
      EXPECT_FALSE(std::equal(system.begin(), system.begin() + 16, w.prompt_token_ids.begin()));
    }
  }
}

TEST(PoissonArrivalsTest, InfiniteRateSendsEverythingAtOnce) {
  for (double offset : PoissonArrivalOffsets(5, INFINITY, 1)) EXPECT_EQ(offset, 0.0);
}

TEST(PoissonArrivalsTest, GapsAverageOneOverTheRateAndRepeatWithTheSeed) {
  const std::vector<double> a = PoissonArrivalOffsets(20000, 50.0, 3);
  EXPECT_EQ(a, PoissonArrivalOffsets(20000, 50.0, 3));
  EXPECT_NE(a, PoissonArrivalOffsets(20000, 50.0, 4));
  EXPECT_EQ(a.front(), 0.0);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  const double mean_gap = a.back() / (a.size() - 1);
  EXPECT_NEAR(mean_gap, 1.0 / 50.0, 0.001);  // 20000 samples: the standard error is ~0.00014
}

}  // namespace
}  // namespace prefixd::bench
