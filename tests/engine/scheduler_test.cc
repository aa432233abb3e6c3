// The scheduler driven step by step (no engine thread), so sharing is deterministic.
#include "engine/scheduler.h"

#include <numeric>

#include "gtest/gtest.h"

namespace prefixd {
namespace {

constexpr int kBlock = 16;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(/*cache_enabled=*/true, /*budget=*/512); }

  void Build(bool cache_enabled, int budget, int max_running = 8) {
    scheduler_.reset();
    model_.reset();
    cache_.reset();
    kv_.reset();
    config_ = *RandomPresetConfig("tiny");
    backend_ = MakeCpuBackend();
    kv_ = std::make_unique<KvCache>(*backend_, config_, 256, kBlock);
    model_ = std::make_unique<LlamaModel>(
        config_, RandomLlamaWeights(config_, 3, *backend_), *backend_, *kv_,
        ModelLimits{.max_tokens = budget, .max_seqs = 8, .max_blocks_per_seq = 256});
    PrefixCacheOptions o;
    o.num_blocks = 256;
    o.tree.block_size = kBlock;
    o.enabled = cache_enabled;
    cache_ = std::make_unique<PrefixCache>(o);
    scheduler_ = std::make_unique<Scheduler>(*model_, *cache_, nullptr,
                                             SchedulerOptions{.max_batch_tokens = budget,
                                                              .max_running_requests = max_running,
                                                              .inject_fault = nullptr});
    outputs_.clear();
  }

  void Add(RequestId id, std::vector<TokenId> prompt, int max_new, std::string tenant = "t",
           absl::Time deadline = absl::InfiniteFuture()) {
    GenerationRequest r;
    r.ns = {std::move(tenant), "m", ""};
    r.prompt = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.ignore_eos = true;
    r.deadline = deadline;
    scheduler_->Add(id, std::move(r), max_new, 0, absl::Now(), [this, id](GenerationUpdate&& u) {
      auto& out = outputs_[id];
      out.tokens.insert(out.tokens.end(), u.tokens.begin(), u.tokens.end());
      if (u.finished) {
        out.usage = u.usage;
        out.status = u.status;
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

  struct Output {
    absl::Status status;
    std::vector<TokenId> tokens;
    RequestUsage usage;
  };

  ModelConfig config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<KvCache> kv_;
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
  scheduler_->Cancel(1, absl::CancelledError("cancelled by the client"));
  scheduler_->Cancel(2, absl::CancelledError("cancelled by the client"));
  EXPECT_EQ(outputs_[1].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(outputs_[1].status.message().find("never started"), absl::string_view::npos);
  EXPECT_EQ(outputs_[2].status.code(), absl::StatusCode::kCancelled);
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

}  // namespace
}  // namespace prefixd
