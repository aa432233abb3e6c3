#include "service/request_log.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/async.h"
#include "spdlog/async_logger.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace prefixd {
namespace {

// Lines waiting for the writer thread; the engine's thread waits only when this many are
// queued, that is when the disk cannot keep up at all.
constexpr size_t kQueuedLines = 8192;

double Millis(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// A value of a key=value field: bare when it is a plain word, JSON-quoted otherwise (so
// that a request id or tenant name cannot forge fields of its own).
std::string Field(std::string_view value) {
  const bool plain = !value.empty() && value.size() <= 128 &&
                     value.find_first_not_of(
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789-_./:@") == std::string_view::npos;
  if (plain) return std::string(value);
  return nlohmann::json(std::string(value))
      .dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::json::error_handler_t::replace);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RequestLog>> RequestLog::Create(const RequestLogOptions& options) {
  const spdlog::level::level_enum level = spdlog::level::from_str(options.level);
  // from_str answers "off" for anything it does not know.
  if (level == spdlog::level::off && options.level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--log_level=", options.level,
                     " is not one of trace, debug, info, warn, error, critical, off"));
  }
  spdlog::sink_ptr sink;
  if (options.path.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.path, /*truncate=*/false);
    } catch (const spdlog::spdlog_ex& e) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open the request log ", options.path, ": ", e.what()));
    }
  }
  auto pool = std::make_shared<spdlog::details::thread_pool>(kQueuedLines, /*threads_n=*/1);
  auto logger = std::make_shared<spdlog::async_logger>("requests", std::move(sink), pool,
                                                       spdlog::async_overflow_policy::block);
  // ISO time in UTC with milliseconds, the level, the fields.
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);  // a line is on disk once written out
  return std::unique_ptr<RequestLog>(
      new RequestLog(std::move(pool), std::move(logger), options.log_prompts));
}

RequestLog::RequestLog(std::shared_ptr<spdlog::details::thread_pool> writer,
                       std::shared_ptr<spdlog::logger> logger, bool log_prompts)
    : writer_(std::move(writer)), logger_(std::move(logger)), log_prompts_(log_prompts) {}

RequestLog::~RequestLog() { Flush(); }

void RequestLog::Flush() { logger_->flush(); }

void RequestLog::RecordFinished(std::string_view protocol, std::string_view request_id,
                                std::string_view tenant, std::string_view cache_namespace,
                                const GenerationUpdate& update, std::string_view prompt_text) {
  const spdlog::level::level_enum level =
      update.status.ok() ? spdlog::level::info : spdlog::level::warn;
  if (!logger_->should_log(level)) return;
  const RequestUsage& u = update.usage;
  std::string line = absl::StrFormat(
      "request id=%s tenant=%s namespace=%s protocol=%s status=%s finish=%s prompt_tokens=%d "
      "cached_tokens=%d completion_tokens=%d preemptions=%d queue_ms=%.1f ttft_ms=%.1f "
      "total_ms=%.1f",
      Field(request_id), Field(tenant), Field(cache_namespace), Field(protocol),
      absl::StatusCodeToString(update.status.code()),
      update.status.ok() ? std::string(FinishReasonName(update.finish_reason)) : "error",
      u.prompt_tokens, u.cached_tokens, u.completion_tokens, u.preemptions, Millis(u.queue_time),
      Millis(u.time_to_first_token), Millis(u.total_time));
  if (!update.status.ok())
    absl::StrAppend(&line, " error=", Field(std::string(update.status.message())));
  if (log_prompts_) absl::StrAppend(&line, " prompt=", Field(prompt_text));
  logger_->log(level, line);
}

void RequestLog::RecordRejected(std::string_view protocol, std::string_view request_id,
                                std::string_view tenant, const absl::Status& status) {
  if (!logger_->should_log(spdlog::level::warn)) return;
  logger_->warn(absl::StrFormat("request id=%s tenant=%s protocol=%s status=%s refused error=%s",
                                Field(request_id), Field(tenant.empty() ? "-" : tenant),
                                Field(protocol), absl::StatusCodeToString(status.code()),
                                Field(std::string(status.message()))));
}

std::string NewRequestId() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  return absl::StrFormat("req-%016x%08x", random(), static_cast<uint32_t>(random()));
}

}  // namespace prefixd
