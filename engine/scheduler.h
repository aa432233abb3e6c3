// engine/scheduler.h — continuous batching over a prefix-cached, paged KV pool.
//
// Each Step() packs, under a token budget: one token for every running request that is
// decoding, the next chunk of every running request that is still prefilling, and chunks
// of newly admitted requests. When several tenants have prompt tokens to compute, the
// budget left after the decodes is shared among them by weight (max-min fair), so one
// tenant's long prompts cannot hold back another's short one for steps on end. A request is
// admitted by matching its prompt against the prefix cache: it computes only what is not cached.
// Every full block it computes is inserted into the cache right after the step, so a request
// admitted a step later already hits it; a waiting request whose prompt shares uncached blocks with
// one being prefilled waits for them instead of computing them a second time. When blocks run out
// the cache evicts; when that is not enough the newest running request is preempted (its blocks
// released) and recomputed later, which reproduces its output exactly.
//
// With a host tier, a request whose cached prefix reaches blocks in host memory is admitted
// with device blocks for them and their copies queued (PrefixCache::Promote); it runs from
// the next step on, when the copies have landed, and so does any request admitted in the
// same step that shares those blocks. Each step hands the cache's queued transfers to the
// HostKvCache before its forward pass.
//
// Not thread-safe: the Engine's thread owns it.
#ifndef PREFIXD_ENGINE_SCHEDULER_H_
#define PREFIXD_ENGINE_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/kv_cache.h"
#include "engine/llama_model.h"
#include "engine/output_processor.h"
#include "engine/request.h"
#include "prefix_tree/prefix_cache.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

// Decides, before a step runs, whether it fails (tests only: a stand-in for a device
// error). Given the ids of the step's requests.
using StepFaultInjector = std::function<absl::Status(absl::Span<const RequestId> step)>;

struct SchedulerOptions {
  int max_batch_tokens = 2048;    // tokens per step (prefill chunks + decodes)
  int max_running_requests = 64;  // sequences per step
  bool cascade_attention = true;  // group decodes that share prefix blocks (EngineOptions)
  // Tenants' weights in admission (EngineOptions::tenant_policies); unlisted: 1.
  absl::flat_hash_map<std::string, int> weights = {};
  StepFaultInjector inject_fault;  // tests only
};

// Counters since start, for stats and metrics.
struct SchedulerCounters {
  int64_t steps = 0;
  int64_t prompt_tokens = 0;           // prompt tokens of admitted requests
  int64_t prompt_tokens_computed = 0;  // prompt tokens run through the model
  int64_t prompt_tokens_cached = 0;    // of those, served from the cache at first admission
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t finished_stop = 0;
  int64_t finished_length = 0;
  int64_t finished_cancelled = 0;  // by the server (shutdown)
  int64_t failed = 0;              // ended with an error status
  int64_t failed_steps = 0;        // steps that failed (their requests ended INTERNAL)
  int64_t deduplicated_waits = 0;  // admissions deferred to share a prefix being computed
  // Shared-prefix groups formed in decode steps, and the sequences in them.
  int64_t shared_prefix_groups = 0;
  int64_t shared_prefix_group_seqs = 0;
  int64_t promotions = 0;  // admissions that brought blocks back from the host tier
};

// What one step did, for metrics.
struct StepReport {
  int num_seqs = 0;
  int num_tokens = 0;
  int prefill_tokens = 0;
  int decode_tokens = 0;
  int shared_prefix_groups = 0;  // of decode sequences (cascade attention)
  absl::Duration duration;
  // Requests that ran for the first time after a promotion: from their admission (when
  // the copies were queued) to this step.
  std::vector<absl::Duration> promotion_waits;
};

class Scheduler {
 public:
  // `model`, `cache`, `tokenizer` (may be null) and `host_kv` (needed when the cache has a
  // host tier; else may be null) must outlive the scheduler.
  Scheduler(LlamaModel& model, PrefixCache& cache, const Tokenizer* tokenizer,
            SchedulerOptions options, HostKvCache* host_kv = nullptr);
  ~Scheduler();

  // Queues a validated request. `max_new_tokens` > 0 already accounts for the context;
  // `seed` is the request's sampling seed (drawn by the caller when the client gave none).
  void Add(RequestId id, GenerationRequest request, int max_new_tokens, uint64_t seed,
           absl::Time arrival, UpdateCallback callback);
  // Pin: computes the full blocks of `tokens` that are not cached yet, inserts them, pins
  // them, then calls `done` with the pinned token count (or why not) and the number of
  // tokens it had to compute. Ends without sampling.
  void AddPin(RequestId id, CacheNamespace ns, std::vector<TokenId> tokens, absl::Time arrival,
              absl::Time deadline,
              std::function<void(absl::StatusOr<int> pinned, int computed)> done);

  // Ends a queued or running request at once with `status` (its blocks are freed before this
  // returns). No-op if the id is unknown (already finished).
  void Cancel(RequestId id, const absl::Status& status);
  // Ends every request with finish reason kCancelled (server shutdown).
  void CancelAll();

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }

  // Runs one step. Returns what it did (num_seqs 0 when there was nothing to run). If the
  // step fails, every request in it ends with INTERNAL (its blocks released; the cache is
  // untouched, since a step writes only positions no cached block holds) and the next step
  // serves the rest.
  StepReport Step(absl::Time now);

  PrefixCache& cache() { return cache_; }
  const SchedulerCounters& counters() const { return counters_; }

  // Cache invariants, with every running request's private blocks accounted for.
  absl::Status CheckInvariants() const;

 private:
  struct Sequence;
  class Lanes;

  void ExpireDeadlines(absl::Time now);
  // DEADLINE_EXCEEDED, saying whether the request had started.
  static absl::Status DeadlineStatus(const Sequence& seq);
  // Blocks for `seq` to hold `num_tokens` positions; preempts newer requests when short.
  // False when even that cannot make room (then `seq` itself was preempted or must wait).
  bool EnsureBlocks(Sequence& seq, int num_tokens);
  bool Admit(Sequence& seq, absl::Time now);
  bool SharesPrefixBeingComputed(const Sequence& seq) const;
  void Preempt(Sequence& seq);
  void InsertComputedBlocks(Sequence& seq);
  void ReleaseBlocks(Sequence& seq);
  // Releases the request's blocks, sends `update` as its terminal update and forgets it.
  void Finish(Sequence& seq, absl::Status status, FinishReason reason, GenerationUpdate update,
              absl::Time now);
  void Remove(Sequence& seq);
  // Each tenant's share of this step's prefill tokens, when more than one tenant has prompt
  // tokens to compute (else empty: no limit). `may_admit`: waiting requests count too.
  absl::flat_hash_map<std::string, int> PrefillShares(bool may_admit) const;

  LlamaModel& model_;
  PrefixCache& cache_;
  const Tokenizer* tokenizer_;
  HostKvCache* const host_kv_;
  const SchedulerOptions options_;
  // Decodes are ordered and grouped by shared prefix: asked for, and the backend uses it.
  const bool group_shared_prefixes_;
  std::vector<TokenId> eos_token_ids_;

  absl::flat_hash_map<RequestId, std::unique_ptr<Sequence>> sequences_;
  std::deque<Sequence*> waiting_;  // FIFO; preempted requests go back to the front
  // Fair admission (Lanes): each waiting tenant's pass, and the pass of the latest admission.
  absl::node_hash_map<std::string, double> pass_;  // pointer-stable: Lanes keep pointers
  double virtual_time_ = 0;
  std::vector<Sequence*> running_;  // admission order: oldest first
  StepBatch batch_;
  SchedulerCounters counters_;
  int64_t step_index_ = 0;  // Step() calls
  // Device blocks promoted this step: their copies land before the next step's forward.
  absl::flat_hash_set<BlockId> in_transit_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_SCHEDULER_H_
