// A real prefixd process on a loopback port, for integration tests.
//
//   auto server = ServerProcess::Start({"--max_running_requests=4"});
//   auto channel = grpc::CreateChannel((*server)->target(), ...);
//   httplib::Client http((*server)->http_address());  // /metrics, /dashboard, ...
//   ...
//   EXPECT_EQ((*server)->Stop(), 0);  // SIGTERM, drain, exit code
//
// Elsewhere than the build tree (scripts/gpu_check.sh runs tenant_abuse_test on the GPU
// machine), the environment may name another binary, PREFIXD_TEST_SERVER, and flags to add
// after the test's own, PREFIXD_TEST_SERVER_FLAGS (space-separated; e.g. --backend=cuda
// --model=random:llama-3-8b).
#ifndef PREFIXD_TESTS_SERVICE_SERVER_PROCESS_H_
#define PREFIXD_TESTS_SERVICE_SERVER_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace prefixd::testing {

// Resident memory of process `pid` in KiB (-1 when it cannot be read).
inline int64_t RssKb(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

// True in an AddressSanitizer build, whose quarantine keeps up to 256 MiB of freed memory
// resident: growth of RSS says nothing there (LeakSanitizer checks for leaks instead).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

// Writes `text` to a new file under /tmp (e.g. a tokens file) and returns its path; the
// caller unlinks it.
inline std::string WriteTempFile(const std::string& text) {
  char path[] = "/tmp/prefixd-test-XXXXXX";
  const int fd = mkstemp(path);
  close(fd);
  std::ofstream(path) << text;
  return path;
}

class ServerProcess {
 public:
  // Starts PREFIXD_BINARY with `args` (and --listen=127.0.0.1:0 and
  // --http_listen=127.0.0.1:0 unless given), and returns once it prints its "listening on"
  // line. Its stderr goes to a log file (see log()).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(std::vector<std::string> args) {
    bool has_listen = false;
    for (const std::string& a : args) has_listen |= a.rfind("--listen", 0) == 0;
    if (!has_listen) args.push_back("--listen=127.0.0.1:0");
    // The HTTP side port defaults to 8080: tests running side by side each take a free one.
    bool has_http_listen = false;
    for (const std::string& a : args) has_http_listen |= a.rfind("--http_listen", 0) == 0;
    if (!has_http_listen) args.push_back("--http_listen=127.0.0.1:0");
    // So does the OpenAI API (8000).
    bool has_openai_listen = false;
    for (const std::string& a : args) has_openai_listen |= a.rfind("--openai_listen", 0) == 0;
    if (!has_openai_listen) args.push_back("--openai_listen=127.0.0.1:0");
    // The tests' loads fit in a small pool; keep start-up fast.
    bool has_kv = false;
    for (const std::string& a : args) has_kv |= a.rfind("--kv_cache_tokens", 0) == 0;
    if (!has_kv) args.push_back("--kv_cache_tokens=65536");
    // One compute thread: tests run in parallel on small machines, and a thread pool's
    // barriers stall badly when its threads are descheduled.
    bool has_threads = false;
    for (const std::string& a : args) has_threads |= a.rfind("--threads", 0) == 0;
    if (!has_threads) args.push_back("--threads=1");
    if (const char* extra = std::getenv("PREFIXD_TEST_SERVER_FLAGS"); extra != nullptr) {
      std::istringstream flags(extra);
      for (std::string flag; flags >> flag;) args.push_back(flag);
    }

    auto p = std::unique_ptr<ServerProcess>(new ServerProcess());
    char log_template[] = "/tmp/prefixd-test-XXXXXX";
    const int log_fd = mkstemp(log_template);
    if (log_fd < 0) return absl::InternalError("mkstemp failed");
    p->log_path_ = log_template;
    int out[2];
    if (pipe(out) != 0) return absl::InternalError("pipe failed");
    p->pid_ = fork();
    if (p->pid_ < 0) return absl::InternalError("fork failed");
    if (p->pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      close(out[0]);
      std::vector<char*> argv;
      const char* other = std::getenv("PREFIXD_TEST_SERVER");
      std::string binary = other != nullptr && *other != '\0' ? other : PREFIXD_BINARY;
      argv.push_back(binary.data());
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      std::perror("execv prefixd");
      _exit(127);
    }
    close(out[1]);
    close(log_fd);
    p->stdout_ = fdopen(out[0], "r");
    // Read lines until "listening on HOST:PORT" (or the process dies: EOF); the dashboard
    // line ("dashboard on http://HOST:PORT/dashboard") comes before it when the port is on.
    char line[512];
    while (std::fgets(line, sizeof(line), p->stdout_) != nullptr) {
      const std::string s(line);
      const std::string dashboard = "prefixd: dashboard on http://";
      if (s.rfind(dashboard, 0) == 0) {
        const std::string url = s.substr(dashboard.size());
        p->http_address_ = url.substr(0, url.find('/'));
        continue;
      }
      const std::string openai = "prefixd: OpenAI-compatible API on ";
      if (s.rfind(openai, 0) == 0) {
        p->openai_url_ = s.substr(openai.size());
        while (!p->openai_url_.empty() && std::isspace(p->openai_url_.back())) {
          p->openai_url_.pop_back();
        }
        continue;
      }
      const std::string marker = "prefixd: listening on ";
      if (s.rfind(marker, 0) == 0) {
        p->target_ = s.substr(marker.size());
        while (!p->target_.empty() && (p->target_.back() == '\n' || p->target_.back() == '\r')) {
          p->target_.pop_back();
        }
        return p;
      }
    }
    const int code = p->Wait();
    return absl::InternalError(
        absl::StrCat("prefixd exited (", code, ") before listening; its log:\n", p->log()));
  }

  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
    if (stdout_ != nullptr) std::fclose(stdout_);
    if (!log_path_.empty()) unlink(log_path_.c_str());
  }

  const std::string& target() const { return target_; }
  // HOST:PORT of the HTTP side port (/metrics, /dashboard, /healthz, /readyz); empty when
  // it was turned off (--http_listen=).
  const std::string& http_address() const { return http_address_; }
  // The OpenAI API's base URL as printed, e.g. "http://127.0.0.1:41234/v1"; empty when off.
  const std::string& openai_url() const { return openai_url_; }
  pid_t pid() const { return pid_; }

  // Sends `signo` and waits for the exit code (128 + signal if killed by one).
  int Stop(int signo = SIGTERM) {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, signo);
    return Wait();
  }
  void Signal(int signo) { kill(pid_, signo); }

  int Wait() {
    if (pid_ <= 0) return exit_code_;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  FILE* stdout_ = nullptr;
  std::string target_;
  std::string http_address_;
  std::string openai_url_;
  std::string log_path_;
};

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_SERVICE_SERVER_PROCESS_H_
