// service/http_server.h — the HTTP side port for operators, beside the gRPC port.
//
//   GET /metrics              Prometheus text exposition (format 0.0.4)
//   GET /dashboard            a self-contained live page (HTML, inline JS and SVG)
//   GET /dashboard/data.json  what the page polls: series, tenants, hottest prefixes
//                             (?since=<unix ms>: only samples taken after it)
//   GET /healthz              200 while the process is up
//   GET /readyz               200 while serving; 503 while draining
//
// Nothing here reveals a prompt: the page shows namespaces, counts and lengths only.
// Served by the event-driven server of service/async_http.h (two threads of its own, every
// request's headers within a few seconds, a connection cap), so slow or idle clients cannot
// keep /healthz, /readyz and /metrics from answering; the engine is never waited on (its
// published stats snapshot is read instead). Only GET; no Range requests.
#ifndef PREFIXD_SERVICE_HTTP_SERVER_H_
#define PREFIXD_SERVICE_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/engine.h"
#include "service/async_http.h"
#include "service/dashboard_sampler.h"
#include "service/serving_metrics.h"

namespace prefixd {

// The dashboard page (service/dashboard.html, embedded at build time).
absl::string_view DashboardHtml();

class HttpServer {
 public:
  // Listens on `listen` (HOST:PORT, [IPv6]:PORT; port 0 picks a free port). `engine` and
  // `metrics` must outlive the server; `ready` answers /readyz (called on HTTP threads).
  // INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           Engine* engine,
                                                           const ServingMetrics* metrics,
                                                           std::function<bool()> ready,
                                                           DashboardOptions dashboard = {});
  // Stops serving (see Stop).
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return http_->port(); }
  // HOST:PORT with the bound port, e.g. "127.0.0.1:8080".
  std::string address() const;

  // Closes the port and every connection, and stops the sampler. Idempotent.
  void Stop();

 private:
  HttpServer(const ServingMetrics* metrics, std::function<bool()> ready,
             std::unique_ptr<DashboardSampler> sampler);
  void Handle(const HttpRequest& request, HttpExchange& exchange);

  const ServingMetrics* const metrics_;
  const std::function<bool()> ready_;
  std::unique_ptr<DashboardSampler> sampler_;
  std::unique_ptr<AsyncHttpServer> http_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_HTTP_SERVER_H_
