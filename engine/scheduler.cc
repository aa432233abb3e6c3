#include "engine/scheduler.h"

#include <algorithm>
#include <optional>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace prefixd {
namespace {

// How long before a request's deadline a cancel counts as the deadline (see Cancel).
constexpr absl::Duration kDeadlineCancelSlack = absl::Seconds(1);

}  // namespace

struct Scheduler::Sequence {
  RequestId id = 0;
  std::string tenant;  // who asked: its turn in admission
  CacheNamespace ns;
  std::vector<TokenId> tokens;  // prompt, then generated tokens
  int prompt_len = 0;
  SamplingParams params;
  uint64_t seed = 0;
  UpdateCallback callback;
  std::unique_ptr<OutputProcessor> output;
  absl::Time arrival;
  absl::Time deadline = absl::InfiniteFuture();
  std::optional<absl::Time> first_scheduled;
  std::optional<absl::Time> first_token;

  // Pin: compute the prompt's full blocks, pin them, end without sampling.
  bool prefill_only = false;
  std::function<void(absl::StatusOr<int>, int)> on_pinned;

  // KV state while running. block_table[i] holds positions [i * bs, (i + 1) * bs); its
  // first hold.num_blocks() entries are cached blocks the tree owns, the rest are private.
  bool running = false;
  PrefixMatch hold;
  std::vector<BlockId> block_table;
  int num_computed = 0;         // positions whose K/V is in block_table
  bool insert_blocked = false;  // a hash collision stopped insertion: keep the rest private
  int cached_tokens = -1;       // prompt tokens served from the cache at first admission
  int preemptions = 0;
  bool counted_dedup_wait = false;
  int step_tokens = 0;  // tokens scheduled in the current step
  // Its blocks include some promoted in step ready_step - 1: it runs from ready_step on.
  int64_t ready_step = 0;
  std::optional<absl::Time> promoted_at;  // when it promoted, until it first runs after

  bool prefilling() const { return num_computed < prompt_len; }
  int num_generated() const { return static_cast<int>(tokens.size()) - prompt_len; }
};

Scheduler::Scheduler(LlamaModel& model, PrefixCache& cache, const Tokenizer* tokenizer,
                     SchedulerOptions options, HostKvCache* host_kv)
    : model_(model),
      cache_(cache),
      tokenizer_(tokenizer),
      host_kv_(host_kv),
      options_(options),
      group_shared_prefixes_(options.cascade_attention && model.backend().UsesSharedPrefixGroups()),
      eos_token_ids_(model.config().eos_token_ids.begin(), model.config().eos_token_ids.end()) {
  PREFIXD_CHECK(!cache.has_host_tier() || host_kv != nullptr,
                "a cache with a host tier needs a HostKvCache to carry out its transfers");
  PREFIXD_CHECK(options.max_batch_tokens <= model.limits().max_tokens &&
                    options.max_running_requests <= model.limits().max_seqs,
                "scheduler limits exceed the model's step limits");
}

Scheduler::~Scheduler() {
  // Holds must be released before the cache goes; requests still here were never finished
  // (the Engine cancels everything before destroying the scheduler).
  for (auto& [id, seq] : sequences_) {
    if (seq->hold.active()) ReleaseBlocks(*seq);
  }
}

void Scheduler::Add(RequestId id, GenerationRequest request, int max_new_tokens, uint64_t seed,
                    absl::Time arrival, UpdateCallback callback) {
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->tenant = request.tenant.empty() ? request.ns.tenant : std::move(request.tenant);
  seq->ns = std::move(request.ns);
  seq->tokens = std::move(request.prompt);
  seq->prompt_len = static_cast<int>(seq->tokens.size());
  seq->params = std::move(request.sampling);
  seq->seed = seed;
  seq->callback = std::move(callback);
  seq->output = std::make_unique<OutputProcessor>(tokenizer_, seq->params, seq->tokens,
                                                  eos_token_ids_, max_new_tokens);
  seq->arrival = arrival;
  seq->deadline = request.deadline;
  waiting_.push_back(seq.get());
  PREFIXD_CHECK(sequences_.emplace(id, std::move(seq)).second, "request id ", id, " reused");
}

void Scheduler::AddPin(RequestId id, CacheNamespace ns, std::vector<TokenId> tokens,
                       absl::Time arrival, absl::Time deadline,
                       std::function<void(absl::StatusOr<int>, int)> done) {
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->tenant = ns.tenant;
  seq->ns = std::move(ns);
  // Only full blocks can be cached, so only they are computed.
  tokens.resize(tokens.size() / cache_.block_size() * cache_.block_size());
  seq->tokens = std::move(tokens);
  seq->prompt_len = static_cast<int>(seq->tokens.size());
  seq->prefill_only = true;
  seq->on_pinned = std::move(done);
  seq->arrival = arrival;
  seq->deadline = deadline;
  waiting_.push_back(seq.get());
  PREFIXD_CHECK(sequences_.emplace(id, std::move(seq)).second, "request id ", id, " reused");
}

void Scheduler::Cancel(RequestId id, const absl::Status& status) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  Sequence& seq = *it->second;
  const absl::Time now = absl::Now();
  // A call whose deadline has passed is cancelled by its transport: the client sees
  // DEADLINE_EXCEEDED, and so do the metrics. The client's deadline runs out first (ours
  // was set when the request arrived, a transit later), and gRPC sends that the same way as
  // an explicit cancel: a cancel this close to the deadline is the deadline.
  const bool expired = seq.deadline - kDeadlineCancelSlack <= now;
  Finish(seq, expired ? DeadlineStatus(seq) : status, FinishReason::kNone, GenerationUpdate{}, now);
}

absl::Status Scheduler::DeadlineStatus(const Sequence& seq) {
  return absl::DeadlineExceededError(seq.running || seq.first_scheduled
                                         ? "deadline exceeded while generating"
                                         : "deadline exceeded while queued (never started)");
}

void Scheduler::CancelAll() {
  std::vector<Sequence*> all;
  for (auto& [id, seq] : sequences_) all.push_back(seq.get());
  for (Sequence* seq : all) {
    Finish(*seq, absl::OkStatus(), FinishReason::kCancelled, GenerationUpdate{}, absl::Now());
  }
}

void Scheduler::ExpireDeadlines(absl::Time now) {
  std::vector<Sequence*> expired;
  for (auto& [id, seq] : sequences_) {
    if (seq->deadline < now) expired.push_back(seq.get());
  }
  for (Sequence* seq : expired) {
    Finish(*seq, DeadlineStatus(*seq), FinishReason::kNone, GenerationUpdate{}, now);
  }
}

bool Scheduler::SharesPrefixBeingComputed(const Sequence& seq) const {
  if (!cache_.enabled()) return false;
  const int bs = cache_.block_size();
  const size_t usable = seq.prefill_only ? seq.tokens.size() : seq.tokens.size() - 1;
  for (const Sequence* other : running_) {
    if (!other->prefilling() || !(other->ns == seq.ns)) continue;
    const size_t limit = std::min<size_t>(usable, other->prompt_len);
    const size_t common =
        std::mismatch(seq.tokens.begin(), seq.tokens.begin() + limit, other->tokens.begin()).first -
        seq.tokens.begin();
    if (static_cast<int>(common / bs * bs) > other->num_computed) return true;
  }
  return false;
}

bool Scheduler::Admit(Sequence& seq, absl::Time now) {
  const size_t match_len = seq.prefill_only ? seq.tokens.size() : seq.tokens.size() - 1;
  // Counted once, at the first admission (below): an admission that must wait for blocks
  // is retried, and a preempted request is re-admitted.
  seq.hold = cache_.Match(seq.ns, absl::MakeConstSpan(seq.tokens).first(match_len),
                          /*count=*/false);
  const int bs = cache_.block_size();
  // Blocks in host memory count as cached: they are promoted, not computed.
  const int to_promote = seq.hold.num_host_blocks();
  const int cached = (seq.hold.num_blocks() + to_promote) * bs;
  const int remaining = static_cast<int>(seq.tokens.size()) - cached;
  const int first_chunk = std::min(remaining, options_.max_batch_tokens);
  const int need = (cached + first_chunk + bs - 1) / bs - seq.hold.num_blocks();
  // New requests never preempt running ones: they wait for blocks instead.
  if (need > cache_.num_available()) {
    seq.block_table.assign(seq.hold.blocks().begin(), seq.hold.blocks().end());
    ReleaseBlocks(seq);
    return false;
  }
  if (to_promote > 0) {
    const absl::Status promoted = cache_.Promote(seq.hold);
    PREFIXD_CHECK(promoted.ok(), promoted.ToString());
    ++counters_.promotions;
    seq.promoted_at = now;
  }
  seq.block_table.assign(seq.hold.blocks().begin(), seq.hold.blocks().end());
  seq.num_computed = seq.hold.num_tokens();
  // Blocks whose copies land before the next step: this request's, or another's admitted
  // in this step with the same prefix.
  bool in_transit = to_promote > 0;
  if (!in_transit_.empty()) {
    for (BlockId b : seq.hold.blocks()) in_transit = in_transit || in_transit_.contains(b);
  }
  for (int i = seq.hold.num_blocks() - to_promote; i < seq.hold.num_blocks(); ++i) {
    in_transit_.insert(seq.hold.blocks()[i]);
  }
  if (in_transit) seq.ready_step = step_index_ + 1;
  if (need - to_promote > 0) {
    absl::StatusOr<std::vector<BlockId>> blocks = cache_.Allocate(need - to_promote);
    PREFIXD_CHECK(blocks.ok(), blocks.status().ToString());
    seq.block_table.insert(seq.block_table.end(), blocks->begin(), blocks->end());
  }
  if (seq.cached_tokens < 0) {
    seq.cached_tokens = std::min(seq.num_computed, seq.prompt_len);
    // A Pin's prefill is not a prompt: it counts neither as one nor as a lookup.
    if (!seq.prefill_only) {
      counters_.prompt_tokens += seq.prompt_len;
      counters_.prompt_tokens_cached += seq.cached_tokens;
      cache_.CountLookup(seq.ns, seq.hold, static_cast<int64_t>(match_len));
    }
  }
  seq.running = true;
  running_.push_back(&seq);
  return true;
}

bool Scheduler::EnsureBlocks(Sequence& seq, int num_tokens) {
  const int bs = cache_.block_size();
  while (true) {
    const int need = (num_tokens + bs - 1) / bs - static_cast<int>(seq.block_table.size());
    if (need <= 0) return true;
    absl::StatusOr<std::vector<BlockId>> blocks = cache_.Allocate(need);
    if (blocks.ok()) {
      seq.block_table.insert(seq.block_table.end(), blocks->begin(), blocks->end());
      return true;
    }
    // Out of blocks even after eviction: the newest running request gives its blocks back.
    Sequence* victim = running_.back();
    Preempt(*victim);
    if (victim == &seq) return false;
  }
}

void Scheduler::Preempt(Sequence& seq) {
  ReleaseBlocks(seq);
  seq.running = false;
  ++seq.preemptions;
  ++counters_.preemptions;
  running_.erase(std::find(running_.begin(), running_.end(), &seq));
  waiting_.push_front(&seq);
}

void Scheduler::InsertComputedBlocks(Sequence& seq) {
  const int full = seq.num_computed / cache_.block_size();
  if (seq.insert_blocked || full <= seq.hold.num_blocks()) return;
  InsertResult r = cache_.Insert(seq.hold, absl::MakeConstSpan(seq.tokens).first(seq.num_computed),
                                 absl::MakeConstSpan(seq.block_table).first(full));
  for (int i : r.duplicate_indices) {
    // Another request cached these tokens first: use its block, free ours.
    cache_.Free({seq.block_table[i]});
    seq.block_table[i] = seq.hold.blocks()[i];
  }
  if (r.rejected_blocks > 0) seq.insert_blocked = true;
}

void Scheduler::ReleaseBlocks(Sequence& seq) {
  if (seq.hold.active()) {
    const int shared = seq.hold.num_blocks();
    PREFIXD_CHECK(
        std::equal(seq.hold.blocks().begin(), seq.hold.blocks().end(), seq.block_table.begin()),
        "block table disagrees with the cached prefix it holds");
    cache_.Free(absl::MakeConstSpan(seq.block_table).subspan(shared));
    cache_.Release(seq.hold);
  }
  seq.block_table.clear();
  seq.num_computed = 0;
  seq.insert_blocked = false;
}

void Scheduler::Finish(Sequence& seq, absl::Status status, FinishReason reason,
                       GenerationUpdate update, absl::Time now) {
  ReleaseBlocks(seq);
  if (!status.ok()) {
    ++counters_.failed;
  } else if (reason == FinishReason::kStop) {
    ++counters_.finished_stop;
  } else if (reason == FinishReason::kLength) {
    ++counters_.finished_length;
  } else if (reason == FinishReason::kCancelled) {
    ++counters_.finished_cancelled;
  }
  if (seq.prefill_only) {
    if (seq.on_pinned) {
      seq.on_pinned(status.ok() ? absl::StatusOr<int>(absl::CancelledError("server shutting down"))
                                : absl::StatusOr<int>(status),
                    0);
    }
  } else {
    update.finished = true;
    update.status = std::move(status);
    update.finish_reason = update.status.ok() ? reason : FinishReason::kNone;
    RequestUsage& u = update.usage;
    u.prompt_tokens = seq.prompt_len;
    u.admitted = seq.cached_tokens >= 0;
    u.cached_tokens = std::max(seq.cached_tokens, 0);
    u.completion_tokens = seq.output->num_emitted();  // as the client received them
    u.preemptions = seq.preemptions;
    u.queue_time = seq.first_scheduled.value_or(now) - seq.arrival;
    u.time_to_first_token = seq.first_token ? *seq.first_token - seq.arrival : absl::ZeroDuration();
    u.total_time = now - seq.arrival;
    seq.callback(std::move(update));
  }
  Remove(seq);
}

void Scheduler::Remove(Sequence& seq) {
  if (auto it = std::find(running_.begin(), running_.end(), &seq); it != running_.end()) {
    running_.erase(it);
  }
  if (auto it = std::find(waiting_.begin(), waiting_.end(), &seq); it != waiting_.end()) {
    waiting_.erase(it);
  }
  sequences_.erase(seq.id);  // destroys seq
}

// The waiting requests of one step, by tenant. Stride scheduling: each admission advances
// its tenant's pass by 1 / weight, and the tenant with the smallest pass goes next (the one
// whose request came first on a tie). A tenant that was idle banks no turns: when it comes
// back its pass is at least the pass of the latest admission.
class Scheduler::Lanes {
 public:
  explicit Lanes(Scheduler& scheduler) : scheduler_(scheduler) {
    for (size_t i = 0; i < scheduler.waiting_.size(); ++i) {
      Sequence* seq = scheduler.waiting_[i];
      auto [it, added] = index_.try_emplace(seq->tenant, lanes_.size());
      if (added) {
        auto pass = scheduler.pass_.try_emplace(seq->tenant, scheduler.virtual_time_).first;
        pass->second = std::max(pass->second, scheduler.virtual_time_);
        const auto weight = scheduler.options_.weights.find(seq->tenant);
        lanes_.push_back(Lane{.pass = &pass->second,
                              .stride = 1.0 / (weight == scheduler.options_.weights.end()
                                                   ? 1
                                                   : std::max(weight->second, 1))});
      }
      lanes_[it->second].queue.push_back({i, seq});
    }
    // Tenants with nothing waiting whose pass is behind carry nothing worth keeping (when
    // they come back they start at the latest admission's pass anyway).
    for (auto it = scheduler.pass_.begin(); it != scheduler.pass_.end();) {
      if (index_.contains(it->first) || it->second > scheduler.virtual_time_) {
        ++it;
      } else {
        scheduler.pass_.erase(it++);
      }
    }
  }

  // The next request in turn, or null when every lane is done this step.
  Sequence* Next() {
    current_ = nullptr;
    for (Lane& lane : lanes_) {
      if (lane.next == lane.queue.size()) continue;
      if (current_ == nullptr || *lane.pass < *current_->pass ||
          (*lane.pass == *current_->pass &&
           lane.queue[lane.next].first < current_->queue[current_->next].first)) {
        current_ = &lane;
      }
    }
    return current_ == nullptr ? nullptr : current_->queue[current_->next].second;
  }
  // Next()'s request was admitted: its tenant's turn is used.
  void Admitted() {
    scheduler_.virtual_time_ = std::max(scheduler_.virtual_time_, *current_->pass);
    *current_->pass += current_->stride;
    ++current_->next;
  }
  // Next()'s request is passed over this step (it waits for a prefix being computed, or it
  // ended); the tenant's next request may go in its place.
  void Skip() { ++current_->next; }

 private:
  struct Lane {
    std::vector<std::pair<size_t, Sequence*>> queue = {};  // (place in waiting_, request)
    size_t next = 0;
    double* pass = nullptr;
    double stride = 1;
  };
  Scheduler& scheduler_;
  absl::flat_hash_map<std::string_view, size_t> index_;
  std::vector<Lane> lanes_;
  Lane* current_ = nullptr;
};

// Weighted max-min fairness: the tenants in order of demand per weight; each takes what it
// needs when that is within its weighted part of what is left, else that part (at least a
// token, so no tenant stalls however many there are).
absl::flat_hash_map<std::string, int> Scheduler::PrefillShares(bool may_admit) const {
  absl::flat_hash_map<std::string, int64_t> demand;
  int64_t budget = options_.max_batch_tokens;
  for (const Sequence* seq : running_) {
    const int left = static_cast<int>(seq->tokens.size()) - seq->num_computed;
    if (seq->prefilling()) {
      demand[seq->tenant] += left;
    } else {
      budget -= left;  // a decode: it goes first
    }
  }
  if (may_admit) {
    // A waiting prompt may be partly cached: its demand is an upper bound, and what it
    // leaves unused goes to the others after admission (Step's top-up).
    for (const Sequence* seq : waiting_) demand[seq->tenant] += seq->tokens.size();
  }
  absl::flat_hash_map<std::string, int> shares;
  if (demand.size() < 2) return shares;
  auto weight = [&](const std::string& tenant) {
    const auto it = options_.weights.find(tenant);
    return it == options_.weights.end() ? 1 : std::max(it->second, 1);
  };
  std::vector<std::pair<double, const std::string*>> order;
  int64_t total_weight = 0;
  for (const auto& [tenant, tokens] : demand) {
    order.emplace_back(static_cast<double>(tokens) / weight(tenant), &tenant);
    total_weight += weight(tenant);
  }
  std::sort(order.begin(), order.end());
  int64_t left = std::max<int64_t>(budget, 0);
  for (const auto& [per_weight, tenant] : order) {
    const int64_t w = weight(*tenant);
    const int64_t part = std::min(left, std::max<int64_t>(1, left * w / total_weight));
    const int64_t share = std::min(demand[*tenant], part);
    shares[*tenant] = static_cast<int>(share);
    left -= share;
    total_weight -= w;
  }
  return shares;
}

StepReport Scheduler::Step(absl::Time now) {
  StepReport report;
  ++step_index_;
  in_transit_.clear();
  ExpireDeadlines(now);
  const int bs = cache_.block_size();
  int budget = options_.max_batch_tokens;
  std::vector<Sequence*> scheduled;
  const bool may_admit =
      static_cast<int>(running_.size()) < options_.max_running_requests && !waiting_.empty();
  // Prefill tokens each tenant may still take this step (PrefillShares); none listed: any.
  absl::flat_hash_map<std::string, int> shares = PrefillShares(may_admit);
  auto share_left = [&](const Sequence& seq) {
    const auto it = shares.find(seq.tenant);
    return it == shares.end() ? budget : it->second;
  };
  auto take_share = [&](const Sequence& seq, int n) {
    if (const auto it = shares.find(seq.tenant); it != shares.end()) it->second -= n;
  };

  // 1. Running requests, oldest first: a decode token each, or their next prefill chunk
  // within the tenant's share.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* seq = running_[i];
    if (seq->ready_step > step_index_) continue;  // its promoted blocks are on their way
    int n = std::min(static_cast<int>(seq->tokens.size()) - seq->num_computed, budget);
    if (seq->prefilling()) n = std::min(n, share_left(*seq));
    if (n <= 0) continue;  // its tenant's share is spent: it waits a step
    if (!EnsureBlocks(*seq, seq->num_computed + n)) break;  // seq and all after it preempted
    if (seq->prefilling()) take_share(*seq, n);
    seq->step_tokens = n;
    scheduled.push_back(seq);
    budget -= n;
  }

  // 2. Waiting requests, while budget and blocks last: tenants take turns in weighted round
  // robin, first come first served within a tenant (Lanes). The lanes are built only when
  // a request may be admitted: a step with a full batch does no work for the queue.
  std::optional<Lanes> lanes;
  while (budget > 0 && static_cast<int>(running_.size()) < options_.max_running_requests &&
         !waiting_.empty()) {
    if (!lanes) lanes.emplace(*this);
    Sequence* seq = lanes->Next();
    if (seq == nullptr) break;
    if (share_left(*seq) <= 0) {
      lanes->Skip();  // its tenant's prefill share is spent this step
      continue;
    }
    if (SharesPrefixBeingComputed(*seq)) {
      if (!seq->counted_dedup_wait) ++counters_.deduplicated_waits;
      seq->counted_dedup_wait = true;
      lanes->Skip();
      continue;
    }
    if (!Admit(*seq, now)) {
      if (running_.empty()) {
        // Nothing will free blocks: the pool is full of pinned prefixes.
        const int need = (static_cast<int>(seq->tokens.size()) + bs - 1) / bs;
        lanes->Skip();
        Finish(*seq,
               absl::ResourceExhaustedError(absl::StrCat(
                   "the KV cache cannot hold this request (", need, " blocks) next to the ",
                   cache_.Stats().blocks.pinned, " pinned blocks")),
               FinishReason::kNone, GenerationUpdate{}, now);
        continue;
      }
      break;  // it waits for blocks, and no one behind it jumps ahead
    }
    lanes->Admitted();
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), seq));
    const int n = std::min(
        {static_cast<int>(seq->tokens.size()) - seq->num_computed, budget, share_left(*seq)});
    if (n == 0) {
      // A Pin whose prefix is cached already: nothing to compute.
      PREFIXD_CHECK(seq->prefill_only, "admitted a request with nothing to compute");
      absl::StatusOr<int> pinned = cache_.Pin(seq->ns, seq->tokens);
      auto done = std::move(seq->on_pinned);
      seq->on_pinned = nullptr;
      Finish(*seq, absl::OkStatus(), FinishReason::kStop, GenerationUpdate{}, now);
      done(std::move(pinned), 0);
      continue;
    }
    if (seq->ready_step > step_index_) continue;  // runs next step, with its promoted blocks
    take_share(*seq, n);
    seq->step_tokens = n;
    scheduled.push_back(seq);
    budget -= n;
  }

  // The budget the shares left unused (a tenant's waiting prompt was mostly cached, or it
  // waits for blocks) goes to the scheduled prefills, oldest first, as far as their blocks
  // and the free ones reach: sharing never makes a step smaller than it could be.
  for (size_t i = 0; i < scheduled.size() && budget > 0 && !shares.empty(); ++i) {
    Sequence* seq = scheduled[i];
    if (!seq->prefilling()) continue;
    const int end = seq->num_computed + seq->step_tokens;
    const int room = (static_cast<int>(seq->block_table.size()) + cache_.num_available()) * bs;
    const int extra = std::min({static_cast<int>(seq->tokens.size()) - end, budget, room - end});
    if (extra <= 0) continue;
    const int need = (end + extra + bs - 1) / bs - static_cast<int>(seq->block_table.size());
    if (need > 0) {
      absl::StatusOr<std::vector<BlockId>> blocks = cache_.Allocate(need);
      if (!blocks.ok()) continue;
      seq->block_table.insert(seq->block_table.end(), blocks->begin(), blocks->end());
    }
    seq->step_tokens += extra;
    budget -= extra;
  }

  // The copies between the tiers that this step's evictions and promotions queued: the
  // demotions land before the forward pass overwrites their blocks.
  if (host_kv_ != nullptr) host_kv_->Run(cache_.TakeTransfers());
  if (scheduled.empty()) return report;

  // 3. One forward pass over every scheduled token. Sequences with one new token go last,
  // ordered by block table, so those that share cached prefix blocks sit next to each other
  // and form shared-prefix groups.
  std::vector<Sequence*> order = scheduled;
  if (group_shared_prefixes_) {
    auto one_token = [](const Sequence* seq) { return seq->step_tokens == 1; };
    auto singles = std::stable_partition(order.begin(), order.end(),
                                         [&](const Sequence* seq) { return !one_token(seq); });
    std::stable_sort(singles, order.end(), [](const Sequence* a, const Sequence* b) {
      return a->block_table < b->block_table;
    });
  }
  batch_.Clear();
  std::vector<SamplingRow> rows;
  std::vector<Sequence*> sampled;
  for (Sequence* seq : order) {
    const int first = seq->num_computed, n = seq->step_tokens;
    const bool sample = !seq->prefill_only && first + n == static_cast<int>(seq->tokens.size());
    batch_.AddSequence(absl::MakeConstSpan(seq->tokens).subspan(first, n), first, seq->block_table,
                       bs, sample);
    if (!seq->first_scheduled) seq->first_scheduled = now;
    if (seq->promoted_at) {
      report.promotion_waits.push_back(now - *seq->promoted_at);
      seq->promoted_at.reset();
    }
    if (sample) {
      rows.push_back(SamplingRow{seq->params.temperature, seq->params.top_k, seq->params.top_p,
                                 seq->seed, static_cast<uint64_t>(seq->num_generated()),
                                 seq->params.top_logprobs});
      sampled.push_back(seq);
    }
    const int prefill = std::max(0, std::min(first + n, seq->prompt_len) - first);
    report.prefill_tokens += prefill;
    report.decode_tokens += n - prefill;
    counters_.prompt_tokens_computed += prefill;
  }
  if (group_shared_prefixes_) {
    batch_.FindSharedPrefixGroups(bs, /*min_shared_blocks=*/1);
    report.shared_prefix_groups = batch_.num_groups();
    counters_.shared_prefix_groups += batch_.num_groups();
    for (int g = 0; g < batch_.num_groups(); ++g) {
      counters_.shared_prefix_group_seqs += batch_.groups[3 * g + 1] - batch_.groups[3 * g];
    }
  }
  report.num_seqs = static_cast<int>(scheduled.size());
  report.num_tokens = batch_.num_tokens();
  if (options_.inject_fault) {
    std::vector<RequestId> ids;
    for (const Sequence* seq : scheduled) ids.push_back(seq->id);
    if (absl::Status fault = options_.inject_fault(ids); !fault.ok()) {
      ++counters_.failed_steps;
      for (Sequence* seq : scheduled) {
        Finish(*seq,
               absl::InternalError(
                   absl::StrCat("the step computing this request failed: ", fault.message())),
               FinishReason::kNone, GenerationUpdate{}, absl::Now());
      }
      return report;
    }
  }
  const Tensor logits = model_.Forward(batch_);

  // 4. Cache what the step computes. On a GPU Forward only queued the work, so this host
  // work overlaps the device's; it is safe before the results exist because blocks freed or
  // shared here are reused only by later steps, queued after this one.
  const absl::Time queued = absl::Now();
  for (Sequence* seq : scheduled) {
    seq->num_computed += seq->step_tokens;
    seq->step_tokens = 0;
    InsertComputedBlocks(*seq);
    if (seq->prefill_only && seq->num_computed == static_cast<int>(seq->tokens.size())) {
      absl::StatusOr<int> pinned = cache_.Pin(seq->ns, seq->tokens);
      const int computed = seq->prompt_len - std::max(seq->cached_tokens, 0);
      auto on_pinned = std::move(seq->on_pinned);
      seq->on_pinned = nullptr;
      Finish(*seq, absl::OkStatus(), FinishReason::kStop, GenerationUpdate{}, queued);
      on_pinned(std::move(pinned), computed);
    }
  }

  // 5. Sample (this waits for the device), then emit what was sampled.
  std::vector<SampledToken> tokens(rows.size());
  if (!rows.empty()) model_.backend().Sample(logits, rows, absl::MakeSpan(tokens));
  const absl::Time done = absl::Now();
  report.duration = done - now;
  ++counters_.steps;
  for (size_t r = 0; r < sampled.size(); ++r) {
    Sequence* seq = sampled[r];
    SampledToken& t = tokens[r];
    seq->tokens.push_back(t.token);
    ++counters_.generated_tokens;
    if (!seq->first_token) seq->first_token = done;
    FinishReason reason;
    GenerationUpdate update;
    OutputProcessor::Emitted emitted = seq->output->Push(std::move(t), reason);
    update.text = std::move(emitted.text);
    const bool logprobs = seq->params.logprobs || seq->params.top_logprobs > 0;
    for (SampledToken& e : emitted.tokens) {
      update.tokens.push_back(e.token);
      if (logprobs) update.logprobs.push_back(std::move(e));
    }
    if (reason != FinishReason::kNone) {
      Finish(*seq, absl::OkStatus(), reason, std::move(update), done);
    } else if (!update.tokens.empty() || !update.text.empty()) {
      seq->callback(std::move(update));  // held back (a possible stop string): nothing yet
    }
  }
  return report;
}

absl::Status Scheduler::CheckInvariants() const {
  std::vector<BlockId> private_blocks;
  for (const Sequence* seq : running_) {
    const int shared = seq->hold.active() ? seq->hold.num_blocks() : 0;
    private_blocks.insert(private_blocks.end(), seq->block_table.begin() + shared,
                          seq->block_table.end());
  }
  for (const Sequence* seq : waiting_) {
    if (!seq->block_table.empty() || seq->hold.active()) {
      return absl::InternalError(absl::StrCat("waiting request ", seq->id, " holds blocks"));
    }
  }
  return cache_.CheckInvariants(private_blocks);
}

}  // namespace prefixd
