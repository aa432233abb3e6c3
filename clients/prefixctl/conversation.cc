#include "clients/prefixctl/conversation.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace prefixd::ctl {
namespace {

using Json = nlohmann::ordered_json;

absl::Status MessageError(size_t index, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("message ", index + 1, ": ", what));
}

absl::StatusOr<v1::ChatMessage> ParseMessage(const Json& j, size_t index) {
  if (!j.is_object()) return MessageError(index, "must be an object");
  v1::ChatMessage message;
  Json extra = Json::object();
  for (const auto& [key, value] : j.items()) {
    if (key == "role") {
      if (!value.is_string()) return MessageError(index, "\"role\" must be a string");
      message.set_role(value.get<std::string>());
    } else if (key == "content") {
      if (value.is_null()) continue;  // content None
      if (value.is_string()) {
        message.set_text(value.get<std::string>());
      } else if (value.is_array()) {
        v1::ContentParts* parts = message.mutable_parts();
        for (const Json& part : value) {
          if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
            return MessageError(index, "each content part must be an object with a \"type\"");
          }
          v1::ContentPart* p = parts->add_parts();
          p->set_type(part["type"].get<std::string>());
          if (part.contains("text")) {
            if (!part["text"].is_string()) {
              return MessageError(index, "a content part's \"text\" must be a string");
            }
            p->set_text(part["text"].get<std::string>());
          }
        }
      } else {
        return MessageError(index, "\"content\" must be a string, a list of parts or null");
      }
    } else if (key == "tool_calls") {
      if (value.is_null()) continue;
      if (!value.is_array()) return MessageError(index, "\"tool_calls\" must be a list");
      message.set_tool_calls_json(value.dump());
    } else if (key == "tool_call_id" || key == "name") {
      if (!value.is_string())
        return MessageError(index, absl::StrCat("\"", key, "\" must be a string"));
      if (key == "name") {
        message.set_name(value.get<std::string>());
      } else {
        message.set_tool_call_id(value.get<std::string>());
      }
    } else {
      extra[key] = value;
    }
  }
  if (message.role().empty()) return MessageError(index, "has no \"role\"");
  if (!extra.empty()) message.set_extra_json(extra.dump());
  return message;
}

absl::Status ParseMessages(const Json& messages, v1::Conversation* conversation) {
  if (!messages.is_array()) {
    return absl::InvalidArgumentError("\"messages\" must be a list of messages");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    absl::StatusOr<v1::ChatMessage> message = ParseMessage(messages[i], i);
    if (!message.ok()) return message.status();
    *conversation->add_messages() = *std::move(message);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Conversation> ParseConversationJson(absl::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  v1::Conversation conversation;
  if (j.is_array()) {
    if (absl::Status s = ParseMessages(j, &conversation); !s.ok()) return s;
    return conversation;
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        "want a list of messages or an object with \"messages\" (see --help)");
  }
  if (!j.contains("messages")) return absl::InvalidArgumentError("no \"messages\"");
  for (const auto& [key, value] : j.items()) {
    if (key == "messages") {
      if (absl::Status s = ParseMessages(value, &conversation); !s.ok()) return s;
    } else if (key == "tools") {
      if (value.is_null()) continue;
      if (!value.is_array()) return absl::InvalidArgumentError("\"tools\" must be a list");
      conversation.set_tools_json(value.dump());
    } else if (key == "add_generation_prompt" || key == "continue_final_message") {
      if (!value.is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be true or false"));
      }
      if (key == "add_generation_prompt") {
        conversation.set_add_generation_prompt(value.get<bool>());
      } else {
        conversation.set_continue_final_message(value.get<bool>());
      }
    } else if (key == "chat_template_kwargs") {
      if (!value.is_object()) {
        return absl::InvalidArgumentError("\"chat_template_kwargs\" must be an object");
      }
      conversation.set_template_kwargs_json(value.dump());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown field \"", key,
                       "\" (known: messages, tools, add_generation_prompt, continue_final_message, "
                       "chat_template_kwargs)"));
    }
  }
  return conversation;
}

v1::ChatMessage TextMessage(absl::string_view role, absl::string_view text) {
  v1::ChatMessage message;
  message.set_role(std::string(role));
  message.set_text(std::string(text));
  return message;
}

}  // namespace prefixd::ctl
