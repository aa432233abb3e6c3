// service/async_http.h — an event-driven HTTP/1.1 server (Boost.Beast over Asio), for ports
// that hold many long streams: the OpenAI-compatible API.
//
// A few threads run every connection; none is tied to a connection, so thousands of open
// streams cost memory, not threads. Each request is read under one deadline for its
// headers and body together (a client trickling bytes cannot hold a connection), bodies
// are capped, connections are capped, and an idle keep-alive connection is closed.
//
// A handler gets the request and an HttpExchange, the handle through which it answers,
// from any thread and at any later time: a whole response, or a stream of chunks
// (Server-Sent Events). While a request waits for its answer the server watches the
// connection, so a client that goes away is noticed at once (OnClose), not at the next
// write.
#ifndef PREFIXD_SERVICE_ASYNC_HTTP_H_
#define PREFIXD_SERVICE_ASYNC_HTTP_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/tls.h"

namespace prefixd {

struct HttpRequest {
  std::string method;  // as sent, e.g. "POST"
  std::string path;    // the target without its query, e.g. "/v1/models"
  std::string query;   // after '?', without it
  // Header names in lower case; a repeated header keeps its first value.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer;  // the client's "address:port" ("[address]:port" for IPv6)
  // The common name of the client's verified certificate (mutual TLS only).
  std::optional<std::string> client_common_name;

  // The value of header `name` (lower case), if present.
  std::optional<std::string_view> Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // more headers
};

// How a handler answers one request. Thread-safe; every call returns at once (the bytes go
// out on the server's threads). Exactly one of Respond() or StartStream() ... End() should
// be called; without either, the connection closes when the last reference goes.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;

  // The whole response.
  virtual void Respond(HttpResponse response) = 0;

  // A chunked response whose body follows in Write() calls.
  virtual void StartStream(int status, std::string content_type,
                           std::vector<std::pair<std::string, std::string>> headers = {}) = 0;
  // Queues bytes of a stream. False when the client is gone or has let more than the
  // server's stream buffer pile up unread: the caller should stop producing (the
  // connection is closed).
  virtual bool Write(std::string data) = 0;
  // Ends the stream once what is queued is written.
  virtual void End() = 0;

  // `on_close` runs once (on a server thread) if the client goes away or the connection is
  // closed before the response is complete; set on a connection already closed, it runs at
  // once.
  virtual void OnClose(std::function<void()> on_close) = 0;
};

struct AsyncHttpOptions {
  std::string listen;  // HOST:PORT, [IPv6]:PORT; port 0 picks a free port
  TlsOptions tls;      // off unless files are given
  int threads = 2;
  // A request's headers and body must all arrive within this time from its first byte (or
  // from the end of the previous response).
  absl::Duration request_timeout = absl::Seconds(30);
  // A keep-alive connection with no request in flight is closed after this long.
  absl::Duration idle_timeout = absl::Seconds(60);
  size_t max_header_bytes = 16 << 10;
  size_t max_body_bytes = 4 << 20;  // larger: 413
  int max_connections = 10000;      // more: 503, connection closed
  // Bytes of a stream queued for a client that does not read before it is dropped.
  size_t max_stream_buffer_bytes = 4 << 20;
};

using HttpHandler = std::function<void(HttpRequest, std::shared_ptr<HttpExchange>)>;

class AsyncHttpServer {
 public:
  // Binds and starts serving. `handler` runs on the server's threads for every complete
  // request; it must not block. INVALID_ARGUMENT for a malformed address or TLS file,
  // UNAVAILABLE when the address cannot be bound (e.g. in use).
  static absl::StatusOr<std::unique_ptr<AsyncHttpServer>> Start(AsyncHttpOptions options,
                                                                HttpHandler handler);
  ~AsyncHttpServer();
  AsyncHttpServer(const AsyncHttpServer&) = delete;
  AsyncHttpServer& operator=(const AsyncHttpServer&) = delete;

  int port() const;
  // HOST:PORT with the bound port.
  std::string address() const;
  bool tls() const;
  int open_connections() const;

  // Stops accepting; connections stay and finish their exchanges.
  void StopAccepting();
  // Waits until no request is waiting for (or receiving) its response, or `deadline`.
  // True when idle.
  bool WaitIdle(absl::Time deadline);
  // Closes every connection and stops the threads (exchanges still held elsewhere become
  // no-ops). Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit AsyncHttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_ASYNC_HTTP_H_
