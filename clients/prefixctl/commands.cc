#include "clients/prefixctl/commands.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/call_handle.h"
#include "clients/prefixctl/cli_args.h"
#include "clients/prefixctl/interrupt_watcher.h"
#include "clients/prefixctl/json_format.h"
#include "clients/prefixctl/text_format.h"

namespace prefixd::ctl {
namespace {

void PrintJsonLine(const CommandContext& ctx, const nlohmann::ordered_json& j) {
  ctx.out << DumpJson(j) << '\n' << std::flush;
}

std::string ServingStatusName(ServingStatus status) {
  switch (status) {
    case grpc::health::v1::HealthCheckResponse::SERVING:
      return "SERVING";
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING:
      return "NOT_SERVING";
    case grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

}  // namespace

int ReportError(const CommandContext& ctx, const absl::Status& status) {
  if (ctx.json) {
    ctx.err << DumpJson(StatusToJson(status)) << '\n';
  } else {
    ctx.err << "prefixctl: " << absl::StatusCodeToString(status.code()) << ": " << status.message()
            << '\n';
  }
  ctx.err.flush();
  return ExitCodeForStatus(status);
}

int RunGenerate(const CommandContext& ctx, const v1::GenerateRequest& request) {
  CallHandle handle;  // declared before the watcher, which uses it
  InterruptWatcher interrupt([&handle] { handle.Cancel(); });

  v1::GenerateResponse final_response;
  bool got_final = false;
  char last_char = '\n';
  std::vector<v1::TokenLogprob> logprobs;
  const absl::Status status = ctx.client.Generate(
      request,
      [&](const v1::GenerateResponse& response) {
        if (ctx.json) {
          PrintJsonLine(ctx, GenerateResponseToJson(response));
        } else {
          if (!response.text().empty()) {
            ctx.out << response.text() << std::flush;
            last_char = response.text().back();
          }
          logprobs.insert(logprobs.end(), response.logprobs().begin(), response.logprobs().end());
        }
        if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
          final_response = response;
          got_final = true;
        }
      },
      &handle);
  // A terminal gets its prompt back on a fresh line; a pipe gets exactly the text.
  if (!ctx.json && last_char != '\n' && ctx.out_is_terminal) ctx.out << '\n';
  ctx.out.flush();

  if (interrupt.interrupted() && status.code() == absl::StatusCode::kCancelled) {
    ReportError(ctx, absl::CancelledError("interrupted; the request was cancelled"));
    return kExitInterrupted;
  }
  if (!status.ok()) return ReportError(ctx, status);
  if (!ctx.json) {
    if (!logprobs.empty()) ctx.err << FormatLogprobs(logprobs);
    if (got_final) {
      ctx.err << FormatUsage(final_response.finish_reason(), final_response.usage()) << '\n';
    }
    ctx.err.flush();
  }
  return kExitOk;
}

int RunTokenize(const CommandContext& ctx, const v1::TokenizeRequest& request) {
  absl::StatusOr<v1::TokenizeResponse> tokenized = ctx.client.Tokenize(request);
  if (!tokenized.ok()) return ReportError(ctx, tokenized.status());
  if (ctx.json) {
    PrintJsonLine(ctx, TokenizeResponseToJson(*tokenized));
  } else {
    ctx.out << FormatTokenize(*tokenized) << std::flush;
  }
  return kExitOk;
}

int RunDetokenize(const CommandContext& ctx, const v1::DetokenizeRequest& request) {
  absl::StatusOr<v1::DetokenizeResponse> detokenized = ctx.client.Detokenize(request);
  if (!detokenized.ok()) return ReportError(ctx, detokenized.status());
  if (ctx.json) {
    PrintJsonLine(ctx, {{"text", detokenized->text()}});
    return kExitOk;
  }
  const std::string& text = detokenized->text();
  ctx.out << text;
  if (ctx.out_is_terminal && (text.empty() || text.back() != '\n')) ctx.out << '\n';
  ctx.out.flush();
  return kExitOk;
}

int RunStats(const CommandContext& ctx) {
  absl::StatusOr<v1::CacheStats> stats = ctx.client.GetStats();
  if (!stats.ok()) return ReportError(ctx, stats.status());
  if (ctx.json) {
    PrintJsonLine(ctx, CacheStatsToJson(*stats));
  } else {
    ctx.out << FormatStats(*stats) << std::flush;
  }
  return kExitOk;
}

int RunPin(const CommandContext& ctx, const v1::PinRequest& request) {
  absl::StatusOr<v1::PinResponse> pinned = ctx.client.Pin(request);
  if (!pinned.ok()) return ReportError(ctx, pinned.status());
  if (ctx.json) {
    PrintJsonLine(ctx, {{"pinned_tokens", pinned->pinned_tokens()},
                        {"computed_tokens", pinned->computed_tokens()},
                        {"pin_id", pinned->pin_id()}});
  } else {
    ctx.out << "pinned " << pinned->pinned_tokens() << " tokens (" << pinned->computed_tokens()
            << " computed now, " << pinned->pinned_tokens() - pinned->computed_tokens()
            << " were cached), pin " << pinned->pin_id() << "\n"
            << std::flush;
  }
  return kExitOk;
}

int RunUnpin(const CommandContext& ctx, const v1::UnpinRequest& request) {
  absl::StatusOr<v1::UnpinResponse> unpinned = ctx.client.Unpin(request);
  if (!unpinned.ok()) return ReportError(ctx, unpinned.status());
  if (ctx.json) {
    PrintJsonLine(ctx, {{"unpinned_tokens", unpinned->unpinned_tokens()}});
  } else {
    ctx.out << "unpinned " << unpinned->unpinned_tokens() << " tokens\n" << std::flush;
  }
  return kExitOk;
}

int RunFlush(const CommandContext& ctx, bool drop_pins) {
  absl::StatusOr<v1::FlushResponse> flushed = ctx.client.Flush(drop_pins);
  if (!flushed.ok()) return ReportError(ctx, flushed.status());
  if (ctx.json) {
    PrintJsonLine(ctx,
                  {{"freed_blocks", flushed->freed_blocks()}, {"unpinned", flushed->unpinned()}});
  } else {
    ctx.out << "freed " << flushed->freed_blocks() << " blocks";
    if (drop_pins) ctx.out << " (" << flushed->unpinned() << " pins undone first)";
    ctx.out << "\n" << std::flush;
  }
  return kExitOk;
}

int RunPins(const CommandContext& ctx) {
  absl::StatusOr<v1::ListPinsResponse> pins = ctx.client.ListPins();
  if (!pins.ok()) return ReportError(ctx, pins.status());
  if (ctx.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const v1::PinInfo& p : pins->pins()) {
      list.push_back({{"pin_id", p.pin_id()},
                      {"tenant", p.tenant()},
                      {"namespace", p.namespace_()},
                      {"tokens", p.tokens()},
                      {"count", p.count()},
                      {"age_seconds", p.age_seconds()}});
    }
    PrintJsonLine(ctx, {{"pins", list}, {"pinned_tokens", pins->pinned_tokens()}});
  } else {
    ctx.out << FormatPins(*pins) << std::flush;
  }
  return kExitOk;
}

int RunHealth(const CommandContext& ctx, const std::string& service) {
  absl::StatusOr<ServingStatus> health = ctx.client.CheckHealth(service);
  if (!health.ok()) return ReportError(ctx, health.status());
  if (ctx.json) {
    PrintJsonLine(ctx, {{"service", service}, {"status", ServingStatusName(*health)}});
  } else {
    ctx.out << ServingStatusName(*health) << '\n' << std::flush;
  }
  return *health == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk : kExitUnavailable;
}

int RunWatch(const CommandContext& ctx) {
  CallHandle handle;  // declared before the watcher, which uses it
  InterruptWatcher interrupt([&handle] { handle.Cancel(); });
  bool have_sequence = false;
  uint64_t last_sequence = 0;
  const absl::Status status = ctx.client.WatchEvents(
      [&](const v1::CacheEvent& event) {
        if (have_sequence && event.sequence() > last_sequence + 1) {
          ctx.err << "prefixctl: " << event.sequence() - last_sequence - 1
                  << " events were dropped (sequence " << last_sequence << " to "
                  << event.sequence() << ")\n"
                  << std::flush;
        }
        have_sequence = true;
        last_sequence = event.sequence();
        if (ctx.json) {
          PrintJsonLine(ctx, CacheEventToJson(event));
        } else {
          ctx.out << FormatEvent(event) << '\n' << std::flush;
        }
      },
      &handle);
  // Ctrl-C is how a watch normally ends.
  if (interrupt.interrupted() && status.code() == absl::StatusCode::kCancelled) return kExitOk;
  if (!status.ok()) return ReportError(ctx, status);
  return kExitOk;
}

}  // namespace prefixd::ctl
