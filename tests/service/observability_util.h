// Helpers for the tests of prefixd's HTTP side port: a minimal gRPC client that sends
// Generate requests, an HTTP GET, a /metrics parser, and a bounded poll.
#ifndef PREFIXD_TESTS_SERVICE_OBSERVABILITY_UTIL_H_
#define PREFIXD_TESTS_SERVICE_OBSERVABILITY_UTIL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "prefixd/v1/cache.grpc.pb.h"
#include "prefixd/v1/generation.grpc.pb.h"

namespace prefixd::testing {

inline std::vector<int32_t> RandomTokens(int seed, int n) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& id : t) id = static_cast<int32_t>(rng() % 500);
  return t;
}

inline std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Greedy, ignore_eos: exactly `max_tokens` tokens come back.
inline v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest r;
  for (int32_t t : prompt) r.mutable_token_ids()->add_ids(t);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

struct GenerateResult {
  grpc::Status status;
  int tokens = 0;
  v1::Usage usage;
};

class GenerateClient {
 public:
  explicit GenerateClient(const std::string& target, std::string token = "")
      : channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
        generation_(v1::Generation::NewStub(channel_)),
        cache_(v1::Cache::NewStub(channel_)),
        token_(std::move(token)) {}

  // Streams one Generate to the end; `after_first` runs once the first message arrived
  // (e.g. to cancel the call through its context).
  GenerateResult Generate(const v1::GenerateRequest& request,
                          std::function<void(grpc::ClientContext&)> after_first = nullptr) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    GenerateResult r;
    auto reader = generation_->Generate(&ctx, request);
    v1::GenerateResponse m;
    bool first = true;
    while (reader->Read(&m)) {
      r.tokens += m.token_ids_size();
      if (m.has_usage()) r.usage = m.usage();
      if (first && after_first) after_first(ctx);
      first = false;
    }
    r.status = reader->Finish();
    return r;
  }

  // GetStats; also makes the engine publish fresh stats (what /metrics reads).
  v1::CacheStats Stats() {
    grpc::ClientContext ctx;
    Prepare(ctx);
    v1::CacheStats stats;
    grpc::Status s = cache_->GetStats(&ctx, v1::GetStatsRequest(), &stats);
    if (!s.ok()) ADD_FAILURE() << "GetStats: " << s.error_message();
    return stats;
  }

 private:
  void Prepare(grpc::ClientContext& ctx) {
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Cache::Stub> cache_;
  std::string token_;
};

struct HttpResult {
  int status = 0;  // 0: no connection
  std::string body;
  std::string content_type;
  httplib::Headers headers;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// GET http://<address><path>, address as HOST:PORT.
inline HttpResult HttpGet(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  int port = 0;
  (void)absl::SimpleAtoi(address.substr(colon + 1), &port);
  httplib::Client client(address.substr(0, colon), port);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(10, 0);
  HttpResult out;
  if (auto res = client.Get(path.c_str())) {
    out.status = res->status;
    out.body = res->body;
    out.content_type = res->get_header_value("Content-Type");
    out.headers = res->headers;
  }
  return out;
}

// The samples of a text exposition: "name{labels}" (as written) -> value. Comments skipped.
inline std::map<std::string, double> ParseSamples(const std::string& text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double v = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtod(line.substr(space + 1), &v)) {
      ADD_FAILURE() << "malformed sample line: " << line;
      continue;
    }
    samples[std::string(line.substr(0, space))] = v;
  }
  return samples;
}

// Polls `done` until it holds or `limit` passes; returns its last answer.
inline bool PollUntil(const std::function<bool()>& done, absl::Duration limit = absl::Seconds(20),
                      absl::Duration every = absl::Milliseconds(50)) {
  const absl::Time give_up = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(every);
  }
  return true;
}

// The server flags of a host-tier test: a 16-block device pool and a 64-block host tier
// (the test model's block is 64 KiB).
inline std::vector<std::string> HostTierServerFlags() {
  return {"--kv_cache_tokens=256", "--max_running_requests=4", "--host_kv_cache_bytes=4M"};
}

// On such a server: a prompt, four others that push it to the host tier, then the first
// again, promoted. Returns the stats after.
inline v1::CacheStats DemoteAndPromote(GenerateClient& client) {
  for (int seed : {1, 2, 3, 4, 5, 1}) {
    const GenerateResult r = client.Generate(GreedyRequest(RandomTokens(seed, 64), 2));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  const v1::CacheStats stats = client.Stats();
  EXPECT_GT(stats.promoted_blocks(), 0);
  return stats;
}

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_SERVICE_OBSERVABILITY_UTIL_H_
