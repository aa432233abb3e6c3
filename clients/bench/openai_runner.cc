// Boost.Beast's string_view is std::string_view (the rest of prefixd uses the standard one).
#define BOOST_BEAST_USE_STD_STRING_VIEW
#include "clients/bench/openai_runner.h"

#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "clients/bench/run_state.h"
#include "nlohmann/json.hpp"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::bench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Json = nlohmann::json;

int FinishReasonOf(std::string_view name) {
  if (name == "length") return v1::FINISH_REASON_LENGTH;
  if (name == "stop") return v1::FINISH_REASON_STOP;
  return v1::FINISH_REASON_CANCELLED;  // "abort" and anything else
}

absl::StatusCode CodeOfHttpStatus(unsigned status) {
  switch (status) {
    case 400:
    case 413:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 503:
      return absl::StatusCode::kUnavailable;
    case 504:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      return absl::StatusCode::kInternal;
  }
}

// The message of an OpenAI error body, or the body itself.
std::string ErrorMessage(std::string_view body) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("message") && j["error"]["message"].is_string()) {
    return j["error"]["message"].get<std::string>();
  }
  return std::string(body.substr(0, 200));
}

// One streamed completion on its own connection. Owns itself through the shared pointers
// its pending operations hold; ends exactly once (Finish).
class OpenAiStream : public std::enable_shared_from_this<OpenAiStream> {
 public:
  OpenAiStream(net::io_context& ioc, std::shared_ptr<RunState> state, size_t index,
               const OpenAiTarget& target, const tcp::resolver::results_type& endpoints,
               std::string body, const std::string& request_id)
      : state_(std::move(state)),
        record_(&state_->records[index]),
        stream_(net::make_strand(ioc)),
        endpoints_(endpoints) {
    request_.method(http::verb::post);
    request_.target("/v1/completions");
    request_.version(11);
    request_.set(http::field::host, absl::StrCat(target.host, ":", target.port));
    request_.set(http::field::content_type, "application/json");
    request_.set(http::field::accept, "text/event-stream");
    request_.set("X-Request-Id", request_id);
    if (!target.bearer_token.empty()) {
      request_.set(http::field::authorization, absl::StrCat("Bearer ", target.bearer_token));
    }
    request_.body() = std::move(body);
    request_.prepare_payload();
    if (target.deadline != absl::InfiniteDuration()) {
      deadline_ = absl::ToChronoMilliseconds(target.deadline);
    }
    parser_.body_limit(boost::none);
  }

  void Start(int expected_output_len) {
    record_->expected_output_len = expected_output_len;
    record_->start_s = state_->Elapsed();
    if (deadline_) stream_.expires_after(*deadline_);
    stream_.async_connect(
        endpoints_, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
          if (ec) return self->Finish(absl::StatusCode::kUnavailable, "connect: " + ec.message());
          http::async_write(self->stream_, self->request_,
                            [self](beast::error_code ec, size_t) { self->OnWritten(ec); });
        });
  }

 private:
  void OnWritten(beast::error_code ec) {
    if (ec) return Finish(absl::StatusCode::kUnavailable, "write: " + ec.message());
    on_chunk_ = [this](uint64_t, std::string_view data, beast::error_code&) -> size_t {
      OnBody(data);
      return data.size();
    };
    parser_.on_chunk_body(on_chunk_);  // held by reference
    ReadSome();
  }

  void ReadSome() {
    http::async_read_some(
        stream_, buffer_, parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream && parser_.is_header_done() && !parser_.chunked() &&
        !parser_.content_length()) {
      ec = {};  // a close-delimited body has ended
    } else if (ec) {
      const bool timed_out = ec == beast::error::timeout;
      return Finish(
          timed_out ? absl::StatusCode::kDeadlineExceeded : absl::StatusCode::kUnavailable,
          "read: " + ec.message());
    }
    if (!parser_.is_done()) return ReadSome();
    const unsigned status = parser_.get().result_int();
    if (status != 200) {
      return Finish(CodeOfHttpStatus(status),
                    absl::StrCat("HTTP ", status, ": ", ErrorMessage(parser_.get().body())));
    }
    if (!parser_.chunked()) OnBody(parser_.get().body());
    if (!error_.empty()) return Finish(absl::StatusCode::kInternal, error_);
    if (!done_) return Finish(absl::StatusCode::kUnavailable, "the stream ended without [DONE]");
    Finish(absl::StatusCode::kOk, "");
  }

  // Bytes of the event stream: complete events are recorded as they arrive.
  void OnBody(std::string_view data) {
    events_.append(data);
    size_t start = 0;
    for (size_t end; (end = events_.find("\n\n", start)) != std::string::npos; start = end + 2) {
      std::string_view event(events_.data() + start, end - start);
      if (!event.starts_with("data: ")) {
        if (error_.empty()) {
          error_ = absl::StrCat("not an SSE data line: ", std::string(event.substr(0, 80)));
        }
        continue;
      }
      event.remove_prefix(6);
      if (event == "[DONE]") {
        done_ = true;
      } else if (event.substr(0, 16).find("\"error\"") != std::string_view::npos) {
        error_ = ErrorMessage(event);
      } else if (!RecordOpenAiEvent(event, state_->Elapsed(), record_) && error_.empty()) {
        error_ = absl::StrCat("unexpected chunk: ", std::string(event.substr(0, 120)));
      }
    }
    events_.erase(0, start);
  }

  void Finish(absl::StatusCode code, std::string message) {
    if (finished_) return;
    finished_ = true;
    record_->end_s = state_->Elapsed();
    record_->code = code;
    record_->message = std::move(message);
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    const bool failed = !FailureReason(*record_).empty();
    std::shared_ptr<RunState> state = std::move(state_);
    state->Finished(failed);
  }

  std::shared_ptr<RunState> state_;
  RequestRecord* record_;  // in state_->records
  beast::tcp_stream stream_;
  tcp::resolver::results_type endpoints_;
  std::optional<std::chrono::milliseconds> deadline_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  std::function<size_t(uint64_t, std::string_view, beast::error_code&)> on_chunk_;
  std::string events_;  // received, not yet a complete event
  std::string error_;
  bool done_ = false;
  bool finished_ = false;
};

}  // namespace

absl::StatusOr<OpenAiTarget> ParseOpenAiUrl(const std::string& url) {
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    return absl::InvalidArgumentError("--openai_url: https is not supported by prefix-bench");
  }
  if (!rest.starts_with("http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--openai_url \"", url, "\" does not start with http://"));
  }
  rest.remove_prefix(7);
  if (rest.ends_with("/")) rest.remove_suffix(1);
  if (rest.ends_with("/v1")) rest.remove_suffix(3);
  const size_t colon = rest.rfind(':');
  int port = 0;
  if (colon == std::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(std::string(rest.substr(colon + 1)), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--openai_url \"", url, "\" is not http://HOST:PORT"));
  }
  OpenAiTarget target;
  target.host = std::string(rest.substr(0, colon));
  if (target.host.size() > 2 && target.host.front() == '[' && target.host.back() == ']') {
    target.host = target.host.substr(1, target.host.size() - 2);
  }
  target.port = std::to_string(port);
  return target;
}

bool RecordOpenAiEvent(std::string_view data, double now_s, RequestRecord* record) {
  const Json chunk = Json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!chunk.is_object() || !chunk.contains("choices") || !chunk["choices"].is_array()) {
    return false;
  }
  RequestRecord& r = *record;
  for (const Json& choice : chunk["choices"]) {
    if (!choice.is_object()) return false;
    if (r.final_messages > 0) ++r.messages_after_final;
    const auto ids = choice.find("token_ids");
    if (ids != choice.end() && ids->is_array() && !ids->empty()) {
      if (r.first_token_s < 0) {
        r.first_token_s = now_s;
      } else {
        r.inter_token_s.push_back(now_s - r.last_token_s);
      }
      r.last_token_s = now_s;
      r.streamed_tokens += static_cast<int>(ids->size());
    }
    const auto finish = choice.find("finish_reason");
    if (finish != choice.end() && finish->is_string()) {
      ++r.final_messages;
      r.finish_reason = FinishReasonOf(finish->get<std::string>());
    }
  }
  const auto usage = chunk.find("usage");
  if (usage != chunk.end() && usage->is_object()) {
    r.prompt_tokens = usage->value("prompt_tokens", 0);
    r.completion_tokens = usage->value("completion_tokens", 0);
    const auto details = usage->find("prompt_tokens_details");
    if (details != usage->end() && details->is_object()) {
      r.cached_tokens = details->value("cached_tokens", 0);
    }
  }
  return true;
}

RunResult RunOpenAiRequests(const OpenAiTarget& target, const std::vector<BenchRequest>& requests,
                            const RunOptions& options) {
  net::io_context ioc;
  auto work = net::make_work_guard(ioc);
  std::thread io([&ioc] { ioc.run(); });
  RunResult result;
  // A name that does not resolve leaves no endpoints: every connect then fails, and each
  // request still ends with its record (UNAVAILABLE).
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  const tcp::resolver::results_type endpoints = resolver.resolve(target.host, target.port, ec);
  result =
      DispatchRequests(requests, options,
                       [&](std::shared_ptr<RunState> state, size_t index,
                           const BenchRequest& request, const std::string& id) {
                         const Json body = {{"model", ""},
                                            {"prompt", request.prompt_token_ids},
                                            {"max_tokens", request.output_len},
                                            {"temperature", 0},
                                            {"ignore_eos", true},
                                            {"stream", true},
                                            {"stream_options", {{"include_usage", true}}},
                                            {"return_token_ids", true}};
                         auto stream = std::make_shared<OpenAiStream>(
                             ioc, std::move(state), index, target, endpoints, body.dump(), id);
                         net::post(ioc, [stream, len = request.output_len] { stream->Start(len); });
                       });
  work.reset();
  io.join();
  return result;
}

}  // namespace prefixd::bench
