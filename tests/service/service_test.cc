// prefixd as a client sees it: a real server process on loopback, called over gRPC.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "prefixd/v1/cache.grpc.pb.h"
#include "prefixd/v1/generation.grpc.pb.h"
#include "tests/engine/engine_test_util.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::prefixd::testing::ServerProcess;
using ::prefixd::testing::WriteTempFile;
using ::testing::HasSubstr;

std::vector<int32_t> Tokens(int seed, int n) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& id : t) id = static_cast<int32_t>(rng() % 500);
  return t;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

v1::GenerateRequest Request(const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest r;
  for (int32_t t : prompt) r.mutable_token_ids()->add_ids(t);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

struct Result {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string text;
  int messages = 0;
  int messages_with_finish_reason = 0;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
};

class Client {
 public:
  explicit Client(const std::string& target, std::string token = "")
      : channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
        generation_(v1::Generation::NewStub(channel_)),
        cache_(v1::Cache::NewStub(channel_)),
        token_(std::move(token)) {}

  void Prepare(grpc::ClientContext& ctx) {
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  }

  // Streams a Generate; `after_first` runs once the first message arrived (e.g. to cancel).
  Result Generate(const v1::GenerateRequest& request, absl::Duration timeout = absl::Seconds(60),
                  std::function<void(grpc::ClientContext&)> after_first = nullptr) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    Result r;
    auto reader = generation_->Generate(&ctx, request);
    v1::GenerateResponse m;
    while (reader->Read(&m)) {
      ++r.messages;
      r.tokens.insert(r.tokens.end(), m.token_ids().begin(), m.token_ids().end());
      r.text += m.text();
      if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        ++r.messages_with_finish_reason;
        r.finish_reason = m.finish_reason();
      }
      if (m.has_usage()) r.usage = m.usage();
      if (r.messages == 1 && after_first) after_first(ctx);
    }
    r.status = reader->Finish();
    return r;
  }

  v1::CacheStats Stats() {
    grpc::ClientContext ctx;
    Prepare(ctx);
    v1::CacheStats stats;
    grpc::Status s = cache_->GetStats(&ctx, v1::GetStatsRequest(), &stats);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return stats;
  }

  // Polls GetStats until `done` holds (the server applies a client's cancel asynchronously).
  v1::CacheStats StatsWhen(std::function<bool(const v1::CacheStats&)> done) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    v1::CacheStats stats = Stats();
    while (!done(stats) && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(10));
      stats = Stats();
    }
    return stats;
  }

  v1::Cache::Stub& cache() { return *cache_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Cache::Stub> cache_;
  std::string token_;
};

// grpc.health.v1.Health/Check by hand: HealthCheckRequest{} is empty on the wire and the
// response is field 1 (status) as a varint: 1 SERVING, 2 NOT_SERVING.
int HealthStatus(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::ByteBuffer request, response;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = s;
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) return -static_cast<int>(status.error_code());
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : 0;
}

TEST(ServiceTest, StreamsTheEnginesOutputAndServesTheSystemPromptFromTheCache) {
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  EXPECT_EQ(HealthStatus(client.channel()), 1);  // SERVING

  const std::vector<int32_t> system = Tokens(1, 64);
  const Result first = client.Generate(Request(Concat(system, Tokens(2, 9)), 24));
  const Result second = client.Generate(Request(Concat(system, Tokens(3, 9)), 24));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(first.usage.cached_tokens(), 0);
  EXPECT_EQ(second.usage.cached_tokens(), 64);
  EXPECT_EQ(second.usage.prompt_tokens(), 73);
  EXPECT_EQ(second.usage.completion_tokens(), 24);
  EXPECT_EQ(second.finish_reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(second.messages_with_finish_reason, 1);
  EXPECT_GT(second.usage.time_to_first_token_seconds(), 0);

  // The same request through the engine in this process gives the same tokens and text.
  std::unique_ptr<Engine> engine = testing::MakeTestEngine(EngineOptions{});
  testing::Outcome want =
      testing::RunOne(*engine, testing::Greedy(Concat(system, Tokens(3, 9)), 24));
  EXPECT_EQ(second.tokens, want.tokens);
  EXPECT_EQ(second.text, want.text);

  // Text prompts are tokenized by the server.
  v1::GenerateRequest text;
  text.set_text("The old library by the river");
  text.mutable_sampling()->set_max_tokens(5);
  text.mutable_sampling()->set_ignore_eos(true);  // sampled at random: it may draw EOS
  const Result t = client.Generate(text);
  EXPECT_TRUE(t.status.ok()) << t.status.error_message();
  EXPECT_EQ(t.tokens.size(), 5u);
  EXPECT_EQ((*server)->Stop(), 0);
}

TEST(ServiceTest, TenantsShareOnlyWhatTheServerGrants) {
  const std::string tokens = WriteTempFile(R"({"tenants": [
      {"name": "alice", "tokens": ["alice-token-0123456789"], "shared_namespaces": ["public"]},
      {"name": "bob", "tokens": ["bob-token-0123456789ab"], "shared_namespaces": ["public"]},
      {"name": "root", "tokens": ["root-token-0123456789a"], "admin": true}]})");
  auto server = ServerProcess::Start({"--tokens_file=" + tokens});
  ASSERT_TRUE(server.ok()) << server.status();
  Client alice((*server)->target(), "alice-token-0123456789");
  Client bob((*server)->target(), "bob-token-0123456789ab");
  const std::vector<int32_t> prompt = Tokens(5, 50);

  EXPECT_EQ(alice.Generate(Request(prompt, 2)).usage.cached_tokens(), 0);
  EXPECT_EQ(bob.Generate(Request(prompt, 2)).usage.cached_tokens(), 0);  // same prompt, no reuse
  EXPECT_EQ(alice.Generate(Request(prompt, 2)).usage.cached_tokens(), 48);

  v1::GenerateRequest shared = Request(Tokens(6, 50), 2);
  shared.set_shared_namespace("public");
  EXPECT_EQ(alice.Generate(shared).usage.cached_tokens(), 0);
  EXPECT_EQ(bob.Generate(shared).usage.cached_tokens(), 48);  // granted to both: shared

  shared.set_shared_namespace("secret");
  const Result denied = bob.Generate(shared);
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.status.error_message(), HasSubstr("secret"));

  Client nobody((*server)->target());
  EXPECT_EQ(nobody.Generate(Request(prompt, 2)).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  Client wrong((*server)->target(), "not-a-valid-token-at-all");
  EXPECT_EQ(wrong.Generate(Request(prompt, 2)).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // A tenant sees its own namespaces' stats only, and may not flush.
  // Its counters are the sums over those; the pool, the queue and the global counters,
  // which move with other tenants' traffic, are not shown to it.
  const v1::CacheStats stats = alice.Stats();
  int64_t query_tokens = 0;
  for (const v1::NamespaceStats& ns : stats.namespaces()) {
    EXPECT_THAT(ns.name(), ::testing::AnyOf("alice", "shared:public"));
    query_tokens += ns.query_tokens();
  }
  EXPECT_EQ(stats.query_tokens(), query_tokens);
  EXPECT_FALSE(stats.has_blocks());
  EXPECT_EQ(stats.evicted_blocks() + stats.inserted_blocks() + stats.running_requests(), 0);
  grpc::ClientContext ctx;
  alice.Prepare(ctx);
  v1::FlushResponse flushed;
  EXPECT_EQ(alice.cache().Flush(&ctx, v1::FlushRequest(), &flushed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  Client root((*server)->target(), "root-token-0123456789a");
  const v1::CacheStats all = root.Stats();
  EXPECT_EQ(all.namespaces_size(), 3);
  EXPECT_TRUE(all.has_blocks());
  EXPECT_GT(all.inserted_blocks(), 0);
  EXPECT_GT(all.query_tokens(), query_tokens);
  unlink(tokens.c_str());
}

TEST(ServiceTest, EveryBadInputGetsItsStatusAndNobodyElseNotices) {
  auto server = ServerProcess::Start({"--max_message_bytes=65536"});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  auto code = [&](const v1::GenerateRequest& r) { return client.Generate(r).status.error_code(); };
  using grpc::StatusCode;

  EXPECT_EQ(code(v1::GenerateRequest()), StatusCode::INVALID_ARGUMENT);  // no prompt
  v1::GenerateRequest r = Request({}, 4);
  r.set_text("");
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(Request({1, 2, 512}, 4)), StatusCode::INVALID_ARGUMENT);
  r = Request({1, 2, 3}, 4);
  r.mutable_sampling()->set_temperature(-0.5f);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = Request({1, 2, 3}, 4);
  r.mutable_sampling()->set_top_p(0);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r.mutable_sampling()->set_top_p(1.5f);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = Request({1, 2, 3}, 4);
  r.mutable_logprobs()->set_top_n(21);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = Request({1, 2, 3}, 4);
  r.mutable_sampling()->set_max_tokens(-1);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = Request({1, 2, 3}, 4);  // a field from a newer client
  r.GetReflection()->MutableUnknownFields(&r)->AddVarint(99, 1);
  const Result unknown = client.Generate(r);
  EXPECT_EQ(unknown.status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unknown.status.error_message(), HasSubstr("99"));
  EXPECT_EQ(code(Request(std::vector<int32_t>(4096, 7), 1)), StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(code(Request(std::vector<int32_t>(4000, 7), 500)), StatusCode::OUT_OF_RANGE);
  r = Request({1}, 1);
  r.set_text(std::string(100000, 'a'));  // over --max_message_bytes
  EXPECT_EQ(code(r), StatusCode::RESOURCE_EXHAUSTED);

  const Result bad = client.Generate(Request({1, 2, 600}, 4));
  EXPECT_THAT(bad.status.error_message(), HasSubstr("token id 600"));

  // Bytes that are not a GenerateRequest, and a text prompt that is not UTF-8 (which
  // protobuf refuses to parse): INVALID_ARGUMENT saying so, not gRPC's bare UNIMPLEMENTED.
  v1::GenerateRequest text_request;
  text_request.set_text("PLACEHOLDER");
  std::string not_utf8 = text_request.SerializeAsString();
  not_utf8.replace(not_utf8.find("PLACEHOLDER"), 11, "caf\xe9 \xff\xfe bar");
  for (const std::string& wire : {std::string("\xff\xff\xff\xff"), not_utf8}) {
    grpc::GenericStub stub(client.channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::Slice slice(wire);
    grpc::ByteBuffer request(&slice, 1), response;
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&ctx, "/prefixd.v1.Generation/Generate", grpc::StubOptions(), &request,
                   &response, [&](grpc::Status s) {
                     status = s;
                     done.Notify();
                   });
    done.WaitForNotification();
    EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("not a valid prefixd.v1.GenerateRequest"));
  }
  // The server is fine.
  const Result ok = client.Generate(Request(Tokens(9, 20), 3));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.tokens.size(), 3u);
}

TEST(ServiceTest, ClientCancellingMidStreamLeavesNoBlockInUse) {
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  const Result r = client.Generate(Request(Tokens(10, 40), 3000), absl::Seconds(60),
                                   [](grpc::ClientContext& ctx) { ctx.TryCancel(); });
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED);
  const v1::CacheStats stats = client.StatsWhen([](const v1::CacheStats& s) {
    return s.blocks().in_use() == 0 && s.running_requests() == 0;
  });
  EXPECT_EQ(stats.blocks().in_use(), 0);
  EXPECT_EQ(stats.running_requests(), 0);
  EXPECT_GT(stats.blocks().evictable(), 0);  // its prompt stays cached
}

TEST(ServiceTest, DeadlineThatExpiresInTheQueueNeverStarts) {
  auto server = ServerProcess::Start({"--max_running_requests=1", "--max_batch_tokens=64"});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  absl::Notification started, answered;
  std::thread running([&] {
    client.Generate(Request(Tokens(11, 30), 3500), absl::Seconds(60),
                    [&](grpc::ClientContext& ctx) {
                      started.Notify();
                      answered.WaitForNotification();  // hold the only place until then
                      ctx.TryCancel();
                    });
  });
  started.WaitForNotification();
  // With one request running, this one waits in the queue until its deadline passes.
  const int64_t before = client.Stats().query_tokens();
  const Result queued = client.Generate(Request(Tokens(12, 77), 5), absl::Milliseconds(300));
  answered.Notify();
  running.join();
  EXPECT_EQ(queued.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(queued.tokens.empty());
  const v1::CacheStats after = client.StatsWhen(
      [](const v1::CacheStats& s) { return s.running_requests() + s.waiting_requests() == 0; });
  // Admission looks the prompt up in the cache; the expired request never was.
  EXPECT_EQ(after.query_tokens(), before);
}

TEST(ServiceTest, TwoHundredConcurrentStreamsEachEndOnceWithCorrectUsage) {
  auto server = ServerProcess::Start({"--max_running_requests=32", "--max_queued_requests=256"});
  ASSERT_TRUE(server.ok()) << server.status();
  constexpr int kStreams = 200;
  std::vector<Result> results(kStreams);
  std::vector<std::vector<int32_t>> prompts(kStreams);
  std::vector<std::thread> threads;
  Client client((*server)->target());
  for (int i = 0; i < kStreams; ++i) {
    prompts[i] = Concat(Tokens(i % 8, 32), Tokens(1000 + i, 1 + i % 23));
    threads.emplace_back([&, i] { results[i] = client.Generate(Request(prompts[i], 1 + i % 16)); });
  }
  for (std::thread& t : threads) t.join();
  int64_t cached = 0;
  for (int i = 0; i < kStreams; ++i) {
    const Result& r = results[i];
    ASSERT_TRUE(r.status.ok()) << i << ": " << r.status.error_message();
    EXPECT_EQ(r.messages_with_finish_reason, 1) << i;
    EXPECT_EQ(r.usage.prompt_tokens(), static_cast<int>(prompts[i].size())) << i;
    EXPECT_EQ(r.usage.completion_tokens(), 1 + i % 16) << i;
    EXPECT_EQ(static_cast<int>(r.tokens.size()), 1 + i % 16) << i;
    cached += r.usage.cached_tokens();
  }
  EXPECT_GT(cached, 0);
  const v1::CacheStats stats = client.Stats();
  EXPECT_EQ(stats.blocks().in_use(), 0);
  EXPECT_EQ(stats.running_requests() + stats.waiting_requests(), 0);
}

TEST(ServiceTest, AFullQueueSaysResourceExhausted) {
  auto server = ServerProcess::Start(
      {"--max_running_requests=1", "--max_queued_requests=1", "--max_batch_tokens=16"});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  // The scenario holds only while the long request still runs when the others arrive; on a
  // starved machine it may finish first (its 3500 tokens take a few seconds), and then the
  // scenario is run again rather than judged.
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::Notification started, release;
    Result first;
    std::thread running([&] {
      first = client.Generate(Request(Tokens(13, 20), 3500), absl::Seconds(60),
                              [&](grpc::ClientContext& ctx) {
                                started.Notify();
                                release.WaitForNotification();
                                ctx.TryCancel();
                              });
      if (!started.HasBeenNotified()) started.Notify();  // it failed before a first message
    });
    started.WaitForNotification();
    // One waits in the queue; the other three find it full and are answered at once.
    absl::Mutex mu;
    int completed = 0;
    std::vector<Result> results(4);
    std::vector<std::thread> more;
    for (int i = 0; i < 4; ++i) {
      more.emplace_back([&, i] {
        Result r = client.Generate(Request(Tokens(20 + i, 20), 2));
        absl::MutexLock lock(&mu);
        results[i] = std::move(r);
        ++completed;
      });
    }
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(
          +[](int* n) { return *n >= 3; }, &completed));
    }
    release.Notify();  // the running request goes; the queued one runs
    for (std::thread& t : more) t.join();
    running.join();
    if (first.status.error_code() != grpc::StatusCode::CANCELLED) {
      std::printf("attempt %d: the long request ended (%s) before the queue filled; again\n",
                  attempt, first.status.error_message().c_str());
      continue;
    }
    int exhausted = 0;
    for (int i = 0; i < 4; ++i) {
      if (results[i].status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        EXPECT_THAT(results[i].status.error_message(), HasSubstr("queue full"));
        ++exhausted;
      } else {
        EXPECT_TRUE(results[i].status.ok()) << results[i].status.error_message();
      }
    }
    EXPECT_EQ(exhausted, 3);
    return;
  }
  FAIL() << "the long request finished before the queue filled in every attempt";
}

TEST(ServiceTest, SigtermDrainsRunningRequestsThenExitsZero) {
  auto server = ServerProcess::Start({"--shutdown_grace=60s"});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  int health_while_draining = 0;
  Result refused;
  // While a request runs: SIGTERM; health turns NOT_SERVING; a new call is refused.
  const Result drained =
      client.Generate(Request(Tokens(14, 20), 1000), absl::Seconds(120), [&](grpc::ClientContext&) {
        (*server)->Signal(SIGTERM);
        const absl::Time give_up = absl::Now() + absl::Seconds(10);
        while ((health_while_draining = HealthStatus(client.channel())) == 1 &&
               absl::Now() < give_up) {
          absl::SleepFor(absl::Milliseconds(5));
        }
        refused = client.Generate(Request(Tokens(15, 20), 2));
      });
  EXPECT_EQ(health_while_draining, 2) << (*server)->log();  // NOT_SERVING
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << refused.status.error_message();
  // The running request finished normally: all its tokens, finish reason LENGTH.
  EXPECT_TRUE(drained.status.ok()) << drained.status.error_message();
  EXPECT_EQ(drained.tokens.size(), 1000u) << (*server)->log();
  EXPECT_EQ(drained.finish_reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ((*server)->Wait(), 0) << (*server)->log();
}

TEST(ServiceTest, GraceExpiryCancelsWhatIsStillRunning) {
  auto server = ServerProcess::Start({"--shutdown_grace=0s"});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  const Result r = client.Generate(Request(Tokens(16, 20), 3500), absl::Seconds(60),
                                   [&](grpc::ClientContext&) { (*server)->Signal(SIGTERM); });
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.finish_reason, v1::FINISH_REASON_CANCELLED);
  EXPECT_LT(r.tokens.size(), 3500u);
  EXPECT_EQ((*server)->Wait(), 0) << (*server)->log();
}

TEST(ServiceTest, ASecondSignalWhileDrainingExitsAtOnce) {
  auto server = ServerProcess::Start({"--shutdown_grace=120s"});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  std::string log;
  const Result r =
      client.Generate(Request(Tokens(17, 20), 3500), absl::Seconds(120), [&](grpc::ClientContext&) {
        (*server)->Signal(SIGTERM);
        // The second signal must come after the first was handled (pending signals of one
        // kind merge into one): wait for the drain's line in the log.
        const absl::Time give_up = absl::Now() + absl::Seconds(30);
        while ((log = (*server)->log()).find("draining") == std::string::npos &&
               absl::Now() < give_up) {
          absl::SleepFor(absl::Milliseconds(5));
        }
        (*server)->Signal(SIGINT);
      });
  // The operator did not wait for the 120 s grace: the process is gone, and said why.
  EXPECT_EQ((*server)->Wait(), 128 + SIGINT);
  EXPECT_THAT((*server)->log(), ::testing::HasSubstr("second signal while draining"));
  EXPECT_FALSE(r.status.ok() && r.tokens.size() == 3500u);
}

TEST(ServiceTest, APortThatIsTakenIsAnErrorOnEveryPort) {
  auto first = ServerProcess::Start({});
  ASSERT_TRUE(first.ok()) << first.status();
  std::string openai = (*first)->openai_url();  // http://HOST:PORT/v1
  openai = openai.substr(std::string("http://").size());
  openai = openai.substr(0, openai.find('/'));
  for (const std::string& flag :
       {"--listen=" + (*first)->target(), "--http_listen=" + (*first)->http_address(),
        "--openai_listen=" + openai}) {
    auto second = ServerProcess::Start({flag});
    ASSERT_FALSE(second.ok()) << flag << " started a second server on a taken port";
    EXPECT_THAT(second.status().message(), ::testing::HasSubstr("cannot listen")) << flag;
    EXPECT_THAT(second.status().message(), ::testing::HasSubstr("in use")) << flag;
  }
  // The first server is untouched.
  Client client((*first)->target());
  EXPECT_TRUE(client.Generate(Request(Tokens(18, 8), 2)).status.ok());
}

TEST(ServiceTest, HelpExitsZeroAndListsEveryFlag) {
  const std::string command = std::string(PREFIXD_BINARY) + " --help 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) out.append(buffer, n);
  const int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << out;
  for (const char* flag :
       {"--model", "--tokenizer", "--chat_template", "--listen", "--openai_listen", "--request_log",
        "--log_level", "--log_prompts", "--tokens_file", "--shutdown_grace"}) {
    EXPECT_THAT(out, ::testing::HasSubstr(flag)) << out;
  }
}

// An IPv4 address of this machine that is not loopback, or "" when it has none.
std::string NonLoopbackAddress() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* a = list; a != nullptr && found.empty(); a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof(text));
    if (std::string(text).rfind("127.", 0) != 0) found = text;
  }
  freeifaddrs(list);
  return found;
}

TEST(ServiceTest, TheHostKvTierFlagIsCheckedAtStartUp) {
  auto garbled = ServerProcess::Start({"--host_kv_cache_bytes=12x"});
  ASSERT_FALSE(garbled.ok());
  EXPECT_THAT(garbled.status().message(),
              ::testing::HasSubstr("--host_kv_cache_bytes=12x: expected auto, 0, or a size"));
  // More than the machine has: refused, with both figures.
  auto too_big = ServerProcess::Start({"--host_kv_cache_bytes=100000T"});
  ASSERT_FALSE(too_big.ok());
  EXPECT_THAT(too_big.status().message(), ::testing::HasSubstr("is more than this machine's RAM"));
  auto too_small = ServerProcess::Start({"--host_kv_cache_bytes=2K"});
  ASSERT_FALSE(too_small.ok());
  EXPECT_THAT(too_small.status().message(), ::testing::HasSubstr("cannot hold one block"));
  auto server = ServerProcess::Start({"--host_kv_cache_bytes=64M"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->log(), ::testing::HasSubstr("host KV tier 16384 tokens (64.0 MiB"));
}

TEST(ServiceTest, OpenModeStaysOnThisMachineUnlessTheOperatorSaysOtherwise) {
  // Without a tokens file, a non-loopback address is refused at start, saying why.
  auto refused = ServerProcess::Start({"--listen=0.0.0.0:0"});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("--allow_unauthenticated"));
  auto refused_openai = ServerProcess::Start({"--openai_listen=0.0.0.0:0"});
  ASSERT_FALSE(refused_openai.ok());
  EXPECT_THAT(refused_openai.status().message(), ::testing::HasSubstr("--openai_listen"));

  auto server = ServerProcess::Start({"--listen=0.0.0.0:0", "--allow_unauthenticated"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->log(), ::testing::HasSubstr("admin calls"));
  const std::string port = (*server)->target().substr((*server)->target().rfind(':') + 1);
  // From this machine: an admin.
  Client local("127.0.0.1:" + port);
  {
    grpc::ClientContext ctx;
    v1::FlushResponse flushed;
    EXPECT_TRUE(local.cache().Flush(&ctx, v1::FlushRequest(), &flushed).ok());
  }
  const std::string address = NonLoopbackAddress();
  if (address.empty()) GTEST_SKIP() << "this machine has no non-loopback IPv4 address";
  // From another address: generates in the one namespace, but no admin calls.
  Client remote(address + ":" + port);
  EXPECT_TRUE(remote.Generate(Request(Tokens(19, 8), 2)).status.ok());
  grpc::ClientContext ctx;
  v1::FlushResponse flushed;
  EXPECT_EQ(remote.cache().Flush(&ctx, v1::FlushRequest(), &flushed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// Pins as a hostile tenant would use them: quotas per tenant, nesting that costs nothing,
// only one's own pins to undo, the admin's list, unpin-by-id and flush with drop_pins.
TEST(ServiceTest, PinsHaveQuotasOwnersAndAnAdminWhoSeesThemAll) {
  const std::string tokens = WriteTempFile(R"({"tenants": [
      {"name": "hog", "tokens": ["hog-token-0123456789ab"], "shared_namespaces": ["public"],
       "max_pinned_tokens": 64},
      {"name": "other", "tokens": ["other-token-0123456789a"], "shared_namespaces": ["public"]},
      {"name": "root", "tokens": ["root-token-0123456789a"], "admin": true}]})");
  auto server = ServerProcess::Start({"--tokens_file=" + tokens});
  ASSERT_TRUE(server.ok()) << server.status();
  Client hog((*server)->target(), "hog-token-0123456789ab");
  Client other((*server)->target(), "other-token-0123456789a");
  Client root((*server)->target(), "root-token-0123456789a");
  auto pin = [](Client& c, const std::vector<int32_t>& prompt, const std::string& ns,
                v1::PinResponse* out = nullptr) {
    grpc::ClientContext ctx;
    c.Prepare(ctx);
    v1::PinRequest r;
    for (int32_t t : prompt) r.mutable_token_ids()->add_ids(t);
    r.set_shared_namespace(ns);
    v1::PinResponse response;
    grpc::Status s = c.cache().Pin(&ctx, r, &response);
    if (out != nullptr) *out = response;
    return s;
  };
  auto unpin = [](Client& c, const std::vector<int32_t>& prompt, const std::string& ns,
                  uint64_t id = 0) {
    grpc::ClientContext ctx;
    c.Prepare(ctx);
    v1::UnpinRequest r;
    for (int32_t t : prompt) r.mutable_token_ids()->add_ids(t);
    r.set_shared_namespace(ns);
    r.set_pin_id(id);
    v1::UnpinResponse response;
    return c.cache().Unpin(&ctx, r, &response);
  };
  auto list = [&root]() {
    grpc::ClientContext ctx;
    root.Prepare(ctx);
    v1::ListPinsResponse response;
    EXPECT_TRUE(root.cache().ListPins(&ctx, v1::ListPinsRequest(), &response).ok());
    return response;
  };
  const std::vector<int32_t> a = Tokens(30, 64), b = Tokens(31, 64), c = Tokens(32, 40);

  v1::PinResponse first, again;
  ASSERT_TRUE(pin(hog, a, "", &first).ok());
  EXPECT_EQ(first.pinned_tokens(), 64);
  ASSERT_TRUE(pin(hog, a, "", &again).ok());  // nests: no more quota
  EXPECT_EQ(again.pin_id(), first.pin_id());
  const grpc::Status over = pin(hog, b, "");
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.error_message(), HasSubstr("pin quota"));
  // Others are not affected by hog's quota.
  EXPECT_TRUE(pin(other, b, "").ok());
  EXPECT_TRUE(pin(other, c, "public").ok());  // 32 tokens (two full blocks)
  // hog may not undo other's pin in the namespace they share, nor other hog's.
  EXPECT_EQ(unpin(hog, c, "public").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unpin(other, a, "").error_code(), grpc::StatusCode::NOT_FOUND);
  // The admin sees every pin, whose and how long, and may not be a pin's owner to undo it.
  v1::ListPinsResponse pins = list();
  ASSERT_EQ(pins.pins_size(), 3);
  EXPECT_EQ(pins.pins(0).tenant(), "hog");
  EXPECT_EQ(pins.pins(0).count(), 2);
  EXPECT_EQ(pins.pins(0).tokens(), 64);
  EXPECT_EQ(pins.pins(2).namespace_(), "shared:public");
  EXPECT_EQ(pins.pinned_tokens(), 64 + 64 + 32);
  EXPECT_EQ(unpin(hog, {}, "", pins.pins(0).pin_id()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // ids are the admin's
  EXPECT_TRUE(unpin(root, {}, "", pins.pins(0).pin_id()).ok());
  EXPECT_EQ(list().pins_size(), 2);
  EXPECT_TRUE(pin(hog, b, "").ok());  // its quota is free again
  // Non-admins may not list.
  {
    grpc::ClientContext ctx;
    hog.Prepare(ctx);
    v1::ListPinsResponse response;
    EXPECT_EQ(hog.cache().ListPins(&ctx, v1::ListPinsRequest(), &response).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  // Flush keeps pins unless the admin asks; with drop_pins nothing pinned is left.
  grpc::ClientContext keep_ctx;
  root.Prepare(keep_ctx);
  v1::FlushResponse kept;
  ASSERT_TRUE(root.cache().Flush(&keep_ctx, v1::FlushRequest(), &kept).ok());
  EXPECT_EQ(root.Stats().blocks().pinned(), (64 + 64 + 32) / 16);
  grpc::ClientContext drop_ctx;
  root.Prepare(drop_ctx);
  v1::FlushRequest drop;
  drop.set_drop_pins(true);
  v1::FlushResponse dropped;
  ASSERT_TRUE(root.cache().Flush(&drop_ctx, drop, &dropped).ok());
  EXPECT_EQ(dropped.unpinned(), 3);
  EXPECT_EQ(list().pins_size(), 0);
  EXPECT_EQ(root.Stats().blocks().pinned(), 0);
  unlink(tokens.c_str());
}

// A Pin waits in the queue like any request: it cannot skip the queue limit.
TEST(ServiceTest, PinsObeyTheQueueLimit) {
  auto server = ServerProcess::Start(
      {"--max_queued_requests=2", "--max_running_requests=1", "--kv_cache_tokens=262144"});
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->target());
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, queue_full{0}, other{0};
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext ctx;
      v1::PinRequest r;
      for (int32_t t : Tokens(40 + i, 1024)) r.mutable_token_ids()->add_ids(t);
      v1::PinResponse response;
      const grpc::Status s = client.cache().Pin(&ctx, r, &response);
      if (s.ok()) {
        ++ok;
      } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
                 s.error_message().find("queue full") != std::string::npos) {
        ++queue_full;
      } else {
        ++other;
        ADD_FAILURE() << s.error_message();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(queue_full.load(), 1) << "12 concurrent Pins all fit a queue of 2";
  EXPECT_EQ(other.load(), 0);
}

// A tenant over its max_requests gets RESOURCE_EXHAUSTED alone: another tenant's request
// at the same moment is served.
TEST(ServiceTest, ATenantOverItsRequestQuotaIsRefusedAlone) {
  const std::string tokens = WriteTempFile(R"({"tenants": [
      {"name": "greedy", "tokens": ["greedy-token-0123456789"], "max_requests": 2},
      {"name": "calm", "tokens": ["calm-token-0123456789ab"]}]})");
  auto server = ServerProcess::Start({"--tokens_file=" + tokens});
  ASSERT_TRUE(server.ok()) << server.status();
  Client greedy((*server)->target(), "greedy-token-0123456789");
  Client calm((*server)->target(), "calm-token-0123456789ab");
  // Two long requests hold greedy's quota while the rest are tried.
  std::vector<std::thread> holders;
  std::atomic<int> held{0};
  for (int i = 0; i < 2; ++i) {
    holders.emplace_back([&, i] {
      greedy.Generate(Request(Tokens(50 + i, 20), 3000), absl::Seconds(120),
                      [&](grpc::ClientContext& ctx) {
                        ++held;
                        while (held.load() < 100) absl::SleepFor(absl::Milliseconds(5));
                        ctx.TryCancel();
                      });
    });
  }
  while (held.load() < 2) absl::SleepFor(absl::Milliseconds(5));
  const Result over = greedy.Generate(Request(Tokens(60, 20), 2));
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(over.status.error_message(), HasSubstr("max_requests"));
  const Result other = calm.Generate(Request(Tokens(61, 20), 2));
  EXPECT_TRUE(other.status.ok()) << other.status.error_message();
  held = 100;  // let the holders go
  for (std::thread& t : holders) t.join();
  // The quota is free again once the engine has ended them (their cancels are applied
  // asynchronously).
  Result after;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  do {
    after = greedy.Generate(Request(Tokens(62, 20), 2));
  } while (after.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
           absl::Now() < give_up && (absl::SleepFor(absl::Milliseconds(10)), true));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  unlink(tokens.c_str());
}

}  // namespace
}  // namespace prefixd
