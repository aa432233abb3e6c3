// clients/prefixctl/cli_args.h — prefixctl's exit codes and the prompt taken from its
// command line.
#ifndef PREFIXD_CLIENTS_PREFIXCTL_CLI_ARGS_H_
#define PREFIXD_CLIENTS_PREFIXCTL_CLI_ARGS_H_

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prefixd::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitServerError = 1;    // the server answered with an error
inline constexpr int kExitUsage = 2;          // bad flags or arguments; nothing was sent
inline constexpr int kExitUnavailable = 3;    // cannot reach the server, or it is not serving
inline constexpr int kExitInterrupted = 130;  // Ctrl-C during generate (128 + SIGINT)

// OK → 0, UNAVAILABLE → 3, any other code → 1.
int ExitCodeForStatus(const absl::Status& status);

// "1,2,3" (spaces allowed around the commas) → {1, 2, 3}.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(absl::string_view text);

// A prompt is text or token ids, as in the API's `oneof prompt`.
struct Prompt {
  bool is_token_ids = false;
  std::string text;
  std::vector<int32_t> token_ids;
};

struct PromptSources {
  std::vector<std::string> words;  // positional arguments after the subcommand
  bool prompt_flag_given = false;
  std::string prompt_flag;  // --prompt; "-" reads `stdin`
  bool token_ids_flag_given = false;
  std::string token_ids_flag;  // --token_ids
};

// Exactly one source must be used: words (joined with spaces; a lone "-" reads `stdin`),
// --prompt, or --token_ids. INVALID_ARGUMENT otherwise, or for an empty prompt.
absl::StatusOr<Prompt> ResolvePrompt(const PromptSources& sources, std::istream& stdin_stream);

// Sets the `prompt` oneof of a GenerateRequest, PinRequest or UnpinRequest.
template <typename Request>
void SetPrompt(const Prompt& prompt, Request* request) {
  if (prompt.is_token_ids) {
    *request->mutable_token_ids()->mutable_ids() = {prompt.token_ids.begin(),
                                                    prompt.token_ids.end()};
  } else {
    request->set_text(prompt.text);
  }
}

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_CLI_ARGS_H_
