// service/openai_server.h — the OpenAI-compatible HTTP API, on its own port beside gRPC.
//
//   GET  /v1/models                the served model (with its context length)
//   POST /v1/chat/completions      messages rendered by the model's chat template
//   POST /v1/completions           a text prompt or token ids
//   POST /tokenize, /detokenize    vLLM's shapes
//   GET  /health                   200 while serving, 503 while draining
//
// Same engine, tenants, cache namespaces and limits as gRPC: `Authorization: Bearer
// <token>` (or a client certificate's common name under mutual TLS) names the tenant, and
// the namespace never comes from the body (a request may pick a shared namespace its tenant
// is granted with the `X-Shared-Namespace` header). Streams are Server-Sent Events as
// OpenAI sends them; `usage.prompt_tokens_details.cached_tokens` is always reported. A
// client that disconnects cancels its request at once.
#ifndef PREFIXD_SERVICE_OPENAI_SERVER_H_
#define PREFIXD_SERVICE_OPENAI_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/async_http.h"
#include "service/openai_response.h"
#include "service/service_context.h"

namespace prefixd {

struct OpenAiServerOptions {
  AsyncHttpOptions http;  // address, TLS, limits (max_body_bytes: as gRPC's message limit)
  // The name clients send as "model" and /v1/models lists; empty: the engine's model id.
  std::string served_model_name;
};

class OpenAiServer {
 public:
  // `context` must outlive the server.
  static absl::StatusOr<std::unique_ptr<OpenAiServer>> Start(const ServiceContext* context,
                                                             OpenAiServerOptions options);
  ~OpenAiServer();

  // http(s)://HOST:PORT
  std::string url() const;
  int port() const { return http_->port(); }
  const std::string& model_name() const { return model_name_; }

  // New connections are refused; open ones finish their requests.
  void StopAccepting() { http_->StopAccepting(); }
  // Waits until every response is complete (or `deadline`).
  bool WaitIdle(absl::Time deadline) { return http_->WaitIdle(deadline); }
  // Closes every connection (their requests are cancelled).
  void Stop() { http_->Stop(); }

 private:
  OpenAiServer(const ServiceContext* context, std::string model_name);
  void Handle(HttpRequest request, std::shared_ptr<HttpExchange> exchange);
  void Complete(OpenAiEndpoint endpoint, const Tenant& tenant, const std::string& request_id,
                const HttpRequest& request, std::shared_ptr<HttpExchange> exchange);
  void Tokenize(const Tenant& tenant, const HttpRequest& request, HttpExchange& exchange);
  void Detokenize(const HttpRequest& request, HttpExchange& exchange);
  absl::StatusOr<const Tenant*> Authenticate(const HttpRequest& request) const;
  absl::Status CheckModel(const std::string& model) const;

  const ServiceContext* const context_;
  const std::string model_name_;
  const int64_t created_;  // unix seconds, for /v1/models
  std::unique_ptr<AsyncHttpServer> http_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_OPENAI_SERVER_H_
