// clients/prefixctl/cli_args.h — prefixctl's exit codes and the prompt taken from its
// command line.
#ifndef PREFIXD_CLIENTS_PREFIXCTL_CLI_ARGS_H_
#define PREFIXD_CLIENTS_PREFIXCTL_CLI_ARGS_H_

#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prefixd/v1/generation.pb.h"

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

// A prompt is text, token ids or a conversation, as in the API's `oneof prompt`.
struct Prompt {
  bool is_token_ids = false;
  bool is_chat = false;
  std::string text;
  std::vector<int32_t> token_ids;
  v1::Conversation chat;
};

struct PromptSources {
  std::vector<std::string> words;  // positional arguments after the subcommand
  bool prompt_flag_given = false;
  std::string prompt_flag;  // --prompt; "-" reads `stdin`
  bool token_ids_flag_given = false;
  std::string token_ids_flag;  // --token_ids

  // Any of these makes the prompt a conversation: the system message, the file's messages,
  // then the words (or --prompt) as the user's message.
  bool chat_flag = false;  // --chat
  bool system_given = false;
  std::string system;  // --system
  bool system_file_given = false;
  std::string system_file;  // --system_file; "-" reads `stdin`
  bool messages_file_given = false;
  std::string messages_file;  // --messages_file (ParseConversationJson); "-" reads `stdin`
  // --add_generation_prompt / --noadd_generation_prompt; unset: the file's, else the
  // server's default.
  std::optional<bool> add_generation_prompt;

  bool is_chat() const {
    return chat_flag || system_given || system_file_given || messages_file_given;
  }
};

// Text or token ids: exactly one source must be used: words (joined with spaces; a lone "-"
// reads `stdin`), --prompt, or --token_ids. A conversation (sources.is_chat()): the words or
// --prompt, if any, become its last (user) message; --token_ids is refused. INVALID_ARGUMENT
// otherwise, for an empty prompt or conversation, or a file that cannot be read or parsed.
absl::StatusOr<Prompt> ResolvePrompt(const PromptSources& sources, std::istream& stdin_stream);

// The conversation before any user message: the system message (--system or --system_file)
// and the messages of --messages_file. Empty when none is given.
absl::StatusOr<v1::Conversation> ResolveConversationStart(const PromptSources& sources,
                                                          std::istream& stdin_stream);

// The whole content of `path`, or of `stdin_stream` when it is "-".
absl::StatusOr<std::string> ReadFileOrStdin(const std::string& path, std::istream& stdin_stream);

// Sets the `prompt` oneof of a GenerateRequest, TokenizeRequest, PinRequest or UnpinRequest.
template <typename Request>
void SetPrompt(const Prompt& prompt, Request* request) {
  if (prompt.is_chat) {
    *request->mutable_chat() = prompt.chat;
  } else if (prompt.is_token_ids) {
    if constexpr (requires { request->mutable_token_ids(); }) {
      *request->mutable_token_ids()->mutable_ids() = {prompt.token_ids.begin(),
                                                      prompt.token_ids.end()};
    }
  } else {
    request->set_text(prompt.text);
  }
}

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_CLI_ARGS_H_
