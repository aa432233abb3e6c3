#include "engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <future>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace prefixd {
namespace {

absl::Status ValidateOptions(const EngineOptions& o) {
  if (o.block_size < 1 || o.block_size > kMaxBlockSize || (o.block_size & (o.block_size - 1))) {
    return absl::InvalidArgumentError(absl::StrCat("block size must be a power of two in [1, ",
                                                   kMaxBlockSize, "], got ", o.block_size));
  }
  if (o.max_running_requests < 1) {
    return absl::InvalidArgumentError("max running requests must be at least 1");
  }
  if (o.max_batch_tokens < o.max_running_requests) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max batch tokens (", o.max_batch_tokens, ") must be at least max running requests (",
        o.max_running_requests, "): every running request decodes one token per step"));
  }
  if (o.max_queued_requests < 1) {
    return absl::InvalidArgumentError("max queued requests must be at least 1");
  }
  if (o.kv_cache_tokens < 0) return absl::InvalidArgumentError("KV cache tokens must be >= 0");
  if (o.host_kv_cache_bytes < 0 && o.host_kv_cache_bytes != EngineOptions::kHostKvAuto) {
    return absl::InvalidArgumentError("host KV cache bytes must be >= 0 (or automatic)");
  }
  return absl::OkStatus();
}

int64_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? int64_t{pages} * page : 0;
}

std::string Gib(int64_t bytes) {
  return absl::StrCat(static_cast<int64_t>(static_cast<double>(bytes) / (1 << 30) * 10) / 10.0,
                      " GiB");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<Backend> backend,
                                                       LoadedModel model, EngineOptions options) {
  // On an error, the model's device tensors must go before the backend that owns their
  // memory (parameters are destroyed in an unspecified order).
  auto fail = [&model](absl::Status status) {
    model.weights = LlamaWeights{};
    return status;
  };
  if (absl::Status s = ValidateOptions(options); !s.ok()) return fail(s);
  if (!(options.gpu_memory_fraction > 0 && options.gpu_memory_fraction <= 1)) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("GPU memory fraction must be in (0, 1], got ", options.gpu_memory_fraction)));
  }
  const int64_t block_bytes =
      KvCache::BytesPerBlock(model.config, options.block_size, backend->compute_dtype());
  int64_t num_blocks = 0;
  if (options.kv_cache_tokens > 0) {
    num_blocks = (options.kv_cache_tokens + options.block_size - 1) / options.block_size;
  } else if (std::optional<int64_t> free = backend->FreeMemoryBytes(); free.has_value()) {
    // Leave room for the step's activations: about 16 hidden-sized rows per batch token,
    // plus the f32 logits of every running request.
    const ModelConfig& c = model.config;
    const int64_t activations = int64_t{options.max_batch_tokens} *
                                    (6 * c.hidden_size + 2 * c.intermediate_size + c.qkv_size()) *
                                    2 +
                                int64_t{options.max_running_requests} * c.vocab_size * 4;
    num_blocks = static_cast<int64_t>(
                     (static_cast<double>(*free) * options.gpu_memory_fraction - activations)) /
                     block_bytes -
                 1;  // KvCache's pad block
  } else {
    num_blocks = options.kv_cache_bytes_cpu / block_bytes;
  }
  // Every running request needs a block of its own at least.
  if (num_blocks < options.max_running_requests + 1 || num_blocks > (int64_t{1} << 30)) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "a KV cache of ", num_blocks, " blocks cannot serve ", options.max_running_requests,
        " running requests (raise the KV cache size or lower max running requests)")));
  }
  // The host tier.
  const int64_t ram = PhysicalMemoryBytes();
  int64_t host_bytes = options.host_kv_cache_bytes;
  if (host_bytes == EngineOptions::kHostKvAuto) {
    host_bytes = backend->device() == DeviceKind::kCpu ? 0 : ram / 4;
  }
  if (ram > 0 && host_bytes > ram) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("a host KV cache of ", host_bytes, " bytes (", Gib(host_bytes),
                     ") is more than this machine's RAM, ", ram, " bytes (", Gib(ram), ")")));
  }
  const int64_t host_blocks = host_bytes / block_bytes;
  if (host_bytes > 0 && host_blocks == 0) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("a host KV cache of ", host_bytes, " bytes cannot hold one block (",
                     block_bytes, " bytes: ", options.block_size, " tokens of this model)")));
  }
  if (host_blocks > (int64_t{1} << 30)) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "a host KV cache of ", host_blocks, " blocks is more than the 2^30 blocks supported")));
  }
  return std::unique_ptr<Engine>(new Engine(std::move(backend), std::move(model),
                                            std::move(options), static_cast<int32_t>(num_blocks),
                                            static_cast<int32_t>(host_blocks)));
}

Engine::Engine(std::unique_ptr<Backend> backend, LoadedModel model, EngineOptions options,
               int32_t num_blocks, int32_t host_blocks)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      config_(model.config),
      model_id_(model.id),
      tokenizer_(std::move(model.tokenizer)),
      chat_template_(std::move(model.chat_template)) {
  kv_ = std::make_unique<KvCache>(*backend_, config_, num_blocks, options_.block_size);
  if (host_blocks > 0 && options_.prefix_cache) {
    host_kv_ = std::make_unique<HostKvCache>(*backend_, *kv_, host_blocks);
  }
  max_context_len_ = static_cast<int>(
      std::min<int64_t>(config_.max_context_len(), int64_t{num_blocks} * options_.block_size));
  ModelLimits limits;
  limits.max_tokens = options_.max_batch_tokens;
  limits.max_seqs = options_.max_running_requests;
  limits.max_blocks_per_seq = (max_context_len_ + options_.block_size - 1) / options_.block_size;
  limits.decode_graphs = options_.cuda_graphs && backend_->CanCapture();
  model_ = std::make_unique<LlamaModel>(config_, std::move(model.weights), *backend_, *kv_, limits);

  PrefixCacheOptions cache_options;
  cache_options.num_blocks = num_blocks;
  cache_options.tree.block_size = options_.block_size;
  if (options_.hash_seed) cache_options.tree.seed = *options_.hash_seed;
  if (options_.block_hash != nullptr) cache_options.tree.hash = options_.block_hash;
  cache_options.enabled = options_.prefix_cache;
  if (host_kv_ != nullptr) {
    cache_options.tree.host_blocks = host_kv_->max_blocks();
    cache_options.tree.grow_host = [this](int32_t n) { return host_kv_->Grow(n); };
  }
  for (const auto& [tenant, policy] : options_.tenant_policies) {
    if (policy.kv_share > 0) {
      cache_options.tree.guaranteed_blocks[tenant] =
          static_cast<int64_t>(policy.kv_share * static_cast<double>(num_blocks));
    }
  }
  cache_ = std::make_unique<PrefixCache>(cache_options);
  cache_->SetEventSink([this](const CacheEvent& event) {
    for (auto& [id, sink] : subscribers_) sink(event);
  });

  SchedulerOptions scheduler_options;
  scheduler_options.max_batch_tokens = options_.max_batch_tokens;
  scheduler_options.max_running_requests = options_.max_running_requests;
  scheduler_options.inject_fault = options_.inject_fault;
  scheduler_options.cascade_attention = options_.cascade_attention;
  for (const auto& [tenant, policy] : options_.tenant_policies) {
    scheduler_options.weights[tenant] = policy.weight;
  }
  scheduler_ = std::make_unique<Scheduler>(*model_, *cache_, tokenizer_.get(), scheduler_options,
                                           host_kv_.get());
  PublishStats(nullptr);
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  Shutdown(absl::ZeroDuration());
  {
    absl::MutexLock lock(&mu_);
    exit_ = true;
  }
  thread_.join();
}

void Engine::Loop() {
  while (true) {
    const bool busy = scheduler_->HasWork();
    std::vector<Task> tasks;
    bool exit = false;
    {
      absl::MutexLock lock(&mu_);
      if (!busy) {
        mu_.Await(absl::Condition(
            +[](Engine* e)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) { return !e->inbox_.empty() || e->exit_; },
            this));
      }
      tasks.swap(inbox_);
      exit = exit_;
    }
    for (Task& task : tasks) task();
    if (exit && tasks.empty()) {
      scheduler_->CancelAll();
      PublishStats(nullptr);
      return;
    }
    if (scheduler_->HasWork()) {
      const StepReport report = scheduler_->Step(absl::Now());
      if (options_.check_invariants) {
        const absl::Status s = scheduler_->CheckInvariants();
        PREFIXD_CHECK(s.ok(), "after step ", scheduler_->counters().steps, ": ", s.ToString());
      }
      if (report.num_seqs > 0 && step_observer_) step_observer_(report);
      PublishStats(&report);
    } else {
      PublishStats(nullptr);
    }
  }
}

void Engine::Post(Task task) {
  absl::MutexLock lock(&mu_);
  inbox_.push_back(std::move(task));
}

void Engine::RunOnEngineThread(absl::AnyInvocable<void()> fn) {
  std::promise<void> done;
  std::future<void> future = done.get_future();
  Post([&fn, &done] {
    fn();
    done.set_value();
  });
  future.wait();
}

void Engine::PublishStats(const StepReport* step) {
  EngineStats s;
  s.cache = cache_->Stats();
  if (host_kv_ != nullptr) s.host_kv = host_kv_->stats();
  s.counters = scheduler_->counters();
  s.decode_graphs = model_->decode_graph_stats();
  s.running = scheduler_->num_running();
  s.waiting = scheduler_->num_waiting();
  absl::MutexLock lock(&mu_);
  s.last_step = step != nullptr ? *step : stats_.last_step;
  stats_ = std::move(s);
}

EngineStats Engine::Stats() {
  RunOnEngineThread([this] { PublishStats(nullptr); });
  return StatsSnapshot();
}

void Engine::StatsAsync(std::function<void(EngineStats)> done, int hot_prefixes) {
  Post([this, done = std::move(done), hot_prefixes] {
    PublishStats(nullptr);
    EngineStats stats = StatsSnapshot();
    stats.hot_prefixes = cache_->HotPrefixes(hot_prefixes);
    done(std::move(stats));
  });
}

EngineStats Engine::StatsSnapshot() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Engine::SetStepObserver(StepObserver observer) {
  RunOnEngineThread([this, &observer] { step_observer_ = std::move(observer); });
}

absl::Status Engine::ValidatePrompt(absl::Span<const TokenId> tokens) const {
  if (tokens.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " at position ", i,
                                                     " is outside the vocabulary [0, ",
                                                     config_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RequestId> Engine::Submit(GenerationRequest request, UpdateCallback callback) {
  if (absl::Status s = ValidatePrompt(request.prompt); !s.ok()) return s;
  if (absl::Status s = ValidateSamplingParams(request.sampling, config_.vocab_size); !s.ok()) {
    return s;
  }
  if (!request.sampling.stop.empty() && tokenizer_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop strings need a tokenizer, and model '", model_id_, "' has none"));
  }
  const int prompt_len = static_cast<int>(request.prompt.size());
  if (prompt_len >= max_context_len_) {
    return absl::OutOfRangeError(absl::StrCat("prompt of ", prompt_len,
                                              " tokens leaves no room to generate within the "
                                              "context of ",
                                              max_context_len_, " tokens"));
  }
  const int room = max_context_len_ - prompt_len;
  if (request.sampling.max_tokens > room) {
    return absl::OutOfRangeError(absl::StrCat(
        "prompt of ", prompt_len, " tokens plus max_tokens ", request.sampling.max_tokens,
        " exceeds the context of ", max_context_len_, " tokens"));
  }
  const int max_new = request.sampling.max_tokens > 0 ? request.sampling.max_tokens : room;
  uint64_t seed = 0;
  if (request.sampling.seed) {
    seed = *request.sampling.seed;
  } else {
    absl::BitGen gen;
    seed = absl::Uniform<uint64_t>(gen);
  }

  RequestId id;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return absl::UnavailableError("the server is shutting down");
    if (stats_.waiting + pending_submissions_ >= options_.max_queued_requests) {
      return absl::ResourceExhaustedError(
          absl::StrCat("queue full: ", stats_.waiting + pending_submissions_,
                       " requests waiting (limit ", options_.max_queued_requests, ")"));
    }
    id = next_id_++;
    ++pending_submissions_;
    ++active_requests_;
    UpdateCallback counted = [this, callback = std::move(callback)](GenerationUpdate&& update) {
      const bool finished = update.finished;
      callback(std::move(update));
      if (finished) {
        absl::MutexLock lock(&mu_);
        --active_requests_;
      }
    };
    inbox_.push_back([this, id, request = std::move(request), max_new, seed, arrival = absl::Now(),
                      callback = std::move(counted)]() mutable {
      scheduler_->Add(id, std::move(request), max_new, seed, arrival, std::move(callback));
      // One critical section: Submit's queue-full check never sees the request in neither
      // count (it would admit one too many).
      const int waiting = scheduler_->num_waiting();
      absl::MutexLock lock(&mu_);
      --pending_submissions_;
      stats_.waiting = waiting;
    });
  }
  return id;
}

void Engine::Cancel(RequestId id) {
  Post([this, id] { scheduler_->Cancel(id, absl::CancelledError("cancelled by the client")); });
}

void Engine::PinAsync(const CacheNamespace& ns, std::vector<TokenId> tokens,
                      std::function<void(absl::StatusOr<PinResult>)> done, absl::Time deadline) {
  if (!options_.prefix_cache) {
    done(absl::FailedPreconditionError("the prefix cache is disabled on this server"));
    return;
  }
  if (absl::Status s = ValidatePrompt(tokens); !s.ok()) {
    done(s);
    return;
  }
  if (static_cast<int>(tokens.size()) < options_.block_size) {
    done(absl::InvalidArgumentError(absl::StrCat("a prefix of ", tokens.size(),
                                                 " tokens is shorter than one KV block (",
                                                 options_.block_size, " tokens): nothing to pin")));
    return;
  }
  if (static_cast<int>(tokens.size()) > max_context_len_) {
    done(absl::OutOfRangeError(absl::StrCat("prefix of ", tokens.size(),
                                            " tokens exceeds the context of ", max_context_len_,
                                            " tokens")));
    return;
  }
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) {
      refused = absl::UnavailableError("the server is shutting down");
    } else if (stats_.waiting + pending_submissions_ >= options_.max_queued_requests) {
      // A Pin is a request like any other: it cannot skip the queue limit.
      refused = absl::ResourceExhaustedError(
          absl::StrCat("queue full: ", stats_.waiting + pending_submissions_,
                       " requests waiting (limit ", options_.max_queued_requests, ")"));
    } else {
      const RequestId id = next_id_++;
      ++active_requests_;
      ++pending_submissions_;
      inbox_.push_back(
          [this, id, ns, deadline, tokens = std::move(tokens), done = std::move(done)]() mutable {
            scheduler_->AddPin(
                id, ns, std::move(tokens), absl::Now(), deadline,
                [this, done = std::move(done)](absl::StatusOr<int> pinned, int computed) {
                  if (!pinned.ok()) {
                    done(pinned.status());
                  } else {
                    done(PinResult{*pinned, computed});
                  }
                  absl::MutexLock lock(&mu_);
                  --active_requests_;
                });
            const int waiting = scheduler_->num_waiting();
            absl::MutexLock lock(&mu_);
            --pending_submissions_;
            stats_.waiting = waiting;
          });
      return;
    }
  }
  done(refused);
}

absl::StatusOr<PinResult> Engine::Pin(const CacheNamespace& ns, std::vector<TokenId> tokens) {
  std::promise<absl::StatusOr<PinResult>> promise;
  std::future<absl::StatusOr<PinResult>> future = promise.get_future();
  PinAsync(ns, std::move(tokens),
           [&promise](absl::StatusOr<PinResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

absl::StatusOr<int> Engine::Unpin(const CacheNamespace& ns, std::vector<TokenId> tokens) {
  absl::StatusOr<int> result = 0;
  RunOnEngineThread([&] { result = cache_->Unpin(ns, tokens); });
  return result;
}

int64_t Engine::Flush() {
  int64_t freed = 0;
  RunOnEngineThread([&] { freed = cache_->Flush(); });
  return freed;
}

int64_t Engine::Subscribe(CacheEventSink sink,
                          std::function<void(uint64_t sequence)> snapshot_done) {
  int64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_subscription_++;
  }
  RunOnEngineThread([&] {
    for (const CacheEvent& event : cache_->tree().Snapshot()) sink(event);
    if (snapshot_done) snapshot_done(cache_->tree().last_sequence());
    subscribers_.emplace(id, std::move(sink));
  });
  return id;
}

void Engine::Unsubscribe(int64_t subscription) {
  RunOnEngineThread([&] { subscribers_.erase(subscription); });
}

void Engine::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (exit_) return;
    draining_ = true;
    // Wait until nothing is queued or running, or the grace period ends.
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Engine* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) {
                               return e->active_requests_ == 0;
                             },
                             this),
                         grace);
  }
  RunOnEngineThread([this] { scheduler_->CancelAll(); });
}

absl::Status Engine::CheckInvariants() {
  absl::Status status;
  RunOnEngineThread([&] { status = scheduler_->CheckInvariants(); });
  return status;
}

}  // namespace prefixd
