// clients/bench/run_state.h — the state of one benchmark run that the dispatching thread
// and every stream share: the records, the in-flight slots, the completion count. Each
// stream holds a reference, so the state outlives the last callback whatever order things
// end in. Used by the gRPC runner and the OpenAI-API runner alike.
#ifndef PREFIXD_CLIENTS_BENCH_RUN_STATE_H_
#define PREFIXD_CLIENTS_BENCH_RUN_STATE_H_

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clients/bench/bench_report.h"

namespace prefixd::bench {

using Clock = std::chrono::steady_clock;

// One run: written by the dispatching thread and the streams, read once AwaitAll() returns.
class RunState {
 public:
  explicit RunState(size_t count) : records(count), start_(Clock::now()) {}

  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  Clock::time_point start() const { return start_; }

  // Blocks until fewer than `limit` streams are in flight (no limit when 0), then counts
  // one more. Called by the dispatching thread only.
  void AcquireSlot(int limit) {
    absl::MutexLock lock(&mu_);
    slot_limit_ = limit;
    if (limit > 0) mu_.Await(absl::Condition(this, &RunState::HasFreeSlot));
    ++in_flight_;
  }

  void Finished(bool failed) {
    absl::MutexLock lock(&mu_);
    --in_flight_;
    ++completed_;
    if (failed) ++failed_;
  }

  void AwaitAll() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &RunState::AllDone));
  }

  // Waits up to `timeout` for every stream to end; returns whether they have, and the counts.
  bool AwaitAllFor(absl::Duration timeout, int64_t* completed, int64_t* failed) {
    absl::MutexLock lock(&mu_);
    const bool done = mu_.AwaitWithTimeout(absl::Condition(this, &RunState::AllDone), timeout);
    *completed = completed_;
    *failed = failed_;
    return done;
  }

  // Written by stream i only, read once AwaitAll() has returned.
  std::vector<RequestRecord> records;

 private:
  bool AllDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return completed_ == static_cast<int64_t>(records.size());
  }
  bool HasFreeSlot() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ < slot_limit_; }

  const Clock::time_point start_;
  absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  int slot_limit_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_RUN_STATE_H_
