// tests/clients/subprocess.h — runs a tool the way a user would and captures what it prints.
#ifndef PREFIXD_TESTS_CLIENTS_SUBPROCESS_H_
#define PREFIXD_TESTS_CLIENTS_SUBPROCESS_H_

#include <string>
#include <vector>

namespace prefixd::testing {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal number when killed by a signal
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs argv[0] (a path) with `argv`, feeding `input` on stdin, and waits for it to exit.
// Output goes through temporary files, so a chatty child can never block on a full pipe.
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& input = "");

// Splits text into lines (no trailing empty line).
std::vector<std::string> Lines(const std::string& text);

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_CLIENTS_SUBPROCESS_H_
