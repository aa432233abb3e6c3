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
// Requests are served by a small pool of threads of its own; the engine is never waited
// on (its published stats snapshot is read instead).
#ifndef PREFIXD_SERVICE_HTTP_SERVER_H_
#define PREFIXD_SERVICE_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/engine.h"
#include "service/dashboard_sampler.h"
#include "service/serving_metrics.h"

namespace httplib {
class Server;
}

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

  int port() const { return port_; }
  // HOST:PORT with the bound port, e.g. "127.0.0.1:8080".
  std::string address() const;

  // Closes the port, finishes the requests being served and stops the sampler. Idempotent.
  void Stop();

 private:
  HttpServer(const ServingMetrics* metrics, std::function<bool()> ready,
             std::unique_ptr<DashboardSampler> sampler);
  void AddRoutes();

  const ServingMetrics* const metrics_;
  const std::function<bool()> ready_;
  std::unique_ptr<DashboardSampler> sampler_;
  std::unique_ptr<httplib::Server> http_;
  std::string host_;  // as given, brackets kept for IPv6
  int port_ = 0;
  std::thread thread_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_HTTP_SERVER_H_
