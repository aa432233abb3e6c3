// service/dashboard_sampler.h — the dashboard's memory: one sample of the server a second,
// kept in a bounded ring (15 minutes), so a page opened now shows history at once.
//
// Each sample reads Engine::StatsSnapshot() (never blocks the engine) and the recent
// first-token latencies; per-second rates come from the differences of the engine's
// counters. The hottest cached prefixes need a walk of the cache on the engine's thread:
// they are refreshed asynchronously, at most one request in flight, so a slow engine step
// delays that table and nothing else.
#ifndef PREFIXD_SERVICE_DASHBOARD_SAMPLER_H_
#define PREFIXD_SERVICE_DASHBOARD_SAMPLER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "service/serving_metrics.h"

namespace prefixd {

struct DashboardOptions {
  absl::Duration interval = absl::Seconds(1);
  int history = 900;                                 // samples kept: 15 minutes at 1 s
  absl::Duration rate_window = absl::Seconds(10);    // hit rate and TTFT percentiles
  absl::Duration tenant_window = absl::Seconds(60);  // per-tenant recent hit rate
  int hot_prefixes = 10;
};

class DashboardSampler {
 public:
  // `engine` and `metrics` must outlive the sampler.
  DashboardSampler(Engine* engine, const ServingMetrics* metrics, DashboardOptions options = {});
  ~DashboardSampler();
  DashboardSampler(const DashboardSampler&) = delete;
  DashboardSampler& operator=(const DashboardSampler&) = delete;

  // Samples once now, then every interval on a thread of its own until Stop().
  void Start();
  void Stop();

  // Takes one sample as of `now` (the thread calls this; tests may too).
  void SampleNow(absl::Time now);

  // The page's data as JSON: server facts and lifetime totals, the time series (only the
  // samples taken after `since_ms`, Unix milliseconds, when given), per-tenant hit rates
  // and the hottest prefixes. Missing values (a hit rate without queries) are null.
  std::string DataJson(std::optional<int64_t> since_ms, absl::Time now) const;

 private:
  // One point of the time series, with the cumulative counters its rates come from.
  struct Sample {
    absl::Time time;
    int64_t query_tokens = 0;  // cumulative
    int64_t hit_tokens = 0;
    int64_t tokens_saved = 0;  // prompt tokens served from the cache
    int64_t prompt_tokens = 0;
    int64_t generated_tokens = 0;
    int64_t finished_requests = 0;
    std::optional<double> hit_rate;  // over rate_window; none without queries
    int64_t kv_free = 0, kv_evictable = 0, kv_in_use = 0, kv_pinned = 0;  // a partition
    int64_t kv_host_evictable = 0, kv_host_in_use = 0;  // the host tier's used states
    int64_t demoted_blocks = 0, promoted_blocks = 0;    // cumulative
    double demoted_per_s = 0, promoted_per_s = 0;
    std::optional<double> ttft_p50, ttft_p99;  // seconds, over rate_window
    double generated_per_s = 0;
    double prompt_per_s = 0;
    double requests_per_s = 0;
    int waiting = 0;
    int running = 0;
  };
  struct TenantCounts {
    int64_t query_tokens = 0;
    int64_t hit_tokens = 0;
    int64_t cached_blocks = 0;
    int64_t host_hit_tokens = 0;
    int64_t host_cached_blocks = 0;
  };
  using TenantTable = std::map<std::string, TenantCounts>;
  // The hottest prefixes, shared with the engine's callback (which may outlive us).
  struct HotTable {
    absl::Mutex mu;
    std::vector<HotPrefix> prefixes ABSL_GUARDED_BY(mu);
    bool in_flight ABSL_GUARDED_BY(mu) = false;
  };

  void RefreshHotPrefixes();

  Engine* const engine_;
  const ServingMetrics* const metrics_;
  const DashboardOptions options_;
  std::shared_ptr<HotTable> hot_ = std::make_shared<HotTable>();

  mutable absl::Mutex mu_;
  std::deque<Sample> samples_ ABSL_GUARDED_BY(mu_);
  // Per-tenant counters over the last tenant_window, oldest first.
  std::deque<std::pair<absl::Time, TenantTable>> tenant_history_ ABSL_GUARDED_BY(mu_);
  EngineStats last_stats_ ABSL_GUARDED_BY(mu_);

  std::unique_ptr<absl::Notification> stop_;
  std::thread thread_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_DASHBOARD_SAMPLER_H_
