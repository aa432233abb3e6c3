// The scheduler driven step by step (no engine thread), so sharing is deterministic.
#include "engine/scheduler.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd {
namespace {

using ::testing::ElementsAre;

constexpr int kBlock = 16;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(/*cache_enabled=*/true, /*budget=*/512); }

  void Build(bool cache_enabled, int budget, int max_running = 8,
             absl::flat_hash_map<std::string, int> weights = {}, int32_t device_blocks = 256,
             int32_t host_blocks = 0) {
    scheduler_.reset();
    model_.reset();
    cache_.reset();
    host_kv_.reset();
    kv_.reset();
    config_ = *RandomPresetConfig("tiny");
    backend_ = MakeCpuBackend();
    kv_ = std::make_unique<KvCache>(*backend_, config_, device_blocks, kBlock);
    if (host_blocks > 0) host_kv_ = std::make_unique<HostKvCache>(*backend_, *kv_, host_blocks);
    model_ = std::make_unique<LlamaModel>(
        config_, RandomLlamaWeights(config_, 3, *backend_), *backend_, *kv_,
        ModelLimits{.max_tokens = budget, .max_seqs = 8, .max_blocks_per_seq = 256});
    PrefixCacheOptions o;
    o.num_blocks = device_blocks;
    o.tree.block_size = kBlock;
    o.enabled = cache_enabled;
    if (host_kv_ != nullptr) {
      o.tree.host_blocks = host_blocks;
      o.tree.grow_host = [this](int32_t n) { return host_kv_->Grow(n); };
    }
    cache_ = std::make_unique<PrefixCache>(o);
    scheduler_ = std::make_unique<Scheduler>(*model_, *cache_, nullptr,
                                             SchedulerOptions{.max_batch_tokens = budget,
                                                              .max_running_requests = max_running,
                                                              .weights = std::move(weights),
                                                              .inject_fault = nullptr},
                                             host_kv_.get());
    outputs_.clear();
    finished_.clear();
  }

  void Add(RequestId id, std::vector<TokenId> prompt, int max_new, std::string tenant = "t",
           absl::Time deadline = absl::InfiniteFuture(), float temperature = 0) {
    GenerationRequest r;
    r.ns = {std::move(tenant), "m", ""};
    r.prompt = std::move(prompt);
    r.sampling.temperature = temperature;
    r.sampling.ignore_eos = true;
    r.deadline = deadline;
    scheduler_->Add(id, std::move(r), max_new, /*seed=*/id, absl::Now(),
                    [this, id](GenerationUpdate&& u) {
                      auto& out = outputs_[id];
                      out.tokens.insert(out.tokens.end(), u.tokens.begin(), u.tokens.end());
                      if (u.finished) {
                        out.usage = u.usage;
                        out.status = u.status;
                        finished_.push_back(id);
                      }
                    });
  }

  void RunToIdle() {
    while (scheduler_->HasWork()) {
      scheduler_->Step(absl::Now());
      ASSERT_TRUE(scheduler_->CheckInvariants().ok()) << scheduler_->CheckInvariants();
    }
  }

  static std::vector<TokenId> Prompt(int first, int n) {
    std::vector<TokenId> t(n);
    std::iota(t.begin(), t.end(), first);
    return t;
  }

  std::vector<RequestId> finished_;  // in the order they ended

  struct Output {
    absl::Status status;
    std::vector<TokenId> tokens;
    RequestUsage usage;
  };

  ModelConfig config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<HostKvCache> host_kv_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<PrefixCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<RequestId, Output> outputs_;
};

TEST_F(SchedulerTest, RequestsNeedingTheSameUncachedPrefixComputeItOnce) {
  const std::vector<TokenId> system = Prompt(10, 96);  // 6 blocks
  for (int i = 0; i < 4; ++i) {
    std::vector<TokenId> p = system;
    for (int j = 0; j < 10; ++j) p.push_back(300 + 10 * i + j);
    Add(i + 1, p, 3);
  }
  RunToIdle();
  // The first computes all 106 tokens; the others wait a step, then compute 10 each.
  EXPECT_EQ(scheduler_->counters().prompt_tokens_computed, 106 + 3 * 10);
  EXPECT_EQ(scheduler_->counters().deduplicated_waits, 3);
  EXPECT_EQ(outputs_[1].usage.cached_tokens, 0);
  for (RequestId id : {2, 3, 4}) EXPECT_EQ(outputs_[id].usage.cached_tokens, 96);
  // Each request's lookup counts once (the waiting ones are looked up again when they are
  // admitted): 4 × 105 tokens looked up (all but the last), 3 × 96 hit.
  EXPECT_EQ(cache_->Stats().tree.query_tokens, 4 * 105);
  EXPECT_EQ(cache_->Stats().tree.hit_tokens, 3 * 96);
  EXPECT_EQ(scheduler_->counters().prompt_tokens, 4 * 106);

  // Same outputs as without a cache.
  std::map<RequestId, Output> with_cache = outputs_;
  Build(/*cache_enabled=*/false, 512);
  for (int i = 0; i < 4; ++i) {
    std::vector<TokenId> p = system;
    for (int j = 0; j < 10; ++j) p.push_back(300 + 10 * i + j);
    Add(i + 1, p, 3);
  }
  RunToIdle();
  EXPECT_EQ(scheduler_->counters().prompt_tokens_computed, 4 * 106);
  for (RequestId id : {1, 2, 3, 4}) EXPECT_EQ(outputs_[id].tokens, with_cache[id].tokens);
}

TEST_F(SchedulerTest, ChunkedPrefillSharesEachBlockAsSoonAsItIsComputed) {
  Build(/*cache_enabled=*/true, /*budget=*/64);
  const std::vector<TokenId> long_prompt = Prompt(1, 200);
  Add(1, long_prompt, 2);
  scheduler_->Step(absl::Now());  // 64 tokens of request 1: 4 blocks cached
  EXPECT_EQ(cache_->Stats().tree.cached_blocks, 4);
  // A request sharing the first 64 tokens hits them at once.
  std::vector<TokenId> other(long_prompt.begin(), long_prompt.begin() + 64);
  other.push_back(499);
  Add(2, other, 2);
  RunToIdle();
  EXPECT_EQ(outputs_[2].usage.cached_tokens, 64);
  EXPECT_EQ(outputs_[1].tokens.size(), 2u);
}

// Timing side channel (README, Security): a cached prefix must not let a request jump the
// queue, or a tenant could learn what others' prompts contain from its own wait.
TEST_F(SchedulerTest, AdmissionIsFirstComeFirstServedWhateverTheCacheHolds) {
  Build(/*cache_enabled=*/true, /*budget=*/64, /*max_running=*/1);
  const std::vector<TokenId> hot = Prompt(1, 64);
  Add(1, hot, 1, "hot");
  RunToIdle();                         // `hot` is cached now
  Add(2, Prompt(200, 40), 3, "cold");  // first come, nothing cached
  std::vector<TokenId> hit = hot;
  hit.push_back(7);
  Add(3, hit, 3, "hot");  // second, 64 tokens cached
  scheduler_->Step(absl::Now());
  EXPECT_EQ(outputs_[2].tokens.size(), 1u);  // the cold request went first
  EXPECT_TRUE(outputs_[3].tokens.empty());
  RunToIdle();
  EXPECT_EQ(outputs_[3].usage.cached_tokens, 64);
}

TEST_F(SchedulerTest, TenantsTakeTurnsSoABurstCannotPushAnotherTenantBack) {
  Build(/*cache_enabled=*/true, /*budget=*/64, /*max_running=*/1);
  for (int i = 1; i <= 6; ++i) Add(i, Prompt(20 * i, 20), 2, "burst");
  Add(11, Prompt(400, 20), 2, "steady");
  Add(12, Prompt(440, 20), 2, "steady");
  RunToIdle();
  // One slot: the burst came first, yet the steady tenant's requests go every other turn;
  // within a tenant, first come first served.
  EXPECT_THAT(finished_, ElementsAre(1, 11, 2, 12, 3, 4, 5, 6));
}

TEST_F(SchedulerTest, AWeightedTenantGetsTurnsInProportion) {
  Build(/*cache_enabled=*/true, /*budget=*/64, /*max_running=*/1, {{"heavy", 3}});
  for (int i = 1; i <= 8; ++i) Add(i, Prompt(20 * i, 20), 1, "heavy");
  for (int i = 11; i <= 14; ++i) Add(i, Prompt(20 * i, 20), 1, "light");
  RunToIdle();
  // Three turns of "heavy" for each of "light" (ties go to the older request).
  EXPECT_THAT(finished_, ElementsAre(1, 11, 2, 3, 4, 12, 5, 6, 7, 13, 8, 14));
}

// Compute within a step: the oldest running prompts do not take the whole budget while
// another tenant's short prompt waits (its first token would wait for all of them).
TEST_F(SchedulerTest, AShortPromptIsNotHeldBackByAnotherTenantsLongOnes) {
  Build(/*cache_enabled=*/true, /*budget=*/64);
  for (int i = 1; i <= 3; ++i) Add(i, Prompt(10 * i, 300), 2, "bulk");
  scheduler_->Step(absl::Now());  // bulk alone: the whole budget
  EXPECT_EQ(scheduler_->counters().prompt_tokens_computed, 64);
  Add(11, Prompt(400, 20), 2, "chat");
  const StepReport step = scheduler_->Step(absl::Now());
  // chat's 20 tokens and its first token in the next step; bulk keeps the rest of it.
  EXPECT_EQ(outputs_[11].tokens.size(), 1u);
  EXPECT_EQ(step.prefill_tokens, 64);
  EXPECT_EQ(scheduler_->counters().prompt_tokens_computed, 128);
  RunToIdle();
  for (RequestId id : {1, 2, 3, 11}) EXPECT_EQ(outputs_[id].tokens.size(), 2u) << id;

  // The same outputs as each request computed alone.
  const std::map<RequestId, Output> shared = outputs_;
  for (RequestId id : {1, 2, 3, 11}) {
    Build(/*cache_enabled=*/true, /*budget=*/64);
    Add(id, id == 11 ? Prompt(400, 20) : Prompt(10 * static_cast<int>(id), 300), 2);
    RunToIdle();
    EXPECT_EQ(outputs_[id].tokens, shared.at(id).tokens) << id;
  }
}

TEST_F(SchedulerTest, TenantsShareAStepsPrefillByWeight) {
  auto first_token_steps = [&](absl::flat_hash_map<std::string, int> weights) {
    Build(/*cache_enabled=*/true, /*budget=*/64, /*max_running=*/8, std::move(weights));
    Add(1, Prompt(100, 96), 2, "heavy");
    Add(2, Prompt(400, 96), 2, "light");
    std::map<RequestId, int> steps;
    for (int step = 1; steps.size() < 2; ++step) {
      scheduler_->Step(absl::Now());
      for (RequestId id : {1, 2}) {
        if (!outputs_[id].tokens.empty()) steps.try_emplace(id, step);
      }
    }
    return steps;
  };
  // Equal weights: 32 tokens each a step, both prompts done in the third.
  EXPECT_THAT(first_token_steps({}), ElementsAre(std::pair(1, 3), std::pair(2, 3)));
  // 3:1: heavy takes 48 a step, its first token in the second; light, 16 a step until then
  // (then all but heavy's decode token), in the fourth.
  EXPECT_THAT(first_token_steps({{"heavy", 3}}), ElementsAre(std::pair(1, 2), std::pair(2, 4)));
}

TEST_F(SchedulerTest, ATenantBackFromIdleGetsNoBankedTurns) {
  Build(/*cache_enabled=*/true, /*budget=*/64, /*max_running=*/1);
  for (int i = 1; i <= 8; ++i) Add(i, Prompt(20 * i, 20), 1, "a");
  Add(101, Prompt(320, 20), 1, "b");
  while (finished_.size() < 6) scheduler_->Step(absl::Now());
  EXPECT_THAT(finished_, ElementsAre(1, 101, 2, 3, 4, 5));
  // "b" was idle while "a" was served alone: back, it takes turns again, not four in a row.
  for (int i = 2; i <= 4; ++i) Add(100 + i, Prompt(300 + 20 * i, 20), 1, "b");
  RunToIdle();
  EXPECT_THAT(std::vector<RequestId>(finished_.begin() + 6, finished_.end()),
              ElementsAre(102, 6, 103, 7, 104, 8));
}

TEST_F(SchedulerTest, CancelReleasesEveryBlockBeforeReturning) {
  Add(1, Prompt(1, 70), 50);
  scheduler_->Step(absl::Now());
  scheduler_->Step(absl::Now());
  EXPECT_GT(cache_->Stats().blocks.in_use, 0);
  scheduler_->Cancel(1, absl::CancelledError("test"));
  EXPECT_EQ(cache_->Stats().blocks.in_use, 0);
  EXPECT_FALSE(scheduler_->HasWork());
  EXPECT_TRUE(scheduler_->CheckInvariants().ok());
}

// gRPC cancels a call whose deadline has passed; that cancel is the deadline's doing, and
// the request ends as the client sees it: DEADLINE_EXCEEDED, not CANCELLED.
TEST_F(SchedulerTest, ACancelAfterTheDeadlineEndsAsDeadlineExceeded) {
  Add(1, Prompt(1, 40), 50, "t", absl::Now() - absl::Milliseconds(1));
  Add(2, Prompt(100, 40), 50, "t", absl::InfiniteFuture());
  // The client's own deadline ran out a transit before ours: its cancel arrives first.
  Add(3, Prompt(200, 40), 50, "t", absl::Now() + absl::Milliseconds(300));
  Add(4, Prompt(300, 40), 50, "t", absl::Now() + absl::Seconds(30));
  for (RequestId id : {1, 2, 3, 4}) {
    scheduler_->Cancel(id, absl::CancelledError("cancelled by the client"));
  }
  EXPECT_EQ(outputs_[1].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(outputs_[1].status.message().find("never started"), absl::string_view::npos);
  EXPECT_EQ(outputs_[2].status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(outputs_[3].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(outputs_[4].status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(scheduler_->CheckInvariants().ok());
}

// What the counters say is what clients got: a prompt counts when its request is admitted
// (a request cancelled in the queue never ran), and a lookup counts once however often an
// admission is retried for want of blocks.
TEST_F(SchedulerTest, PromptsAndLookupsCountOncePerAdmittedRequest) {
  Build(/*cache_enabled=*/true, /*budget=*/512, /*max_running=*/1);
  Add(1, Prompt(1, 40), 20);
  Add(2, Prompt(100, 40), 20);
  scheduler_->Step(absl::Now());  // 1 runs; 2 waits for a running slot
  scheduler_->Step(absl::Now());
  scheduler_->Cancel(2, absl::CancelledError("client went away"));
  RunToIdle();
  EXPECT_EQ(scheduler_->counters().prompt_tokens, 40);
  EXPECT_EQ(cache_->Stats().tree.query_tokens, 39);
  EXPECT_FALSE(outputs_[2].usage.admitted);
  EXPECT_TRUE(outputs_[1].usage.admitted);
}

// The host tier: conversations come back after other traffic pushed their blocks out of a
// small device pool. Each turn's output, greedy and sampled, equals the same turns with the
// cache off; the returning turns' cached tokens include the promoted blocks.
TEST_F(SchedulerTest, BlocksPromotedFromTheHostTierGiveTheOutputOfTheCacheOff) {
  // Turn 1 of three conversations (one after another), then turn 2 of each: each turn-1
  // prompt is 96 tokens (6 blocks) and the device pool 16 blocks, so by turn 2 most of a
  // conversation's blocks are in host memory.
  auto run = [&](bool cache, int32_t host_blocks, float temperature) {
    Build(cache, /*budget=*/512, /*max_running=*/8, {}, /*device_blocks=*/16, host_blocks);
    std::map<RequestId, std::vector<TokenId>> prompts;
    std::map<RequestId, Output> out;
    for (int c = 0; c < 3; ++c) {
      prompts[c] = Prompt(1 + 100 * c, 96);
      Add(c, prompts[c], 8, "t", absl::InfiniteFuture(), temperature);
      RunToIdle();
    }
    for (int c = 0; c < 3; ++c) {
      std::vector<TokenId> turn2 = prompts[c];
      turn2.insert(turn2.end(), outputs_[c].tokens.begin(), outputs_[c].tokens.end());
      for (int i = 0; i < 20; ++i) turn2.push_back(7 + c + i);
      Add(10 + c, turn2, 8, "t", absl::InfiniteFuture(), temperature);
      RunToIdle();
    }
    return outputs_;
  };
  for (const float temperature : {0.0f, 0.8f}) {
    SCOPED_TRACE(absl::StrCat("temperature ", temperature));
    const auto reference = run(/*cache=*/false, 0, temperature);
    const auto tiered = run(/*cache=*/true, /*host_blocks=*/64, temperature);
    const CacheStats stats = cache_->Stats();
    for (const auto& [id, o] : reference) {
      EXPECT_EQ(tiered.at(id).tokens, o.tokens) << "request " << id;
      EXPECT_TRUE(tiered.at(id).status.ok());
    }
    EXPECT_GT(stats.tree.promoted_blocks, 0);
    EXPECT_GT(stats.tree.demoted_blocks, 0);
    EXPECT_GT(scheduler_->counters().promotions, 0);
    // Every turn 2 finds its whole turn-1 prompt cached (on either tier): 6 blocks.
    for (int c = 0; c < 3; ++c) EXPECT_GE(tiered.at(10 + c).usage.cached_tokens, 96);
    // Without the host tier the same small pool loses them.
    const auto dropped = run(/*cache=*/true, 0, temperature);
    EXPECT_LT(dropped.at(10).usage.cached_tokens, 96);
  }
}

TEST_F(SchedulerTest, ACancelWhileBlocksArePromotedFreesEverything) {
  Build(/*cache_enabled=*/true, /*budget=*/512, /*max_running=*/8, {}, /*device_blocks=*/8,
        /*host_blocks=*/32);
  Add(1, Prompt(1, 96), 4);
  RunToIdle();
  Add(2, Prompt(300, 96), 4);  // pushes request 1's blocks to the host
  RunToIdle();
  Add(3, Prompt(1, 100), 4);
  const StepReport admitted = scheduler_->Step(absl::Now());
  EXPECT_EQ(admitted.num_seqs, 0) << "a promoting request runs from the next step";
  EXPECT_GT(cache_->Stats().tree.promoted_blocks, 0);
  EXPECT_GT(cache_->Stats().blocks.in_use, 0);
  scheduler_->Cancel(3, absl::CancelledError("client went away"));
  EXPECT_EQ(outputs_[3].status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(cache_->Stats().blocks.in_use, 0);
  EXPECT_EQ(cache_->Stats().host_blocks.in_use, 0);
  EXPECT_FALSE(scheduler_->HasWork());
  EXPECT_TRUE(scheduler_->CheckInvariants().ok()) << scheduler_->CheckInvariants();
  // The promoted blocks stay cached: the same prompt now hits them on the device.
  Add(4, Prompt(1, 100), 4);
  RunToIdle();
  EXPECT_EQ(outputs_[4].usage.cached_tokens, 96);
}

}  // namespace
}  // namespace prefixd
