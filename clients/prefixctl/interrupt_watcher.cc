#include "clients/prefixctl/interrupt_watcher.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <utility>

#include "base/check.h"

namespace prefixd::ctl {
namespace {

constexpr char kInterrupt = 'i';
constexpr char kQuit = 'q';

// The write end of the live watcher's pipe; -1 when there is none.
std::atomic<int> g_write_fd{-1};
struct sigaction g_old_int;
struct sigaction g_old_term;

void RestoreDefaults() {
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGINT, &dfl, nullptr);
  sigaction(SIGTERM, &dfl, nullptr);
}

extern "C" void OnSignal(int) {
  const int saved_errno = errno;
  const int fd = g_write_fd.load();
  if (fd >= 0) {
    const char byte = kInterrupt;
    [[maybe_unused]] ssize_t n = write(fd, &byte, 1);
  }
  RestoreDefaults();  // sigaction is async-signal-safe
  errno = saved_errno;
}

}  // namespace

InterruptWatcher::InterruptWatcher(std::function<void()> on_interrupt)
    : on_interrupt_(std::move(on_interrupt)) {
  PREFIXD_CHECK(pipe(pipe_) == 0, "pipe() failed");
  PREFIXD_CHECK(g_write_fd.exchange(pipe_[1]) == -1, "only one InterruptWatcher at a time");
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &g_old_int);
  sigaction(SIGTERM, &action, &g_old_term);
  thread_ = std::thread([this] { Run(); });
}

InterruptWatcher::~InterruptWatcher() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
  g_write_fd.store(-1);
  const char byte = kQuit;
  [[maybe_unused]] ssize_t n = write(pipe_[1], &byte, 1);
  thread_.join();
  close(pipe_[0]);
  close(pipe_[1]);
}

void InterruptWatcher::Run() {
  for (;;) {
    char byte = 0;
    const ssize_t n = read(pipe_[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == kQuit) return;
    interrupted_.store(true);
    on_interrupt_();
  }
}

}  // namespace prefixd::ctl
