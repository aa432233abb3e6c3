#include "clients/prefixctl/cli_args.h"

#include <fstream>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "clients/prefixctl/conversation.h"

namespace prefixd::ctl {

int ExitCodeForStatus(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (status.code() == absl::StatusCode::kUnavailable) return kExitUnavailable;
  return kExitServerError;
}

absl::StatusOr<std::vector<int32_t>> ParseTokenIds(absl::string_view text) {
  std::vector<int32_t> ids;
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError("--token_ids is empty");
  }
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_ids: '", part, "' is not a token id (want e.g. 1,2,3)"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<std::string> ReadFileOrStdin(const std::string& path, std::istream& stdin_stream) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(stdin_stream),
                       std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

namespace {

// Text from words or --prompt ("-" reads stdin); nullopt when neither was given.
absl::StatusOr<std::optional<std::string>> PromptText(const PromptSources& sources,
                                                      std::istream& stdin_stream) {
  if (sources.words.empty() && !sources.prompt_flag_given) return std::nullopt;
  if (!sources.words.empty() && sources.prompt_flag_given) {
    return absl::InvalidArgumentError(
        "give the prompt one way only: as arguments, with --prompt or with --token_ids");
  }
  const std::string text =
      sources.prompt_flag_given ? sources.prompt_flag : absl::StrJoin(sources.words, " ");
  if (text != "-") return text;
  absl::StatusOr<std::string> read = ReadFileOrStdin("-", stdin_stream);
  if (!read.ok()) return read.status();
  return *std::move(read);
}

bool PromptReadsStdin(const PromptSources& sources) {
  if (sources.prompt_flag_given) return sources.prompt_flag == "-";
  return sources.words.size() == 1 && sources.words[0] == "-";
}

}  // namespace

absl::StatusOr<v1::Conversation> ResolveConversationStart(const PromptSources& sources,
                                                          std::istream& stdin_stream) {
  if (sources.system_given && sources.system_file_given) {
    return absl::InvalidArgumentError(
        "give the system prompt one way only: --system or --system_file");
  }
  const int stdin_readers = (PromptReadsStdin(sources) ? 1 : 0) +
                            (sources.system_file_given && sources.system_file == "-" ? 1 : 0) +
                            (sources.messages_file_given && sources.messages_file == "-" ? 1 : 0);
  if (stdin_readers > 1) {
    return absl::InvalidArgumentError(
        "only one of the prompt, --system_file and --messages_file can read standard input");
  }
  v1::Conversation conversation;
  if (sources.system_given || sources.system_file_given) {
    std::string system = sources.system;
    if (sources.system_file_given) {
      absl::StatusOr<std::string> read = ReadFileOrStdin(sources.system_file, stdin_stream);
      if (!read.ok())
        return absl::InvalidArgumentError(absl::StrCat("--system_file: ", read.status().message()));
      system = *std::move(read);
    }
    if (system.empty()) return absl::InvalidArgumentError("the system prompt is empty");
    v1::ChatMessage* message = conversation.add_messages();
    message->set_role("system");
    message->set_text(system);
  }
  if (sources.messages_file_given) {
    absl::StatusOr<std::string> read = ReadFileOrStdin(sources.messages_file, stdin_stream);
    if (!read.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--messages_file: ", read.status().message()));
    }
    absl::StatusOr<v1::Conversation> file = ParseConversationJson(*read);
    if (!file.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--messages_file ", sources.messages_file, ": ", file.status().message()));
    }
    if (conversation.messages_size() > 0 && file->messages_size() > 0 &&
        file->messages(0).role() == "system") {
      return absl::InvalidArgumentError(
          absl::StrCat("--messages_file ", sources.messages_file,
                       " already starts with a system message; drop --system/--system_file"));
    }
    for (v1::ChatMessage& message : *file->mutable_messages()) {
      *conversation.add_messages() = std::move(message);
    }
    file->clear_messages();
    conversation.MergeFrom(*file);  // tools, add_generation_prompt, ...
  }
  if (sources.add_generation_prompt.has_value()) {
    conversation.set_add_generation_prompt(*sources.add_generation_prompt);
  }
  return conversation;
}

absl::StatusOr<Prompt> ResolvePrompt(const PromptSources& sources, std::istream& stdin_stream) {
  Prompt prompt;
  if (sources.is_chat()) {
    if (sources.token_ids_flag_given) {
      return absl::InvalidArgumentError(
          "--token_ids cannot be a conversation's message (--chat, --system, --system_file, "
          "--messages_file)");
    }
    absl::StatusOr<v1::Conversation> conversation = ResolveConversationStart(sources, stdin_stream);
    if (!conversation.ok()) return conversation.status();
    absl::StatusOr<std::optional<std::string>> user = PromptText(sources, stdin_stream);
    if (!user.ok()) return user.status();
    if (user->has_value()) {
      if ((*user)->empty()) return absl::InvalidArgumentError("the prompt is empty");
      *conversation->add_messages() = TextMessage("user", **user);
    }
    if (conversation->messages_size() == 0) {
      return absl::InvalidArgumentError(
          "the conversation is empty: give a message as arguments, or --system or "
          "--messages_file");
    }
    prompt.is_chat = true;
    prompt.chat = *std::move(conversation);
    return prompt;
  }

  const int used = (sources.words.empty() ? 0 : 1) + (sources.prompt_flag_given ? 1 : 0) +
                   (sources.token_ids_flag_given ? 1 : 0);
  if (used == 0) {
    return absl::InvalidArgumentError(
        "no prompt: give it as arguments, with --prompt (- reads standard input), with "
        "--token_ids, or as a conversation (--messages_file, --system)");
  }
  if (used > 1) {
    return absl::InvalidArgumentError(
        "give the prompt one way only: as arguments, with --prompt or with --token_ids");
  }
  if (sources.token_ids_flag_given) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseTokenIds(sources.token_ids_flag);
    if (!ids.ok()) return ids.status();
    prompt.is_token_ids = true;
    prompt.token_ids = *std::move(ids);
    return prompt;
  }
  absl::StatusOr<std::optional<std::string>> text = PromptText(sources, stdin_stream);
  if (!text.ok()) return text.status();
  prompt.text = **std::move(text);
  if (prompt.text.empty()) return absl::InvalidArgumentError("the prompt is empty");
  return prompt;
}

}  // namespace prefixd::ctl
