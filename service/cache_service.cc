#include "service/cache_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "service/convert.h"
#include "service/stream_outbox.h"

namespace prefixd {
namespace {

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

absl::Status RequireAdmin(const Tenant& tenant, std::string_view what) {
  if (tenant.admin) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("tenant \"", tenant.name, "\" may not ",
                                                  std::string(what), " (an admin tenant may)"));
}

// The namespace and tokens of a Pin or Unpin: the caller's (or a granted shared) namespace
// and the prompt as token ids.
struct Prefix {
  CacheNamespace ns;
  std::vector<TokenId> tokens;
};
template <typename Request>
absl::StatusOr<Prefix> ResolvePrefix(const ServiceContext& service,
                                     const grpc::CallbackServerContext& ctx,
                                     const Request& request) {
  absl::StatusOr<const Tenant*> tenant = service.Authenticate(ctx);
  if (!tenant.ok()) return tenant.status();
  if (absl::Status s = CheckNoUnknownFields(request); !s.ok()) return s;
  absl::StatusOr<CacheNamespace> ns = service.Namespace(**tenant, request.shared_namespace());
  if (!ns.ok()) return ns.status();
  absl::StatusOr<std::vector<TokenId>> tokens =
      PromptTokens(request, EncoderOf(*service.engine, service.replies, &*ns));
  if (!tokens.ok()) return tokens.status();
  return Prefix{*std::move(ns), *std::move(tokens)};
}

// Streams cache events to one watcher: a snapshot, SnapshotDone, then live events.
class WatchReactor final : public grpc::ServerWriteReactor<v1::CacheEvent> {
 public:
  WatchReactor(ServiceContext& service, size_t max_queued)
      : service_(service),
        max_queued_(max_queued),
        outbox_(std::make_shared<StreamOutbox<v1::CacheEvent>>(this, max_queued)) {}

  void Start() {
    const int block_size = service_.engine->block_size();
    auto outbox = outbox_;
    auto overflow = [outbox, max_queued = max_queued_] {
      outbox->Abort(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "this watcher fell more than " + std::to_string(max_queued) +
                                     " events behind and was dropped"));
    };
    subscription_ = service_.engine->Subscribe(
        [outbox, block_size, overflow](const CacheEvent& event) {
          v1::CacheEvent message;
          FillCacheEvent(event, block_size, message);
          if (!outbox->Push(std::move(message))) overflow();
        },
        [outbox, overflow](uint64_t sequence) {
          v1::CacheEvent done;
          done.set_sequence(sequence);
          done.mutable_snapshot_done();
          if (!outbox->Push(std::move(done))) overflow();
        });
  }

  void OnWriteDone(bool ok) override { outbox_->OnWriteDone(ok); }
  void OnCancel() override {
    outbox_->Abort(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }
  void OnDone() override {
    if (subscription_) service_.engine->Unsubscribe(*subscription_);
    outbox_->Detach();
    delete this;
  }

  void Fail(const absl::Status& status) { outbox_->Finish(ToGrpcStatus(status)); }

 private:
  ServiceContext& service_;
  const size_t max_queued_;
  std::shared_ptr<StreamOutbox<v1::CacheEvent>> outbox_;
  std::optional<int64_t> subscription_;
};

}  // namespace

grpc::ServerUnaryReactor* CacheService::GetStats(grpc::CallbackServerContext* ctx,
                                                 const v1::GetStatsRequest* request,
                                                 v1::CacheStats* response) {
  absl::StatusOr<const Tenant*> tenant = context_->Authenticate(*ctx);
  if (!tenant.ok()) return FinishNow(ctx, tenant.status());
  if (absl::Status s = CheckNoUnknownFields(*request); !s.ok()) return FinishNow(ctx, s);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const bool all = (*tenant)->admin;
  std::vector<std::string> visible = ServiceContext::VisibleNamespaces(**tenant);
  context_->engine->StatsAsync(
      [reactor, response, all, visible = std::move(visible)](EngineStats stats) {
        FillCacheStats(stats, all, visible, *response);
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerUnaryReactor* CacheService::Pin(grpc::CallbackServerContext* ctx,
                                            const v1::PinRequest* request,
                                            v1::PinResponse* response) {
  absl::StatusOr<Prefix> prefix = ResolvePrefix(*context_, *ctx, *request);
  if (!prefix.ok()) return FinishNow(ctx, prefix.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  context_->engine->PinAsync(prefix->ns, std::move(prefix->tokens),
                             [reactor, response](absl::StatusOr<PinResult> result) {
                               if (result.ok()) {
                                 response->set_pinned_tokens(result->pinned_tokens);
                                 response->set_computed_tokens(result->computed_tokens);
                               }
                               reactor->Finish(ToGrpcStatus(result.status()));
                             });
  return reactor;
}

grpc::ServerUnaryReactor* CacheService::Unpin(grpc::CallbackServerContext* ctx,
                                              const v1::UnpinRequest* request,
                                              v1::UnpinResponse* response) {
  absl::StatusOr<Prefix> prefix = ResolvePrefix(*context_, *ctx, *request);
  if (!prefix.ok()) return FinishNow(ctx, prefix.status());
  absl::StatusOr<int> unpinned = context_->engine->Unpin(prefix->ns, std::move(prefix->tokens));
  if (unpinned.ok()) response->set_unpinned_tokens(*unpinned);
  return FinishNow(ctx, unpinned.status());
}

grpc::ServerUnaryReactor* CacheService::Flush(grpc::CallbackServerContext* ctx,
                                              const v1::FlushRequest* request,
                                              v1::FlushResponse* response) {
  absl::StatusOr<const Tenant*> tenant = context_->Authenticate(*ctx);
  if (!tenant.ok()) return FinishNow(ctx, tenant.status());
  if (absl::Status s = RequireAdmin(**tenant, "flush the cache"); !s.ok()) {
    return FinishNow(ctx, s);
  }
  response->set_freed_blocks(context_->engine->Flush());
  return FinishNow(ctx, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::CacheEvent>* CacheService::WatchEvents(
    grpc::CallbackServerContext* ctx, const v1::WatchEventsRequest* request) {
  auto* reactor = new WatchReactor(*context_, max_queued_events_);
  absl::StatusOr<const Tenant*> tenant = context_->Authenticate(*ctx);
  absl::Status s = tenant.ok() ? RequireAdmin(**tenant, "watch cache events") : tenant.status();
  if (s.ok()) s = CheckNoUnknownFields(*request);
  if (!s.ok()) {
    reactor->Fail(s);
  } else {
    reactor->Start();
  }
  return reactor;
}

}  // namespace prefixd
