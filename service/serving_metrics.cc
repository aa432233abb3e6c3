#include "service/serving_metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/time/clock.h"

namespace prefixd {
namespace {

// Latency buckets in seconds, from a fast GPU's single-digit milliseconds to a CPU's
// minutes (the bounds vLLM uses, with finer steps at the fast end).
const std::vector<double> kTimeToFirstTokenBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1,     2.5,   5,    7.5,  10,   20,   40,   80,  160,  640, 2560};
const std::vector<double> kInterTokenBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                                0.1,   0.15,   0.2,   0.3,  0.4,   0.5,  0.75,
                                                1,     2.5,    5,     7.5,  10,    20,   40};
const std::vector<double> kRequestBuckets = {0.05, 0.1, 0.3, 0.5, 0.8, 1,    1.5, 2,
                                             2.5,  5,   10,  15,  20,  30,   40,  50,
                                             60,   120, 240, 480, 960, 1920, 7680};

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// p in [0, 1] of sorted values, by the nearest-rank method.
double Percentile(const std::vector<double>& sorted, double p) {
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

ServingMetrics::ServingMetrics(const Engine* engine)
    : engine_(engine),
      start_time_(absl::Now()),
      requests_(registry_.AddCounter(
          "prefixd_requests_total",
          "Generate requests by final gRPC status code and finish reason (stop, length, "
          "cancelled; none for requests that ended without one, e.g. rejected before they "
          "were queued).",
          {"code", "finish_reason"})),
      tenant_requests_(registry_.AddCounter(
          "prefixd_tenant_requests_total",
          "Generate requests the engine accepted and finished, by tenant (cache namespace).",
          {"tenant"})),
      tenant_prompt_tokens_(registry_.AddCounter(
          "prefixd_tenant_prompt_tokens_total",
          "Prompt tokens of finished requests, by tenant (cache namespace).", {"tenant"})),
      tenant_cached_tokens_(registry_.AddCounter(
          "prefixd_tenant_cached_tokens_total",
          "Prompt tokens of finished requests served from the prefix cache, by tenant.",
          {"tenant"})),
      tenant_completion_tokens_(registry_.AddCounter(
          "prefixd_tenant_completion_tokens_total",
          "Tokens generated for finished requests, by tenant (cache namespace).", {"tenant"})),
      time_to_first_token_(registry_
                               .AddHistogram("prefixd_time_to_first_token_seconds",
                                             "Time from a request's arrival to its first "
                                             "generated token.",
                                             kTimeToFirstTokenBuckets)
                               .Get()),
      inter_token_latency_(registry_
                               .AddHistogram("prefixd_inter_token_latency_seconds",
                                             "Time between consecutive generated tokens of a "
                                             "request.",
                                             kInterTokenBuckets)
                               .Get()),
      request_duration_(registry_
                            .AddHistogram("prefixd_request_duration_seconds",
                                          "Time from a request's arrival to its last "
                                          "message (end-to-end latency), for requests the "
                                          "engine accepted.",
                                          kRequestBuckets)
                            .Get()),
      queue_time_(registry_
                      .AddHistogram("prefixd_request_queue_time_seconds",
                                    "Time from a request's arrival to the first engine step "
                                    "that included it.",
                                    kRequestBuckets)
                      .Get()),
      step_duration_(registry_
                         .AddHistogram("prefixd_engine_step_duration_seconds",
                                       "Wall time of one engine step (one batched forward "
                                       "pass and sampling).",
                                       ExponentialBuckets(0.0005, 2, 14))
                         .Get()),
      step_batch_tokens_(registry_
                             .AddHistogram("prefixd_engine_step_batch_tokens",
                                           "Tokens computed in one engine step (prefill chunks "
                                           "plus one per decoding request).",
                                           ExponentialBuckets(1, 2, 14))
                             .Get()),
      promotion_wait_(registry_
                          .AddHistogram("prefixd_kv_promotion_wait_seconds",
                                        "Time from the admission of a request whose cached "
                                        "blocks were in the host tier (their copies to the "
                                        "device queued) to the first step that ran it.",
                                        ExponentialBuckets(0.0005, 2, 14))
                          .Get()) {
  registry_.AddCollector([this](TextExposition& out) { CollectEngineStats(out); });
}

ServingMetrics::RequestRecorder ServingMetrics::StartRequest(const std::string& tenant,
                                                             absl::Time now) {
  RequestRecorder r;
  r.metrics_ = this;
  r.requests_ = &tenant_requests_.WithLabels({tenant});
  r.prompt_tokens_ = &tenant_prompt_tokens_.WithLabels({tenant});
  r.cached_tokens_ = &tenant_cached_tokens_.WithLabels({tenant});
  r.completion_tokens_ = &tenant_completion_tokens_.WithLabels({tenant});
  r.start_ = now;
  return r;
}

void ServingMetrics::RequestRecorder::OnUpdate(const GenerationUpdate& update, absl::Time now) {
  ServingMetrics& m = *metrics_;
  const int n = static_cast<int>(update.tokens.size());
  if (n > 0) {
    if (!saw_token_) {
      saw_token_ = true;
      m.time_to_first_token_.Observe(Seconds(now - start_));
      m.RecordTimeToFirstToken(now, now - start_);
      // Tokens that came with the first one have no gap of their own to report.
    } else {
      m.inter_token_latency_.Observe(Seconds(now - last_token_) / n, n);
    }
    last_token_ = now;
  }
  if (!update.finished) return;
  m.requests_
      .WithLabels({absl::StatusCodeToString(update.status.code()),
                   std::string(FinishReasonName(update.finish_reason))})
      .Increment();
  m.request_duration_.Observe(Seconds(now - start_));
  if (update.usage.queue_time > absl::ZeroDuration()) {
    m.queue_time_.Observe(Seconds(update.usage.queue_time));
  }
  requests_->Increment();
  // A prompt counts once the request is admitted (not when it is cancelled in the queue).
  if (update.usage.admitted) {
    prompt_tokens_->Increment(update.usage.prompt_tokens);
    cached_tokens_->Increment(update.usage.cached_tokens);
  }
  completion_tokens_->Increment(update.usage.completion_tokens);
}

void ServingMetrics::RecordRejected(const absl::Status& status) {
  requests_.WithLabels({absl::StatusCodeToString(status.code()), "none"}).Increment();
}

void ServingMetrics::RecordStep(const StepReport& step) {
  step_duration_.Observe(Seconds(step.duration));
  step_batch_tokens_.Observe(step.num_tokens);
  for (absl::Duration wait : step.promotion_waits) promotion_wait_.Observe(Seconds(wait));
}

void ServingMetrics::RecordTimeToFirstToken(absl::Time when, absl::Duration ttft) {
  absl::MutexLock lock(&recent_mu_);
  recent_ttft_.emplace_back(when, Seconds(ttft));
  while (recent_ttft_.size() > kMaxRecent ||
         (!recent_ttft_.empty() && recent_ttft_.front().first < when - kRecentHorizon)) {
    recent_ttft_.pop_front();
  }
}

ServingMetrics::RecentLatency ServingMetrics::RecentTimeToFirstToken(absl::Time now,
                                                                     absl::Duration window) const {
  std::vector<double> values;
  {
    absl::MutexLock lock(&recent_mu_);
    for (auto it = recent_ttft_.rbegin(); it != recent_ttft_.rend(); ++it) {
      if (it->first <= now - window) break;
      if (it->first <= now) values.push_back(it->second);
    }
  }
  RecentLatency r;
  r.count = static_cast<int>(values.size());
  if (values.empty()) return r;
  std::sort(values.begin(), values.end());
  r.p50_seconds = Percentile(values, 0.50);
  r.p99_seconds = Percentile(values, 0.99);
  return r;
}

void ServingMetrics::CollectEngineStats(TextExposition& out) const {
  const EngineStats s = engine_->StatsSnapshot();
  const TreeStats& tree = s.cache.tree;
  const BlockCounts& blocks = s.cache.blocks;

  out.Family("prefixd_model_info", "The model this server serves (value 1).", MetricType::kGauge);
  out.Sample("", {{"model", engine_->model_id()}}, 1);
  out.Gauge("process_start_time_seconds", "Start time of the process since the Unix epoch.",
            absl::ToDoubleSeconds(start_time_ - absl::UnixEpoch()));
  out.Gauge("prefixd_prefix_cache_enabled",
            "1 if requests share cached prefixes, 0 if the server runs with the cache off.",
            s.cache.enabled ? 1 : 0);

  // Per tenant: the tree counts per namespace (a namespace's display name can repeat only
  // across models or adapters; those rows are summed).
  struct TenantRow {
    int64_t query_tokens = 0, hit_tokens = 0, cached_blocks = 0;
    int64_t host_hit_tokens = 0, host_cached_blocks = 0;
  };
  absl::btree_map<std::string, TenantRow> tenants;
  for (const NamespaceStats& ns : tree.namespaces) {
    TenantRow& row = tenants[ns.name];
    row.query_tokens += ns.query_tokens;
    row.hit_tokens += ns.hit_tokens;
    row.cached_blocks += ns.cached_blocks;
    row.host_hit_tokens += ns.host_hit_tokens;
    row.host_cached_blocks += ns.host_cached_blocks;
  }
  out.Family("prefixd_prefix_cache_queries_tokens_total",
             "Prompt tokens looked up in the prefix cache, by tenant (cache namespace).",
             MetricType::kCounter);
  for (const auto& [name, row] : tenants) out.Sample("", {{"tenant", name}}, row.query_tokens);
  out.Family("prefixd_prefix_cache_hits_tokens_total",
             "Prompt tokens found in the prefix cache (either tier), by tenant (cache "
             "namespace).",
             MetricType::kCounter);
  for (const auto& [name, row] : tenants) out.Sample("", {{"tenant", name}}, row.hit_tokens);
  out.Family("prefixd_prefix_cache_host_hits_tokens_total",
             "Of the hit tokens, those found in the host tier (brought back to the device "
             "rather than recomputed), by tenant (cache namespace).",
             MetricType::kCounter);
  for (const auto& [name, row] : tenants) out.Sample("", {{"tenant", name}}, row.host_hit_tokens);
  out.Gauge("prefixd_prefix_cache_hit_ratio",
            "Prefix cache hit tokens / query tokens since start (0 before any query). For a "
            "recent rate: rate(hits_tokens_total) / rate(queries_tokens_total).",
            tree.query_tokens > 0
                ? static_cast<double>(tree.hit_tokens) / static_cast<double>(tree.query_tokens)
                : 0);
  out.Counter("prefixd_prefix_cache_hash_collisions_total",
              "Blocks not cached because a cached block had the same key but other tokens.",
              tree.hash_collisions);

  out.Counter("prefixd_prompt_tokens_total", "Prompt tokens of admitted requests.",
              s.counters.prompt_tokens);
  out.Counter("prefixd_prefill_tokens_computed_total",
              "Prompt tokens run through the model (prefill).", s.counters.prompt_tokens_computed);
  out.Counter("prefixd_prefill_tokens_cached_total",
              "Prompt tokens served from the prefix cache instead of being computed.",
              s.counters.prompt_tokens_cached);
  out.Counter("prefixd_prefill_deduplicated_waits_total",
              "Admissions deferred so that a prefix another request is computing is computed "
              "once.",
              s.counters.deduplicated_waits);
  out.Counter("prefixd_shared_prefix_decode_sequences_total",
              "Decode sequences batched in a shared-prefix group, whose attention read the "
              "group's cached prefix blocks once for the whole group.",
              s.counters.shared_prefix_group_seqs);
  out.Counter("prefixd_generated_tokens_total", "Tokens generated (sampled), all requests.",
              s.counters.generated_tokens);
  out.Counter("prefixd_preemptions_total",
              "Running requests preempted for lack of KV blocks (recomputed later).",
              s.counters.preemptions);
  out.Counter("prefixd_engine_steps_total", "Engine steps run.", s.counters.steps);

  out.Gauge("prefixd_kv_block_size_tokens", "Tokens per KV cache block.", s.cache.block_size);
  out.Gauge("prefixd_kv_capacity_blocks", "KV cache blocks in the pool.", blocks.total);
  out.Family("prefixd_kv_blocks",
             "KV cache blocks by state; the states partition the pool. free: holds nothing; "
             "evictable: cached, unused, reclaimable; in_use: held by running requests; "
             "pinned: cached and pinned by an admin (in use or not).",
             MetricType::kGauge);
  out.Sample("", {{"state", "free"}}, blocks.free);
  out.Sample("", {{"state", "evictable"}}, blocks.evictable);
  out.Sample("", {{"state", "in_use"}}, blocks.in_use - blocks.pinned);
  out.Sample("", {{"state", "pinned"}}, blocks.pinned);
  out.Gauge("prefixd_kv_usage_ratio",
            "Fraction of KV blocks held by requests or pins (evictable cached blocks count as "
            "available).",
            blocks.total > 0 ? static_cast<double>(blocks.in_use) / blocks.total : 0);
  out.Family("prefixd_kv_cached_blocks", "Blocks in the prefix cache, by tenant.",
             MetricType::kGauge);
  for (const auto& [name, row] : tenants) out.Sample("", {{"tenant", name}}, row.cached_blocks);
  out.Counter("prefixd_kv_inserted_blocks_total", "Blocks added to the prefix cache.",
              tree.inserted_blocks);
  out.Counter("prefixd_kv_evicted_blocks_total",
              "Cached blocks evicted from the device to make room (least recently used "
              "first); with a host tier, demoted to it or dropped.",
              tree.evicted_blocks);
  out.Counter("prefixd_kv_flushed_blocks_total", "Cached blocks dropped by Flush (both tiers).",
              tree.flushed_blocks);

  // The host tier (all 0 without one: prefixd_kv_host_capacity_blocks says which).
  const BlockCounts& host = s.cache.host_blocks;
  out.Gauge("prefixd_kv_host_capacity_blocks",
            "KV cache blocks the host tier can hold (0: no host tier).", host.total);
  out.Family("prefixd_kv_host_blocks",
             "Host tier blocks by state; the states partition its capacity. free: holds "
             "nothing (or has no memory yet); evictable: cached, reclaimable; in_use: matched "
             "by a request and being brought back to the device.",
             MetricType::kGauge);
  out.Sample("", {{"state", "free"}}, host.free);
  out.Sample("", {{"state", "evictable"}}, host.evictable);
  out.Sample("", {{"state", "in_use"}}, host.in_use);
  out.Family("prefixd_kv_host_cached_blocks", "Blocks in the host tier, by tenant.",
             MetricType::kGauge);
  for (const auto& [name, row] : tenants) {
    out.Sample("", {{"tenant", name}}, row.host_cached_blocks);
  }
  out.Counter("prefixd_kv_demoted_blocks_total",
              "Blocks evicted from the device into the host tier.", tree.demoted_blocks);
  out.Counter("prefixd_kv_promoted_blocks_total",
              "Blocks brought back from the host tier to the device on a hit.",
              tree.promoted_blocks);
  out.Counter("prefixd_kv_host_evicted_blocks_total",
              "Blocks dropped from the host tier to make room (least recently used first).",
              tree.host_evicted_blocks);
  out.Counter("prefixd_kv_dropped_blocks_total",
              "Blocks evicted from the device that the host tier had no room for (every host "
              "block in use, or its memory refused), so dropped.",
              tree.dropped_blocks);
  out.Family("prefixd_kv_host_transfer_bytes_total",
             "Bytes of KV copied between the tiers: to_host by demotions, to_device by "
             "promotions.",
             MetricType::kCounter);
  out.Sample("", {{"direction", "to_device"}}, s.host_kv.bytes_to_device);
  out.Sample("", {{"direction", "to_host"}}, s.host_kv.bytes_to_host);
  out.Gauge("prefixd_kv_host_capacity_bytes",
            "The host tier's size in bytes (--host_kv_cache_bytes; 0: no host tier).",
            engine_->host_kv_cache_bytes());
  out.Gauge("prefixd_kv_host_allocated_bytes",
            "Host memory the host tier has taken so far (it grows as the tier fills).",
            s.host_kv.bytes_allocated);
  out.Counter("prefixd_kv_host_allocation_failures_total",
              "Host memory requests the system refused (the host tier stops growing).",
              s.host_kv.allocation_failures);

  out.Gauge("prefixd_queue_depth_requests", "Requests waiting to be admitted.", s.waiting);
  out.Gauge("prefixd_running_requests", "Requests in the running batch.", s.running);
}

}  // namespace prefixd
