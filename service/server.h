// service/server.h — the gRPC server: prefixd.v1 services, health, reflection, draining.
#ifndef PREFIXD_SERVICE_SERVER_H_
#define PREFIXD_SERVICE_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpcpp/server.h"
#include "service/cache_service.h"
#include "service/generation_service.h"
#include "service/http_server.h"
#include "service/kv_events.h"
#include "service/openai_server.h"
#include "service/request_log.h"
#include "service/service_context.h"
#include "service/serving_metrics.h"
#include "service/submission.h"
#include "service/tenants.h"
#include "service/tls.h"

namespace prefixd {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";  // port 0: any free port
  int max_message_bytes = 4 << 20;         // larger requests: RESOURCE_EXHAUSTED
  absl::Duration shutdown_grace = absl::Seconds(30);
  // HTTP side port: /metrics, /dashboard, /healthz, /readyz (port 0: any free port).
  // Empty: no HTTP port.
  std::string http_listen;
  // OpenAI-compatible HTTP API (service/openai_server.h), with the same TLS as gRPC and
  // max_message_bytes as its body limit (port 0: any free port). Empty: off.
  std::string openai_listen;
  // The model name the OpenAI API lists and accepts; empty: the model's id.
  std::string served_model_name;
  TlsOptions tls;  // off unless files are given
  // One line per finished or refused request (service/request_log.h); level "off": none.
  RequestLogOptions request_log{.path = "", .level = "off", .log_prompts = false};
  // Streams one connection may have open at once; more wait for one to end.
  int max_concurrent_streams = 1024;
  // Cache events queued for one watcher before it is dropped.
  size_t max_queued_cache_events = kDefaultMaxQueuedCacheEvents;
  // Token ids of recent chat replies, per namespace (service/reply_memory.h); 0: off, every
  // reply in a conversation is re-tokenized from its text.
  size_t reply_memory_bytes = size_t{64} << 20;
  // The cache's events on a ZeroMQ PUB socket in vLLM's format (service/kv_events.h).
  // Empty endpoint: off.
  KvEventsOptions kv_events;
};

class PrefixdServer {
 public:
  // Serves `engine` (which must outlive the server) until Drain().
  static absl::StatusOr<std::unique_ptr<PrefixdServer>> Start(Engine* engine,
                                                              TenantDirectory tenants,
                                                              ServerOptions options);
  ~PrefixdServer();

  int port() const { return port_; }
  std::string address() const;
  // The HTTP side port's HOST:PORT; empty when it is off.
  std::string http_address() const { return http_ != nullptr ? http_->address() : ""; }
  // The OpenAI API's base URL (http(s)://HOST:PORT); empty when it is off.
  std::string openai_url() const { return openai_ != nullptr ? openai_->url() : ""; }
  // The KV events socket's bound endpoint; empty when it is off.
  std::string kv_events_endpoint() const {
    return kv_events_ != nullptr ? kv_events_->endpoint() : "";
  }

  // Health flips to NOT_SERVING (and /readyz to 503) and new calls get UNAVAILABLE (503 on
  // the OpenAI port, which stops accepting connections);
  // running requests get up to the grace period to finish, the rest end as cancelled; then
  // the server stops. /metrics and the dashboard answer until the end.
  void Drain();

 private:
  PrefixdServer(Engine* engine, TenantDirectory tenants, ServerOptions options);

  const ServerOptions options_;
  TenantDirectory tenants_;
  std::unique_ptr<ServingMetrics> metrics_;  // outlives everything that records into it
  std::unique_ptr<ReplyMemory> replies_;     // null when off
  std::unique_ptr<RequestLog> request_log_;  // null when off; outlives the servers
  std::unique_ptr<PinLedger> pins_;
  InFlightRequests in_flight_;
  ServiceContext context_;
  GenerationService generation_;
  CacheService cache_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<OpenAiServer> openai_;
  std::unique_ptr<KvEventPublisher> kv_events_;
  int port_ = 0;
  bool drained_ = false;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_SERVER_H_
