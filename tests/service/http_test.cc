// The HTTP side port as an operator uses it: /metrics agrees with what clients saw,
// /healthz and /readyz tell a load balancer the truth, the dashboard's data makes sense
// before and after traffic and never carries a prompt.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/service/observability_util.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::prefixd::testing::GenerateClient;
using ::prefixd::testing::HttpGet;
using ::prefixd::testing::HttpResult;
using ::prefixd::testing::ParseSamples;
using ::prefixd::testing::PollUntil;
using ::prefixd::testing::RandomTokens;
using ::prefixd::testing::ServerProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Json = nlohmann::json;

std::unique_ptr<ServerProcess> StartServer(std::vector<std::string> args = {}) {
  auto server = ServerProcess::Start(std::move(args));
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  EXPECT_FALSE((*server)->http_address().empty()) << "no dashboard line";
  return *std::move(server);
}

TEST(HttpTest, AnswersHealthReadinessAndUnknownPages) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string http = server->http_address();

  const HttpResult health = HttpGet(http, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  const HttpResult ready = HttpGet(http, "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready\n");
  EXPECT_EQ(HttpGet(http, "/no-such-page").status, 404);
  const HttpResult root = HttpGet(http, "/");
  EXPECT_EQ(root.status, 302);
  EXPECT_EQ(root.header("Location"), "/dashboard");
  EXPECT_EQ(server->Stop(), 0);
}

// Tests that end with a gRPC client still connected leave the server to ServerProcess's
// destructor: a drain waits for idle connections of clients that never poll (as these
// synchronous test clients do not) to go away.
TEST(HttpTest, MetricsCountWhatClientsSaw) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  GenerateClient client(server->target());

  // Two requests share a 64-token system prompt; one request is rejected.
  const std::vector<int32_t> system = RandomTokens(1, 64);
  for (int i = 0; i < 2; ++i) {
    const auto r = client.Generate(
        testing::GreedyRequest(testing::Concat(system, RandomTokens(10 + i, 9)), 24));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, 24);
  }
  EXPECT_EQ(client.Generate(testing::GreedyRequest({}, 4)).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  const v1::CacheStats stats = client.Stats();

  const HttpResult res = HttpGet(server->http_address(), "/metrics");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(res.body, HasSubstr("# TYPE prefixd_time_to_first_token_seconds histogram\n"));
  EXPECT_THAT(res.body, HasSubstr("# TYPE prefixd_prefix_cache_hits_tokens_total counter\n"));
  std::map<std::string, double> m = ParseSamples(res.body);

  // Requests by final status, as the clients saw them.
  EXPECT_EQ(m[R"(prefixd_requests_total{code="OK",finish_reason="length"})"], 2);
  EXPECT_EQ(m[R"(prefixd_requests_total{code="INVALID_ARGUMENT",finish_reason="none"})"], 1);
  // Prefix cache: the second request was served 64 tokens from the cache; the numbers agree
  // with GetStats.
  EXPECT_EQ(m[R"(prefixd_prefix_cache_queries_tokens_total{tenant="default"})"],
            stats.query_tokens());
  EXPECT_EQ(m[R"(prefixd_prefix_cache_hits_tokens_total{tenant="default"})"], stats.hit_tokens());
  EXPECT_EQ(stats.hit_tokens(), 64);
  EXPECT_DOUBLE_EQ(m["prefixd_prefix_cache_hit_ratio"], stats.hit_rate());
  EXPECT_EQ(m["prefixd_prefill_tokens_cached_total"], 64);
  EXPECT_EQ(m["prefixd_prefill_tokens_computed_total"], 2 * 73 - 64);
  EXPECT_EQ(m[R"(prefixd_tenant_prompt_tokens_total{tenant="default"})"], 2 * 73);
  EXPECT_EQ(m[R"(prefixd_tenant_cached_tokens_total{tenant="default"})"], 64);
  EXPECT_EQ(m[R"(prefixd_tenant_completion_tokens_total{tenant="default"})"], 2 * 24);
  EXPECT_EQ(m["prefixd_generated_tokens_total"], 2 * 24);
  // Latencies: one first token per request, 23 gaps between 24 tokens.
  EXPECT_EQ(m["prefixd_time_to_first_token_seconds_count"], 2);
  EXPECT_EQ(m[R"(prefixd_time_to_first_token_seconds_bucket{le="+Inf"})"], 2);
  EXPECT_GT(m["prefixd_time_to_first_token_seconds_sum"], 0);
  EXPECT_EQ(m["prefixd_inter_token_latency_seconds_count"], 2 * 23);
  EXPECT_EQ(m["prefixd_request_duration_seconds_count"], 2);
  EXPECT_GE(m["prefixd_request_duration_seconds_sum"],
            m["prefixd_time_to_first_token_seconds_sum"]);
  EXPECT_GT(m["prefixd_engine_step_duration_seconds_count"], 0);
  EXPECT_EQ(m["prefixd_engine_step_batch_tokens_sum"],
            m["prefixd_prefill_tokens_computed_total"] + m["prefixd_generated_tokens_total"] - 2)
      << "every computed token is in some step (the last sampled token of each request is "
         "never fed back)";
  // KV blocks: the states partition the pool; nothing runs, so nothing is in use.
  const double capacity = m["prefixd_kv_capacity_blocks"];
  EXPECT_EQ(capacity, stats.blocks().total());
  EXPECT_EQ(m[R"(prefixd_kv_blocks{state="free"})"] + m[R"(prefixd_kv_blocks{state="evictable"})"] +
                m[R"(prefixd_kv_blocks{state="in_use"})"] +
                m[R"(prefixd_kv_blocks{state="pinned"})"],
            capacity);
  EXPECT_EQ(m[R"(prefixd_kv_blocks{state="evictable"})"], stats.blocks().evictable());
  EXPECT_EQ(m["prefixd_kv_usage_ratio"], 0);
  EXPECT_EQ(m["prefixd_queue_depth_requests"], 0);
  EXPECT_EQ(m["prefixd_running_requests"], 0);
}

TEST(HttpTest, PerTenantMetricsUseTheTokensFilesNames) {
  char path[] = "/tmp/prefixd-tokens-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << R"({"tenants": [
      {"name": "alice", "tokens": ["alice-token-0123456789"]},
      {"name": "bob", "tokens": ["bob-token-0123456789ab"]}]})";
  auto server = StartServer({absl::StrCat("--tokens_file=", path)});
  ASSERT_NE(server, nullptr);
  GenerateClient alice(server->target(), "alice-token-0123456789");
  GenerateClient bob(server->target(), "bob-token-0123456789ab");
  GenerateClient nobody(server->target(), "not-a-token-0123456789");
  const std::vector<int32_t> prompt = RandomTokens(3, 40);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(alice.Generate(testing::GreedyRequest(prompt, 2)).status.ok());
  ASSERT_TRUE(bob.Generate(testing::GreedyRequest(prompt, 2)).status.ok());
  EXPECT_EQ(nobody.Generate(testing::GreedyRequest(prompt, 2)).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  alice.Stats();

  std::map<std::string, double> m = ParseSamples(HttpGet(server->http_address(), "/metrics").body);
  // Tenants never share: bob's first request is a miss although alice cached the prompt.
  // (A request looks up all of its prompt but the last token, which must be computed.)
  EXPECT_EQ(m[R"(prefixd_prefix_cache_queries_tokens_total{tenant="alice"})"], 3 * 39);
  EXPECT_EQ(m[R"(prefixd_prefix_cache_hits_tokens_total{tenant="alice"})"], 2 * 32);
  EXPECT_EQ(m[R"(prefixd_prefix_cache_queries_tokens_total{tenant="bob"})"], 39);
  EXPECT_EQ(m[R"(prefixd_prefix_cache_hits_tokens_total{tenant="bob"})"], 0);
  EXPECT_EQ(m[R"(prefixd_tenant_requests_total{tenant="alice"})"], 3);
  EXPECT_EQ(m[R"(prefixd_tenant_requests_total{tenant="bob"})"], 1);
  EXPECT_EQ(m[R"(prefixd_requests_total{code="UNAUTHENTICATED",finish_reason="none"})"], 1);
  unlink(path);
}

TEST(HttpTest, DashboardShowsSensibleDataBeforeAnyTraffic) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const HttpResult page = HttpGet(server->http_address(), "/dashboard");
  ASSERT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, StartsWith("text/html"));
  EXPECT_THAT(page.body, HasSubstr("data-points"));
  // Self-contained: nothing from another origin (no CDN, no external font), and the
  // browser is told so.
  EXPECT_THAT(page.body, Not(HasSubstr("://")));
  EXPECT_THAT(page.body, Not(HasSubstr("<script src")));
  EXPECT_THAT(page.header("Content-Security-Policy"), HasSubstr("default-src 'none'"));

  const HttpResult data = HttpGet(server->http_address(), "/dashboard/data.json");
  ASSERT_EQ(data.status, 200);
  EXPECT_EQ(data.content_type, "application/json");
  EXPECT_THAT(data.body, Not(HasSubstr("NaN")));
  const Json j = Json::parse(data.body);
  EXPECT_FALSE(j["totals"]["traffic"].get<bool>());
  EXPECT_TRUE(j["totals"]["hit_rate"].is_null());
  EXPECT_GE(j["series"]["t"].size(), 1u) << "a sample is taken at start-up";
  EXPECT_TRUE(j["series"]["hit_rate"].back().is_null());
  EXPECT_EQ(j["series"]["kv_free"].back(), j["server"]["kv_capacity_blocks"]);
  EXPECT_EQ(j["series"]["generated_per_s"].back(), 0);
  EXPECT_TRUE(j["tenants"].empty());
  EXPECT_TRUE(j["hot_prefixes"].empty());
  EXPECT_EQ(server->Stop(), 0);
}

TEST(HttpTest, DashboardDataFollowsTrafficAndNeverCarriesThePrompt) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  GenerateClient client(server->target());
  const std::string secret =
      "Confidential system prompt of a tenant: the quick brown fox jumps over the lazy dog "
      "while the old library by the river keeps its secrets. ";
  for (int i = 0; i < 3; ++i) {
    v1::GenerateRequest r;
    r.set_text(absl::StrCat(secret, "Question number ", i, "?"));
    r.mutable_sampling()->set_max_tokens(4);
    ASSERT_TRUE(client.Generate(r).status.ok());
  }
  const std::string http = server->http_address();
  Json j;
  // The sampler runs once a second and the hottest prefixes are refreshed asynchronously.
  ASSERT_TRUE(PollUntil([&] {
    j = Json::parse(HttpGet(http, "/dashboard/data.json").body);
    const Json& s = j["series"];
    return !j["hot_prefixes"].empty() && !s["hit_rate"].back().is_null() &&
           s["tokens_saved"].back().get<int64_t>() > 0;
  })) << j.dump(2);
  EXPECT_TRUE(j["totals"]["traffic"].get<bool>());
  EXPECT_EQ(j["totals"]["requests"], 3);
  EXPECT_EQ(j["totals"]["cancelled_or_failed"], 0);
  // A hot prefix's age on the page counts from its last hit.
  EXPECT_LE(j["hot_prefixes"][0]["last_hit_s"].get<double>(),
            j["hot_prefixes"][0]["age_s"].get<double>());
  EXPECT_GT(j["series"]["hit_rate"].back().get<double>(), 0);
  ASSERT_EQ(j["tenants"].size(), 1u);
  EXPECT_EQ(j["tenants"][0]["name"], "default");
  EXPECT_GT(j["tenants"][0]["hit_tokens"].get<int64_t>(), 0);
  const Json& hottest = j["hot_prefixes"][0];
  EXPECT_EQ(hottest["namespace"], "default");
  EXPECT_EQ(hottest["hits"], 2) << "the 2nd and 3rd requests reused the first one's prefix";
  EXPECT_GT(hottest["tokens"].get<int64_t>(), 0);
  EXPECT_EQ(hottest["tokens"].get<int64_t>() % 16, 0) << "whole blocks";
  EXPECT_GE(hottest["age_s"].get<double>(), 0);
  // Never the prompt: no text, no token ids.
  const std::string body = j.dump();
  EXPECT_THAT(body, Not(HasSubstr("quick brown")));
  EXPECT_THAT(body, Not(HasSubstr("token_ids")));

  // ?since= returns only later samples.
  const int64_t last_t = j["series"]["t"].back();
  const Json later =
      Json::parse(HttpGet(http, absl::StrCat("/dashboard/data.json?since=", last_t)).body);
  for (const Json& t : later["series"]["t"]) EXPECT_GT(t.get<int64_t>(), last_t);
  EXPECT_EQ(HttpGet(http, "/dashboard/data.json?since=yesterday").status, 400);
}

TEST(HttpTest, ReadyzSaysNotReadyWhileDraining) {
  auto server = StartServer({"--shutdown_grace=60s"});
  ASSERT_NE(server, nullptr);
  const std::string http = server->http_address();
  // A stream whose reader stalls after its first message keeps the server draining until
  // the test lets the reader cancel it.
  absl::Notification started, cancel;
  std::thread request([&] {
    GenerateClient client(server->target());
    client.Generate(testing::GreedyRequest(RandomTokens(5, 16), 3000),
                    [&](grpc::ClientContext& ctx) {
                      started.Notify();
                      cancel.WaitForNotification();
                      ctx.TryCancel();
                    });
  });
  started.WaitForNotification();
  server->Signal(SIGTERM);
  EXPECT_TRUE(PollUntil([&] { return HttpGet(http, "/readyz").status == 503; }));
  EXPECT_EQ(HttpGet(http, "/readyz").body, "not ready: draining\n");
  // Alive, and still scrapable while it drains.
  EXPECT_EQ(HttpGet(http, "/healthz").status, 200);
  EXPECT_EQ(HttpGet(http, "/metrics").status, 200);
  cancel.Notify();
  request.join();
  EXPECT_EQ(server->Wait(), 0);
}

TEST(HttpTest, PortCanBeTurnedOffAndBadAddressesFailAtStart) {
  auto off = ServerProcess::Start({"--http_listen="});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE((*off)->http_address().empty());
  {
    GenerateClient client((*off)->target());
    EXPECT_TRUE(client.Generate(testing::GreedyRequest(RandomTokens(1, 8), 2)).status.ok());
  }
  EXPECT_EQ((*off)->Stop(), 0);

  auto bad = ServerProcess::Start({"--http_listen=localhost"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("is not HOST:PORT"));

  // A port that is taken: the second server says so and exits.
  auto first = StartServer();
  ASSERT_NE(first, nullptr);
  auto second = ServerProcess::Start({"--http_listen=" + first->http_address()});
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("cannot listen on"));
  EXPECT_EQ(first->Stop(), 0);
}

// A connected socket to HOST:PORT, or -1.
int Connect(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(HttpTest, SlowClientsCannotHoldTheProbesAndRangesAreNotServed) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string http = server->http_address();
  // 64 clients that send part of a request line and then trickle a byte now and then (the
  // old side port had four workers: four such clients held it for a minute).
  std::vector<int> slow;
  for (int i = 0; i < 64; ++i) {
    const int fd = Connect(http);
    ASSERT_GE(fd, 0);
    const std::string partial = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: a";
    ASSERT_EQ(write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
    slow.push_back(fd);
  }
  for (int round = 0; round < 3; ++round) {
    for (int fd : slow) (void)!write(fd, "b", 1);
    EXPECT_EQ(HttpGet(http, "/healthz").status, 200);
    EXPECT_EQ(HttpGet(http, "/readyz").status, 200);
    EXPECT_EQ(HttpGet(http, "/metrics").status, 200);
  }
  // A trickling client is cut off at its request deadline (a few seconds), not served.
  char byte = 0;
  const ssize_t n = read(slow[0], &byte, 1);  // blocks until the server closes or answers
  EXPECT_EQ(n, 0) << "a client past its request deadline is closed without an answer";
  for (int fd : slow) close(fd);

  // A thousand ranges: the whole page once (200), never a multipart answer larger than it.
  const HttpResult page = HttpGet(http, "/dashboard");
  ASSERT_EQ(page.status, 200);
  std::string ranges = "bytes=0-0";
  for (int i = 1; i < 1000; ++i) absl::StrAppend(&ranges, ",0-", i);
  const size_t colon = http.rfind(':');
  httplib::Client client(http.substr(0, colon), std::stoi(http.substr(colon + 1)));
  auto ranged = client.Get("/dashboard", {{"Range", ranges}});
  ASSERT_TRUE(ranged);
  EXPECT_EQ(ranged->status, 200);
  EXPECT_EQ(ranged->body.size(), page.body.size());
  // Only GET.
  auto posted = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 405);
  EXPECT_EQ(server->Stop(), 0);
}

}  // namespace
}  // namespace prefixd
