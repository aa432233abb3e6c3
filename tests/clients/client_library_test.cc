// The C++ client library against nothing, then against a live prefixd.
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "clients/cpp/call_handle.h"
#include "clients/cpp/prefixd_client.h"
#include "gtest/gtest.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

// A target nobody listens on, without racing for a TCP port.
constexpr char kNowhere[] = "unix:/nonexistent/prefixd-client-test.sock";

ClientOptions Target(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return options;
}

TEST(ClientWithoutServerTest, UnreachableServerIsUnavailable) {
  PrefixdClient client(Target(kNowhere));
  v1::GenerateRequest request;
  request.set_text("hello");
  int responses = 0;
  absl::Status status = client.Generate(request, [&](const v1::GenerateResponse&) { ++responses; });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(responses, 0);
  EXPECT_EQ(client.GetStats().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.CheckHealth().status().code(), absl::StatusCode::kUnavailable);
}

TEST(ClientWithoutServerTest, CancelBeforeStartReturnsCancelledAtOnce) {
  PrefixdClient client(Target(kNowhere));
  CallHandle handle;
  handle.Cancel();
  v1::GenerateRequest request;
  request.set_text("hello");
  EXPECT_EQ(client
                .Generate(
                    request, [](const v1::GenerateResponse&) {}, &handle)
                .code(),
            absl::StatusCode::kCancelled);
  CallHandle watch_handle;
  watch_handle.Cancel();
  EXPECT_EQ(client.WatchEvents([](const v1::CacheEvent&) {}, &watch_handle).code(),
            absl::StatusCode::kCancelled);
}

class ClientLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::Start({});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = std::make_unique<PrefixdClient>(Target(server_->target()));
  }

  static v1::GenerateRequest Greedy(const std::string& text, int max_tokens) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_sampling()->set_temperature(0);
    request.mutable_sampling()->set_max_tokens(max_tokens);
    request.mutable_sampling()->set_ignore_eos(true);
    return request;
  }

  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<PrefixdClient> client_;
};

TEST_F(ClientLiveTest, GenerateStreamsTokensThenUsage) {
  std::vector<v1::GenerateResponse> responses;
  absl::Status status =
      client_->Generate(Greedy("The quick brown fox jumps over the lazy dog.", 8),
                        [&](const v1::GenerateResponse& r) { responses.push_back(r); });
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_FALSE(responses.empty());
  int tokens = 0;
  for (const v1::GenerateResponse& r : responses) tokens += r.token_ids_size();
  EXPECT_EQ(tokens, 8);
  const v1::GenerateResponse& last = responses.back();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.usage().completion_tokens(), 8);
  EXPECT_GT(last.usage().prompt_tokens(), 0);
  for (size_t i = 0; i + 1 < responses.size(); ++i) {
    EXPECT_EQ(responses[i].finish_reason(), v1::FINISH_REASON_UNSPECIFIED) << "only the last";
  }
}

TEST_F(ClientLiveTest, CancelledGenerateReturnsCancelledPromptly) {
  // Long enough that it cannot finish on its own during the test.
  const int max_tokens = 3000;
  CallHandle handle;
  absl::Notification first_response;
  std::thread canceller([&] {
    first_response.WaitForNotification();
    handle.Cancel();
  });
  int tokens = 0;
  absl::Status status = client_->Generate(
      Greedy("Tell me a very long story.", max_tokens),
      [&](const v1::GenerateResponse& r) {
        tokens += r.token_ids_size();
        if (!first_response.HasBeenNotified()) first_response.Notify();
      },
      &handle);
  if (!first_response.HasBeenNotified()) first_response.Notify();  // lets the thread end
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_LT(tokens, max_tokens) << "the stream ended because of the cancel, not on its own";

  // The server is none the worse: the next request is served in full.
  int next_tokens = 0;
  ASSERT_TRUE(
      client_
          ->Generate(Greedy("And a short one.", 4),
                     [&](const v1::GenerateResponse& r) { next_tokens += r.token_ids_size(); })
          .ok());
  EXPECT_EQ(next_tokens, 4);
}

TEST_F(ClientLiveTest, TokenizeAndDetokenizeTextAndChat) {
  v1::TokenizeRequest text;
  text.set_text("The quick brown fox");
  absl::StatusOr<v1::TokenizeResponse> tokens = client_->Tokenize(text);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->prompt_text(), "The quick brown fox");
  ASSERT_GT(tokens->token_ids_size(), 0);

  v1::DetokenizeRequest detokenize;
  *detokenize.mutable_token_ids() = tokens->token_ids();
  detokenize.set_skip_special_tokens(true);
  absl::StatusOr<v1::DetokenizeResponse> back = client_->Detokenize(detokenize);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->text(), "The quick brown fox") << "BOS left out";

  // A conversation: Tokenize gives exactly the prompt Generate runs.
  v1::Conversation chat;
  v1::ChatMessage* user = chat.add_messages();
  user->set_role("user");
  user->set_text("Hello there");
  v1::TokenizeRequest tokenize_chat;
  *tokenize_chat.mutable_chat() = chat;
  absl::StatusOr<v1::TokenizeResponse> rendered = client_->Tokenize(tokenize_chat);
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_NE(rendered->prompt_text().find("Hello there"), std::string::npos)
      << rendered->prompt_text();
  v1::GenerateRequest generate = Greedy("", 2);
  *generate.mutable_chat() = chat;
  int prompt_tokens = -1;
  ASSERT_TRUE(client_
                  ->Generate(generate,
                             [&](const v1::GenerateResponse& r) {
                               if (r.has_usage()) prompt_tokens = r.usage().prompt_tokens();
                             })
                  .ok());
  EXPECT_EQ(prompt_tokens, rendered->token_ids_size());
}

TEST_F(ClientLiveTest, HealthAndStats) {
  absl::StatusOr<ServingStatus> health = client_->CheckHealth();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);

  absl::StatusOr<v1::CacheStats> stats = client_->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const v1::BlockCounts& b = stats->blocks();
  EXPECT_GT(b.total(), 0);
  EXPECT_EQ(b.free() + b.evictable() + b.in_use(), b.total());
}

TEST_F(ClientLiveTest, PinUnpinAndFlush) {
  const std::string prefix(200, 'a');  // well over one block of tokens
  v1::PinRequest pin;
  pin.set_text(prefix);
  absl::StatusOr<v1::PinResponse> pinned = client_->Pin(pin);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_GT(pinned->pinned_tokens(), 0);
  EXPECT_EQ(pinned->computed_tokens(), pinned->pinned_tokens()) << "nothing was cached yet";

  v1::UnpinRequest unpin;
  unpin.set_text(prefix);
  absl::StatusOr<v1::UnpinResponse> unpinned = client_->Unpin(unpin);
  ASSERT_TRUE(unpinned.ok()) << unpinned.status();
  EXPECT_EQ(unpinned->unpinned_tokens(), pinned->pinned_tokens());

  absl::StatusOr<v1::FlushResponse> flushed = client_->Flush();
  ASSERT_TRUE(flushed.ok()) << flushed.status();
  EXPECT_GT(flushed->freed_blocks(), 0) << "the unpinned prefix was cached and unused";
}

TEST_F(ClientLiveTest, WatchSeesSnapshotThenStoredBlocksUntilCancelled) {
  CallHandle handle;
  absl::Notification snapshot_done, stored;
  absl::Status watch_status;
  std::thread watcher([&] {
    watch_status = client_->WatchEvents(
        [&](const v1::CacheEvent& e) {
          if (e.has_snapshot_done() && !snapshot_done.HasBeenNotified()) snapshot_done.Notify();
          if (e.has_stored() && snapshot_done.HasBeenNotified() && !stored.HasBeenNotified()) {
            stored.Notify();
          }
        },
        &handle);
    // Whatever happened, do not leave the main thread waiting.
    if (!snapshot_done.HasBeenNotified()) snapshot_done.Notify();
    if (!stored.HasBeenNotified()) stored.Notify();
  });
  snapshot_done.WaitForNotification();
  ASSERT_TRUE(
      client_->Generate(Greedy(std::string(100, 'b'), 2), [](const v1::GenerateResponse&) {}).ok());
  // A bound for a broken server, not a timing: the event normally comes at once.
  const bool saw_stored = stored.WaitForNotificationWithTimeout(absl::Minutes(1));
  handle.Cancel();
  watcher.join();
  EXPECT_TRUE(saw_stored);
  EXPECT_EQ(watch_status.code(), absl::StatusCode::kCancelled) << watch_status;
}

}  // namespace
}  // namespace prefixd
