// engine/engine.h — the generation engine: one thread owns the device and the scheduler.
//
// Callers on any thread Submit() requests and get updates through a callback (run on the
// engine's thread); admin operations (Pin, Unpin, Flush, Subscribe) are run on the engine's
// thread between steps and block their caller until done. Every error a caller can cause
// is a Status: INVALID_ARGUMENT, OUT_OF_RANGE, RESOURCE_EXHAUSTED, UNAVAILABLE,
// FAILED_PRECONDITION. Every accepted request gets exactly one terminal update.
#ifndef PREFIXD_ENGINE_ENGINE_H_
#define PREFIXD_ENGINE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/kv_cache.h"
#include "engine/llama_model.h"
#include "engine/model_loader.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "kernels/kernels.h"
#include "prefix_tree/prefix_cache.h"

namespace prefixd {

struct EngineOptions {
  int block_size = 16;          // tokens per KV block (power of two)
  int64_t kv_cache_tokens = 0;  // KV pool capacity in tokens; 0: sized automatically
  int64_t kv_cache_bytes_cpu = int64_t{1} << 30;  // the automatic size on the CPU
  // The automatic size on a GPU: this fraction of the device memory free once the weights
  // are loaded, less the step's activations.
  double gpu_memory_fraction = 0.9;
  int max_batch_tokens = 2048;     // tokens per step
  int max_running_requests = 64;   // requests batched together
  int max_queued_requests = 1024;  // beyond this, Submit says RESOURCE_EXHAUSTED
  bool prefix_cache = true;
  // The host tier of the KV cache (HostKvCache), in bytes: blocks evicted from the device
  // move there and come back on a hit. 0: none. kHostKvAuto: none on the CPU backend (it
  // would copy memory to memory), a quarter of the machine's RAM on a GPU. Refused when
  // over the machine's RAM. Memory is taken as the tier fills.
  int64_t host_kv_cache_bytes = kHostKvAuto;
  static constexpr int64_t kHostKvAuto = -1;
  // Decode sequences that share cached prefix blocks are batched next to each other and
  // their attention reads those blocks once per group (kernels.h: shared-prefix groups),
  // on backends that use the groups (Backend::UsesSharedPrefixGroups: the CPU for now).
  bool cascade_attention = true;
  // Decode steps run as graphs recorded per bucket of batch size and context length and
  // replayed with the step's metadata updated in place (LlamaModel's decode graphs), on
  // backends that record them (Backend::CanCapture: CUDA graphs).
  bool cuda_graphs = true;
  std::optional<uint64_t> hash_seed;  // tests only; random per process otherwise
  // By tenant: a request's GenerationRequest::tenant for its weight, a namespace's
  // CacheNamespace::tenant (a tenant, or "shared:<name>") for its KV share. Unlisted:
  // weight 1, no guarantee.
  absl::flat_hash_map<std::string, TenantPolicy> tenant_policies = {};
  bool check_invariants = false;     // check the cache after every step (tests)
  StepFaultInjector inject_fault;    // tests only: fail chosen steps
  BlockHashFn block_hash = nullptr;  // tests only: another block hash (e.g. always colliding)
};

struct EngineStats {
  CacheStats cache;
  HostKvStats host_kv;  // all 0 without a host tier
  SchedulerCounters counters;
  DecodeGraphStats decode_graphs;  // all 0 where the backend records no graphs
  int running = 0;
  int waiting = 0;
  StepReport last_step;
  // The most used cached prefixes; filled only by StatsAsync(done, hot_prefixes > 0).
  std::vector<HotPrefix> hot_prefixes;
};

struct PinResult {
  int pinned_tokens = 0;
  int computed_tokens = 0;
};

// Invoked for every step on the engine's thread (metrics). Must not block.
using StepObserver = std::function<void(const StepReport&)>;

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::unique_ptr<Backend> backend,
                                                        LoadedModel model, EngineOptions options);
  // Ends every remaining request (kCancelled) and stops the thread.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request; updates go to `callback` on the engine's thread.
  absl::StatusOr<RequestId> Submit(GenerationRequest request, UpdateCallback callback);
  // Ends the request with a CANCELLED status and frees its blocks before the next step.
  // Unknown or finished ids are ignored.
  void Cancel(RequestId id);

  // Prefills `tokens` (what is not cached yet) and pins its full blocks. It waits in the
  // queue like a request: RESOURCE_EXHAUSTED when the queue is full, DEADLINE_EXCEEDED when
  // `deadline` passes first. `done` runs on the engine's thread (or at once, on a
  // validation error) and must not block.
  void PinAsync(const CacheNamespace& ns, std::vector<TokenId> tokens,
                std::function<void(absl::StatusOr<PinResult>)> done,
                absl::Time deadline = absl::InfiniteFuture());
  // The same, waiting for the result.
  absl::StatusOr<PinResult> Pin(const CacheNamespace& ns, std::vector<TokenId> tokens);
  absl::StatusOr<int> Unpin(const CacheNamespace& ns, std::vector<TokenId> tokens);
  // Drops every evictable cached block; returns how many.
  int64_t Flush();

  // `sink` receives a snapshot of the cache (kStored events carrying the sequence number of
  // the state they describe), then `snapshot_done()`, then every later event, all on the
  // engine's thread; they must not block and must stay valid until Unsubscribe returns.
  // Neither call may be made from inside a sink or an update callback.
  int64_t Subscribe(CacheEventSink sink, std::function<void(uint64_t sequence)> snapshot_done);
  void Unsubscribe(int64_t subscription);

  // Refuses new requests (UNAVAILABLE), waits up to `grace` for the running and queued
  // ones, then ends the rest with finish reason kCancelled. Idempotent.
  void Shutdown(absl::Duration grace);

  // Exact: taken on the engine's thread after everything submitted before this call (waits
  // for the step in progress).
  EngineStats Stats();
  // Exact, like Stats(), delivered to `done` on the engine's thread; never blocks the caller.
  // With `hot_prefixes` = k > 0, also the k most used cached prefixes (a walk of the whole
  // cache: for a dashboard's once a second, not for every step).
  void StatsAsync(std::function<void(EngineStats)> done, int hot_prefixes = 0);
  // The snapshot published after the last step: never blocks, may lag by one step.
  EngineStats StatsSnapshot() const;
  void SetStepObserver(StepObserver observer);
  // Cache and scheduler invariants, checked on the engine's thread.
  absl::Status CheckInvariants();

  const ModelConfig& config() const { return config_; }
  const std::string& model_id() const { return model_id_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const ChatTemplate* chat_template() const { return chat_template_.get(); }
  const Backend& backend() const { return *backend_; }
  int block_size() const { return options_.block_size; }
  int max_context_len() const { return max_context_len_; }
  int64_t kv_cache_tokens() const { return int64_t{kv_->num_blocks()} * kv_->block_size(); }
  // The host tier's capacity in tokens; 0 without one.
  int64_t host_kv_cache_tokens() const {
    return host_kv_ == nullptr ? 0 : int64_t{host_kv_->max_blocks()} * kv_->block_size();
  }
  int64_t host_kv_cache_bytes() const {
    return host_kv_ == nullptr ? 0 : int64_t{host_kv_->max_blocks()} * host_kv_->bytes_per_block();
  }
  const EngineOptions& options() const { return options_; }

 private:
  using Task = absl::AnyInvocable<void()>;

  Engine(std::unique_ptr<Backend> backend, LoadedModel model, EngineOptions options,
         int32_t num_blocks, int32_t host_blocks);
  void Loop();
  void Post(Task task);
  // Runs `fn` on the engine's thread and waits for it.
  void RunOnEngineThread(absl::AnyInvocable<void()> fn);
  void PublishStats(const StepReport* step);
  absl::Status ValidatePrompt(absl::Span<const TokenId> tokens) const;

  const EngineOptions options_;
  std::unique_ptr<Backend> backend_;
  const ModelConfig config_;
  const std::string model_id_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_template_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<HostKvCache> host_kv_;  // null without a host tier
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<PrefixCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
  int max_context_len_ = 0;

  // Touched on the engine's thread only.
  absl::flat_hash_map<int64_t, CacheEventSink> subscribers_;
  StepObserver step_observer_;

  mutable absl::Mutex mu_;
  std::vector<Task> inbox_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool exit_ ABSL_GUARDED_BY(mu_) = false;
  int pending_submissions_ ABSL_GUARDED_BY(mu_) = 0;
  // Accepted requests (and pins) that have not had their terminal update yet: exact, unlike
  // the published stats, so Shutdown never mistakes a busy engine for an idle one.
  int active_requests_ ABSL_GUARDED_BY(mu_) = 0;
  RequestId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_subscription_ ABSL_GUARDED_BY(mu_) = 1;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_ENGINE_H_
