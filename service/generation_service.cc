#include "service/generation_service.h"

#include <chrono>
#include <memory>
#include <optional>

#include "absl/time/clock.h"
#include "service/convert.h"
#include "service/stream_outbox.h"

namespace prefixd {
namespace {

absl::Time DeadlineOf(const grpc::CallbackServerContext& ctx) {
  const auto deadline = ctx.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

// One Generate call: submits the request, streams the engine's updates back, and cancels
// the request in the engine when the client goes away.
class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(ServiceContext& service, grpc::CallbackServerContext* ctx,
                  const v1::GenerateRequest& request)
      : service_(service),
        outbox_(std::make_shared<StreamOutbox<v1::GenerateResponse>>(this, /*max_queued=*/1)) {
    absl::StatusOr<RequestId> id = Submit(*ctx, request);
    if (!id.ok()) {
      if (service_.metrics != nullptr) service_.metrics->RecordRejected(id.status());
      outbox_->Finish(ToGrpcStatus(id.status()));
      return;
    }
    id_ = *id;
  }

  void OnWriteDone(bool ok) override { outbox_->OnWriteDone(ok); }
  // The client cancelled or its deadline passed: the engine frees the request's blocks and
  // sends the terminal update, which finishes the RPC.
  void OnCancel() override {
    if (id_) service_.engine->Cancel(*id_);
  }
  void OnDone() override {
    outbox_->Detach();
    delete this;
  }

 private:
  absl::StatusOr<RequestId> Submit(const grpc::CallbackServerContext& ctx,
                                   const v1::GenerateRequest& request) {
    absl::StatusOr<const Tenant*> tenant = service_.Authenticate(ctx);
    if (!tenant.ok()) return tenant.status();
    absl::StatusOr<CacheNamespace> ns = service_.Namespace(**tenant, request.shared_namespace());
    if (!ns.ok()) return ns.status();
    absl::StatusOr<GenerationRequest> r =
        ToGenerationRequest(request, service_.engine->tokenizer());
    if (!r.ok()) return r.status();
    r->ns = *std::move(ns);
    r->deadline = DeadlineOf(ctx);
    // Metrics follow the request in the callback: the updates arrive in order on the
    // engine's thread, so the recorder needs no lock of its own.
    std::optional<ServingMetrics::RequestRecorder> recorder;
    if (service_.metrics != nullptr) {
      recorder = service_.metrics->StartRequest(r->ns.DisplayName(), absl::Now());
    }
    // The callback owns a reference to the outbox, never to this reactor.
    auto on_update = [outbox = outbox_, request_id = request.request_id(),
                      recorder](GenerationUpdate&& update) mutable {
      if (recorder) recorder->OnUpdate(update, absl::Now());
      const bool finished = update.finished;
      const absl::Status status = update.status;
      outbox->Merge([&](v1::GenerateResponse& response) {
        if (response.request_id().empty()) response.set_request_id(request_id);
        AppendUpdate(update, response);
      });
      if (finished) outbox->Finish(ToGrpcStatus(status));
    };
    return service_.engine->Submit(*std::move(r), std::move(on_update));
  }

  ServiceContext& service_;
  std::shared_ptr<StreamOutbox<v1::GenerateResponse>> outbox_;
  std::optional<RequestId> id_;
};

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerationService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  return new GenerateReactor(*context_, ctx, *request);
}

}  // namespace prefixd
