// service/cache_service.h — prefixd.v1.Cache: stats, pins, flush and cache events.
#ifndef PREFIXD_SERVICE_CACHE_SERVICE_H_
#define PREFIXD_SERVICE_CACHE_SERVICE_H_

#include "prefixd/v1/cache.grpc.pb.h"
#include "service/service_context.h"

namespace prefixd {

// A watcher that falls this many events behind is dropped (RESOURCE_EXHAUSTED); the
// server's memory never grows with a client that does not read.
inline constexpr size_t kDefaultMaxQueuedCacheEvents = 10000;

class CacheService final : public v1::Cache::CallbackService {
 public:
  // `context` must outlive the service.
  explicit CacheService(ServiceContext* context,
                        size_t max_queued_events = kDefaultMaxQueuedCacheEvents)
      : context_(context), max_queued_events_(max_queued_events) {}

  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* request,
                                     v1::CacheStats* response) override;
  grpc::ServerUnaryReactor* Pin(grpc::CallbackServerContext* ctx, const v1::PinRequest* request,
                                v1::PinResponse* response) override;
  grpc::ServerUnaryReactor* Unpin(grpc::CallbackServerContext* ctx, const v1::UnpinRequest* request,
                                  v1::UnpinResponse* response) override;
  grpc::ServerUnaryReactor* ListPins(grpc::CallbackServerContext* ctx,
                                     const v1::ListPinsRequest* request,
                                     v1::ListPinsResponse* response) override;
  grpc::ServerUnaryReactor* Flush(grpc::CallbackServerContext* ctx, const v1::FlushRequest* request,
                                  v1::FlushResponse* response) override;
  grpc::ServerWriteReactor<v1::CacheEvent>* WatchEvents(
      grpc::CallbackServerContext* ctx, const v1::WatchEventsRequest* request) override;

 private:
  ServiceContext* context_;
  const size_t max_queued_events_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_CACHE_SERVICE_H_
