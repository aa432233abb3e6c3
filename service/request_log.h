// service/request_log.h — one line per finished (or refused) request, to stderr or a file,
// written by spdlog on its own thread so that the engine's thread never waits on the disk.
// Prompt text is logged only when the operator asks for it (--log_prompts).
#ifndef PREFIXD_SERVICE_REQUEST_LOG_H_
#define PREFIXD_SERVICE_REQUEST_LOG_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/request.h"

namespace spdlog {
class logger;
namespace details {
class thread_pool;
}  // namespace details
}  // namespace spdlog

namespace prefixd {

struct RequestLogOptions {
  std::string path;  // empty: stderr
  // trace, debug, info (every request), warn (failed and refused requests only), error, off.
  std::string level = "info";
  bool log_prompts = false;  // the prompt's text (JSON-escaped) on each line
};

class RequestLog {
 public:
  // INVALID_ARGUMENT for an unknown level; FAILED_PRECONDITION, with the reason, when the
  // file cannot be opened for appending.
  static absl::StatusOr<std::unique_ptr<RequestLog>> Create(const RequestLogOptions& options);
  ~RequestLog();  // writes out what is queued

  bool log_prompts() const { return log_prompts_; }

  // A request that the engine accepted and that has now ended (`update.finished`).
  void RecordFinished(std::string_view protocol, std::string_view request_id,
                      std::string_view tenant, std::string_view cache_namespace,
                      const GenerationUpdate& update, std::string_view prompt_text);
  // A request refused before the engine ran it (bad input, auth, queue full, draining).
  void RecordRejected(std::string_view protocol, std::string_view request_id,
                      std::string_view tenant, const absl::Status& status);
  void Flush();

 private:
  RequestLog(std::shared_ptr<spdlog::details::thread_pool> writer,
             std::shared_ptr<spdlog::logger> logger, bool log_prompts);

  // The writer thread; the logger holds it only weakly. Declared first: it outlives the
  // logger and writes out what is queued when it stops.
  std::shared_ptr<spdlog::details::thread_pool> writer_;
  std::shared_ptr<spdlog::logger> logger_;
  bool log_prompts_;
};

// A fresh request id ("req-" and 24 hex digits) for requests whose caller sent none.
std::string NewRequestId();

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_REQUEST_LOG_H_
