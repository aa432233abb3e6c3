#include "clients/prefixctl/chat.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/call_handle.h"
#include "clients/prefixctl/cli_args.h"
#include "clients/prefixctl/conversation.h"
#include "clients/prefixctl/interrupt_watcher.h"
#include "clients/prefixctl/json_format.h"
#include "clients/prefixctl/text_format.h"

namespace prefixd::ctl {
namespace {

constexpr char kGreeting[] =
    "prefixctl chat: type a message and press Enter. /reset forgets the conversation, /exit "
    "or Ctrl-D ends it, Ctrl-C stops a reply.\n";

struct Reply {
  absl::Status status;
  bool interrupted = false;
  std::string text;
  v1::GenerateResponse final_response;  // the message with finish_reason and usage
  bool got_final = false;
};

// Streams one reply: text mode writes it to ctx.out as it arrives.
Reply StreamReply(const CommandContext& ctx, const v1::GenerateRequest& request) {
  Reply reply;
  CallHandle handle;  // declared before the watcher, which uses it
  InterruptWatcher interrupt([&handle] { handle.Cancel(); });
  reply.status = ctx.client.Generate(
      request,
      [&](const v1::GenerateResponse& response) {
        reply.text += response.text();
        if (!ctx.json && !response.text().empty()) ctx.out << response.text() << std::flush;
        if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
          reply.final_response = response;
          reply.got_final = true;
        }
      },
      &handle);
  reply.interrupted =
      interrupt.interrupted() && reply.status.code() == absl::StatusCode::kCancelled;
  return reply;
}

}  // namespace

int RunChat(const CommandContext& ctx, std::istream& in, const ChatOptions& options) {
  v1::Conversation conversation = options.start;
  int exit_code = kExitOk;
  int turn = 0;
  if (options.in_is_terminal) ctx.err << kGreeting << std::flush;
  for (;;) {
    if (options.in_is_terminal) ctx.err << "> " << std::flush;
    std::string line;
    if (!std::getline(in, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (line[0] == '/' && !absl::StartsWith(line, "//")) {
      const absl::string_view command = absl::StripAsciiWhitespace(line);
      if (command == "/exit" || command == "/quit") break;
      if (command == "/reset") {
        conversation = options.start;
        ctx.err << "[conversation reset]\n" << std::flush;
        continue;
      }
      ctx.err << "prefixctl: unknown command " << command
              << " (/reset, /exit; start a message with // to send one that begins with /)\n"
              << std::flush;
      continue;
    }
    if (absl::StartsWith(line, "//")) line.erase(0, 1);

    ++turn;
    *conversation.add_messages() = TextMessage("user", line);
    v1::GenerateRequest request = options.request;
    *request.mutable_chat() = conversation;
    if (!options.request.request_id().empty()) {
      request.set_request_id(absl::StrCat(options.request.request_id(), "-", turn));
    }
    const Reply reply = StreamReply(ctx, request);
    if (!ctx.json && !reply.text.empty() && reply.text.back() != '\n') ctx.out << '\n';
    ctx.out.flush();

    if (!reply.status.ok() && !reply.interrupted) {
      conversation.mutable_messages()->RemoveLast();  // the turn never happened
      ReportError(ctx, reply.status);
      if (reply.status.code() == absl::StatusCode::kUnavailable) return kExitUnavailable;
      exit_code = kExitServerError;
      continue;
    }
    if (reply.interrupted && reply.text.empty()) {
      conversation.mutable_messages()->RemoveLast();
      ctx.err << "[reply cancelled; the message is forgotten]\n" << std::flush;
      continue;
    }
    // What the user saw is what the conversation remembers, a cut-off reply included.
    *conversation.add_messages() = TextMessage("assistant", reply.text);
    if (ctx.json) {
      nlohmann::ordered_json j = {{"turn", turn}, {"role", "assistant"}, {"content", reply.text}};
      if (!request.request_id().empty()) j["request_id"] = request.request_id();
      if (reply.got_final) {
        j["finish_reason"] = FinishReasonName(reply.final_response.finish_reason());
        j["usage"] = UsageToJson(reply.final_response.usage());
      } else {
        j["finish_reason"] = "INTERRUPTED";
      }
      ctx.out << DumpJson(j) << '\n' << std::flush;
    } else if (reply.interrupted) {
      ctx.err << "[reply cancelled]\n" << std::flush;
    } else if (reply.got_final) {
      ctx.err << FormatChatUsage(reply.final_response.usage()) << '\n' << std::flush;
    }
  }
  if (options.in_is_terminal) ctx.err << '\n' << std::flush;
  return exit_code;
}

}  // namespace prefixd::ctl
