// clients/prefixctl/commands.h — prefixctl's subcommands. Each runs one call against the
// server, prints its result (text, or one JSON object per line with --json) and returns the
// process exit code (cli_args.h). Errors go to `err`: "prefixctl: CODE: message", or a JSON
// object with --json.
#ifndef PREFIXD_CLIENTS_PREFIXCTL_COMMANDS_H_
#define PREFIXD_CLIENTS_PREFIXCTL_COMMANDS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "clients/cpp/prefixd_client.h"

namespace prefixd::ctl {

struct CommandContext {
  const PrefixdClient& client;
  bool json = false;
  std::ostream& out;  // results
  std::ostream& err;  // errors, and for generate the usage summary (text mode)
  // generate, detokenize: whether `out` is a terminal (then the text gets a final newline).
  bool out_is_terminal = false;
};

// Prints `status` to ctx.err and returns its exit code.
int ReportError(const CommandContext& ctx, const absl::Status& status);

// Streams the completion: text mode writes the text to `out` as it arrives, then a usage
// summary (cached tokens, timings) and the logprobs if asked for to `err`; JSON mode writes
// every response as one line. Ctrl-C cancels the call (exit 130).
int RunGenerate(const CommandContext& ctx, const v1::GenerateRequest& request);

// The rendered prompt and its token ids (FormatTokenize), or one JSON object.
int RunTokenize(const CommandContext& ctx, const v1::TokenizeRequest& request);
// The text, verbatim (a newline follows on a terminal), or {"text": ...}.
int RunDetokenize(const CommandContext& ctx, const v1::DetokenizeRequest& request);

int RunStats(const CommandContext& ctx);
int RunPin(const CommandContext& ctx, const v1::PinRequest& request);
int RunUnpin(const CommandContext& ctx, const v1::UnpinRequest& request);
int RunFlush(const CommandContext& ctx, bool drop_pins);
// Every pin (admins): id, tenant, namespace, length, nesting, age.
int RunPins(const CommandContext& ctx);
// Exit 0 when SERVING, 3 otherwise.
int RunHealth(const CommandContext& ctx, const std::string& service);
// Prints events until Ctrl-C (exit 0) or the server ends the stream.
int RunWatch(const CommandContext& ctx);

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_COMMANDS_H_
