// service/metrics.h — counters, gauges and histograms, and the Prometheus text format.
//
// A MetricsRegistry holds metric families: a name, help text, a type and label names. A
// family's children (one per tuple of label values) are updated from any thread: counters
// and gauges are atomics, a histogram takes a short uncontended lock. Expose() writes the
// Prometheus text exposition format 0.0.4 (HELP and TYPE lines, escaped label values,
// cumulative _bucket{le=...} lines ending in +Inf, _sum and _count).
//
// Values that already live elsewhere (the engine's monotonic counters, the cache's block
// counts) are not copied into the registry: a collector writes them at exposition time.
//
//   MetricsRegistry registry;
//   MetricFamily<Counter>& requests = registry.AddCounter(
//       "prefixd_requests_total", "Requests by final status.", {"code"});
//   requests.WithLabels({"OK"}).Increment();
//   registry.AddCollector([&](TextExposition& out) { out.Gauge("x_ratio", "...", 0.5); });
//   std::string text = registry.Expose();
#ifndef PREFIXD_SERVICE_METRICS_H_
#define PREFIXD_SERVICE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace prefixd {

// The Content-Type of an exposition.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { kCounter, kGauge, kHistogram };

// (label name, label value) pairs of one sample.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A histogram's state: bucket upper bounds (ascending, finite; +Inf is implied) and the
// number of observations in each bucket, not cumulative: counts[i] counts values in
// (bounds[i-1], bounds[i]], counts.back() those above the last bound.
struct HistogramData {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;

  uint64_t count() const;
  // The q-quantile (q in [0, 1]) by linear interpolation inside its bucket, as PromQL's
  // histogram_quantile() computes it; NaN without observations.
  double Quantile(double q) const;
};

// Bucket bounds start, start*factor, ... (count of them).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// "123", "0.25", "1e+21", "NaN", "+Inf": shortest form that reads back to the same double.
std::string FormatMetricValue(double value);

// Writes one exposition. Each family is written as one block: Family() then its samples.
// Names and label names must be valid Prometheus identifiers and family names unique; a
// violation is a bug in the caller and crashes.
class TextExposition {
 public:
  // Starts a family: its HELP and TYPE lines.
  void Family(absl::string_view name, absl::string_view help, MetricType type);
  // One sample of the current family; `suffix` is appended to the family name (a
  // histogram's "_bucket", "_sum", "_count"; empty otherwise).
  void Sample(absl::string_view suffix, const Labels& labels, double value);
  // The _bucket, _sum and _count samples of one histogram child.
  void HistogramSample(const Labels& labels, const HistogramData& data);

  // A family with one unlabelled sample.
  void Counter(absl::string_view name, absl::string_view help, double value);
  void Gauge(absl::string_view name, absl::string_view help, double value);

  const std::string& text() const { return out_; }
  std::string Take() && { return std::move(out_); }

 private:
  std::string out_;
  std::string family_;  // name of the family being written
  absl::flat_hash_set<std::string> written_;
};

class Counter {
 public:
  // `by` must be >= 0: a counter only goes up.
  void Increment(double by = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  // Records `n` observations of `value`.
  void Observe(double value, uint64_t n = 1);
  HistogramData Snapshot() const;

 private:
  mutable absl::Mutex mu_;
  HistogramData data_ ABSL_GUARDED_BY(mu_);
};

namespace metrics_internal {

class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  virtual void Write(TextExposition& out) const = 0;

 protected:
  // The labels of a child, checked against the family's label names.
  Labels LabelsOf(const std::vector<std::string>& values) const;
  void CheckArity(const std::vector<std::string>& values) const;

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
};

}  // namespace metrics_internal

// The children of one family, by label values. References returned by WithLabels() stay
// valid for the life of the registry: keep them where a lookup per update would cost.
template <typename Metric>
class MetricFamily final : public metrics_internal::FamilyBase {
 public:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names, std::function<Metric*()> make)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        make_(std::move(make)) {}

  // The child for `values` (in the order of the family's label names); created at 0 on
  // first use.
  Metric& WithLabels(const std::vector<std::string>& values) {
    CheckArity(values);
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Metric>& child = children_[values];
    if (child == nullptr) child.reset(make_());
    return *child;
  }
  // The child of a family without labels.
  Metric& Get() { return WithLabels({}); }

  void Write(TextExposition& out) const override;

 private:
  const std::function<Metric*()> make_;
  mutable absl::Mutex mu_;
  absl::node_hash_map<std::vector<std::string>, std::unique_ptr<Metric>> children_
      ABSL_GUARDED_BY(mu_);
};

extern template class MetricFamily<Counter>;
extern template class MetricFamily<Gauge>;
extern template class MetricFamily<Histogram>;

class MetricsRegistry {
 public:
  // Each name once; label names fixed for the family's life.
  MetricFamily<Counter>& AddCounter(std::string name, std::string help,
                                    std::vector<std::string> label_names = {});
  MetricFamily<Gauge>& AddGauge(std::string name, std::string help,
                                std::vector<std::string> label_names = {});
  MetricFamily<Histogram>& AddHistogram(std::string name, std::string help,
                                        std::vector<double> bounds,
                                        std::vector<std::string> label_names = {});
  // Runs at every Expose(), after the registered families, to write families of its own
  // (computed from state that lives elsewhere). Must not block for long.
  void AddCollector(std::function<void(TextExposition&)> collector);

  // The whole exposition: families in registration order, children sorted by labels.
  std::string Expose() const;

 private:
  template <typename Metric>
  MetricFamily<Metric>& Add(std::unique_ptr<MetricFamily<Metric>> family);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<metrics_internal::FamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(TextExposition&)>> collectors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_METRICS_H_
