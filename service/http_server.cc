#include "service/http_server.h"

#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/metrics.h"

namespace prefixd {
namespace {

// The page loads nothing from anywhere but this server: scripts and styles are inline,
// data comes from /dashboard/data.json.
constexpr char kDashboardPolicy[] =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

// An operator's port: a browser, a scraper, probes. Requests are small; a client gets a
// few seconds for its headers (trickling bytes does not extend them).
constexpr int kMaxConnections = 4096;
constexpr absl::Duration kRequestTimeout = absl::Seconds(5);
constexpr absl::Duration kIdleTimeout = absl::Seconds(30);

HttpResponse Text(int status, std::string body) {
  return HttpResponse{status, "text/plain; charset=utf-8", std::move(body), {}};
}

// The value of `name` in a query string ("a=1&since=2"), if present (no %-decoding: the
// values here are numbers).
std::optional<std::string> QueryParam(const std::string& query, std::string_view name) {
  for (std::string_view rest = query; !rest.empty();) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return std::string(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

}  // namespace

HttpServer::HttpServer(const ServingMetrics* metrics, std::function<bool()> ready,
                       std::unique_ptr<DashboardSampler> sampler)
    : metrics_(metrics), ready_(std::move(ready)), sampler_(std::move(sampler)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              Engine* engine,
                                                              const ServingMetrics* metrics,
                                                              std::function<bool()> ready,
                                                              DashboardOptions dashboard) {
  // The address rules are the same as the other ports'; the messages name this one.
  std::unique_ptr<HttpServer> s(new HttpServer(
      metrics, std::move(ready), std::make_unique<DashboardSampler>(engine, metrics, dashboard)));
  AsyncHttpOptions options;
  options.listen = listen;
  options.request_timeout = kRequestTimeout;
  options.idle_timeout = kIdleTimeout;
  options.max_body_bytes = 16 << 10;  // GET only: a small body is read, then refused (405)
  options.max_connections = kMaxConnections;
  HttpServer* raw = s.get();
  absl::StatusOr<std::unique_ptr<AsyncHttpServer>> http = AsyncHttpServer::Start(
      std::move(options), [raw](HttpRequest request, std::shared_ptr<HttpExchange> exchange) {
        raw->Handle(request, *exchange);
      });
  if (!http.ok()) {
    return absl::Status(http.status().code(), absl::StrCat(http.status().message(),
                                                           " (the HTTP side port, --http_listen)"));
  }
  s->http_ = *std::move(http);
  s->sampler_->Start();
  return s;
}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::address() const { return http_->address(); }

void HttpServer::Stop() {
  if (http_ != nullptr) http_->Stop();
  sampler_->Stop();
}

void HttpServer::Handle(const HttpRequest& request, HttpExchange& exchange) {
  const std::string& path = request.path;
  if (request.method != "GET") {
    HttpResponse refused =
        Text(405, absl::StrCat(request.method, " is not served here; use GET\n"));
    refused.headers.emplace_back("Allow", "GET");
    return exchange.Respond(std::move(refused));
  }
  if (path == "/metrics") {
    return exchange.Respond(HttpResponse{200, kPrometheusContentType, metrics_->Expose(), {}});
  }
  if (path == "/dashboard") {
    const absl::string_view html = DashboardHtml();
    return exchange.Respond(HttpResponse{
        200,
        "text/html; charset=utf-8",
        std::string(html),
        {{"Content-Security-Policy", kDashboardPolicy}, {"Cache-Control", "no-cache"}}});
  }
  if (path == "/dashboard/data.json") {
    std::optional<int64_t> since;
    if (std::optional<std::string> value = QueryParam(request.query, "since")) {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(*value, &ms)) {
        return exchange.Respond(Text(400, "since: expected Unix milliseconds\n"));
      }
      since = ms;
    }
    return exchange.Respond(HttpResponse{200,
                                         "application/json",
                                         sampler_->DataJson(since, absl::Now()),
                                         {{"Cache-Control", "no-store"}}});
  }
  if (path == "/") {
    return exchange.Respond(HttpResponse{
        302, "text/plain; charset=utf-8", "see /dashboard\n", {{"Location", "/dashboard"}}});
  }
  if (path == "/healthz") return exchange.Respond(Text(200, "ok\n"));
  if (path == "/readyz") {
    return exchange.Respond(ready_() ? Text(200, "ready\n") : Text(503, "not ready: draining\n"));
  }
  exchange.Respond(Text(404, "no such page (try /dashboard, /metrics, /healthz or /readyz)\n"));
}

}  // namespace prefixd
