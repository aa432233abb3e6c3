// service/service_context.h — what every RPC handler needs: the engine, the tenants, and
// whether the server is draining.
#ifndef PREFIXD_SERVICE_SERVICE_CONTEXT_H_
#define PREFIXD_SERVICE_SERVICE_CONTEXT_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "grpcpp/server_context.h"
#include "service/pin_ledger.h"
#include "service/reply_memory.h"
#include "service/request_log.h"
#include "service/serving_metrics.h"
#include "service/tenants.h"

namespace prefixd {

class InFlightRequests;  // service/submission.h

struct ServiceContext {
  Engine* engine = nullptr;  // outlives the gRPC server
  const TenantDirectory* tenants = nullptr;
  ServingMetrics* metrics = nullptr;      // outlives the gRPC server; null: nothing recorded
  ReplyMemory* replies = nullptr;         // outlives the gRPC server; null: replies re-tokenized
  RequestLog* request_log = nullptr;      // outlives the gRPC server; null: no request log
  PinLedger* pins = nullptr;              // outlives the gRPC server; null: pins are not owned
  InFlightRequests* in_flight = nullptr;  // outlives the gRPC server; null: no tenant quota
  std::atomic<bool> draining{false};

  // The caller's tenant. UNAVAILABLE while draining, UNAUTHENTICATED without a valid token.
  absl::StatusOr<const Tenant*> Authenticate(const grpc::CallbackServerContext& ctx) const;
  // The cache namespace of a request of `tenant` asking for `shared_namespace`.
  absl::StatusOr<CacheNamespace> Namespace(const Tenant& tenant,
                                           const std::string& shared_namespace) const;
  // The call's deadline (InfiniteFuture when it has none).
  static absl::Time Deadline(const grpc::CallbackServerContext& ctx);
  // The namespace names whose stats `tenant` may see (all, for an admin).
  static std::vector<std::string> VisibleNamespaces(const Tenant& tenant);
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_SERVICE_CONTEXT_H_
