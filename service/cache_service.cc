#include "service/cache_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/convert.h"
#include "service/pin_ledger.h"
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

// The caller, namespace and tokens of a Pin or Unpin: the caller's (or a granted shared)
// namespace and the prompt as token ids, cut to full blocks (only those are pinned).
struct Prefix {
  const Tenant* tenant;
  CacheNamespace ns;
  std::vector<TokenId> tokens;
};
template <typename Request>
absl::StatusOr<Prefix> ResolvePrefix(const ServiceContext& service, const Tenant& tenant,
                                     const Request& request) {
  if (absl::Status s = CheckNoUnknownFields(request); !s.ok()) return s;
  absl::StatusOr<CacheNamespace> ns = service.Namespace(tenant, request.shared_namespace());
  if (!ns.ok()) return ns.status();
  absl::StatusOr<std::vector<TokenId>> tokens =
      PromptTokens(request, EncoderOf(*service.engine, service.replies, &*ns));
  if (!tokens.ok()) return tokens.status();
  const size_t block = static_cast<size_t>(service.engine->block_size());
  if (tokens->size() >= block) tokens->resize(tokens->size() / block * block);
  return Prefix{&tenant, *std::move(ns), *std::move(tokens)};
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
  absl::StatusOr<const Tenant*> tenant = context_->Authenticate(*ctx);
  if (!tenant.ok()) return FinishNow(ctx, tenant.status());
  absl::StatusOr<Prefix> prefix = ResolvePrefix(*context_, **tenant, *request);
  if (!prefix.ok()) return FinishNow(ctx, prefix.status());
  PinLedger* ledger = context_->pins;
  const std::string owner = (*tenant)->name;
  if (ledger != nullptr) {
    if (absl::Status s =
            ledger->Reserve(owner, (*tenant)->max_pinned_tokens, prefix->ns, prefix->tokens);
        !s.ok()) {
      return FinishNow(ctx, s);
    }
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  std::vector<TokenId> tokens = prefix->tokens;
  context_->engine->PinAsync(
      prefix->ns, std::move(tokens),
      [reactor, response, ledger, owner, ns = prefix->ns,
       tokens = std::move(prefix->tokens)](absl::StatusOr<PinResult> result) {
        if (result.ok()) {
          response->set_pinned_tokens(result->pinned_tokens);
          response->set_computed_tokens(result->computed_tokens);
          if (ledger != nullptr) response->set_pin_id(ledger->Commit(owner, ns, tokens));
        } else if (ledger != nullptr) {
          ledger->Cancel(owner, ns, tokens);
        }
        reactor->Finish(ToGrpcStatus(result.status()));
      },
      ServiceContext::Deadline(*ctx));
  return reactor;
}

grpc::ServerUnaryReactor* CacheService::Unpin(grpc::CallbackServerContext* ctx,
                                              const v1::UnpinRequest* request,
                                              v1::UnpinResponse* response) {
  absl::StatusOr<const Tenant*> tenant = context_->Authenticate(*ctx);
  if (!tenant.ok()) return FinishNow(ctx, tenant.status());
  PinLedger* ledger = context_->pins;
  if (request->pin_id() != 0) {
    // An admin's unpin of anyone's pin, every nesting of it.
    if (absl::Status s = RequireAdmin(**tenant, "unpin by id"); !s.ok()) return FinishNow(ctx, s);
    if (ledger == nullptr) return FinishNow(ctx, absl::FailedPreconditionError("no pin ledger"));
    absl::StatusOr<PinLedger::Pin> pin = ledger->ReleaseById(request->pin_id());
    if (!pin.ok()) return FinishNow(ctx, pin.status());
    int unpinned = 0;
    for (int i = 0; i < pin->count; ++i) {
      absl::StatusOr<int> n = context_->engine->Unpin(pin->ns, pin->tokens);
      if (n.ok()) unpinned = *n;
    }
    response->set_unpinned_tokens(unpinned);
    return FinishNow(ctx, absl::OkStatus());
  }
  absl::StatusOr<Prefix> prefix = ResolvePrefix(*context_, **tenant, *request);
  if (!prefix.ok()) return FinishNow(ctx, prefix.status());
  if (ledger != nullptr) {
    // Only the caller's own pin: another tenant's pin of the same prefix in a shared
    // namespace is not the caller's to undo.
    absl::StatusOr<PinLedger::Pin> mine =
        ledger->Release((*tenant)->name, prefix->ns, prefix->tokens);
    if (!mine.ok()) return FinishNow(ctx, mine.status());
  }
  absl::StatusOr<int> unpinned = context_->engine->Unpin(prefix->ns, std::move(prefix->tokens));
  if (unpinned.ok()) response->set_unpinned_tokens(*unpinned);
  return FinishNow(ctx, unpinned.status());
}

grpc::ServerUnaryReactor* CacheService::ListPins(grpc::CallbackServerContext* ctx,
                                                 const v1::ListPinsRequest* request,
                                                 v1::ListPinsResponse* response) {
  absl::StatusOr<const Tenant*> tenant = context_->Authenticate(*ctx);
  if (!tenant.ok()) return FinishNow(ctx, tenant.status());
  if (absl::Status s = RequireAdmin(**tenant, "list every pin"); !s.ok()) {
    return FinishNow(ctx, s);
  }
  if (absl::Status s = CheckNoUnknownFields(*request); !s.ok()) return FinishNow(ctx, s);
  if (context_->pins != nullptr) {
    const absl::Time now = absl::Now();
    for (const PinLedger::Pin& pin : context_->pins->List()) {
      v1::PinInfo* info = response->add_pins();
      info->set_pin_id(pin.id);
      info->set_tenant(pin.tenant);
      info->set_namespace_(pin.ns.DisplayName());
      info->set_tokens(static_cast<int32_t>(pin.tokens.size()));
      info->set_count(pin.count);
      info->set_age_seconds(absl::ToDoubleSeconds(now - pin.created));
    }
    response->set_pinned_tokens(context_->pins->total_tokens());
  }
  return FinishNow(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* CacheService::Flush(grpc::CallbackServerContext* ctx,
                                              const v1::FlushRequest* request,
                                              v1::FlushResponse* response) {
  absl::StatusOr<const Tenant*> tenant = context_->Authenticate(*ctx);
  if (!tenant.ok()) return FinishNow(ctx, tenant.status());
  if (absl::Status s = RequireAdmin(**tenant, "flush the cache"); !s.ok()) {
    return FinishNow(ctx, s);
  }
  if (absl::Status s = CheckNoUnknownFields(*request); !s.ok()) return FinishNow(ctx, s);
  if (request->drop_pins() && context_->pins != nullptr) {
    int unpinned = 0;
    for (const PinLedger::Pin& pin : context_->pins->TakeAll()) {
      for (int i = 0; i < pin.count; ++i) (void)context_->engine->Unpin(pin.ns, pin.tokens);
      ++unpinned;
    }
    response->set_unpinned(unpinned);
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
