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
#include "service/service_context.h"
#include "service/tenants.h"

namespace prefixd {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";  // port 0: any free port
  int max_message_bytes = 4 << 20;         // larger requests: RESOURCE_EXHAUSTED
  absl::Duration shutdown_grace = absl::Seconds(30);
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

  // Health flips to NOT_SERVING and new calls get UNAVAILABLE; running requests get up to
  // the grace period to finish, the rest end as cancelled; then the server stops.
  void Drain();

 private:
  PrefixdServer(Engine* engine, TenantDirectory tenants, ServerOptions options);

  const ServerOptions options_;
  TenantDirectory tenants_;
  ServiceContext context_;
  GenerationService generation_;
  CacheService cache_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool drained_ = false;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_SERVER_H_
