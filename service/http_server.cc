#include "service/http_server.h"

#include <sys/socket.h>

#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "httplib.h"
#include "service/metrics.h"

namespace prefixd {
namespace {

// The page loads nothing from anywhere but this server: scripts and styles are inline,
// data comes from /dashboard/data.json.
constexpr char kDashboardPolicy[] =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

// Enough for a browser, a scraper and a curl at once; each connection serves one request
// (no keep-alive), so Stop() never waits for an idle connection to time out.
constexpr int kThreads = 4;

struct HostPort {
  std::string host;  // as written (brackets kept for IPv6)
  std::string bind_host;
  int port = 0;
};

absl::StatusOr<HostPort> ParseListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP listen address \"", listen, "\" is not HOST:PORT (", why, ")"));
  };
  if (colon == std::string::npos || colon == 0) return bad("no host or no port");
  HostPort hp;
  hp.host = listen.substr(0, colon);
  hp.bind_host = hp.host;
  if (hp.bind_host.front() == '[') {
    if (hp.bind_host.size() < 3 || hp.bind_host.back() != ']') return bad("unbalanced brackets");
    hp.bind_host = hp.bind_host.substr(1, hp.bind_host.size() - 2);
  } else if (hp.bind_host.find(':') != std::string::npos) {
    return bad("an IPv6 host needs brackets, e.g. [::1]:8080");
  }
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &hp.port) || hp.port < 0 || hp.port > 65535) {
    return bad("the port must be a number in [0, 65535]");
  }
  return hp;
}

}  // namespace

HttpServer::HttpServer(const ServingMetrics* metrics, std::function<bool()> ready,
                       std::unique_ptr<DashboardSampler> sampler)
    : metrics_(metrics),
      ready_(std::move(ready)),
      sampler_(std::move(sampler)),
      http_(std::make_unique<httplib::Server>()) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              Engine* engine,
                                                              const ServingMetrics* metrics,
                                                              std::function<bool()> ready,
                                                              DashboardOptions dashboard) {
  absl::StatusOr<HostPort> hp = ParseListen(listen);
  if (!hp.ok()) return hp.status();
  std::unique_ptr<HttpServer> s(new HttpServer(
      metrics, std::move(ready), std::make_unique<DashboardSampler>(engine, metrics, dashboard)));
  s->host_ = hp->host;
  s->http_->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  s->http_->set_keep_alive_max_count(1);
  // httplib's default also sets SO_REUSEPORT, which would let a second server share the
  // port silently; a port that is taken must be an error.
  s->http_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  s->http_->set_read_timeout(5, 0);
  s->http_->set_write_timeout(5, 0);
  s->AddRoutes();
  s->port_ = hp->port == 0 ? s->http_->bind_to_any_port(hp->bind_host)
                           : (s->http_->bind_to_port(hp->bind_host, hp->port) ? hp->port : -1);
  if (s->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen,
                     " for HTTP (address in use, or not an address this machine has?)"));
  }
  s->sampler_->Start();
  s->thread_ = std::thread([server = s->http_.get()] { server->listen_after_bind(); });
  return s;
}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::address() const { return absl::StrCat(host_, ":", port_); }

void HttpServer::Stop() {
  if (thread_.joinable()) {
    http_->stop();
    thread_.join();
  }
  sampler_->Stop();
}

void HttpServer::AddRoutes() {
  httplib::Server& http = *http_;
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Expose(), kPrometheusContentType);
  });
  http.Get("/dashboard", [](const httplib::Request&, httplib::Response& res) {
    const absl::string_view html = DashboardHtml();
    res.set_header("Content-Security-Policy", kDashboardPolicy);
    res.set_header("Cache-Control", "no-cache");
    res.set_content(html.data(), html.size(), "text/html; charset=utf-8");
  });
  http.Get("/dashboard/data.json", [this](const httplib::Request& req, httplib::Response& res) {
    std::optional<int64_t> since;
    if (req.has_param("since")) {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(req.get_param_value("since"), &ms)) {
        res.status = 400;
        res.set_content("since: expected Unix milliseconds\n", "text/plain; charset=utf-8");
        return;
      }
      since = ms;
    }
    res.set_header("Cache-Control", "no-store");
    res.set_content(sampler_->DataJson(since, absl::Now()), "application/json");
  });
  http.Get("/",
           [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/dashboard"); });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain; charset=utf-8");
  });
  http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (ready_()) {
      res.set_content("ready\n", "text/plain; charset=utf-8");
    } else {
      res.status = 503;
      res.set_content("not ready: draining\n", "text/plain; charset=utf-8");
    }
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) {
      res.set_content("no such page (try /dashboard, /metrics, /healthz or /readyz)\n",
                      "text/plain; charset=utf-8");
    }
  });
}

}  // namespace prefixd
