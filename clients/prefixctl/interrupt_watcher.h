// clients/prefixctl/interrupt_watcher.h — turns Ctrl-C into a call to a function (e.g.
// CallHandle::Cancel) on an ordinary thread, where it may lock mutexes and call gRPC.
#ifndef PREFIXD_CLIENTS_PREFIXCTL_INTERRUPT_WATCHER_H_
#define PREFIXD_CLIENTS_PREFIXCTL_INTERRUPT_WATCHER_H_

#include <atomic>
#include <functional>
#include <thread>

namespace prefixd::ctl {

// While it lives, SIGINT and SIGTERM run `on_interrupt` on the watcher's thread instead of
// killing the process. The signal handler only writes a byte to a pipe (all a handler may
// safely do); the thread reads it. After the first signal the default action is back, so a
// second Ctrl-C ends a process whose cancellation hangs. One watcher at a time per process.
class InterruptWatcher {
 public:
  explicit InterruptWatcher(std::function<void()> on_interrupt);
  ~InterruptWatcher();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  bool interrupted() const { return interrupted_.load(); }

 private:
  void Run();

  std::function<void()> on_interrupt_;
  std::atomic<bool> interrupted_{false};
  int pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_INTERRUPT_WATCHER_H_
