#include "tokenizer/chat_template.h"

#include <cstdio>
#include <filesystem>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace prefixd {
namespace {

using Json = nlohmann::ordered_json;

// tokenizer_config.json of some models lists every added token: allow a large file, but not
// an unbounded one.
constexpr size_t kMaxConfigBytes = size_t{64} << 20;
constexpr size_t kMaxTemplateBytes = size_t{4} << 20;

// The keys of transformers' special_tokens_map: passed to the template when set.
constexpr const char* kSpecialTokenKeys[] = {
    "bos_token", "eos_token", "unk_token",  "sep_token",
    "pad_token", "cls_token", "mask_token", "additional_special_tokens"};

// Variables apply_chat_template sets itself; a keyword argument may not replace them.
constexpr const char* kReservedVariables[] = {"messages", "tools", "documents",
                                              "add_generation_prompt"};

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  std::string text;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0 && text.size() <= max_bytes) {
    text.append(buffer, n);
  }
  const int read_errno = errno;
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return absl::ErrnoToStatus(read_errno, absl::StrCat("cannot read ", path));
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", max_bytes, " bytes, which is too large"));
  }
  return text;
}

// A special token's value: a string, or an AddedToken object {"content": "<s>", ...}.
absl::StatusOr<std::optional<Json>> SpecialTokenValue(const Json& value, std::string_view key,
                                                      std::string_view path) {
  if (value.is_null()) return std::nullopt;
  if (value.is_string()) return value;
  if (value.is_object()) {
    auto content = value.find("content");
    if (content != value.end() && content->is_string()) return *content;
  }
  if (value.is_array() && key == "additional_special_tokens") {
    Json list = Json::array();
    for (const Json& item : value) {
      absl::StatusOr<std::optional<Json>> v = SpecialTokenValue(item, "", path);
      if (!v.ok()) return v.status();
      if (v->has_value()) list.push_back(**v);
    }
    return list;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(path), ": ", std::string(key),
                   " must be a string or an object with a string \"content\", got ",
                   value.dump(-1, ' ', false, Json::error_handler_t::replace).substr(0, 80)));
}

// tokenizer_config.json: its special tokens, and its chat templates (if any).
struct TokenizerConfig {
  ChatTemplate::SpecialTokens special_tokens;
  std::map<std::string, std::string> templates;
};

absl::StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, kMaxConfigBytes);
  if (!text.ok()) return text.status();
  Json root;
  try {
    root = Json::parse(*text);
  } catch (const Json::exception& e) {
    std::string_view what = e.what();
    if (size_t end = what.find("] "); what.starts_with("[json.") && end != what.npos) {
      what.remove_prefix(end + 2);
    }
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON: ", std::string(what)));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON object"));
  }
  TokenizerConfig config;
  for (const char* key : kSpecialTokenKeys) {
    auto it = root.find(key);
    if (it == root.end()) continue;
    absl::StatusOr<std::optional<Json>> value = SpecialTokenValue(*it, key, path);
    if (!value.ok()) return value.status();
    if (value->has_value()) config.special_tokens[key] = **value;
  }
  auto chat = root.find("chat_template");
  if (chat == root.end() || chat->is_null()) return config;
  if (chat->is_string()) {
    config.templates["default"] = chat->get<std::string>();
  } else if (chat->is_array()) {
    for (const Json& entry : *chat) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
          !entry.contains("template") || !entry["template"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path,
                         ": chat_template must be a string or a list of {\"name\": "
                         "string, \"template\": string} objects"));
      }
      const std::string name = entry["name"].get<std::string>();
      if (!config.templates.emplace(name, entry["template"].get<std::string>()).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": chat_template names \"", name, "\" twice"));
      }
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": chat_template must be a string or a list of named templates"));
  }
  return config;
}

// Python's str.strip() for the whitespace a template may have trimmed.
std::string_view Strip(std::string_view s) {
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

// transformers: the rendered prompt cut right after the final message's text, so that the
// model continues that message instead of starting a new turn.
absl::StatusOr<std::string> CutAfterFinalMessage(std::string rendered, const Json& messages) {
  if (messages.empty()) {
    return absl::InvalidArgumentError("continue_final_message needs at least one message");
  }
  const Json& last = messages.back();
  std::string final_text;
  bool found = false;
  if (last.is_object() && last.contains("content")) {
    const Json& content = last["content"];
    if (content.is_string()) {
      final_text = content.get<std::string>();
      found = true;
    } else if (content.is_array()) {
      for (auto it = content.rbegin(); it != content.rend(); ++it) {
        if (it->is_object() && it->contains("text") && (*it)["text"].is_string()) {
          final_text = (*it)["text"].get<std::string>();
          found = true;
          break;
        }
      }
    }
  }
  if (!found) {
    return absl::InvalidArgumentError(
        "continue_final_message is set but the final message has no text to continue");
  }
  const std::string_view stripped = Strip(final_text);
  const size_t at = rendered.rfind(stripped);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(
        "continue_final_message is set but the final message does not appear in the chat "
        "after applying the chat template (the template changes it)");
  }
  std::string_view lstripped = final_text;
  while (!lstripped.empty() && absl::ascii_isspace(static_cast<unsigned char>(lstripped.front()))) {
    lstripped.remove_prefix(1);
  }
  if (std::string_view(rendered).substr(at, lstripped.size()) == final_text) {
    rendered.resize(at + lstripped.size());
  } else {
    rendered.resize(at + stripped.size());
  }
  return rendered;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(
    const std::map<std::string, std::string>& templates, SpecialTokens special_tokens,
    std::string_view source_name) {
  auto chat = std::unique_ptr<ChatTemplate>(new ChatTemplate());
  for (const auto& [name, source] : templates) {
    absl::StatusOr<jinja::Template> t = jinja::Template::Parse(source);
    if (!t.ok()) {
      const std::string which = templates.size() > 1 ? absl::StrCat(" (\"", name, "\")") : "";
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(source_name), which,
                       ": chat template does not parse: ", t.status().message()));
    }
    chat->templates_.emplace(name, *std::move(t));
  }
  chat->special_tokens_ = std::move(special_tokens);
  return chat;
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Load(std::string_view model_folder,
                                                                 std::string_view override_file) {
  TokenizerConfig config;
  std::string source_name;
  if (!model_folder.empty()) {
    const std::filesystem::path folder(model_folder);
    const std::filesystem::path config_path = folder / "tokenizer_config.json";
    std::error_code ec;
    if (std::filesystem::exists(config_path, ec)) {
      absl::StatusOr<TokenizerConfig> read = ReadTokenizerConfig(config_path.string());
      if (!read.ok()) return read.status();
      config = *std::move(read);
      source_name = config_path.string();
    }
    const std::filesystem::path jinja_path = folder / "chat_template.jinja";
    if (override_file.empty() && std::filesystem::exists(jinja_path, ec)) {
      // transformers 4.50+ saves the template here; it wins over the config's copy.
      absl::StatusOr<std::string> text = ReadFile(jinja_path.string(), kMaxTemplateBytes);
      if (!text.ok()) return text.status();
      config.templates.clear();
      config.templates["default"] = *std::move(text);
      source_name = jinja_path.string();
    }
  }
  if (!override_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile(std::string(override_file), kMaxTemplateBytes);
    if (!text.ok()) return text.status();
    config.templates.clear();
    config.templates["default"] = *std::move(text);
    source_name = std::string(override_file);
  }
  if (config.templates.empty()) return nullptr;
  return Create(config.templates, std::move(config.special_tokens), source_name);
}

std::vector<std::string> ChatTemplate::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : templates_) out.push_back(name);
  return out;
}

absl::StatusOr<std::string> ChatTemplate::Render(const Conversation& conversation,
                                                 const jinja::RenderOptions& options) const {
  if (!conversation.messages.is_array()) {
    return absl::InvalidArgumentError("messages must be a list");
  }
  for (size_t i = 0; i < conversation.messages.size(); ++i) {
    if (!conversation.messages[i].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "] must be an object"));
    }
  }
  if (conversation.tools.has_value() && !conversation.tools->is_array()) {
    return absl::InvalidArgumentError("tools must be a list");
  }
  if (!conversation.kwargs.is_object()) {
    return absl::InvalidArgumentError("template keyword arguments must be an object");
  }
  for (const char* reserved : kReservedVariables) {
    if (conversation.kwargs.contains(reserved)) {
      return absl::InvalidArgumentError(absl::StrCat("template keyword arguments may not set \"",
                                                     reserved, "\": it has its own field"));
    }
  }
  if (conversation.continue_final_message && conversation.add_generation_prompt.value_or(false)) {
    return absl::InvalidArgumentError(
        "continue_final_message and add_generation_prompt cannot both be set: the first "
        "continues the last message, the second starts a new assistant turn");
  }
  const bool add_generation_prompt =
      conversation.add_generation_prompt.value_or(!conversation.continue_final_message);

  // transformers: "tool_use" when tools are given and the model has one, else "default".
  const jinja::Template* chosen = nullptr;
  if (conversation.tools.has_value()) {
    if (auto it = templates_.find("tool_use"); it != templates_.end()) chosen = &it->second;
  }
  if (chosen == nullptr) {
    if (auto it = templates_.find("default"); it != templates_.end()) {
      chosen = &it->second;
    } else if (templates_.size() == 1) {
      chosen = &templates_.begin()->second;
    } else {
      return absl::FailedPreconditionError(absl::StrCat("this model has several chat templates (",
                                                        absl::StrJoin(names(), ", "),
                                                        ") and none is named \"default\""));
    }
  }

  Json variables = Json::object();
  variables["messages"] = conversation.messages;
  variables["tools"] = conversation.tools.has_value() ? *conversation.tools : Json(nullptr);
  variables["documents"] = nullptr;
  variables["add_generation_prompt"] = add_generation_prompt;
  for (const auto& [key, value] : special_tokens_) variables[key] = value;
  for (const auto& [key, value] : conversation.kwargs.items()) variables[key] = value;

  absl::StatusOr<std::string> rendered = chosen->Render(variables, options);
  if (!rendered.ok()) return rendered.status();
  if (!conversation.continue_final_message) return rendered;
  return CutAfterFinalMessage(*std::move(rendered), conversation.messages);
}

}  // namespace prefixd
