// Load and soak: minutes of mixed traffic against a real server on loopback — two tenants,
// shared system prompts, a shared namespace, cancellations, tight deadlines, bad requests.
// Afterwards: every call ended exactly once, nothing is left in use, the cache's
// invariants held after every step (the server checks and aborts on a violation), memory
// stopped growing after warm-up, and the server drains and exits 0 (under ASan that also
// means no leak and no memory error anywhere in the run).
//
// PREFIXD_SOAK_SECONDS sets the length (default 120; scripts/test.sh --sanitize uses less).
// The load held is printed and written to soak_report.json in the working directory.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "prefixd/v1/cache.grpc.pb.h"
#include "prefixd/v1/generation.grpc.pb.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::prefixd::testing::kAddressSanitizer;
using ::prefixd::testing::RssKb;
using ::prefixd::testing::ServerProcess;

constexpr int kWorkers = 16;  // concurrent streams
const char* const kTokens[] = {"tenant-a-token-0123456789", "tenant-b-token-0123456789"};

struct Tally {
  absl::Mutex mu;
  int64_t calls = 0, ok = 0, cancelled = 0, deadline = 0, invalid = 0, other = 0;
  int64_t tokens = 0, cached = 0, prompt = 0;
  std::vector<std::string> problems;  // broken promises, to print

  void Problem(std::string what) {
    absl::MutexLock lock(&mu);
    if (problems.size() < 20) problems.push_back(std::move(what));
  }
};

// One generation with the chosen twist; checks the promises a client can check.
void Call(v1::Generation::Stub& stub, std::mt19937& rng, int worker, Tally& tally,
          const std::vector<std::vector<int32_t>>& systems) {
  const int tenant = static_cast<int>(rng() % 2);
  const int kind = static_cast<int>(rng() % 100);
  v1::GenerateRequest r;
  const std::vector<int32_t>& system = systems[tenant * 4 + rng() % 4];
  for (int32_t t : system) r.mutable_token_ids()->add_ids(t);
  const int question = 1 + static_cast<int>(rng() % 40);
  for (int i = 0; i < question; ++i)
    r.mutable_token_ids()->add_ids(static_cast<int32_t>(rng() % 500));
  r.mutable_sampling()->set_max_tokens(1 + static_cast<int>(rng() % 24));
  r.mutable_sampling()->set_ignore_eos(rng() % 2 == 0);
  if (rng() % 3 == 0) {
    r.mutable_sampling()->set_temperature(0.8f);
    r.mutable_sampling()->set_seed(rng());
  } else {
    r.mutable_sampling()->set_temperature(0);
  }
  enum { kPlain, kCancel, kDeadline, kBad, kShared } twist = kPlain;
  if (kind < 10)
    twist = kCancel;
  else if (kind < 20)
    twist = kDeadline;
  else if (kind < 30)
    twist = kBad;
  else if (kind < 45)
    twist = kShared;
  if (twist == kBad) {
    switch (rng() % 4) {
      case 0:
        r.mutable_token_ids()->add_ids(100000);
        break;
      case 1:
        r.mutable_sampling()->set_top_p(2.0f);
        break;
      case 2:
        r.mutable_sampling()->set_temperature(-1.0f);
        break;
      default:
        r.mutable_sampling()->set_max_tokens(5000);
        break;  // past the context
    }
  }
  if (twist == kShared) r.set_shared_namespace("public");

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kTokens[tenant]));
  ctx.set_deadline(
      absl::ToChronoTime(absl::Now() + (twist == kDeadline ? absl::Milliseconds(1 + rng() % 40)
                                                           : absl::Seconds(120))));
  auto reader = stub.Generate(&ctx, r);
  v1::GenerateResponse m;
  int messages = 0, finishes = 0, tokens = 0;
  v1::Usage usage;
  while (reader->Read(&m)) {
    ++messages;
    tokens += m.token_ids_size();
    if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) ++finishes;
    if (m.has_usage()) usage = m.usage();
    if (twist == kCancel && messages == 1) ctx.TryCancel();
  }
  const grpc::Status status = reader->Finish();
  const std::string who = absl::StrCat("worker ", worker, " twist ", twist, ": ");
  absl::MutexLock lock(&tally.mu);
  ++tally.calls;
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      ++tally.ok;
      tally.tokens += tokens;
      tally.cached += usage.cached_tokens();
      tally.prompt += usage.prompt_tokens();
      if (finishes != 1 || usage.completion_tokens() != tokens ||
          usage.prompt_tokens() != r.token_ids().ids_size()) {
        tally.problems.push_back(absl::StrCat(who, "OK with ", finishes, " finish messages, ",
                                              tokens, " tokens, usage ", usage.ShortDebugString()));
      }
      if (twist == kBad) tally.problems.push_back(absl::StrCat(who, "a bad request succeeded"));
      break;
    case grpc::StatusCode::CANCELLED:
      ++tally.cancelled;
      if (twist != kCancel) tally.problems.push_back(absl::StrCat(who, "cancelled unasked"));
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      ++tally.deadline;
      if (twist != kDeadline) tally.problems.push_back(absl::StrCat(who, "deadline unasked"));
      break;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      ++tally.invalid;
      if (twist != kBad) {
        tally.problems.push_back(absl::StrCat(who, "refused: ", status.error_message()));
      }
      break;
    default:
      ++tally.other;
      tally.problems.push_back(
          absl::StrCat(who, "status ", status.error_code(), ": ", status.error_message()));
  }
}

TEST(SoakTest, MixedLoadForMinutesKeepsEveryPromise) {
  const char* env = std::getenv("PREFIXD_SOAK_SECONDS");
  const absl::Duration length = absl::Seconds(env != nullptr ? std::atoi(env) : 120);
  char path[] = "/tmp/prefixd-soak-tokens-XXXXXX";
  close(mkstemp(path));
  std::ofstream(path) << R"({"tenants": [
      {"name": "a", "tokens": ["tenant-a-token-0123456789"], "shared_namespaces": ["public"]},
      {"name": "b", "tokens": ["tenant-b-token-0123456789"], "shared_namespaces": ["public"]}]})";
  // A small pool (fully in use after warm-up, so growth after that is a leak) and a small
  // step budget, so preemption and eviction happen all the time.
  auto server = ServerProcess::Start({std::string("--tokens_file=") + path,
                                      "--kv_cache_tokens=2048", "--max_running_requests=12",
                                      "--max_batch_tokens=128", "--check_invariants"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->target(), grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);

  std::mt19937 seed_rng(2026);
  std::vector<std::vector<int32_t>> systems(8);
  for (auto& s : systems) {
    s.resize(32 + seed_rng() % 64);
    for (int32_t& t : s) t = static_cast<int32_t>(seed_rng() % 500);
  }

  Tally tally;
  const absl::Time start = absl::Now(), stop = start + length;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(1000 + w);
      while (absl::Now() < stop) Call(*stub, rng, w, tally, systems);
    });
  }
  // Memory: sampled through the run; warm-up is the first third.
  std::vector<std::pair<double, int64_t>> rss;
  while (absl::Now() < stop) {
    rss.push_back({absl::ToDoubleSeconds(absl::Now() - start), RssKb((*server)->pid())});
    absl::SleepFor(absl::Seconds(1));  // a sampling interval, not a timing assumption
  }
  for (std::thread& t : workers) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  {
    absl::MutexLock lock(&tally.mu);
    for (const std::string& p : tally.problems) ADD_FAILURE() << p;
    EXPECT_EQ(tally.other, 0);
    EXPECT_GT(tally.ok, 0);
    EXPECT_GT(tally.cancelled + tally.deadline + tally.invalid, 0);
    EXPECT_GT(tally.cached, 0);
    std::printf(
        "soak: %.0f s, %d concurrent streams, %lld calls (%.1f/s): %lld ok, %lld cancelled, "
        "%lld deadline, %lld refused; %lld tokens generated (%.0f/s), hit rate %.1f %%\n",
        seconds, kWorkers, static_cast<long long>(tally.calls), tally.calls / seconds,
        static_cast<long long>(tally.ok), static_cast<long long>(tally.cancelled),
        static_cast<long long>(tally.deadline), static_cast<long long>(tally.invalid),
        static_cast<long long>(tally.tokens), tally.tokens / seconds,
        tally.prompt > 0 ? 100.0 * tally.cached / tally.prompt : 0.0);
    std::ofstream("soak_report.json") << absl::StrCat(
        "{\"seconds\": ", seconds, ", \"concurrent_streams\": ", kWorkers,
        ", \"calls\": ", tally.calls, ", \"calls_per_second\": ", tally.calls / seconds,
        ", \"ok\": ", tally.ok, ", \"cancelled\": ", tally.cancelled,
        ", \"deadline_exceeded\": ", tally.deadline, ", \"refused\": ", tally.invalid,
        ", \"generated_tokens\": ", tally.tokens,
        ", \"hit_rate\": ", tally.prompt > 0 ? double(tally.cached) / tally.prompt : 0.0, "}\n");
  }

  // Idle: nothing in use, nothing queued (the server applies cancels asynchronously).
  auto cache = v1::Cache::NewStub(channel);
  v1::CacheStats stats;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  do {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kTokens[0]));
    ASSERT_TRUE(cache->GetStats(&ctx, v1::GetStatsRequest(), &stats).ok());
  } while ((stats.blocks().in_use() != 0 || stats.running_requests() != 0) &&
           absl::Now() < give_up && (absl::SleepFor(absl::Milliseconds(20)), true));
  EXPECT_EQ(stats.blocks().in_use(), 0);
  EXPECT_EQ(stats.running_requests() + stats.waiting_requests(), 0);

  // Memory stopped growing: the last sample is within 10 % (and 16 MiB) of the highest
  // sample at the end of warm-up.
  int64_t warm = 0, last = rss.empty() ? 0 : rss.back().second;
  for (const auto& [t, kb] : rss) {
    if (t <= seconds / 3) warm = std::max(warm, kb);
  }
  std::printf("soak: RSS %lld KiB after warm-up, %lld KiB at the end\n",
              static_cast<long long>(warm), static_cast<long long>(last));
  if (kAddressSanitizer) {
    std::printf("soak: RSS bound not checked (ASan's quarantine holds freed memory)\n");
  } else {
    EXPECT_LE(last, std::max(warm + warm / 10, warm + 16 * 1024))
        << "the server's memory kept growing";
  }

  EXPECT_EQ((*server)->Stop(SIGTERM), 0) << (*server)->log();
  unlink(path);
}

}  // namespace
}  // namespace prefixd
