// clients/cpp/prefixd_client.h — a blocking C++ client for prefixd's gRPC API.
//
//   prefixd::ClientOptions options;
//   options.target = "127.0.0.1:50051";
//   prefixd::PrefixdClient client(options);
//   prefixd::v1::GenerateRequest request;
//   request.set_text("Hello");
//   absl::Status status = client.Generate(request, [](const prefixd::v1::GenerateResponse& r) {
//     std::cout << r.text() << std::flush;
//   });
//
// Every error is an absl::Status whose code is the call's gRPC status code (the two enums
// share their values) and whose message is the server's message.
#ifndef PREFIXD_CLIENTS_CPP_PREFIXD_CLIENT_H_
#define PREFIXD_CLIENTS_CPP_PREFIXD_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cpp/call_handle.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "prefixd/v1/cache.grpc.pb.h"
#include "prefixd/v1/generation.grpc.pb.h"

namespace grpc {
class Channel;
class ChannelCredentials;
class ClientContext;
class Status;
}  // namespace grpc

namespace prefixd {

struct ClientOptions {
  // gRPC target: "host:port", "dns:///host:port", "unix:/path".
  std::string target = "127.0.0.1:50051";
  // Sent as `authorization: Bearer <token>` on every call when not empty.
  std::string bearer_token;
  // Per call, from the moment it starts. WatchEvents ignores it (it runs until cancelled).
  absl::Duration deadline = absl::InfiniteDuration();
  // TLS: set tls_ca_file (the CA that signed the server's certificate) to connect over TLS;
  // add a client certificate and key for mutual TLS. All PEM.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Generate, Pin and Unpin send the prompt's `x-prefix-key` (prefix_key.h), so a proxy in
  // front of several replicas keeps requests that share a prefix on one replica.
  bool send_prefix_key = true;
};

// The credentials `options` ask for: insecure, TLS, or mutual TLS. Errors name the file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientOptions& options);

using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

// Thread-safe: calls may run concurrently from several threads over one channel.
class PrefixdClient {
 public:
  using ResponseCallback = std::function<void(const v1::GenerateResponse&)>;
  using EventCallback = std::function<void(const v1::CacheEvent&)>;

  // Opens a channel to options.target (connects lazily, on the first call). With TLS files,
  // check them first with MakeChannelCredentials: an unreadable one here is a crash.
  explicit PrefixdClient(ClientOptions options);
  // Uses `channel` as given (tests, TLS, custom channel arguments).
  PrefixdClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options);

  // Streams one completion: `on_response` runs on the calling thread for every message, in
  // order. Returns the call's final status: OK after the last message (the one with
  // finish_reason and usage), or the error. `handle`, if given, may cancel the call from
  // another thread; the call then returns CANCELLED.
  absl::Status Generate(const v1::GenerateRequest& request, const ResponseCallback& on_response,
                        CallHandle* handle = nullptr) const;

  // The prompt a GenerateRequest with the same `prompt` would run: the rendered text (for a
  // conversation) and its token ids. Detokenize turns token ids back into text.
  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request) const;
  absl::StatusOr<v1::DetokenizeResponse> Detokenize(const v1::DetokenizeRequest& request) const;

  absl::StatusOr<v1::CacheStats> GetStats() const;
  absl::StatusOr<v1::PinResponse> Pin(const v1::PinRequest& request) const;
  absl::StatusOr<v1::UnpinResponse> Unpin(const v1::UnpinRequest& request) const;
  absl::StatusOr<v1::FlushResponse> Flush(bool drop_pins = false) const;
  absl::StatusOr<v1::ListPinsResponse> ListPins() const;

  // grpc.health.v1.Health/Check. `service` empty: the server as a whole.
  absl::StatusOr<ServingStatus> CheckHealth(const std::string& service = "") const;

  // Streams cache events to `on_event` (on the calling thread) until the server ends the
  // stream or `handle` cancels it (then returns CANCELLED). No deadline applies.
  absl::Status WatchEvents(const EventCallback& on_event, CallHandle* handle) const;

  // For callers that drive calls with gRPC's async or callback API (prefix-bench): the stub,
  // and a context prepared as this client prepares its own (token, deadline, and
  // `prefix_key` when not empty and options().send_prefix_key).
  v1::Generation::Stub* generation_stub() const { return generation_.get(); }
  void PrepareContext(grpc::ClientContext* context, const std::string& prefix_key = "") const;

  const ClientOptions& options() const { return options_; }

 private:
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Cache::Stub> cache_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// grpc::Status → absl::Status with the same code and message; a stream cut before the
// server's status (gRPC's UNKNOWN "Stream removed") is UNAVAILABLE.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace prefixd

#endif  // PREFIXD_CLIENTS_CPP_PREFIXD_CLIENT_H_
