// clients/cpp/command_line.h — command-line parsing for prefixctl and prefix-bench.
//
// Flags are ordinary ABSL_FLAGs (typed, with defaults); this parser sets them. It exists
// instead of absl::ParseCommandLine because the tools need what that one does not give:
// usage errors returned as a Status (the tools exit 2 on them, absl exits 1), --help that
// exits 0 with the tool's own text, flags that may repeat (`--stop=. --stop=!`), and a record
// of which flags were given (a flag given overrides a preset).
#ifndef PREFIXD_CLIENTS_CPP_COMMAND_LINE_H_
#define PREFIXD_CLIENTS_CPP_COMMAND_LINE_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace prefixd {

struct CommandLineSpec {
  // Only flags defined in source files whose path contains this are accepted, so Abseil's
  // own flags (--flagfile, --fromenv, ...) are rejected as unknown. E.g. "clients/".
  std::string flag_path_fragment;
  // Names that may be given several times; their values are collected into
  // CommandLine::repeated and no ABSL_FLAG of that name is needed.
  std::vector<std::string> repeated_flags;
};

struct CommandLine {
  // Arguments that are not flags, in order (argv[0] excluded). Everything after "--" is one.
  std::vector<std::string> positional;
  absl::flat_hash_map<std::string, std::vector<std::string>> repeated;
  // Names of the flags given on the command line.
  absl::flat_hash_set<std::string> given;
  // --help, -help or -h was given (the other arguments are still parsed).
  bool help = false;
};

// Accepts --name=value, --name value (non-bool flags), --name and --noname (bool flags),
// single-dash spellings of each, and "--" to end the flags. Sets the ABSL_FLAGs it parses.
// Errors (INVALID_ARGUMENT) name the offending flag.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const CommandLineSpec& spec);

}  // namespace prefixd

#endif  // PREFIXD_CLIENTS_CPP_COMMAND_LINE_H_
