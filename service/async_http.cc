// Beast speaks std::string_view (before any Boost header).
#define BOOST_BEAST_USE_STD_STRING_VIEW
#include "service/async_http.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl.hpp"
#include "openssl/ssl.h"
#include "openssl/x509.h"

namespace prefixd {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

std::optional<std::string_view> HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return std::nullopt;
}

namespace {

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

std::string StatusLine(int status) {
  const std::string_view reason = http::obsolete_reason(http::int_to_status(status));
  return absl::StrCat("HTTP/1.1 ", status, " ",
                      reason.empty() ? std::string("Unknown") : std::string(reason), "\r\n");
}

std::string Headers(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out;
  for (const auto& [name, value] : headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
  return out;
}

// A whole response as bytes on the wire.
std::string Serialize(const HttpResponse& r, bool keep_alive) {
  return absl::StrCat(StatusLine(r.status), "Content-Type: ", r.content_type,
                      "\r\nContent-Length: ", r.body.size(),
                      "\r\nConnection: ", keep_alive ? "keep-alive" : "close", "\r\n",
                      Headers(r.headers), "\r\n", r.body);
}

// The plain-text error a malformed or refused request gets before any handler sees it.
HttpResponse ProtocolError(int status, std::string message) {
  return HttpResponse{status, "text/plain; charset=utf-8", absl::StrCat(message, "\n"), {}};
}

}  // namespace

// What an exchange asks of its connection; every method runs on the connection's strand.
class HttpSession {
 public:
  virtual ~HttpSession() = default;
  virtual void Post(std::function<void()> fn) = 0;
  virtual void DoRespond(HttpResponse response) = 0;
  virtual void DoStartStream(int status, std::string content_type,
                             std::vector<std::pair<std::string, std::string>> headers) = 0;
  virtual void DoWrite(std::string data) = 0;
  virtual void DoEnd() = 0;
  virtual void DoClose() = 0;
  virtual void SetOnClose(std::function<void()> on_close) = 0;
  std::atomic<size_t> queued_bytes{0};
  std::atomic<bool> closed{false};
};

struct AsyncHttpServer::Impl : std::enable_shared_from_this<AsyncHttpServer::Impl> {
  AsyncHttpOptions options;
  HttpHandler handler;
  net::io_context ioc;
  std::optional<net::ssl::context> ssl;
  tcp::acceptor acceptor{ioc};
  std::string host;
  int port = 0;
  std::vector<std::thread> threads;
  std::atomic<int> connections{0};
  int exchanges ABSL_GUARDED_BY(mu) = 0;  // requests read whose response is not complete

  // Posting onto the io_context happens under a reader lock while it still runs; Stop()
  // takes the writer lock, so nothing is queued on a context no thread will run.
  mutable absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  bool accepting ABSL_GUARDED_BY(mu) = true;
  absl::flat_hash_map<HttpSession*, std::weak_ptr<HttpSession>> sessions ABSL_GUARDED_BY(mu);

  void Accept();
  template <typename Stream>
  void StartSession(Stream stream);
};

namespace {

using Impl = AsyncHttpServer::Impl;

class Exchange final : public HttpExchange {
 public:
  Exchange(std::shared_ptr<Impl> impl, std::shared_ptr<HttpSession> session)
      : impl_(std::move(impl)), session_(std::move(session)) {}

  void Respond(HttpResponse response) override {
    Run([s = session_, r = std::move(response)]() mutable { s->DoRespond(std::move(r)); });
  }
  void StartStream(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) override {
    Run([s = session_, status, type = std::move(content_type), h = std::move(headers)]() mutable {
      s->DoStartStream(status, std::move(type), std::move(h));
    });
  }
  bool Write(std::string data) override {
    if (session_->closed.load()) return false;
    const size_t size = data.size();
    if (session_->queued_bytes.fetch_add(size) + size > impl_->options.max_stream_buffer_bytes) {
      Run([s = session_] { s->DoClose(); });
      return false;
    }
    return Run([s = session_, d = std::move(data)]() mutable { s->DoWrite(std::move(d)); });
  }
  void End() override {
    Run([s = session_] { s->DoEnd(); });
  }
  void OnClose(std::function<void()> on_close) override {
    Run([s = session_, f = std::move(on_close)]() mutable { s->SetOnClose(std::move(f)); });
  }

 private:
  bool Run(std::function<void()> fn) {
    absl::ReaderMutexLock lock(&impl_->mu);
    if (impl_->stopped) return false;
    session_->Post(std::move(fn));
    return true;
  }

  std::shared_ptr<Impl> impl_;
  std::shared_ptr<HttpSession> session_;
};

// One connection: reads a request, hands it to the handler, writes the answer, and repeats
// while the client keeps the connection alive.
template <typename Stream>
class Session final : public HttpSession, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(std::shared_ptr<Impl> impl, Stream stream)
      : impl_(std::move(impl)), stream_(std::move(stream)), idle_timer_(stream_.get_executor()) {}
  ~Session() override {
    if (closed.load()) return;
    impl_->connections.fetch_sub(1);
    absl::MutexLock lock(&impl_->mu);
    impl_->sessions.erase(this);
    if (counted_) --impl_->exchanges;
  }

  void Start() {
    if constexpr (kTls) {
      Lowest().expires_after(Chrono(impl_->options.request_timeout));
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->DoClose();
                                self->ReadHeader();
                              });
    } else {
      ReadHeader();
    }
  }

  void Post(std::function<void()> fn) override {
    net::post(stream_.get_executor(),
              [self = this->shared_from_this(), f = std::move(fn)] { f(); });
  }

  void SetOnClose(std::function<void()> on_close) override {
    if (closed.load()) {
      // Gone before the handler asked: tell it now.
      if (on_close) on_close();
      return;
    }
    on_close_ = std::move(on_close);
  }

  void DoRespond(HttpResponse response) override {
    if (closed.load() || !awaiting_ || started_) return;
    started_ = true;
    const size_t size = response.body.size();
    queued_bytes += size;
    Enqueue(Serialize(response, keep_alive_), size);
    end_requested_ = true;
    Flush();
  }

  void DoStartStream(int status, std::string content_type,
                     std::vector<std::pair<std::string, std::string>> headers) override {
    if (closed.load() || !awaiting_ || started_) return;
    started_ = true;
    streaming_ = true;
    if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the body ends when the connection does
    Enqueue(absl::StrCat(StatusLine(status), "Content-Type: ", content_type,
                         "\r\nCache-Control: no-cache\r\n",
                         chunked_ ? "Transfer-Encoding: chunked\r\n" : "", "Connection: ",
                         keep_alive_ ? "keep-alive" : "close", "\r\n", Headers(headers), "\r\n"),
            0);
    Flush();
  }

  void DoWrite(std::string data) override {
    const size_t size = data.size();
    if (closed.load() || !streaming_ || end_requested_ || data.empty()) {
      queued_bytes -= size;
      return;
    }
    if (chunked_) {
      Enqueue(absl::StrCat(absl::Hex(size), "\r\n", data, "\r\n"), size);
    } else {
      Enqueue(std::move(data), size);
    }
    Flush();
  }

  void DoEnd() override {
    if (closed.load() || !streaming_ || end_requested_) return;
    end_requested_ = true;
    if (chunked_) Enqueue("0\r\n\r\n", 0);
    Flush();
  }

  void DoClose() override {
    if (closed.exchange(true)) return;
    idle_timer_.cancel();
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().close();
    impl_->connections.fetch_sub(1);
    {
      absl::MutexLock lock(&impl_->mu);
      impl_->sessions.erase(this);
    }
    if (awaiting_ && on_close_) {
      std::function<void()> on_close = std::move(on_close_);
      on_close();
    }
    on_close_ = nullptr;
    SetAwaiting(false);
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void SetAwaiting(bool awaiting) {
    if (awaiting == counted_) {
      awaiting_ = awaiting;
      return;
    }
    absl::MutexLock lock(&impl_->mu);
    impl_->exchanges += awaiting ? 1 : -1;
    awaiting_ = counted_ = awaiting;
  }

  void ReadHeader() {
    if (closed.load()) return;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(impl_->options.max_header_bytes));
    parser_->body_limit(impl_->options.max_body_bytes);
    // One deadline for the headers and the body together: trickling bytes does not extend it.
    Lowest().expires_after(Chrono(impl_->options.request_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (closed.load()) return;
    if (ec) return OnReadError(ec);
    const auto& message = parser_->get();
    if (const auto length = parser_->content_length();
        length && *length > impl_->options.max_body_bytes) {
      return Refuse(ProtocolError(
          413, absl::StrCat("request body of ", *length, " bytes is over the limit of ",
                            impl_->options.max_body_bytes, " bytes")));
    }
    if (beast::iequals(message[http::field::expect], "100-continue")) {
      continue_ = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(continue_),
                       [self = this->shared_from_this()](beast::error_code ec, size_t) {
                         if (ec) return self->DoClose();
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::ssl::error::stream_truncated) {
      return DoClose();  // the client left, or sent nothing in time
    }
    if (ec == http::error::header_limit) {
      return Refuse(ProtocolError(431, "request headers are too large"));
    }
    if (ec == http::error::body_limit) {
      return Refuse(ProtocolError(413, absl::StrCat("request body is over the limit of ",
                                                    impl_->options.max_body_bytes, " bytes")));
    }
    Refuse(ProtocolError(400, absl::StrCat("malformed HTTP request: ", ec.message())));
  }

  void OnBody(beast::error_code ec) {
    if (closed.load()) return;
    if (ec) return OnReadError(ec);
    Lowest().expires_never();
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    HttpRequest request;
    request.method = std::string(message.method_string());
    const std::string_view target = message.target();
    const size_t q = target.find('?');
    request.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) request.query = std::string(target.substr(q + 1));
    for (const auto& field : message) {
      std::string name = absl::AsciiStrToLower(std::string(field.name_string()));
      if (request.Header(name)) continue;
      request.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    request.body = std::move(message.body());
    beast::error_code peer_ec;
    const tcp::endpoint peer = Lowest().socket().remote_endpoint(peer_ec);
    if (!peer_ec) {
      const std::string address = peer.address().to_string();
      request.peer = peer.address().is_v6() ? absl::StrCat("[", address, "]:", peer.port())
                                            : absl::StrCat(address, ":", peer.port());
    }
    if constexpr (kTls) request.client_common_name = PeerCommonName();
    keep_alive_ = message.keep_alive();
    chunked_ = message.version() >= 11;
    SetAwaiting(true);
    started_ = streaming_ = end_requested_ = false;
    Watch();
    impl_->handler(std::move(request), std::make_shared<Exchange>(impl_, this->shared_from_this()));
  }

  std::optional<std::string> PeerCommonName() {
    if constexpr (kTls) {
      X509* cert = SSL_get_peer_certificate(stream_.native_handle());
      if (cert == nullptr) return std::nullopt;
      char name[256] = {};
      const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, name,
                                              sizeof(name));
      X509_free(cert);
      if (n <= 0) return std::nullopt;
      return std::string(name, static_cast<size_t>(n));
    }
    return std::nullopt;
  }

  // While a request waits for its answer, a read stays pending so that a client that goes
  // away is seen at once. Bytes it brings (a pipelined next request) are kept for the parser.
  void Watch() {
    if (watching_ || closed.load() || (awaiting_ && buffer_.size() > 0)) return;
    watching_ = true;
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                              self->OnWatch(ec, n);
                            });
  }

  void OnWatch(beast::error_code ec, size_t n) {
    watching_ = false;
    if (closed.load()) return;
    if (ec) return DoClose();
    if (lingering_) {  // the answer is out; what the client still sends is dropped
      buffer_.clear();
      drained_ += n;
      if (drained_ > (1 << 20)) return DoClose();
      return Watch();
    }
    buffer_.commit(n);
    // The client sent its next request before this answer was done (pipelining, or a reply to
    // the answer's last bytes whose completion has not run yet). It waits in the buffer, and
    // no read stays pending over it: OnResponseDone parses it. (A disconnect meanwhile is
    // seen when the answer is written.)
    if (awaiting_) return;
    idle_timer_.cancel();
    ReadHeader();
  }

  void Enqueue(std::string bytes, size_t counted) {
    pending_ += bytes;
    pending_counted_ += counted;
  }

  void Flush() {
    if (writing_ || closed.load()) return;
    if (pending_.empty()) {
      if (end_requested_) OnResponseDone();
      return;
    }
    std::swap(inflight_, pending_);
    pending_.clear();
    inflight_counted_ = pending_counted_;
    pending_counted_ = 0;
    writing_ = true;
    // A client that stops reading holds the write: after the timeout it is dropped.
    Lowest().expires_after(Chrono(impl_->options.request_timeout));
    net::async_write(
        stream_, net::buffer(inflight_),
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnWritten(ec); });
  }

  void OnWritten(beast::error_code ec) {
    writing_ = false;
    queued_bytes -= inflight_counted_;
    inflight_counted_ = 0;
    if (ec) return DoClose();
    Flush();
  }

  void OnResponseDone() {
    SetAwaiting(false);
    on_close_ = nullptr;
    if (!keep_alive_) return LingeringClose();
    if (!watching_) return ReadHeader();  // a pipelined request waits in the buffer
    // The pending watch read now waits for the next request, for at most the request timeout.
    idle_timer_.expires_after(Chrono(impl_->options.request_timeout));
    idle_timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) self->DoClose();
    });
  }

  // A refusal of a request that was not read to its end: the answer, then a lingering close
  // (the client may still be sending; closing at once would reset the connection and the
  // client could lose the answer).
  void Refuse(HttpResponse response) {
    SetAwaiting(true);
    started_ = true;
    keep_alive_ = false;
    Enqueue(Serialize(response, /*keep_alive=*/false), 0);
    end_requested_ = true;
    Flush();
  }

  void LingeringClose() {
    lingering_ = true;
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return DoClose();
    idle_timer_.expires_after(std::chrono::seconds(2));
    idle_timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) self->DoClose();
    });
    Watch();  // ends when the client closes its side (or the timer does)
  }

  std::shared_ptr<Impl> impl_;
  Stream stream_;
  net::steady_timer idle_timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::function<void()> on_close_;
  std::string continue_;
  std::string pending_, inflight_;
  size_t pending_counted_ = 0, inflight_counted_ = 0;
  size_t drained_ = 0;  // bytes dropped while lingering
  bool keep_alive_ = true;
  bool chunked_ = true;
  bool awaiting_ = false;       // a request is read and its response not yet complete
  bool counted_ = false;        // awaiting_ as counted in impl_->exchanges
  bool started_ = false;        // Respond or StartStream was called
  bool streaming_ = false;      // StartStream was called
  bool end_requested_ = false;  // the response is complete once what is queued is written
  bool writing_ = false;
  bool watching_ = false;
  bool lingering_ = false;  // the last answer is out; waiting for the client to close
};

}  // namespace

template <typename Stream>
void AsyncHttpServer::Impl::StartSession(Stream stream) {
  auto session = std::make_shared<Session<Stream>>(shared_from_this(), std::move(stream));
  {
    absl::MutexLock lock(&mu);
    if (stopped) {  // Stop() has closed every session it knew: this one must not start
      session->closed = true;
      connections.fetch_sub(1);
      return;
    }
    sessions[session.get()] = session;
  }
  session->Start();
}

void AsyncHttpServer::Impl::Accept() {
  acceptor.async_accept(net::make_strand(ioc), [self = shared_from_this()](beast::error_code ec,
                                                                           tcp::socket socket) {
    {
      absl::ReaderMutexLock lock(&self->mu);
      if (self->stopped || !self->accepting) return;
    }
    if (!ec) {
      if (self->connections.fetch_add(1) >= self->options.max_connections) {
        self->connections.fetch_sub(1);
        // Over the limit: a best-effort 503 (never blocking), then the connection closes.
        if (!self->ssl) {
          const std::string busy =
              Serialize(ProtocolError(503, "too many connections"), /*keep_alive=*/false);
          beast::error_code ignored;
          socket.non_blocking(true, ignored);
          socket.write_some(net::buffer(busy), ignored);
        }
      } else if (self->ssl) {
        self->StartSession(
            beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *self->ssl));
      } else {
        self->StartSession(beast::tcp_stream(std::move(socket)));
      }
    }
    if (ec) {
      // Out of descriptors (or another transient error): the connection stays in the
      // backlog, so retrying at once would spin. Try again shortly; the port stays open.
      auto retry = std::make_shared<net::steady_timer>(self->ioc, std::chrono::milliseconds(50));
      retry->async_wait([self, retry](beast::error_code) { self->Accept(); });
      return;
    }
    self->Accept();
  });
}

absl::StatusOr<std::unique_ptr<AsyncHttpServer>> AsyncHttpServer::Start(AsyncHttpOptions options,
                                                                        HttpHandler handler) {
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  impl->handler = std::move(handler);
  const std::string& listen = impl->options.listen;
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", listen, "\" is not HOST:PORT (e.g. 127.0.0.1:8000)"));
  }
  impl->host = listen.substr(0, colon);
  std::string host = impl->host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  const net::ip::address address =
      net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", host, "\" in \"", listen, "\" is not an IP address"));
  }
  if (impl->options.tls.enabled()) {
    const TlsOptions& tls = impl->options.tls;
    impl->ssl.emplace(net::ssl::context::tls_server);
    net::ssl::context& ctx = *impl->ssl;
    ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                    net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                    net::ssl::context::no_tlsv1_1);
    ctx.use_certificate_chain_file(tls.cert_file, ec);
    if (!ec) ctx.use_private_key_file(tls.key_file, net::ssl::context::pem, ec);
    if (!ec && !tls.client_ca_file.empty()) {
      ctx.load_verify_file(tls.client_ca_file, ec);
      ctx.set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert);
    }
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat("TLS files for ", listen, ": ", ec.message()));
    }
  }
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
  tcp::acceptor& acceptor = impl->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  // SO_REUSEADDR (a restart may bind while old connections linger) but never SO_REUSEPORT:
  // a second server on the same port must fail, not share the port.
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": ", ec.message()));
  }
  impl->port = acceptor.local_endpoint().port();
  impl->Accept();
  const int threads = std::max(1, impl->options.threads);
  for (int i = 0; i < threads; ++i) {
    impl->threads.emplace_back([raw = impl.get()] { raw->ioc.run(); });
  }
  return std::unique_ptr<AsyncHttpServer>(new AsyncHttpServer(std::move(impl)));
}

AsyncHttpServer::~AsyncHttpServer() { Stop(); }

int AsyncHttpServer::port() const { return impl_->port; }
std::string AsyncHttpServer::address() const { return absl::StrCat(impl_->host, ":", impl_->port); }
bool AsyncHttpServer::tls() const { return impl_->ssl.has_value(); }
int AsyncHttpServer::open_connections() const { return impl_->connections.load(); }

void AsyncHttpServer::StopAccepting() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (!impl_->accepting || impl_->stopped) return;
    impl_->accepting = false;
  }
  net::post(impl_->ioc, [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
}

bool AsyncHttpServer::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&impl_->mu);
  return impl_->mu.AwaitWithDeadline(
      absl::Condition(
          +[](Impl* impl) ABSL_NO_THREAD_SAFETY_ANALYSIS { return impl->exchanges == 0; },
          impl_.get()),
      deadline);
}

void AsyncHttpServer::Stop() {
  StopAccepting();
  std::vector<std::shared_ptr<HttpSession>> open;
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->stopped) return;
    for (const auto& [raw, weak] : impl_->sessions) {
      if (std::shared_ptr<HttpSession> session = weak.lock()) open.push_back(std::move(session));
    }
    // Still under the lock: these are the last posts; the threads run them, then run out of
    // work and return.
    for (const std::shared_ptr<HttpSession>& session : open) {
      session->Post([session] { session->DoClose(); });
    }
    impl_->stopped = true;
  }
  open.clear();
  for (std::thread& thread : impl_->threads) thread.join();
  impl_->threads.clear();
}

}  // namespace prefixd
