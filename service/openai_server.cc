#include "service/openai_server.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "service/convert.h"
#include "service/request_log.h"
#include "service/submission.h"

namespace prefixd {
namespace {

using Json = nlohmann::json;

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

void Send(HttpExchange& exchange, const OpenAiError& error,
          std::vector<std::pair<std::string, std::string>> headers = {}) {
  exchange.Respond(
      HttpResponse{error.http_status, "application/json", error.body, std::move(headers)});
}

void SendJson(HttpExchange& exchange, const Json& body) {
  Send(exchange, OpenAiError{200, Dump(body)});
}

// One completion in flight: the engine's updates, in order, become the response. The
// engine may deliver updates before Submit returns; they wait until the request is
// accepted (its status line cannot be sent before it is known that it will be 200).
class Completion : public std::enable_shared_from_this<Completion> {
 public:
  Completion(OpenAiResponse response, std::shared_ptr<HttpExchange> exchange, bool stream,
             std::string request_id)
      : response_(std::move(response)),
        exchange_(std::move(exchange)),
        stream_(stream),
        request_id_(std::move(request_id)) {}

  // On the engine's thread. True when the client is gone or too slow: cancel the request.
  bool OnUpdate(const GenerationUpdate& update) {
    absl::MutexLock lock(&mu_);
    if (stream_) {
      std::string bytes = response_.StreamUpdate(update);
      if (!accepted_) {
        early_ += bytes;
      } else if (!bytes.empty() && !exchange_->Write(std::move(bytes))) {
        return true;
      }
    } else {
      response_.Collect(update);
    }
    if (update.finished) {
      finished_ = true;
      if (accepted_) Finish();
    }
    return false;
  }

  // After Submit returned `id`.
  void Accepted(Engine* engine, RequestId id) {
    absl::MutexLock lock(&mu_);
    accepted_ = true;
    std::vector<std::pair<std::string, std::string>> headers = {{"X-Request-Id", request_id_}};
    if (stream_) {
      exchange_->StartStream(200, "text/event-stream; charset=utf-8", std::move(headers));
      exchange_->Write(response_.StreamStart() + early_);
      early_.clear();
    }
    if (finished_) return Finish();
    // The client going away cancels the request (its blocks are freed at the next step).
    exchange_->OnClose([engine, id] { engine->Cancel(id); });
  }

 private:
  void Finish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stream_) {
      exchange_->End();
    } else {
      Send(*exchange_, response_.Body(), {{"X-Request-Id", request_id_}});
    }
  }

  absl::Mutex mu_;
  OpenAiResponse response_ ABSL_GUARDED_BY(mu_);
  const std::shared_ptr<HttpExchange> exchange_;
  const bool stream_;
  const std::string request_id_;
  bool accepted_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::string early_ ABSL_GUARDED_BY(mu_);
};

bool IsJsonContentType(std::optional<std::string_view> type) {
  if (!type) return true;  // absent: read the body as JSON
  const std::string lower = absl::AsciiStrToLower(std::string(*type));
  return absl::StartsWith(lower, "application/json");
}

}  // namespace

OpenAiServer::OpenAiServer(const ServiceContext* context, std::string model_name)
    : context_(context),
      model_name_(std::move(model_name)),
      created_(absl::ToUnixSeconds(absl::Now())) {}

OpenAiServer::~OpenAiServer() {
  if (http_ != nullptr) http_->Stop();
}

absl::StatusOr<std::unique_ptr<OpenAiServer>> OpenAiServer::Start(const ServiceContext* context,
                                                                  OpenAiServerOptions options) {
  std::string name =
      options.served_model_name.empty() ? context->engine->model_id() : options.served_model_name;
  std::unique_ptr<OpenAiServer> server(new OpenAiServer(context, std::move(name)));
  OpenAiServer* raw = server.get();
  absl::StatusOr<std::unique_ptr<AsyncHttpServer>> http = AsyncHttpServer::Start(
      std::move(options.http), [raw](HttpRequest request, std::shared_ptr<HttpExchange> exchange) {
        raw->Handle(std::move(request), std::move(exchange));
      });
  if (!http.ok()) {
    return absl::Status(http.status().code(), absl::StrCat(http.status().message(),
                                                           " (the OpenAI API, --openai_listen)"));
  }
  server->http_ = *std::move(http);
  return server;
}

std::string OpenAiServer::url() const {
  return absl::StrCat(http_->tls() ? "https://" : "http://", http_->address());
}

absl::StatusOr<const Tenant*> OpenAiServer::Authenticate(const HttpRequest& request) const {
  if (context_->draining.load()) return absl::UnavailableError("the server is shutting down");
  const std::optional<std::string_view> authorization = request.Header("authorization");
  if (!authorization && context_->tenants->requires_identity() && !request.client_common_name) {
    return absl::UnauthenticatedError(
        "no API key: send 'Authorization: Bearer <token>' with a token from the server's "
        "tokens file");
  }
  std::optional<std::string_view> common_name;
  if (request.client_common_name) common_name = *request.client_common_name;
  return context_->tenants->Authenticate(authorization, common_name, request.peer);
}

absl::Status OpenAiServer::CheckModel(const std::string& model) const {
  if (model.empty() || model == model_name_) return absl::OkStatus();
  absl::Status status = absl::NotFoundError(absl::StrCat(
      "The model `", model, "` does not exist; this server serves `", model_name_, "`"));
  return status;
}

void OpenAiServer::Handle(HttpRequest request, std::shared_ptr<HttpExchange> exchange) {
  const std::string& path = request.path;
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  auto wrong_method = [&](const char* allowed) {
    Send(*exchange,
         MakeOpenAiError(
             405, absl::StrCat(request.method, " is not allowed on ", path, "; use ", allowed)),
         {{"Allow", allowed}});
  };
  if (path == "/health") {
    if (!get) return wrong_method("GET");
    const bool serving = !context_->draining.load();
    return exchange->Respond(HttpResponse{
        serving ? 200 : 503, "text/plain; charset=utf-8", serving ? "" : "draining\n", {}});
  }
  const bool known = path == "/v1/models" || path == "/v1/chat/completions" ||
                     path == "/v1/completions" || path == "/tokenize" || path == "/detokenize" ||
                     absl::StartsWith(path, "/v1/models/");
  if (!known) {
    return Send(*exchange,
                MakeOpenAiError(404, absl::StrCat("no such endpoint: ", request.method, " ", path),
                                "", "unknown_url"));
  }
  const bool model_path = absl::StartsWith(path, "/v1/models");
  if (model_path && !get) return wrong_method("GET");
  if (!model_path && !post) return wrong_method("POST");

  // The caller's id (echoed and logged) or a fresh one.
  std::string request_id = std::string(request.Header("x-request-id").value_or(""));
  if (request_id.empty() || request_id.size() > 128) request_id = NewRequestId();
  absl::StatusOr<const Tenant*> tenant = Authenticate(request);
  if (!tenant.ok()) {
    RecordRefused(*context_, "openai", request_id, "", tenant.status());
    return Send(*exchange, ToOpenAiError(tenant.status()), {{"X-Request-Id", request_id}});
  }
  if (model_path) {
    const Json model = {{"id", model_name_},
                        {"object", "model"},
                        {"created", created_},
                        {"owned_by", "prefixd"},
                        {"root", context_->engine->model_id()},
                        {"max_model_len", context_->engine->max_context_len()}};
    if (path == "/v1/models") {
      return SendJson(*exchange, Json{{"object", "list"}, {"data", Json::array({model})}});
    }
    const std::string wanted = path.substr(std::string_view("/v1/models/").size());
    if (absl::Status s = CheckModel(wanted); !s.ok() || wanted.empty()) {
      return Send(*exchange,
                  MakeOpenAiError(404, absl::StrCat("The model `", wanted, "` does not exist"),
                                  "model", "model_not_found"));
    }
    return SendJson(*exchange, model);
  }
  if (!IsJsonContentType(request.Header("content-type"))) {
    return Send(
        *exchange,
        MakeOpenAiError(400, absl::StrCat("Content-Type must be application/json, got \"",
                                          std::string(*request.Header("content-type")), "\"")));
  }
  if (path == "/v1/chat/completions") {
    return Complete(OpenAiEndpoint::kChatCompletions, **tenant, request_id, request,
                    std::move(exchange));
  }
  if (path == "/v1/completions") {
    return Complete(OpenAiEndpoint::kCompletions, **tenant, request_id, request,
                    std::move(exchange));
  }
  if (path == "/tokenize") return Tokenize(**tenant, request, *exchange);
  Detokenize(request, *exchange);
}

void OpenAiServer::Complete(OpenAiEndpoint endpoint, const Tenant& caller,
                            const std::string& request_id, const HttpRequest& http,
                            std::shared_ptr<HttpExchange> exchange) {
  const Tenant* tenant = &caller;
  auto refuse = [&](const absl::Status& status) {
    RecordRefused(*context_, "openai", request_id, tenant->name, status);
    Send(*exchange, ToOpenAiError(status), {{"X-Request-Id", request_id}});
  };
  absl::StatusOr<OpenAiRequest> parsed = endpoint == OpenAiEndpoint::kChatCompletions
                                             ? ParseChatCompletionRequest(http.body)
                                             : ParseCompletionRequest(http.body);
  if (!parsed.ok()) return refuse(parsed.status());
  if (absl::Status s = CheckModel(parsed->model); !s.ok()) {
    RecordRefused(*context_, "openai", request_id, tenant->name, s);
    return Send(*exchange,
                MakeOpenAiError(404, std::string(s.message()), "model", "model_not_found"),
                {{"X-Request-Id", request_id}});
  }
  absl::StatusOr<CacheNamespace> ns =
      context_->Namespace(*tenant, std::string(http.Header("x-shared-namespace").value_or("")));
  if (!ns.ok()) return refuse(ns.status());
  parsed->generate.set_request_id(request_id);
  std::string chat_text;
  absl::StatusOr<GenerationRequest> r = ToGenerationRequest(
      parsed->generate, EncoderOf(*context_->engine, context_->replies, &*ns), &chat_text);
  if (!r.ok()) return refuse(r.status());
  r->ns = *ns;
  Submission submission;
  submission.request = *std::move(r);
  submission.protocol = "openai";
  submission.tenant = tenant->name;
  submission.tenant_max_requests = tenant->max_requests;
  if (parsed->generate.has_chat()) {
    submission.prompt_text = chat_text;
    submission.chat_text = std::move(chat_text);
  } else {
    submission.prompt_text = parsed->generate.text();
  }
  const std::string id = absl::StrCat(
      endpoint == OpenAiEndpoint::kChatCompletions ? "chatcmpl-" : "cmpl-", request_id);
  auto completion = std::make_shared<Completion>(
      OpenAiResponse(*parsed, id, model_name_, absl::ToUnixSeconds(absl::Now()),
                     context_->engine->tokenizer()),
      exchange, parsed->stream, request_id);
  Engine* engine = context_->engine;
  auto cancel_id = std::make_shared<std::atomic<RequestId>>(RequestId{});
  absl::StatusOr<RequestId> submitted = SubmitObserved(
      *context_, std::move(submission), [completion, engine, cancel_id](GenerationUpdate&& update) {
        if (completion->OnUpdate(update)) engine->Cancel(cancel_id->load());
      });
  if (!submitted.ok()) {
    return Send(*exchange, ToOpenAiError(submitted.status()), {{"X-Request-Id", request_id}});
  }
  cancel_id->store(*submitted);
  completion->Accepted(engine, *submitted);
}

void OpenAiServer::Tokenize(const Tenant& tenant, const HttpRequest& http, HttpExchange& exchange) {
  absl::StatusOr<TokenizeCall> call = ParseTokenizeRequest(http.body);
  if (!call.ok()) return Send(exchange, ToOpenAiError(call.status()));
  if (absl::Status s = CheckModel(call->model); !s.ok()) {
    return Send(exchange,
                MakeOpenAiError(404, std::string(s.message()), "model", "model_not_found"));
  }
  absl::StatusOr<CacheNamespace> ns =
      context_->Namespace(tenant, std::string(http.Header("x-shared-namespace").value_or("")));
  if (!ns.ok()) return Send(exchange, ToOpenAiError(ns.status()));
  const PromptEncoder encoder = EncoderOf(*context_->engine, context_->replies, &*ns);
  EncodedPrompt prompt;
  if (call->request.has_chat()) {
    absl::StatusOr<EncodedPrompt> chat = EncodeChat(call->request.chat(), encoder);
    if (!chat.ok()) return Send(exchange, ToOpenAiError(chat.status()));
    prompt = *std::move(chat);
  } else {
    if (encoder.tokenizer == nullptr) {
      return Send(exchange, MakeOpenAiError(400, "this model has no tokenizer"));
    }
    prompt.text = call->request.text();
    prompt.ids = encoder.tokenizer->Encode(prompt.text, call->add_special_tokens);
  }
  SendJson(exchange, Json{{"count", prompt.ids.size()},
                          {"max_model_len", context_->engine->max_context_len()},
                          {"tokens", prompt.ids},
                          {"token_strs", nullptr},
                          {"prompt", SanitizeUtf8(std::move(prompt.text))}});
}

void OpenAiServer::Detokenize(const HttpRequest& http, HttpExchange& exchange) {
  absl::StatusOr<DetokenizeCall> call = ParseDetokenizeRequest(http.body);
  if (!call.ok()) return Send(exchange, ToOpenAiError(call.status()));
  if (absl::Status s = CheckModel(call->model); !s.ok()) {
    return Send(exchange,
                MakeOpenAiError(404, std::string(s.message()), "model", "model_not_found"));
  }
  const Tokenizer* tokenizer = context_->engine->tokenizer();
  if (tokenizer == nullptr) {
    return Send(exchange, MakeOpenAiError(400, "this model has no tokenizer"));
  }
  const auto& ids = call->request.token_ids();
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tokenizer->vocab_size()) {
      return Send(exchange, MakeOpenAiError(400,
                                            absl::StrCat("tokens[", i, "] = ", ids[i],
                                                         " is outside the vocabulary [0, ",
                                                         tokenizer->vocab_size(), ")"),
                                            "tokens"));
    }
  }
  SendJson(exchange, Json{{"prompt", SanitizeUtf8(tokenizer->Decode(
                                         absl::MakeConstSpan(ids.data(), ids.size()), false))}});
}

}  // namespace prefixd
