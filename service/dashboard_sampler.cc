#include "service/dashboard_sampler.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace prefixd {
namespace {

using Json = nlohmann::json;

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

Json OrNull(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

std::optional<double> Ratio(int64_t part, int64_t whole) {
  if (whole <= 0) return std::nullopt;
  return static_cast<double>(part) / static_cast<double>(whole);
}

// Requests that ran to their end (a stop or their length): what "done" means on the page.
// Cancelled and failed ones are counted apart.
int64_t FinishedRequests(const SchedulerCounters& c) { return c.finished_stop + c.finished_length; }

}  // namespace

DashboardSampler::DashboardSampler(Engine* engine, const ServingMetrics* metrics,
                                   DashboardOptions options)
    : engine_(engine), metrics_(metrics), options_(options) {}

DashboardSampler::~DashboardSampler() { Stop(); }

void DashboardSampler::Start() {
  if (thread_.joinable()) return;
  SampleNow(absl::Now());
  stop_ = std::make_unique<absl::Notification>();
  thread_ = std::thread([this] {
    absl::Time next = absl::Now() + options_.interval;
    while (!stop_->WaitForNotificationWithTimeout(next - absl::Now())) {
      const absl::Time now = absl::Now();
      SampleNow(now);
      next += options_.interval;
      if (next <= now) next = now + options_.interval;  // fell behind: skip, do not burst
    }
  });
}

void DashboardSampler::Stop() {
  if (!thread_.joinable()) return;
  stop_->Notify();
  thread_.join();
}

void DashboardSampler::RefreshHotPrefixes() {
  {
    absl::MutexLock lock(&hot_->mu);
    if (hot_->in_flight) return;
    hot_->in_flight = true;
  }
  engine_->StatsAsync(
      [hot = hot_](EngineStats stats) {
        absl::MutexLock lock(&hot->mu);
        hot->prefixes = std::move(stats.hot_prefixes);
        hot->in_flight = false;
      },
      options_.hot_prefixes);
}

void DashboardSampler::SampleNow(absl::Time now) {
  RefreshHotPrefixes();
  const EngineStats stats = engine_->StatsSnapshot();
  const ServingMetrics::RecentLatency ttft =
      metrics_->RecentTimeToFirstToken(now, options_.rate_window);

  Sample s;
  s.time = now;
  s.query_tokens = stats.cache.tree.query_tokens;
  s.hit_tokens = stats.cache.tree.hit_tokens;
  s.tokens_saved = stats.counters.prompt_tokens_cached;
  s.prompt_tokens = stats.counters.prompt_tokens;
  s.generated_tokens = stats.counters.generated_tokens;
  s.finished_requests = FinishedRequests(stats.counters);
  const BlockCounts& b = stats.cache.blocks;
  s.kv_free = b.free;
  s.kv_evictable = b.evictable;
  s.kv_in_use = b.in_use - b.pinned;
  s.kv_pinned = b.pinned;
  s.kv_host_evictable = stats.cache.host_blocks.evictable;
  s.kv_host_in_use = stats.cache.host_blocks.in_use;
  s.demoted_blocks = stats.cache.tree.demoted_blocks;
  s.promoted_blocks = stats.cache.tree.promoted_blocks;
  if (ttft.count > 0) {
    s.ttft_p50 = ttft.p50_seconds;
    s.ttft_p99 = ttft.p99_seconds;
  }
  s.waiting = stats.waiting;
  s.running = stats.running;

  TenantTable tenants;
  for (const NamespaceStats& ns : stats.cache.tree.namespaces) {
    TenantCounts& t = tenants[ns.name];
    t.query_tokens += ns.query_tokens;
    t.hit_tokens += ns.hit_tokens;
    t.cached_blocks += ns.cached_blocks;
    t.host_hit_tokens += ns.host_hit_tokens;
    t.host_cached_blocks += ns.host_cached_blocks;
  }

  absl::MutexLock lock(&mu_);
  if (!samples_.empty()) {
    const Sample& prev = samples_.back();
    const double dt = absl::ToDoubleSeconds(now - prev.time);
    if (dt > 0) {
      s.generated_per_s = (s.generated_tokens - prev.generated_tokens) / dt;
      s.prompt_per_s = (s.prompt_tokens - prev.prompt_tokens) / dt;
      s.requests_per_s = (s.finished_requests - prev.finished_requests) / dt;
      s.demoted_per_s = (s.demoted_blocks - prev.demoted_blocks) / dt;
      s.promoted_per_s = (s.promoted_blocks - prev.promoted_blocks) / dt;
    }
  }
  // The hit rate over the window: against the newest sample at least rate_window old (or the
  // oldest there is); before any sample, against zero.
  int64_t base_queries = 0, base_hits = 0;
  for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
    base_queries = it->query_tokens;
    base_hits = it->hit_tokens;
    if (it->time <= now - options_.rate_window) break;
  }
  s.hit_rate = Ratio(s.hit_tokens - base_hits, s.query_tokens - base_queries);

  samples_.push_back(std::move(s));
  while (static_cast<int>(samples_.size()) > options_.history) samples_.pop_front();
  tenant_history_.emplace_back(now, std::move(tenants));
  // Keep one entry at least tenant_window old: the base of the recent rates.
  while (tenant_history_.size() > 2 && tenant_history_[1].first <= now - options_.tenant_window) {
    tenant_history_.pop_front();
  }
  last_stats_ = stats;
}

std::string DashboardSampler::DataJson(std::optional<int64_t> since_ms, absl::Time now) const {
  std::vector<HotPrefix> hot;
  {
    absl::MutexLock lock(&hot_->mu);
    hot = hot_->prefixes;
  }
  absl::MutexLock lock(&mu_);
  const EngineStats& stats = last_stats_;
  const SchedulerCounters& c = stats.counters;
  const Engine& engine = metrics_->engine();

  Json server = {
      {"model", engine.model_id()},
      {"backend", engine.backend().Describe()},
      {"block_size", stats.cache.block_size},
      {"kv_capacity_blocks", stats.cache.blocks.total},
      // The host tier: 0 without one (the page then leaves it out).
      {"host_kv_capacity_blocks", stats.cache.host_blocks.total},
      {"host_kv_capacity_bytes", engine.host_kv_cache_bytes()},
      {"prefix_cache", stats.cache.enabled},
      {"max_running_requests", engine.options().max_running_requests},
      {"uptime_s", absl::ToDoubleSeconds(now - metrics_->start_time())},
      {"now_ms", UnixMillis(now)},
      {"interval_ms", absl::ToInt64Milliseconds(options_.interval)},
      {"rate_window_s", absl::ToDoubleSeconds(options_.rate_window)},
      {"history", options_.history},
  };
  const int64_t finished = FinishedRequests(c);
  Json totals = {
      {"requests", finished},
      {"cancelled_or_failed", c.finished_cancelled + c.failed},
      {"query_tokens", stats.cache.tree.query_tokens},
      {"hit_tokens", stats.cache.tree.hit_tokens},
      {"hit_rate", OrNull(Ratio(stats.cache.tree.hit_tokens, stats.cache.tree.query_tokens))},
      {"tokens_saved", c.prompt_tokens_cached},
      {"prompt_tokens", c.prompt_tokens},
      {"prefill_tokens_computed", c.prompt_tokens_computed},
      {"generated_tokens", c.generated_tokens},
      {"preemptions", c.preemptions},
      {"evicted_blocks", stats.cache.tree.evicted_blocks},
      {"host_hit_tokens", stats.cache.tree.host_hit_tokens},
      {"demoted_blocks", stats.cache.tree.demoted_blocks},
      {"promoted_blocks", stats.cache.tree.promoted_blocks},
      {"host_evicted_blocks", stats.cache.tree.host_evicted_blocks},
      {"dropped_blocks", stats.cache.tree.dropped_blocks},
      {"host_bytes_allocated", stats.host_kv.bytes_allocated},
      {"bytes_to_host", stats.host_kv.bytes_to_host},
      {"bytes_to_device", stats.host_kv.bytes_to_device},
      {"traffic",
       finished > 0 || stats.running > 0 || stats.waiting > 0 || stats.cache.tree.query_tokens > 0},
  };

  Json series = {{"t", Json::array()},
                 {"hit_rate", Json::array()},
                 {"tokens_saved", Json::array()},
                 {"kv_free", Json::array()},
                 {"kv_evictable", Json::array()},
                 {"kv_in_use", Json::array()},
                 {"kv_pinned", Json::array()},
                 {"kv_host_evictable", Json::array()},
                 {"kv_host_in_use", Json::array()},
                 {"demoted_per_s", Json::array()},
                 {"promoted_per_s", Json::array()},
                 {"ttft_p50_s", Json::array()},
                 {"ttft_p99_s", Json::array()},
                 {"generated_per_s", Json::array()},
                 {"prompt_per_s", Json::array()},
                 {"requests_per_s", Json::array()},
                 {"waiting", Json::array()},
                 {"running", Json::array()}};
  for (const Sample& s : samples_) {
    const int64_t t = UnixMillis(s.time);
    if (since_ms && t <= *since_ms) continue;
    series["t"].push_back(t);
    series["hit_rate"].push_back(OrNull(s.hit_rate));
    series["tokens_saved"].push_back(s.tokens_saved);
    series["kv_free"].push_back(s.kv_free);
    series["kv_evictable"].push_back(s.kv_evictable);
    series["kv_in_use"].push_back(s.kv_in_use);
    series["kv_pinned"].push_back(s.kv_pinned);
    series["kv_host_evictable"].push_back(s.kv_host_evictable);
    series["kv_host_in_use"].push_back(s.kv_host_in_use);
    series["demoted_per_s"].push_back(s.demoted_per_s);
    series["promoted_per_s"].push_back(s.promoted_per_s);
    series["ttft_p50_s"].push_back(OrNull(s.ttft_p50));
    series["ttft_p99_s"].push_back(OrNull(s.ttft_p99));
    series["generated_per_s"].push_back(s.generated_per_s);
    series["prompt_per_s"].push_back(s.prompt_per_s);
    series["requests_per_s"].push_back(s.requests_per_s);
    series["waiting"].push_back(s.waiting);
    series["running"].push_back(s.running);
  }

  Json tenants = Json::array();
  if (!tenant_history_.empty()) {
    const TenantTable& latest = tenant_history_.back().second;
    const TenantTable& base = tenant_history_.front().second;
    for (const auto& [name, t] : latest) {
      TenantCounts before;
      if (auto it = base.find(name); it != base.end()) before = it->second;
      tenants.push_back({
          {"name", name},
          {"query_tokens", t.query_tokens},
          {"hit_tokens", t.hit_tokens},
          {"hit_rate", OrNull(Ratio(t.hit_tokens, t.query_tokens))},
          {"recent_hit_rate",
           OrNull(Ratio(t.hit_tokens - before.hit_tokens, t.query_tokens - before.query_tokens))},
          {"cached_blocks", t.cached_blocks},
          {"host_hit_tokens", t.host_hit_tokens},
          {"host_cached_blocks", t.host_cached_blocks},
      });
    }
  }

  Json hot_json = Json::array();
  for (const HotPrefix& p : hot) {
    hot_json.push_back({{"namespace", p.ns},
                        {"tokens", p.tokens},
                        {"hits", p.hits},
                        {"age_s", std::max(0.0, absl::ToDoubleSeconds(now - p.created))},
                        {"last_hit_s", std::max(0.0, absl::ToDoubleSeconds(now - p.last_hit))},
                        {"pinned", p.pinned}});
  }

  Json out = {{"server", std::move(server)},
              {"totals", std::move(totals)},
              {"series", std::move(series)},
              {"tenants", std::move(tenants)},
              {"hot_prefixes", std::move(hot_json)}};
  return out.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace prefixd
