// clients/prefixctl/conversation.h — the API's Conversation from the JSON that chat tools
// exchange (OpenAI's and transformers' message shape).
#ifndef PREFIXD_CLIENTS_PREFIXCTL_CONVERSATION_H_
#define PREFIXD_CLIENTS_PREFIXCTL_CONVERSATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::ctl {

// Parses either a list of messages
//   [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}, ...]
// or an object {"messages": [...], "tools": [...], "add_generation_prompt": bool,
// "continue_final_message": bool, "chat_template_kwargs": {...}} (the arguments of
// transformers' apply_chat_template). A message's "content" is a string, null, or a list of
// parts ({"type": "text", "text": "..."}); "tool_calls" (a list), "tool_call_id" and "name"
// map to their fields, and any other field goes to extra_json. Errors (INVALID_ARGUMENT)
// name the message: "message 2: \"role\" must be a string".
absl::StatusOr<v1::Conversation> ParseConversationJson(absl::string_view json);

// {"role": role, "content": text}.
v1::ChatMessage TextMessage(absl::string_view role, absl::string_view text);

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_CONVERSATION_H_
