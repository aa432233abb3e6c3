// clients/prefixctl/chat.h — `prefixctl chat`: a conversation typed (or piped) line by line.
#ifndef PREFIXD_CLIENTS_PREFIXCTL_CHAT_H_
#define PREFIXD_CLIENTS_PREFIXCTL_CHAT_H_

#include <istream>

#include "clients/prefixctl/commands.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::ctl {

struct ChatOptions {
  // What every conversation starts from (the system prompt, and any earlier messages);
  // /reset goes back to it.
  v1::Conversation start;
  // Sampling, logprobs, request_id and shared_namespace of every turn; its prompt is
  // replaced by the conversation so far. A request_id gets "-N" appended for turn N.
  v1::GenerateRequest request;
  // Whether `in` is a terminal: then a greeting and a "> " prompt go to ctx.err.
  bool in_is_terminal = false;
};

// Reads the user's messages from `in`, one per line, until EOF or "/exit" ("/reset" forgets
// the turns so far; "//text" sends "/text"; blank lines are skipped). Each turn sends the
// whole conversation as GenerateRequest.chat, streams the reply to ctx.out (with --json:
// one object per turn instead) and appends it to the conversation as the assistant's
// message; after each reply a FormatChatUsage line goes to ctx.err. Ctrl-C during a reply
// cancels that reply only: what was shown of it stays in the conversation.
//
// A turn the server refuses is reported and left out of the conversation, and the chat goes
// on. Returns 0; 1 if some turn failed; 3 (at once) when the server is unavailable.
int RunChat(const CommandContext& ctx, std::istream& in, const ChatOptions& options);

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_CHAT_H_
