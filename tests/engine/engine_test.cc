// The engine's contract on the CPU backend, with the test model: a cache hit never changes
// the output, preemption replays exactly, cancellation frees at once, and every accepted
// request ends exactly once.
#include "engine/engine.h"

#include <cmath>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_test_util.h"
#include "tests/engine/recording_backend.h"

namespace prefixd {
namespace {

using ::prefixd::testing::Greedy;
using ::prefixd::testing::MakeTestEngine;
using ::prefixd::testing::Outcome;
using ::prefixd::testing::RunAll;
using ::prefixd::testing::RunOne;
using ::prefixd::testing::Stream;
using ::prefixd::testing::TestModelDir;
using ::testing::Each;
using ::testing::Field;

std::vector<TokenId> Tokens(int seed, int n) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t(n);
  for (TokenId& id : t) id = static_cast<TokenId>(rng() % 500);  // below the special tokens
  return t;
}

std::vector<TokenId> Concat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

EngineOptions TestOptions() {
  EngineOptions o;
  o.block_size = 16;
  o.kv_cache_tokens = 16 * 1024;
  o.max_batch_tokens = 256;
  o.max_running_requests = 16;
  o.check_invariants = true;
  return o;
}

// Same tokens; logprobs of the chosen tokens and of the alternatives both runs list within
// `tol`.
void ExpectSameOutput(const Outcome& want, const Outcome& got, float tol, const std::string& what) {
  ASSERT_TRUE(want.status.ok() && got.status.ok()) << what << ": " << got.status;
  ASSERT_EQ(want.tokens, got.tokens) << what;
  ASSERT_EQ(want.logprobs.size(), got.logprobs.size()) << what;
  for (size_t i = 0; i < want.logprobs.size(); ++i) {
    EXPECT_NEAR(want.logprobs[i].logprob, got.logprobs[i].logprob, tol) << what << " token " << i;
    absl::flat_hash_map<int32_t, float> alternatives;
    for (const TopLogprob& t : want.logprobs[i].top) alternatives[t.token] = t.logprob;
    int shared = 0;
    for (const TopLogprob& t : got.logprobs[i].top) {
      if (auto it = alternatives.find(t.token); it != alternatives.end()) {
        EXPECT_NEAR(it->second, t.logprob, tol) << what << " token " << i << " alt " << t.token;
        ++shared;
      }
    }
    EXPECT_GE(shared, static_cast<int>(want.logprobs[i].top.size()) - 2) << what;
  }
}

// Prompts that share prefixes in every way a block boundary allows.
std::vector<GenerationRequest> SharedPrefixPrompts() {
  const std::vector<TokenId> system = Tokens(1, 70);  // 4 full blocks + 6 tokens
  std::vector<GenerationRequest> reqs;
  auto add = [&](std::vector<TokenId> prompt) {
    GenerationRequest r = Greedy(std::move(prompt), 12);
    r.sampling.top_logprobs = 20;
    reqs.push_back(std::move(r));
  };
  for (int i = 0; i < 8; ++i)
    add(Concat(system, Tokens(100 + i, 5 + 7 * i)));               // shared system prompt
  add(Tokens(2, 5));                                               // shorter than a block
  add(Tokens(2, 5));                                               // the same again
  add(Concat(Tokens(3, 32), {}));                                  // exactly two blocks
  add(Tokens(3, 32));                                              // whole prompt cached
  add(Concat(Tokens(3, 32), Tokens(4, 1)));                        // one past the boundary
  add(std::vector<TokenId>(system.begin(), system.begin() + 40));  // a prefix of another
  add(Concat(Tokens(3, 16), Tokens(5, 30)));                       // diverges after one block
  add(system);
  return reqs;
}

TEST(EngineTest, CacheHitsNeverChangeTheOutput) {
  const std::vector<GenerationRequest> reqs = SharedPrefixPrompts();
  // Reference: cache off, one request at a time.
  EngineOptions off = TestOptions();
  off.prefix_cache = false;
  std::vector<Outcome> want;
  {
    std::unique_ptr<Engine> engine = MakeTestEngine(off);
    for (const GenerationRequest& r : reqs) want.push_back(RunOne(*engine, r));
  }
  for (const Outcome& o : want) EXPECT_EQ(o.usage.cached_tokens, 0);

  // Cache on, at batch sizes 1, 4 and 16, with prefill chunked to 32 tokens per step.
  for (int batch : {1, 4, 16}) {
    EngineOptions on = TestOptions();
    on.max_batch_tokens = 32;
    on.max_running_requests = batch;
    std::unique_ptr<Engine> engine = MakeTestEngine(on);
    std::vector<Outcome> got;
    for (size_t i = 0; i < reqs.size(); i += batch) {
      std::vector<GenerationRequest> chunk(reqs.begin() + i,
                                           reqs.begin() + std::min(reqs.size(), i + batch));
      for (Outcome& o : RunAll(*engine, chunk)) got.push_back(std::move(o));
    }
    int64_t cached = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
      ExpectSameOutput(want[i], got[i], 1e-4f,
                       "batch " + std::to_string(batch) + " prompt " + std::to_string(i));
      EXPECT_EQ(got[i].terminal_updates, 1);
      cached += got[i].usage.cached_tokens;
    }
    EXPECT_GT(cached, 0) << "batch " << batch << ": nothing was served from the cache";
    ASSERT_TRUE(engine->CheckInvariants().ok());
    EXPECT_EQ(engine->Stats().cache.blocks.in_use, 0);
  }
}

TEST(EngineTest, SecondRequestWithTheSamePrefixIsServedFromTheCache) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  const std::vector<TokenId> system = Tokens(7, 64);
  const Outcome first = RunOne(*engine, Greedy(Concat(system, Tokens(8, 10)), 4));
  const Outcome second = RunOne(*engine, Greedy(Concat(system, Tokens(9, 10)), 4));
  EXPECT_EQ(first.usage.cached_tokens, 0);
  EXPECT_EQ(second.usage.cached_tokens, 64);
  EXPECT_EQ(second.usage.prompt_tokens, 74);
  // A multi-turn chat hits its own history: prompt + answer of the first turn.
  std::vector<TokenId> history = Concat(Concat(system, Tokens(8, 10)), first.tokens);
  const Outcome turn2 = RunOne(*engine, Greedy(Concat(history, Tokens(10, 6)), 4));
  EXPECT_GE(turn2.usage.cached_tokens, static_cast<int>(history.size()) / 16 * 16 - 16);
  // Another tenant with the same prompt does not share.
  const Outcome other = RunOne(*engine, Greedy(Concat(system, Tokens(9, 10)), 4, "other"));
  EXPECT_EQ(other.usage.cached_tokens, 0);
  EXPECT_EQ(other.tokens, second.tokens);
}

TEST(EngineTest, PreemptedRequestsReplayExactly) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    GenerationRequest r = Greedy(Concat(Tokens(20, 40), Tokens(30 + i, 20)), 40);
    if (i % 2 == 1) {  // sampled with a seed: replays exactly too
      r.sampling.temperature = 0.9f;
      r.sampling.top_p = 0.95f;
      r.sampling.seed = 1000 + i;
    }
    reqs.push_back(std::move(r));
  }
  EngineOptions roomy = TestOptions();
  std::vector<Outcome> want = RunAll(*MakeTestEngine(roomy), reqs);

  // 8 requests of 100 tokens need 56 blocks; 30 blocks force preemptions.
  EngineOptions tight = TestOptions();
  tight.kv_cache_tokens = 30 * 16;
  tight.max_running_requests = 8;
  std::unique_ptr<Engine> engine = MakeTestEngine(tight);
  std::vector<Outcome> got = RunAll(*engine, reqs);
  int preemptions = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status;
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
    EXPECT_EQ(got[i].text, want[i].text) << "request " << i;
    EXPECT_EQ(got[i].terminal_updates, 1);
    preemptions += got[i].usage.preemptions;
  }
  EXPECT_GT(preemptions, 0) << "the pool was not tight enough to preempt";
  EXPECT_EQ(engine->Stats().counters.preemptions, preemptions);
  EXPECT_EQ(engine->Stats().cache.blocks.in_use, 0);
}

TEST(EngineTest, CancelledRequestFreesItsBlocksAtOnce) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  Stream stream;
  absl::StatusOr<RequestId> id = engine->Submit(Greedy(Tokens(11, 50), 1000), stream.Callback());
  ASSERT_TRUE(id.ok());
  stream.WaitForUpdates(3);
  EXPECT_GT(engine->Stats().cache.blocks.in_use, 0);
  engine->Cancel(*id);
  const Outcome o = stream.Wait();
  EXPECT_EQ(o.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(o.terminal_updates, 1);
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.cache.blocks.in_use, 0);
  EXPECT_EQ(stats.running + stats.waiting, 0);
  // Its prompt stays cached for the next request.
  EXPECT_GT(stats.cache.blocks.evictable, 0);
  engine->Cancel(*id);  // a second cancel of a finished request is harmless
  EXPECT_TRUE(engine->CheckInvariants().ok());
}

TEST(EngineTest, DeadlineThatExpiresInTheQueueNeverStarts) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  GenerationRequest r = Greedy(Tokens(12, 20), 10);
  r.deadline = absl::Now() - absl::Seconds(1);
  const Outcome o = RunOne(*engine, r);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(o.status.message()), ::testing::HasSubstr("queued"));
  EXPECT_TRUE(o.tokens.empty());
  EXPECT_EQ(engine->Stats().counters.prompt_tokens_computed, 0);
}

TEST(EngineTest, StopStringsTruncateTheTextAndEndTheRequest) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  const std::vector<TokenId> prompt = engine->tokenizer()->Encode("The river runs", true);
  const Outcome full = RunOne(*engine, Greedy(prompt, 40));
  ASSERT_GE(full.text.size(), 12u) << full.text;
  const std::string stop = full.text.substr(8, 3);
  const size_t at = full.text.find(stop);
  GenerationRequest r = Greedy(prompt, 40);
  r.sampling.stop = {stop, "never-appears-anywhere"};
  const Outcome stopped = RunOne(*engine, r);
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.text, full.text.substr(0, at));
  EXPECT_LT(stopped.tokens.size(), full.tokens.size());
  EXPECT_EQ(full.finish_reason, FinishReason::kLength);
  EXPECT_EQ(full.usage.completion_tokens, 40);
}

// The cut applies to the ids too: the client gets the tokens that spelled the text it got
// (the one the stop string starts in may spell a little of both), no token that only
// spelled the stop string, and completion_tokens counts what it got.
TEST(EngineTest, AStopStringCutsTheTokenIdsAndCompletionTokensToo) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  const Tokenizer& tok = *engine->tokenizer();
  int checked = 0;
  for (int seed = 20; seed < 60 && checked < 3; ++seed) {
    const Outcome full = RunOne(*engine, Greedy(Tokens(seed, 16), 40));
    // A stop string that first appears well inside the text.
    std::string stop;
    for (size_t at = 6; at + 2 <= full.text.size() && stop.empty(); ++at) {
      const std::string candidate = full.text.substr(at, 2);
      if (full.text.find(candidate) == at) stop = candidate;
    }
    if (stop.empty()) continue;
    GenerationRequest r = Greedy(Tokens(seed, 16), 40);
    r.sampling.stop = {stop};
    const Outcome stopped = RunOne(*engine, r);
    ASSERT_EQ(stopped.finish_reason, FinishReason::kStop);
    const std::string text = full.text.substr(0, full.text.find(stop));
    EXPECT_EQ(stopped.text, text);
    ASSERT_GE(stopped.tokens.size(), 1u);
    EXPECT_LT(stopped.tokens.size(), full.tokens.size());
    EXPECT_TRUE(std::equal(stopped.tokens.begin(), stopped.tokens.end(), full.tokens.begin()));
    EXPECT_EQ(stopped.usage.completion_tokens, static_cast<int>(stopped.tokens.size()));
    // The ids spell at least the text (decoded as a continuation of the prompt, as the
    // server streams it); without the last one, less than all of it.
    const std::vector<TokenId> prompt = Tokens(seed, 16);
    StreamDecoder decoder(tok, /*skip_special_tokens=*/true, prompt);
    std::string shorter, spelled;
    for (size_t i = 0; i < stopped.tokens.size(); ++i) {
      if (i + 1 == stopped.tokens.size()) shorter = spelled;
      spelled += decoder.Push(stopped.tokens[i]);
    }
    spelled += decoder.Finish();
    EXPECT_EQ(spelled.substr(0, text.size()), text)
        << "stop '" << absl::CEscape(stop) << "'"
        << "' full " << absl::StrJoin(full.tokens, ",") << " kept "
        << absl::StrJoin(stopped.tokens, ",");
    EXPECT_LT(shorter.size(), text.size()) << "a token past the cut was kept";
    ++checked;
  }
  EXPECT_GE(checked, 1) << "no prompt gave text with a stop string inside";
}

TEST(EngineTest, EosEndsTheRequestUnlessIgnored) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  const std::vector<TokenId> prompt = Tokens(13, 20);
  const Outcome any = RunOne(*engine, Greedy(prompt, 30));
  // Make the first generated token a stop token: the request ends after one token.
  GenerationRequest r = Greedy(prompt, 30);
  r.sampling.stop_token_ids = {any.tokens[0]};
  const Outcome stopped = RunOne(*engine, r);
  EXPECT_EQ(stopped.tokens.size(), 1u);
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStop);
  EXPECT_TRUE(stopped.text.empty());
}

TEST(EngineTest, SameSeedSameOutputOtherSeedOtherOutput) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  GenerationRequest r = Greedy(Tokens(14, 20), 24);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 7;
  const Outcome a = RunOne(*engine, r);
  const Outcome b = RunOne(*engine, r);
  r.sampling.seed = 8;
  const Outcome c = RunOne(*engine, r);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens, c.tokens);
}

TEST(EngineTest, BadRequestsGetPreciseErrors) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  auto code = [&](GenerationRequest r) {
    return engine->Submit(std::move(r), [](GenerationUpdate&&) {}).status().code();
  };
  using absl::StatusCode;
  EXPECT_EQ(code(Greedy({}, 5)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy({1, 2, 512}, 5)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy({1, -1}, 5)), StatusCode::kInvalidArgument);
  GenerationRequest r = Greedy({1, 2}, 5);
  r.sampling.temperature = -1;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = Greedy({1, 2}, 5);
  r.sampling.top_p = 0;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r.sampling.top_p = 1.5f;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r.sampling.top_p = std::nanf("");
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = Greedy({1, 2}, 5);
  r.sampling.top_logprobs = 21;
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  r = Greedy({1, 2}, 5);
  r.sampling.stop = {""};
  EXPECT_EQ(code(r), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Greedy(std::vector<TokenId>(4096, 1), 1)), StatusCode::kOutOfRange);
  EXPECT_EQ(code(Greedy(std::vector<TokenId>(4000, 1), 200)), StatusCode::kOutOfRange);
  const absl::Status s = engine->Submit(Greedy({1, 2, 512}, 5), [](GenerationUpdate&&) {}).status();
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("token id 512"));
}

TEST(EngineTest, PinKeepsAPrefixThroughFlushUntilUnpinned) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  const CacheNamespace ns{"default", "test", ""};
  const std::vector<TokenId> system = Tokens(15, 50);  // 3 full blocks
  absl::StatusOr<PinResult> pin = engine->Pin(ns, system);
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_EQ(pin->pinned_tokens, 48);
  EXPECT_EQ(pin->computed_tokens, 48);
  absl::StatusOr<PinResult> again = engine->Pin(ns, system);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->computed_tokens, 0);
  EXPECT_EQ(engine->Flush(), 0);
  EXPECT_EQ(engine->Stats().cache.blocks.pinned, 3);
  const Outcome hit = RunOne(*engine, Greedy(Concat(system, Tokens(16, 4)), 2));
  EXPECT_EQ(hit.usage.cached_tokens, 48);
  EXPECT_EQ(*engine->Unpin(ns, system), 48);
  EXPECT_EQ(*engine->Unpin(ns, system), 48);
  EXPECT_EQ(engine->Unpin(ns, system).status().code(), absl::StatusCode::kNotFound);
  EXPECT_GE(engine->Flush(), 3);
  EXPECT_EQ(engine->Stats().cache.blocks.pinned, 0);
  EXPECT_EQ(engine->Pin(ns, Tokens(1, 10)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EngineTest, ManyConcurrentRequestsEachEndExactlyOnce) {
  EngineOptions o = TestOptions();
  o.max_running_requests = 8;
  o.kv_cache_tokens = 64 * 16;
  std::unique_ptr<Engine> engine = MakeTestEngine(o);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 48; ++i) {
    GenerationRequest r = Greedy(Concat(Tokens(i % 4, 30), Tokens(200 + i, 1 + i % 9)), 1 + i % 13);
    if (i % 3 == 0) r.sampling.ignore_eos = false;
    reqs.push_back(std::move(r));
  }
  std::vector<Outcome> got = RunAll(*engine, reqs);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].terminal_updates, 1);
    EXPECT_TRUE(got[i].status.ok()) << got[i].status;
    EXPECT_EQ(got[i].usage.completion_tokens, static_cast<int>(got[i].tokens.size()));
    EXPECT_LE(got[i].usage.completion_tokens, reqs[i].sampling.max_tokens);
  }
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.cache.blocks.in_use, 0);
  EXPECT_EQ(stats.running + stats.waiting, 0);
  EXPECT_TRUE(engine->CheckInvariants().ok());
}

TEST(EngineTest, AFailedStepEndsItsRequestsWithInternalAndTheEngineGoesOn) {
  EngineOptions o = TestOptions();
  // Request ids start at 1: every step that includes the first request fails.
  o.inject_fault = [](absl::Span<const RequestId> step) {
    for (RequestId id : step) {
      if (id == 1) return absl::UnavailableError("injected device fault");
    }
    return absl::OkStatus();
  };
  std::unique_ptr<Engine> engine = MakeTestEngine(o);
  const std::vector<TokenId> system = Tokens(30, 48);
  const Outcome failed = RunOne(*engine, Greedy(Concat(system, Tokens(31, 5)), 8));
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(failed.status.message()), ::testing::HasSubstr("injected device fault"));
  EXPECT_EQ(failed.terminal_updates, 1);
  // Nothing of the failed step reached the cache, and everything after it is served.
  std::vector<GenerationRequest> next;
  for (int i = 0; i < 6; ++i) next.push_back(Greedy(Concat(system, Tokens(40 + i, 5)), 8));
  for (const Outcome& o : RunAll(*engine, next)) {
    EXPECT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.tokens.size(), 8u);
  }
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.counters.failed_steps, 1);
  EXPECT_EQ(stats.cache.blocks.in_use, 0);
  EXPECT_TRUE(engine->CheckInvariants().ok());
}

BlockKey AlwaysCollide(uint64_t, const BlockKey&, absl::Span<const TokenId>) {
  return BlockKey{0x5eed, 0x5eed};
}

TEST(EngineTest, ForcedHashCollisionsNeverShareKvAndOutputsEqualCacheOff) {
  const std::vector<TokenId> p = Tokens(50, 40), q = Tokens(51, 40);
  std::vector<GenerationRequest> reqs = {
      Greedy(Concat(p, Tokens(52, 6)), 10), Greedy(Concat(q, Tokens(53, 6)), 10),
      Greedy(Concat(p, Tokens(54, 6)), 10), Greedy(Concat(q, Tokens(55, 6)), 10)};
  for (GenerationRequest& r : reqs) r.sampling.top_logprobs = 5;
  EngineOptions off = TestOptions();
  off.prefix_cache = false;
  std::unique_ptr<Engine> reference = MakeTestEngine(off);
  std::vector<Outcome> want;
  for (const GenerationRequest& r : reqs) want.push_back(RunOne(*reference, r));

  EngineOptions colliding = TestOptions();
  colliding.block_hash = &AlwaysCollide;  // every block of every prompt has the same key
  std::unique_ptr<Engine> engine = MakeTestEngine(colliding);
  std::vector<Outcome> got;
  for (const GenerationRequest& r : reqs) got.push_back(RunOne(*engine, r));
  for (size_t i = 0; i < reqs.size(); ++i) {
    ExpectSameOutput(want[i], got[i], 1e-4f, "request " + std::to_string(i));
  }
  // The third prompt truly shares p with the first: that still hits (tokens compared
  // equal). The second and fourth collide with p's key but not its tokens: never a hit.
  EXPECT_EQ(got[2].usage.cached_tokens, 32);
  EXPECT_EQ(got[1].usage.cached_tokens, 0);
  EXPECT_EQ(got[3].usage.cached_tokens, 0);
  EXPECT_GT(engine->Stats().cache.tree.hash_collisions, 0);
}

// Conversations that come back after other traffic pushed them out of a small device pool
// still hit, from the host tier, and their outputs equal the cache off; with every block
// key colliding, the tiers still never hand one prompt another's KV.
TEST(EngineTest, AHostTierKeepsEvictedPrefixesAndOutputsEqualCacheOff) {
  std::vector<GenerationRequest> first, again;
  for (int i = 0; i < 8; ++i) {
    const std::vector<TokenId> history = Tokens(300 + i, 80);  // 5 blocks
    first.push_back(Greedy(history, 6));
    again.push_back(Greedy(Concat(history, Tokens(400 + i, 9)), 6));
  }
  for (GenerationRequest& r : first) r.sampling.top_logprobs = 5;
  for (GenerationRequest& r : again) r.sampling.top_logprobs = 5;
  EngineOptions options = TestOptions();
  options.kv_cache_tokens = 16 * 24;  // 24 blocks: about four conversations
  options.max_running_requests = 4;
  options.prefix_cache = false;
  std::unique_ptr<Engine> reference = MakeTestEngine(options);
  std::vector<Outcome> want;
  for (const GenerationRequest& r : first) want.push_back(RunOne(*reference, r));
  for (const GenerationRequest& r : again) want.push_back(RunOne(*reference, r));

  for (const bool collide : {false, true}) {
    SCOPED_TRACE(collide ? "every key colliding" : "xxh3");
    options.prefix_cache = true;
    options.host_kv_cache_bytes = int64_t{64} << 16;  // 64 blocks of 64 KiB
    options.block_hash = collide ? &AlwaysCollide : nullptr;
    // With every key colliding only one conversation can be cached at a time: a pool of 8
    // blocks makes the next one's private blocks push it to the host.
    options.kv_cache_tokens = collide ? 16 * 8 : 16 * 24;
    std::unique_ptr<Engine> engine = MakeTestEngine(options);
    ASSERT_EQ(engine->host_kv_cache_tokens(), 64 * 16);
    std::vector<Outcome> got;
    for (const GenerationRequest& r : first) got.push_back(RunOne(*engine, r));
    for (const GenerationRequest& r : again) got.push_back(RunOne(*engine, r));
    for (size_t i = 0; i < got.size(); ++i) {
      ExpectSameOutput(want[i], got[i], 1e-4f, "request " + std::to_string(i));
    }
    const EngineStats stats = engine->Stats();
    EXPECT_GT(stats.cache.tree.demoted_blocks, 0);
    EXPECT_GT(stats.cache.tree.promoted_blocks, 0);
    if (!collide) {
      // Every returning conversation found its history: 5 blocks, most from the host.
      for (size_t i = first.size(); i < got.size(); ++i) {
        EXPECT_EQ(got[i].usage.cached_tokens, 80) << "request " << i;
      }
      EXPECT_GT(stats.cache.tree.promoted_blocks, 0);
      EXPECT_GT(stats.cache.tree.host_hit_tokens, 0);
      EXPECT_EQ(stats.host_kv.bytes_to_device, stats.cache.tree.promoted_blocks << 16);
      EXPECT_EQ(stats.host_kv.bytes_to_host, stats.cache.tree.demoted_blocks << 16);
      EXPECT_GT(stats.host_kv.bytes_allocated, 0);
      EXPECT_LE(stats.host_kv.bytes_allocated, int64_t{64} << 16);
    }
  }
}

TEST(EngineTest, AHostTierLargerThanTheMachinesRamIsRefused) {
  EngineOptions options = TestOptions();
  options.host_kv_cache_bytes = int64_t{1} << 60;
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  absl::StatusOr<LoadedModel> model = LoadModel(TestModelDir(), {}, *backend);
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(std::move(backend), *std::move(model), options);
  ASSERT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(engine.status().message(), ::testing::HasSubstr("more than this machine's RAM"));
  EXPECT_THAT(engine.status().message(), ::testing::HasSubstr("GiB"));
}

TEST(EngineTest, ShutdownRefusesNewRequestsAndEndsTheRestAsCancelled) {
  std::unique_ptr<Engine> engine = MakeTestEngine(TestOptions());
  Stream stream;
  ASSERT_TRUE(engine->Submit(Greedy(Tokens(17, 20), 4000 - 20), stream.Callback()).ok());
  stream.WaitForUpdates(1);
  engine->Shutdown(absl::ZeroDuration());
  const Outcome o = stream.Wait();
  EXPECT_TRUE(o.status.ok());
  EXPECT_EQ(o.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(engine->Submit(Greedy({1, 2}, 2), [](GenerationUpdate&&) {}).status().code(),
            absl::StatusCode::kUnavailable);
}

// Many requests over one system prompt decode together: with shared-prefix groups their
// attention reads the prompt's blocks once per group, and the output is the same as
// without: the same tokens, logprobs within fp32 rounding (attention itself is
// bit-identical; the grouped order of rows in the batch changes the gemms' rounding).
TEST(EngineTest, SharedPrefixGroupsNeverChangeTheOutput) {
  const std::vector<TokenId> system = Tokens(31, 75);  // 4 full blocks + 11 tokens
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 12; ++i) {
    GenerationRequest r = Greedy(Concat(system, Tokens(200 + i, 1 + 3 * i)), 10);
    r.sampling.top_logprobs = 5;
    if (i % 3 == 0) {  // some sampled, seeded
      r.sampling.temperature = 0.8f;
      r.sampling.seed = 1000 + i;
    }
    reqs.push_back(std::move(r));
  }
  reqs.push_back(Greedy(Tokens(77, 40), 10));  // a request that shares nothing
  std::vector<std::vector<Outcome>> outs;
  std::vector<int64_t> grouped;
  for (const bool cascade : {false, true}) {
    EngineOptions o = TestOptions();
    o.cascade_attention = cascade;
    std::unique_ptr<Engine> engine = MakeTestEngine(o);
    RunOne(*engine, Greedy(system, 1));  // the system prompt is cached
    outs.push_back(RunAll(*engine, reqs));
    grouped.push_back(engine->Stats().counters.shared_prefix_group_seqs);
    ASSERT_TRUE(engine->CheckInvariants().ok());
  }
  EXPECT_EQ(grouped[0], 0);
  EXPECT_GT(grouped[1], 60) << "the shared-prefix requests should decode in groups";
  for (size_t i = 0; i < reqs.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i));
    EXPECT_EQ(outs[1][i].tokens, outs[0][i].tokens);
    ASSERT_EQ(outs[1][i].logprobs.size(), outs[0][i].logprobs.size());
    for (size_t t = 0; t < outs[0][i].logprobs.size(); ++t) {
      EXPECT_NEAR(outs[1][i].logprobs[t].logprob, outs[0][i].logprobs[t].logprob, 1e-5);
    }
    if (i < 12) {
      EXPECT_GE(outs[1][i].usage.cached_tokens, 64);  // the system prompt's 4 full blocks
    } else {
      EXPECT_EQ(outs[1][i].usage.cached_tokens, 0);  // the request that shares nothing
    }
  }
}

// Decode graphs, recorded and replayed on the CPU (RecordingBackend plays a CUDA graph: it
// replays the recorded ops with their recorded arguments on the memory's current contents).
// Batches shrink as requests finish and contexts cross a bucket's edge, so several shapes
// are recorded; every output equals the plain engine's. Then the scratch "moves": every
// graph is refused and recorded again, and the outputs still agree.
TEST(EngineTest, DecodeGraphsGiveThePlainOutput) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 10; ++i) {
    GenerationRequest r = Greedy(Tokens(300 + i, 20 + 61 * i), 6 + 3 * i);  // up to 569 + 33
    r.sampling.top_logprobs = 5;
    if (i % 4 == 1) {
      r.sampling.temperature = 0.7f;
      r.sampling.seed = 40 + i;
    }
    reqs.push_back(std::move(r));
  }
  std::vector<Outcome> want;
  {
    std::unique_ptr<Engine> plain = MakeTestEngine(TestOptions());
    want = RunAll(*plain, reqs);
  }
  auto owned = std::make_unique<::prefixd::testing::RecordingBackend>(MakeCpuBackend(1));
  ::prefixd::testing::RecordingBackend* recorder = owned.get();
  std::unique_ptr<Engine> engine =
      ::prefixd::testing::MakeEngineOn(std::move(owned), TestModelDir(), TestOptions());
  ASSERT_TRUE(engine);
  for (int round = 0; round < 2; ++round) {
    const int64_t captures_before = recorder->captures(), replays_before = recorder->replays();
    const std::vector<Outcome> got = RunAll(*engine, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {
      ExpectSameOutput(want[i], got[i], 1e-4f, absl::StrCat("round ", round, " request ", i));
    }
    const int64_t captures = recorder->captures() - captures_before,
                  replays = recorder->replays() - replays_before;
    EXPECT_GE(captures, 3) << "round " << round;  // batch and context buckets
    EXPECT_GT(replays, 2 * captures) << "round " << round << ": graphs are replayed, not only "
                                     << "recorded";
    recorder->MoveScratch();  // every graph recorded so far is now refused
  }
  EXPECT_TRUE(engine->CheckInvariants().ok());
  // The engine's own count of its graphs agrees with what the backend saw.
  const DecodeGraphStats graphs = engine->Stats().decode_graphs;
  EXPECT_EQ(graphs.captures, recorder->captures());
  EXPECT_EQ(graphs.replays, recorder->replays());
  EXPECT_GT(graphs.plain_runs, 0);

  // Off: no graph at all.
  EngineOptions off = TestOptions();
  off.cuda_graphs = false;
  auto owned_off = std::make_unique<::prefixd::testing::RecordingBackend>(MakeCpuBackend(1));
  ::prefixd::testing::RecordingBackend* unused = owned_off.get();
  std::unique_ptr<Engine> plain =
      ::prefixd::testing::MakeEngineOn(std::move(owned_off), TestModelDir(), off);
  ASSERT_TRUE(plain);
  RunAll(*plain, {reqs[0], reqs[1]});
  EXPECT_EQ(unused->captures(), 0);
}

}  // namespace
}  // namespace prefixd
