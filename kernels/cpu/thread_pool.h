// kernels/cpu/thread_pool.h — the worker threads behind the CPU backend's parallel loops.
//
// Idle workers sleep on a mutex condition instead of busy-waiting, so they leave the cores
// to whatever else runs on the machine. The gemms run on this pool too, as column slices of
// single-threaded OpenBLAS calls (cpu_backend.cc).
#ifndef PREFIXD_KERNELS_CPU_THREAD_POOL_H_
#define PREFIXD_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace prefixd {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the calling thread, which works too: num_threads - 1 workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint ranges that cover [0, n), each at most `grain` long,
  // and returns when all are done. Ranges are handed out one at a time, so uneven work
  // balances. Every range writes its own outputs, so results do not depend on the thread
  // count. One call at a time per pool (later calls wait); fn must not call ParallelFor.
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void WorkerLoop();
  // Claims ranges of the current job until none are left.
  void RunRanges(absl::FunctionRef<void(int64_t, int64_t)> fn, int64_t n, int64_t grain);

  absl::Mutex call_mu_;  // serialises ParallelFor calls
  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped for every job
  int open_slots_ ABSL_GUARDED_BY(mu_) = 0;       // workers still welcome to join the job
  int workers_in_job_ ABSL_GUARDED_BY(mu_) = 0;   // joined and not yet finished
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // The current job; valid while ParallelFor runs.
  const absl::FunctionRef<void(int64_t, int64_t)>* job_fn_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t job_n_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t job_grain_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<int64_t> next_range_{0};

  std::vector<std::thread> workers_;
};

}  // namespace prefixd

#endif  // PREFIXD_KERNELS_CPU_THREAD_POOL_H_
