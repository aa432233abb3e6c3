// service/serving_metrics.h — what prefixd tells its operators: the metrics behind
// /metrics and the dashboard.
//
// Three sources:
//   - each Generate call, followed through its engine updates (RequestRecorder): final
//     status, per-tenant token counts, time to first token, inter-token latency, duration;
//   - each engine step (RecordStep, from the engine's step observer): step time, batch size,
//     and how long requests whose blocks came back from the host tier waited for them;
//   - the engine's own counters and the cache's block counts, read from
//     Engine::StatsSnapshot() at scrape time (they are monotonic or current already, so
//     they are exposed as they are rather than counted twice).
// The `tenant` label is a cache namespace's display name: tenants come from the server's
// tokens file, never from requests, so the label's values are bounded by configuration.
#ifndef PREFIXD_SERVICE_SERVING_METRICS_H_
#define PREFIXD_SERVICE_SERVING_METRICS_H_

#include <deque>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "service/metrics.h"

namespace prefixd {

class ServingMetrics {
 public:
  // `engine` must outlive this object.
  explicit ServingMetrics(const Engine* engine);

  // Follows one accepted request; fed every engine update of it, in order, on the engine's
  // thread. Cheap: a clock read, a histogram update per update with tokens.
  class RequestRecorder {
   public:
    void OnUpdate(const GenerationUpdate& update, absl::Time now);

   private:
    friend class ServingMetrics;
    ServingMetrics* metrics_ = nullptr;
    Counter* requests_ = nullptr;  // this tenant's finished requests
    Counter* prompt_tokens_ = nullptr;
    Counter* cached_tokens_ = nullptr;
    Counter* completion_tokens_ = nullptr;
    absl::Time start_;
    absl::Time last_token_;
    bool saw_token_ = false;
  };

  // A recorder for a request of `tenant` (the namespace display name) submitted at `now`.
  RequestRecorder StartRequest(const std::string& tenant, absl::Time now);
  // A Generate call that ended before the engine accepted it (bad input, no credentials,
  // queue full, draining): counted in prefixd_requests_total with finish_reason "none".
  void RecordRejected(const absl::Status& status);
  // From the engine's step observer.
  void RecordStep(const StepReport& step);

  // The Prometheus exposition (text format 0.0.4).
  std::string Expose() const { return registry_.Expose(); }

  // Time to first token of the requests whose first token came in (now - window, now].
  struct RecentLatency {
    int count = 0;
    double p50_seconds = 0;
    double p99_seconds = 0;
  };
  RecentLatency RecentTimeToFirstToken(absl::Time now, absl::Duration window) const;

  const Engine& engine() const { return *engine_; }
  absl::Time start_time() const { return start_time_; }

 private:
  void CollectEngineStats(TextExposition& out) const;
  void RecordTimeToFirstToken(absl::Time when, absl::Duration ttft);

  const Engine* const engine_;
  const absl::Time start_time_;
  MetricsRegistry registry_;
  MetricFamily<Counter>& requests_;  // {code, finish_reason}
  MetricFamily<Counter>& tenant_requests_;
  MetricFamily<Counter>& tenant_prompt_tokens_;
  MetricFamily<Counter>& tenant_cached_tokens_;
  MetricFamily<Counter>& tenant_completion_tokens_;
  Histogram& time_to_first_token_;
  Histogram& inter_token_latency_;
  Histogram& request_duration_;
  Histogram& queue_time_;
  Histogram& step_duration_;
  Histogram& step_batch_tokens_;
  Histogram& promotion_wait_;

  // Recent first-token latencies for the dashboard's percentiles: (when, seconds), oldest
  // first, at most kMaxRecent and none older than kRecentHorizon.
  static constexpr size_t kMaxRecent = 4096;
  static constexpr absl::Duration kRecentHorizon = absl::Seconds(60);
  mutable absl::Mutex recent_mu_;
  std::deque<std::pair<absl::Time, double>> recent_ttft_ ABSL_GUARDED_BY(recent_mu_);
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_SERVING_METRICS_H_
