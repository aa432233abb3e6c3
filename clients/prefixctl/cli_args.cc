#include "clients/prefixctl/cli_args.h"

#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

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

absl::StatusOr<Prompt> ResolvePrompt(const PromptSources& sources, std::istream& stdin_stream) {
  const int used = (sources.words.empty() ? 0 : 1) + (sources.prompt_flag_given ? 1 : 0) +
                   (sources.token_ids_flag_given ? 1 : 0);
  if (used == 0) {
    return absl::InvalidArgumentError(
        "no prompt: give it as arguments, with --prompt (- reads standard input) or with "
        "--token_ids");
  }
  if (used > 1) {
    return absl::InvalidArgumentError(
        "give the prompt one way only: as arguments, with --prompt or with --token_ids");
  }
  Prompt prompt;
  if (sources.token_ids_flag_given) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseTokenIds(sources.token_ids_flag);
    if (!ids.ok()) return ids.status();
    prompt.is_token_ids = true;
    prompt.token_ids = *std::move(ids);
    return prompt;
  }
  const std::string text =
      sources.prompt_flag_given ? sources.prompt_flag : absl::StrJoin(sources.words, " ");
  if (text == "-") {
    prompt.text.assign(std::istreambuf_iterator<char>(stdin_stream),
                       std::istreambuf_iterator<char>());
  } else {
    prompt.text = text;
  }
  if (prompt.text.empty()) return absl::InvalidArgumentError("the prompt is empty");
  return prompt;
}

}  // namespace prefixd::ctl
