#include "service/generation_service.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
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

// The ids a chat reply's request generated, remembered when it ends well so that the
// conversation's next turn runs them (service/reply_memory.h).
class ReplyRecorder {
 public:
  ReplyRecorder(ReplyMemory* memory, CacheNamespace ns, std::string prompt_text,
                std::vector<TokenId> prompt_ids, std::vector<TokenId> stop_ids)
      : memory_(memory),
        ns_(std::move(ns)),
        prompt_text_(std::move(prompt_text)),
        stop_ids_(std::move(stop_ids)) {
    turn_.prompt_ids = std::move(prompt_ids);
  }

  void OnUpdate(const GenerationUpdate& update) {
    turn_.reply_ids.insert(turn_.reply_ids.end(), update.tokens.begin(), update.tokens.end());
    if (!update.finished || !update.status.ok()) return;
    // A final stop token's text never reached the client.
    if (update.finish_reason == FinishReason::kStop && !turn_.reply_ids.empty() &&
        std::find(stop_ids_.begin(), stop_ids_.end(), turn_.reply_ids.back()) != stop_ids_.end()) {
      turn_.reply_ids.pop_back();
    }
    memory_->Remember(ns_, prompt_text_, std::move(turn_));
  }

 private:
  ReplyMemory* memory_;
  CacheNamespace ns_;
  std::string prompt_text_;
  std::vector<TokenId> stop_ids_;
  ReplyMemory::Turn turn_;
};

std::vector<TokenId> StopIds(const Engine& engine, const SamplingParams& sampling) {
  std::vector<TokenId> ids = sampling.stop_token_ids;
  if (!sampling.ignore_eos) {
    ids.insert(ids.end(), engine.config().eos_token_ids.begin(),
               engine.config().eos_token_ids.end());
  }
  return ids;
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
    std::string chat_text;
    absl::StatusOr<GenerationRequest> r = ToGenerationRequest(
        request, EncoderOf(*service_.engine, service_.replies, &*ns), &chat_text);
    if (!r.ok()) return r.status();
    r->ns = *std::move(ns);
    r->deadline = DeadlineOf(ctx);
    // Metrics follow the request in the callback: the updates arrive in order on the
    // engine's thread, so the recorder needs no lock of its own.
    std::optional<ServingMetrics::RequestRecorder> recorder;
    if (service_.metrics != nullptr) {
      recorder = service_.metrics->StartRequest(r->ns.DisplayName(), absl::Now());
    }
    std::optional<ReplyRecorder> reply;
    if (service_.replies != nullptr && request.has_chat()) {
      reply.emplace(service_.replies, r->ns, std::move(chat_text), r->prompt,
                    StopIds(*service_.engine, r->sampling));
    }
    // The callback owns a reference to the outbox, never to this reactor.
    auto on_update = [outbox = outbox_, request_id = request.request_id(), recorder,
                      reply = std::move(reply)](GenerationUpdate&& update) mutable {
      if (recorder) recorder->OnUpdate(update, absl::Now());
      if (reply) reply->OnUpdate(update);
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

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerationService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  return new GenerateReactor(*context_, ctx, *request);
}

}  // namespace prefixd
