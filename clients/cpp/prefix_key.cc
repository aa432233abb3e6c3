#include "clients/cpp/prefix_key.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "xxhash.h"

namespace prefixd {
namespace {

void AppendMessage(const v1::ChatMessage& message, std::string& out) {
  absl::StrAppend(&out, message.role(), "\n");
  if (message.has_parts()) {
    for (const v1::ContentPart& part : message.parts().parts()) out += part.text();
  } else {
    out += message.text();
  }
  out += "\n";
}

// The three requests that carry a prompt share its fields (text, token_ids, chat).
template <typename Request>
std::string KeyOf(const Request& request) {
  std::string material = absl::StrCat(request.shared_namespace(), "\n");
  if (request.has_chat()) {
    const v1::Conversation& chat = request.chat();
    material += "chat\n";
    int leading = 0;
    while (leading < chat.messages_size() && (chat.messages(leading).role() == "system" ||
                                              chat.messages(leading).role() == "developer")) {
      AppendMessage(chat.messages(leading++), material);
    }
    if (leading == 0 && chat.messages_size() > 0) AppendMessage(chat.messages(0), material);
    material += chat.tools_json();
  } else if (request.prompt_case() == Request::kText) {
    material += "text\n";
    material.append(request.text(), 0, kPrefixKeyTextBytes);
  } else if (request.has_token_ids()) {
    material += "ids\n";
    const int n = std::min(request.token_ids().ids_size(), kPrefixKeyTokenIds);
    for (int i = 0; i < n; ++i) absl::StrAppend(&material, request.token_ids().ids(i), ",");
  } else {
    return "";
  }
  return absl::StrFormat("%016x", XXH64(material.data(), material.size(), 0));
}

}  // namespace

std::string PrefixKey(const v1::GenerateRequest& request) { return KeyOf(request); }
std::string PrefixKey(const v1::PinRequest& request) { return KeyOf(request); }
std::string PrefixKey(const v1::UnpinRequest& request) { return KeyOf(request); }

}  // namespace prefixd
