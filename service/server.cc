#include "service/server.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace prefixd {

PrefixdServer::PrefixdServer(Engine* engine, TenantDirectory tenants, ServerOptions options)
    : options_(std::move(options)),
      tenants_(std::move(tenants)),
      metrics_(std::make_unique<ServingMetrics>(engine)),
      generation_(&context_),
      cache_(&context_, options_.max_queued_cache_events) {
  context_.engine = engine;
  context_.tenants = &tenants_;
  context_.metrics = metrics_.get();
  context_.in_flight = &in_flight_;
  if (options_.reply_memory_bytes > 0) {
    replies_ = std::make_unique<ReplyMemory>(options_.reply_memory_bytes);
    context_.replies = replies_.get();
  }
}

absl::StatusOr<std::unique_ptr<PrefixdServer>> PrefixdServer::Start(Engine* engine,
                                                                    TenantDirectory tenants,
                                                                    ServerOptions options) {
  std::unique_ptr<PrefixdServer> s(
      new PrefixdServer(engine, std::move(tenants), std::move(options)));
  {
    // Pins may hold half the KV cache in all, a tenant an eighth unless its entry says.
    const EngineStats stats = engine->Stats();
    const int64_t capacity = stats.cache.blocks.total * stats.cache.block_size;
    s->pins_ = std::make_unique<PinLedger>(capacity / 2, capacity / 8);
    s->context_.pins = s->pins_.get();
  }
  if (s->options_.request_log.level != "off") {
    absl::StatusOr<std::unique_ptr<RequestLog>> log = RequestLog::Create(s->options_.request_log);
    if (!log.ok()) return log.status();
    s->request_log_ = *std::move(log);
    s->context_.request_log = s->request_log_.get();
  }
  // The HTTP port first: if it cannot be had, nothing has started yet.
  if (!s->options_.http_listen.empty()) {
    PrefixdServer* raw = s.get();
    absl::StatusOr<std::unique_ptr<HttpServer>> http =
        HttpServer::Start(s->options_.http_listen, engine, s->metrics_.get(),
                          [raw] { return !raw->context_.draining.load(); });
    if (!http.ok()) return http.status();
    s->http_ = *std::move(http);
  }
  if (!s->options_.kv_events.endpoint.empty()) {
    absl::StatusOr<std::unique_ptr<KvEventPublisher>> events =
        KvEventPublisher::Start(engine, s->options_.kv_events);
    if (!events.ok()) return events.status();
    s->kv_events_ = *std::move(events);
  }
  if (!s->options_.openai_listen.empty()) {
    OpenAiServerOptions openai;
    openai.http.listen = s->options_.openai_listen;
    openai.http.tls = s->options_.tls;
    openai.http.max_body_bytes = static_cast<size_t>(s->options_.max_message_bytes);
    openai.served_model_name = s->options_.served_model_name;
    absl::StatusOr<std::unique_ptr<OpenAiServer>> server =
        OpenAiServer::Start(&s->context_, std::move(openai));
    if (!server.ok()) return server.status();
    s->openai_ = *std::move(server);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(s->options_.tls);
  if (!credentials.ok()) return credentials.status();
  builder.AddListeningPort(s->options_.listen, *credentials, &s->port_);
  // gRPC allows SO_REUSEPORT by default: a second server on this port would start and the
  // kernel would split the connections between the two. A port that is taken is an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // HTTP/2 abuse: a client pinging more often than every 10 s without sending data gets two
  // strikes, then GOAWAY (ENHANCE_YOUR_CALM); the server stays healthy for everyone else.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, s->options_.max_concurrent_streams);
  builder.SetMaxReceiveMessageSize(s->options_.max_message_bytes);
  builder.RegisterService(&s->generation_);
  builder.RegisterService(&s->cache_);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", s->options_.listen,
                     " (address in use, or not an address this machine has?)"));
  }
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  engine->SetStepObserver(
      [metrics = s->metrics_.get()](const StepReport& step) { metrics->RecordStep(step); });
  return s;
}

PrefixdServer::~PrefixdServer() {
  Drain();
  if (http_ != nullptr) http_->Stop();
}

std::string PrefixdServer::address() const {
  const std::string& listen = options_.listen;
  const size_t colon = listen.rfind(':');
  return absl::StrCat(listen.substr(0, colon), ":", port_);
}

void PrefixdServer::Drain() {
  if (drained_ || server_ == nullptr) return;
  drained_ = true;
  const absl::Time deadline = absl::Now() + options_.shutdown_grace;
  server_->GetHealthCheckService()->SetServingStatus(false);
  context_.draining = true;
  if (openai_ != nullptr) openai_->StopAccepting();
  // Requests get the grace period to finish in the engine; what is left ends cancelled.
  context_.engine->Shutdown(options_.shutdown_grace);
  // Streams still delivering their last messages to slow readers get what is left of the
  // grace period too (at least a second); watchers are cancelled.
  server_->Shutdown(absl::ToChronoTime(std::max(deadline, absl::Now() + absl::Seconds(1))));
  server_->Wait();
  if (openai_ != nullptr) {
    openai_->WaitIdle(std::max(deadline, absl::Now() + absl::Seconds(1)));
    openai_->Stop();
  }
  // The metrics die with this server; the engine may live on.
  context_.engine->SetStepObserver(nullptr);
  kv_events_.reset();  // the last events (the requests' ends) are sent
  if (http_ != nullptr) http_->Stop();
}

}  // namespace prefixd
