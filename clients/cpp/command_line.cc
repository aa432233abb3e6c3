#include "clients/cpp/command_line.h"

#include <algorithm>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace prefixd {
namespace {

absl::CommandLineFlag* FindOurFlag(absl::string_view name, const CommandLineSpec& spec) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr || flag->IsRetired()) return nullptr;
  if (!absl::StrContains(flag->Filename(), spec.flag_path_fragment)) return nullptr;
  return flag;
}

bool IsRepeated(absl::string_view name, const CommandLineSpec& spec) {
  return std::find(spec.repeated_flags.begin(), spec.repeated_flags.end(), name) !=
         spec.repeated_flags.end();
}

absl::Status UnknownFlag(absl::string_view name) {
  return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const CommandLineSpec& spec) {
  CommandLine result;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) result.positional.emplace_back(argv[i]);
      break;
    }
    // "-" alone is an argument (conventionally: standard input).
    if (arg.size() < 2 || arg[0] != '-') {
      result.positional.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(absl::StartsWith(arg, "--") ? 2 : 1);
    if (arg == "help" || arg == "h") {
      result.help = true;
      continue;
    }
    absl::string_view name = arg;
    absl::string_view value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("bad flag '", argv[i], "'"));

    if (IsRepeated(name, spec)) {
      if (!has_value) {
        if (i + 1 >= argc) {
          return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
        }
        value = argv[++i];
      }
      result.repeated[std::string(name)].emplace_back(value);
      result.given.insert(std::string(name));
      continue;
    }

    absl::CommandLineFlag* flag = FindOurFlag(name, spec);
    // --noname for a bool flag.
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* negated = FindOurFlag(name.substr(2), spec);
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = name.substr(2);
        value = "false";
        has_value = true;
      }
    }
    if (flag == nullptr) return UnknownFlag(name);
    if (!has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value '", value, "' for --", name, ": ", error));
    }
    result.given.insert(std::string(name));
  }
  return result;
}

}  // namespace prefixd
