#include "clients/cpp/prefixd_client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/status.h>
#include <grpcpp/support/sync_stream.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/cpp/prefix_key.h"

namespace prefixd {
namespace {

// Attaches a context to a CallHandle for the lifetime of a call. The destructor runs before
// the context dies because the guard is declared after it.
class AttachedCall {
 public:
  AttachedCall(CallHandle* handle, grpc::ClientContext* context) : handle_(handle) {
    attached_ = handle_ == nullptr || handle_->Attach(context);
  }
  ~AttachedCall() {
    if (handle_ != nullptr && attached_) handle_->Detach();
  }
  // False when the handle was cancelled before the call started.
  bool attached() const { return attached_; }

 private:
  CallHandle* handle_;
  bool attached_ = false;
};

absl::Status CancelledBeforeStart() {
  return absl::CancelledError("the call was cancelled before it started");
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  // gRPC reports a stream that ended without the server's status (its connection was cut:
  // a proxy in front of replicas ends a dead replica's streams this way) as UNKNOWN "Stream
  // removed". It is a transport failure like any other: UNAVAILABLE, worth a retry.
  if (status.error_code() == grpc::StatusCode::UNKNOWN &&
      status.error_message() == "Stream removed") {
    return absl::UnavailableError(
        "the stream was cut before the server's status (its connection or replica went away)");
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientOptions& options) {
  if (options.tls_ca_file.empty() && options.tls_cert_file.empty() &&
      options.tls_key_file.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  auto read = [](const std::string& path, const char* what) -> absl::StatusOr<std::string> {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read the ", what, " file ", path));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs its key, and a key its certificate (--tls_cert_file and "
        "--tls_key_file)");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    absl::StatusOr<std::string> ca = read(options.tls_ca_file, "CA");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  if (!options.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = read(options.tls_cert_file, "client certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = read(options.tls_key_file, "client key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

namespace {

std::shared_ptr<grpc::Channel> OpenChannel(const ClientOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(options);
  if (!credentials.ok()) {
    std::fprintf(stderr, "prefixd client: %s\n", credentials.status().ToString().c_str());
    std::abort();
  }
  return grpc::CreateChannel(options.target, *credentials);
}

}  // namespace

PrefixdClient::PrefixdClient(ClientOptions options)
    : PrefixdClient(OpenChannel(options), options) {}

PrefixdClient::PrefixdClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      generation_(v1::Generation::NewStub(channel_)),
      cache_(v1::Cache::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

void PrefixdClient::PrepareContext(grpc::ClientContext* context,
                                   const std::string& prefix_key) const {
  if (!options_.bearer_token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
  }
  if (options_.send_prefix_key && !prefix_key.empty()) {
    context->AddMetadata(kPrefixKeyHeader, prefix_key);
  }
  if (options_.deadline != absl::InfiniteDuration()) {
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoNanoseconds(options_.deadline));
  }
}

absl::Status PrefixdClient::Generate(const v1::GenerateRequest& request,
                                     const ResponseCallback& on_response,
                                     CallHandle* handle) const {
  grpc::ClientContext context;
  PrepareContext(&context, PrefixKey(request));
  AttachedCall attached(handle, &context);
  if (!attached.attached()) return CancelledBeforeStart();
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      generation_->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) on_response(response);
  return FromGrpcStatus(reader->Finish());
}

absl::StatusOr<v1::TokenizeResponse> PrefixdClient::Tokenize(
    const v1::TokenizeRequest& request) const {
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::TokenizeResponse response;
  grpc::Status status = generation_->Tokenize(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::DetokenizeResponse> PrefixdClient::Detokenize(
    const v1::DetokenizeRequest& request) const {
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::DetokenizeResponse response;
  grpc::Status status = generation_->Detokenize(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::CacheStats> PrefixdClient::GetStats() const {
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::CacheStats stats;
  grpc::Status status = cache_->GetStats(&context, v1::GetStatsRequest(), &stats);
  if (!status.ok()) return FromGrpcStatus(status);
  return stats;
}

absl::StatusOr<v1::PinResponse> PrefixdClient::Pin(const v1::PinRequest& request) const {
  grpc::ClientContext context;
  PrepareContext(&context, PrefixKey(request));
  v1::PinResponse response;
  grpc::Status status = cache_->Pin(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::UnpinResponse> PrefixdClient::Unpin(const v1::UnpinRequest& request) const {
  grpc::ClientContext context;
  PrepareContext(&context, PrefixKey(request));
  v1::UnpinResponse response;
  grpc::Status status = cache_->Unpin(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::FlushResponse> PrefixdClient::Flush(bool drop_pins) const {
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::FlushRequest request;
  request.set_drop_pins(drop_pins);
  v1::FlushResponse response;
  grpc::Status status = cache_->Flush(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListPinsResponse> PrefixdClient::ListPins() const {
  grpc::ClientContext context;
  PrepareContext(&context);
  v1::ListPinsResponse response;
  grpc::Status status = cache_->ListPins(&context, v1::ListPinsRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<ServingStatus> PrefixdClient::CheckHealth(const std::string& service) const {
  grpc::ClientContext context;
  PrepareContext(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health_->Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.status();
}

absl::Status PrefixdClient::WatchEvents(const EventCallback& on_event, CallHandle* handle) const {
  grpc::ClientContext context;
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
  }
  AttachedCall attached(handle, &context);
  if (!attached.attached()) return CancelledBeforeStart();
  std::unique_ptr<grpc::ClientReader<v1::CacheEvent>> reader =
      cache_->WatchEvents(&context, v1::WatchEventsRequest());
  v1::CacheEvent event;
  while (reader->Read(&event)) on_event(event);
  return FromGrpcStatus(reader->Finish());
}

}  // namespace prefixd
