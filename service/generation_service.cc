#include "service/generation_service.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "service/convert.h"
#include "service/request_log.h"
#include "service/stream_outbox.h"
#include "service/submission.h"

namespace prefixd {
namespace {
// One Generate call: submits the request, streams the engine's updates back, and cancels
// the request in the engine when the client goes away.
class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  using Outbox = StreamOutbox<v1::GenerateResponse, grpc::ByteBuffer>;

  GenerateReactor(ServiceContext& service, grpc::CallbackServerContext* ctx,
                  const grpc::ByteBuffer& wire)
      : service_(service), outbox_(std::make_shared<Outbox>(this, /*max_queued=*/1)) {
    v1::GenerateRequest request;
    if (!Parse(wire, request)) {
      const absl::Status status = absl::InvalidArgumentError(
          "the request is not a valid prefixd.v1.GenerateRequest (malformed protobuf, or a "
          "string field that is not UTF-8: send text as UTF-8)");
      RecordRefused(service_, "grpc", "", "", status);
      outbox_->Finish(ToGrpcStatus(status));
      return;
    }
    absl::StatusOr<RequestId> id = Submit(*ctx, request);
    if (!id.ok()) {
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
  // Submits the request; a refusal is counted and logged (in SubmitObserved once the
  // request reached the engine, here before).
  absl::StatusOr<RequestId> Submit(const grpc::CallbackServerContext& ctx,
                                   const v1::GenerateRequest& request) {
    const std::string request_id =
        request.request_id().empty() ? NewRequestId() : request.request_id();
    std::string tenant_name;
    auto refuse = [&](absl::Status status) {
      RecordRefused(service_, "grpc", request_id, tenant_name, status);
      return status;
    };
    absl::StatusOr<const Tenant*> tenant = service_.Authenticate(ctx);
    if (!tenant.ok()) return refuse(tenant.status());
    tenant_name = (*tenant)->name;
    absl::StatusOr<CacheNamespace> ns = service_.Namespace(**tenant, request.shared_namespace());
    if (!ns.ok()) return refuse(ns.status());
    std::string chat_text;
    absl::StatusOr<GenerationRequest> r = ToGenerationRequest(
        request, EncoderOf(*service_.engine, service_.replies, &*ns), &chat_text);
    if (!r.ok()) return refuse(r.status());
    r->ns = *std::move(ns);
    r->deadline = ServiceContext::Deadline(ctx);
    r->request_id = request_id;
    Submission submission;
    submission.request = *std::move(r);
    submission.protocol = "grpc";
    submission.tenant = std::move(tenant_name);
    submission.tenant_max_requests = (*tenant)->max_requests;
    if (request.has_chat()) {
      submission.prompt_text = chat_text;
      submission.chat_text = std::move(chat_text);
    } else if (request.prompt_case() == v1::GenerateRequest::kText) {
      submission.prompt_text = request.text();
    }
    // The callback owns a reference to the outbox, never to this reactor.
    return SubmitObserved(
        service_, std::move(submission),
        [outbox = outbox_, request_id = request.request_id()](GenerationUpdate&& update) {
          const bool finished = update.finished;
          const absl::Status status = update.status;
          outbox->Merge([&](v1::GenerateResponse& response) {
            if (response.request_id().empty()) response.set_request_id(request_id);
            AppendUpdate(update, response);
          });
          if (finished) outbox->Finish(ToGrpcStatus(status));
        });
  }

  static bool Parse(const grpc::ByteBuffer& wire, v1::GenerateRequest& request) {
    grpc::ByteBuffer copy(wire);  // the reader consumes; the copy shares the slices
    grpc::ProtoBufferReader reader(&copy);
    return request.ParseFromZeroCopyStream(&reader);
  }

  ServiceContext& service_;
  std::shared_ptr<Outbox> outbox_;
  std::optional<RequestId> id_;
};

absl::Status TokenizeInto(const ServiceContext& service, const grpc::CallbackServerContext& ctx,
                          const v1::TokenizeRequest& request, v1::TokenizeResponse& response) {
  absl::StatusOr<const Tenant*> tenant = service.Authenticate(ctx);
  if (!tenant.ok()) return tenant.status();
  if (absl::Status s = CheckNoUnknownFields(request); !s.ok()) return s;
  absl::StatusOr<CacheNamespace> ns = service.Namespace(**tenant, request.shared_namespace());
  if (!ns.ok()) return ns.status();
  const PromptEncoder encoder = EncoderOf(*service.engine, service.replies, &*ns);
  EncodedPrompt prompt;
  switch (request.prompt_case()) {
    case v1::TokenizeRequest::kText:
      if (request.text().empty()) return absl::InvalidArgumentError("prompt is empty");
      if (encoder.tokenizer == nullptr) {
        return absl::FailedPreconditionError("this model has no tokenizer");
      }
      prompt.text = request.text();
      prompt.ids = encoder.tokenizer->Encode(request.text(), /*add_special_tokens=*/true);
      break;
    case v1::TokenizeRequest::kChat: {
      absl::StatusOr<EncodedPrompt> chat = EncodeChat(request.chat(), encoder);
      if (!chat.ok()) return chat.status();
      prompt = *std::move(chat);
      break;
    }
    default:
      return absl::InvalidArgumentError("prompt is empty: set text or chat");
  }
  response.set_prompt_text(SanitizeUtf8(std::move(prompt.text)));
  response.mutable_token_ids()->Assign(prompt.ids.begin(), prompt.ids.end());
  return absl::OkStatus();
}

absl::Status DetokenizeInto(const ServiceContext& service, const grpc::CallbackServerContext& ctx,
                            const v1::DetokenizeRequest& request,
                            v1::DetokenizeResponse& response) {
  absl::StatusOr<const Tenant*> tenant = service.Authenticate(ctx);
  if (!tenant.ok()) return tenant.status();
  if (absl::Status s = CheckNoUnknownFields(request); !s.ok()) return s;
  const Tokenizer* tokenizer = service.engine->tokenizer();
  if (tokenizer == nullptr) return absl::FailedPreconditionError("this model has no tokenizer");
  for (int i = 0; i < request.token_ids_size(); ++i) {
    const int32_t id = request.token_ids(i);
    if (id < 0 || id >= tokenizer->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token_ids[", i, "] = ", id,
                                                     " is outside the vocabulary [0, ",
                                                     tokenizer->vocab_size(), ")"));
    }
  }
  response.set_text(SanitizeUtf8(
      tokenizer->Decode(absl::MakeConstSpan(request.token_ids().data(), request.token_ids_size()),
                        request.skip_special_tokens())));
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* ctx,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(TokenizeInto(*context_, *ctx, *request, *response)));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Detokenize(grpc::CallbackServerContext* ctx,
                                                        const v1::DetokenizeRequest* request,
                                                        v1::DetokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(DetokenizeInto(*context_, *ctx, *request, *response)));
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  return new GenerateReactor(*context_, ctx, *request);
}

}  // namespace prefixd
