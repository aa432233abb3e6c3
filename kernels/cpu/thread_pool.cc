// kernels/cpu/thread_pool.cc
#include "kernels/cpu/thread_pool.h"

#include <algorithm>

#include "base/check.h"

namespace prefixd {

ThreadPool::ThreadPool(int num_threads) {
  PREFIXD_CHECK(num_threads >= 1, "ThreadPool needs at least one thread, got ", num_threads);
  workers_.reserve(num_threads - 1);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::RunRanges(absl::FunctionRef<void(int64_t, int64_t)> fn, int64_t n, int64_t grain) {
  for (;;) {
    const int64_t begin = next_range_.fetch_add(1, std::memory_order_relaxed) * grain;
    if (begin >= n) return;
    fn(begin, std::min(n, begin + grain));
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen_generation = 0;  // a worker joins each job at most once
  for (;;) {
    const absl::FunctionRef<void(int64_t, int64_t)>* fn;
    int64_t n, grain;
    {
      absl::MutexLock lock(&mu_);
      auto can_join = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || (open_slots_ > 0 && generation_ != seen_generation);
      };
      mu_.Await(absl::Condition(&can_join));
      if (stop_) return;
      seen_generation = generation_;
      --open_slots_;
      ++workers_in_job_;
      fn = job_fn_;
      n = job_n_;
      grain = job_grain_;
    }
    RunRanges(*fn, n, grain);
    absl::MutexLock lock(&mu_);
    --workers_in_job_;
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t num_ranges = (n + grain - 1) / grain;
  if (workers_.empty() || num_ranges == 1) {
    for (int64_t begin = 0; begin < n; begin += grain) fn(begin, std::min(n, begin + grain));
    return;
  }
  absl::MutexLock call_lock(&call_mu_);
  {
    absl::MutexLock lock(&mu_);
    job_fn_ = &fn;
    job_n_ = n;
    job_grain_ = grain;
    next_range_.store(0, std::memory_order_relaxed);
    ++generation_;
    open_slots_ = static_cast<int>(std::min<int64_t>(num_ranges - 1, workers_.size()));
  }
  RunRanges(fn, n, grain);
  // Every range is claimed; wait for the workers still running theirs. Workers that have
  // not woken up yet are no longer needed.
  absl::MutexLock lock(&mu_);
  open_slots_ = 0;
  auto all_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return workers_in_job_ == 0; };
  mu_.Await(absl::Condition(&all_done));
  job_fn_ = nullptr;
}

}  // namespace prefixd
