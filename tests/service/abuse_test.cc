// What a misbehaving client, or a changing disk, can do to the server: nothing to anyone
// else. A ping flood is cut off, clients that never read cost bounded memory, a watcher
// that never reads is dropped, and model files that change after start do not matter.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cpp/prefixd_client.h"
#include "gmock/gmock.h"
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

v1::GenerateRequest Request(int seed, int prompt_len, int max_tokens) {
  v1::GenerateRequest r;
  for (int i = 0; i < prompt_len; ++i) r.mutable_token_ids()->add_ids((seed * 31 + i * 7) % 500);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

// One greedy generation through the client library; its text and status.
std::pair<absl::Status, std::string> Generate(const std::string& target,
                                              const v1::GenerateRequest& r) {
  ClientOptions o;
  o.target = target;
  o.deadline = absl::Seconds(60);
  PrefixdClient client(o);
  std::string text;
  absl::Status s = client.Generate(r, [&](const v1::GenerateResponse& m) { text += m.text(); });
  return {s, text};
}

int Port(const std::string& target) { return std::stoi(target.substr(target.rfind(':') + 1)); }

// A raw HTTP/2 client: the connection preface, SETTINGS, then PING frames as fast as the
// socket takes them, while reading what the server sends. True once the server answers
// with GOAWAY (or closes the connection).
bool PingFloodGetsGoaway(int port, int pings) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return false;
  std::string out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  out += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // SETTINGS, empty
  const std::string ping(
      "\x00\x00\x08\x06\x00\x00\x00\x00\x00"
      "pingpong",
      17);
  for (int i = 0; i < pings; ++i) out += ping;
  bool goaway = false;
  size_t sent = 0;
  std::string in;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!goaway && absl::Now() < give_up) {
    pollfd p{fd, static_cast<short>(POLLIN | (sent < out.size() ? POLLOUT : 0)), 0};
    if (poll(&p, 1, 100) < 0) break;
    if ((p.revents & POLLOUT) && sent < out.size()) {
      const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += n;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        goaway = true;  // the server closed the connection
        break;
      }
      in.append(buf, n);
      // Walk the frames received so far looking for GOAWAY (type 7).
      size_t at = 0;
      while (in.size() - at >= 9) {
        const size_t len = (static_cast<uint8_t>(in[at]) << 16) |
                           (static_cast<uint8_t>(in[at + 1]) << 8) |
                           static_cast<uint8_t>(in[at + 2]);
        if (in.size() - at < 9 + len) break;
        if (static_cast<uint8_t>(in[at + 3]) == 7) goaway = true;
        at += 9 + len;
      }
      in.erase(0, at);
    }
  }
  close(fd);
  return goaway;
}

TEST(AbuseTest, APingFloodIsCutOffAndEveryoneElseIsServed) {
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(PingFloodGetsGoaway(Port((*server)->target()), 10000));
  const auto [status, text] = Generate((*server)->target(), Request(1, 20, 4));
  EXPECT_TRUE(status.ok()) << status;
}

TEST(AbuseTest, ClientsThatNeverReadCostBoundedMemory) {
  constexpr int kStreams = 64;
  // One batch slot more than the stalled streams, so the well-behaved client below runs beside
  // them rather than queueing behind 64 × 500 tokens (which on a slow CI machine outlasts its
  // deadline and would test the scheduler, not memory).
  auto server = ServerProcess::Start({absl::StrCat("--max_running_requests=", kStreams + 1)});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->target(), grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  constexpr int kTokens = 500;
  auto open_streams =
      [&](std::vector<std::unique_ptr<grpc::ClientContext>>& contexts,
          std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>>& readers) {
        for (int i = 0; i < kStreams; ++i) {
          contexts.push_back(std::make_unique<grpc::ClientContext>());
          readers.push_back(stub->Generate(contexts.back().get(), Request(100 + i, 20, kTokens)));
        }
      };
  // Warm-up: the same load read to the end, so the KV pool's pages and the allocators' arenas
  // are resident before the baseline is taken.
  {
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> readers;
    open_streams(contexts, readers);
    for (auto& reader : readers) {
      v1::GenerateResponse response;
      while (reader->Read(&response)) {
      }
      EXPECT_TRUE(reader->Finish().ok());
    }
  }
  const int64_t before = RssKb((*server)->pid());
  // The same streams again, never read: the server's updates for each merge into one pending
  // message once gRPC's flow-control window is full.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> readers;
  open_streams(contexts, readers);
  // Meanwhile a well-behaved client is served.
  const auto [status, text] = Generate((*server)->target(), Request(1, 20, 8));
  EXPECT_TRUE(status.ok()) << status;
  // Wait until the engine has generated everything (bounded poll of GetStats).
  auto cache = v1::Cache::NewStub(channel);
  v1::CacheStats stats;
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  do {
    absl::SleepFor(absl::Milliseconds(50));
    grpc::ClientContext ctx;
    ASSERT_TRUE(cache->GetStats(&ctx, v1::GetStatsRequest(), &stats).ok());
  } while (stats.running_requests() + stats.waiting_requests() > 0 && absl::Now() < give_up);
  EXPECT_EQ(stats.running_requests() + stats.waiting_requests(), 0);
  const int64_t after = RssKb((*server)->pid());
  // 64 × 500 tokens of pending text and ids is a few MiB; allow generous slack.
  if (!kAddressSanitizer) {  // ASan's quarantine keeps freed memory resident
    EXPECT_LT(after - before, 32 * 1024) << "RSS grew from " << before << " to " << after << " KiB";
  }
  for (auto& ctx : contexts) ctx->TryCancel();
  for (auto& reader : readers) reader->Finish();
}

TEST(AbuseTest, AWatcherThatNeverReadsIsDroppedNotTheServer) {
  auto server = ServerProcess::Start(
      {"--watch_queue_events=20", "--kv_cache_tokens=1024", "--max_running_requests=8"});
  ASSERT_TRUE(server.ok()) << server.status();
  // A small receive window: the server can put only a few events on the wire before they
  // queue up on its side.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel =
      grpc::CreateCustomChannel((*server)->target(), grpc::InsecureChannelCredentials(), args);
  auto cache = v1::Cache::NewStub(channel);
  grpc::ClientContext ctx;
  auto watch = cache->WatchEvents(&ctx, v1::WatchEventsRequest());
  // Traffic that stores and evicts many blocks, while the watcher reads nothing.
  for (int i = 0; i < 120; ++i) {
    const auto [status, text] = Generate((*server)->target(), Request(i, 64, 2));
    ASSERT_TRUE(status.ok()) << status;
  }
  v1::CacheEvent event;
  int read = 0;
  while (watch->Read(&event)) ++read;
  const grpc::Status dropped = watch->Finish();
  EXPECT_EQ(dropped.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << dropped.error_message();
  EXPECT_THAT(dropped.error_message(), ::testing::HasSubstr("fell more than 20 events behind"));
  const auto [status, text] = Generate((*server)->target(), Request(999, 20, 2));
  EXPECT_TRUE(status.ok()) << status;
}

TEST(AbuseTest, ModelFilesThatChangeOrVanishAfterStartDoNotMatter) {
  char dir[] = "/tmp/prefixd-model-XXXXXX";
  const std::filesystem::path model(mkdtemp(dir));
  std::filesystem::copy(PREFIXD_TEST_MODEL_DIR, model, std::filesystem::copy_options::recursive);
  auto server = ServerProcess::Start({"--model=" + model.string()});
  ASSERT_TRUE(server.ok()) << server.status();
  v1::GenerateRequest text_prompt = Request(0, 0, 12);
  text_prompt.set_text("The river by the library");
  const auto [before_status, before] = Generate((*server)->target(), text_prompt);
  ASSERT_TRUE(before_status.ok()) << before_status;
  // Truncate the weights, scribble over the config, delete the tokenizer.
  std::filesystem::resize_file(model / "model.safetensors", 100);
  std::ofstream(model / "config.json") << "not json";
  std::filesystem::remove(model / "tokenizer.json");
  const auto [after_status, after] = Generate((*server)->target(), text_prompt);
  ASSERT_TRUE(after_status.ok()) << after_status;
  EXPECT_EQ(after, before);
  EXPECT_EQ((*server)->Stop(), 0);
  std::filesystem::remove_all(model);
}

}  // namespace
}  // namespace prefixd
