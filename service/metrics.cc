#include "service/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace prefixd {
namespace {

bool IsMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(absl::string_view name) {
  return IsMetricName(name) && name.find(':') == absl::string_view::npos &&
         !absl::StartsWith(name, "__");
}

// HELP text: backslash and line feed escaped.
void AppendEscapedHelp(std::string& out, absl::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// Label values: backslash, double quote and line feed escaped.
void AppendEscapedLabelValue(std::string& out, absl::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

// ---- HistogramData ----

uint64_t HistogramData::count() const {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  return n;
}

double HistogramData::Quantile(double q) const {
  const uint64_t total = count();
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 1.0);
  const double rank = q * static_cast<double>(total);
  uint64_t below = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (static_cast<double>(below + counts[i]) >= rank && counts[i] > 0) {
      // Above the last finite bound nothing is known but the bound itself.
      if (i == bounds.size()) return bounds.empty() ? 0 : bounds.back();
      const double lo = i == 0 ? 0 : bounds[i - 1];
      const double hi = bounds[i];
      return lo + (hi - lo) * (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
    }
    below += counts[i];
  }
  return bounds.empty() ? 0 : bounds.back();
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  PREFIXD_CHECK(start > 0 && factor > 1 && count > 0, "bad exponential buckets");
  std::vector<double> bounds;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) bounds.push_back(b);
  return bounds;
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  PREFIXD_CHECK(ec == std::errc(), "to_chars failed");
  return std::string(buf, end);
}

// ---- TextExposition ----

void TextExposition::Family(absl::string_view name, absl::string_view help, MetricType type) {
  PREFIXD_CHECK(IsMetricName(name), "invalid metric name '", name, "'");
  PREFIXD_CHECK(written_.insert(std::string(name)).second, "metric family '", name,
                "' written twice");
  family_ = std::string(name);
  absl::StrAppend(&out_, "# HELP ", name, " ");
  AppendEscapedHelp(out_, help);
  absl::StrAppend(&out_, "\n# TYPE ", name, " ", TypeName(type), "\n");
}

void TextExposition::Sample(absl::string_view suffix, const Labels& labels, double value) {
  PREFIXD_CHECK(!family_.empty(), "a sample before its family");
  absl::StrAppend(&out_, family_, suffix);
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      PREFIXD_CHECK(IsLabelName(labels[i].first), "invalid label name '", labels[i].first, "'");
      if (i > 0) out_ += ',';
      absl::StrAppend(&out_, labels[i].first, "=\"");
      AppendEscapedLabelValue(out_, labels[i].second);
      out_ += '"';
    }
    out_ += '}';
  }
  absl::StrAppend(&out_, " ", FormatMetricValue(value), "\n");
}

void TextExposition::HistogramSample(const Labels& labels, const HistogramData& data) {
  PREFIXD_CHECK(data.counts.size() == data.bounds.size() + 1, "histogram buckets disagree");
  Labels with_le = labels;
  with_le.emplace_back("le", "");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < data.counts.size(); ++i) {
    cumulative += data.counts[i];
    with_le.back().second = i < data.bounds.size() ? FormatMetricValue(data.bounds[i]) : "+Inf";
    Sample("_bucket", with_le, static_cast<double>(cumulative));
  }
  Sample("_sum", labels, data.sum);
  Sample("_count", labels, static_cast<double>(cumulative));
}

void TextExposition::Counter(absl::string_view name, absl::string_view help, double value) {
  Family(name, help, MetricType::kCounter);
  Sample("", {}, value);
}

void TextExposition::Gauge(absl::string_view name, absl::string_view help, double value) {
  Family(name, help, MetricType::kGauge);
  Sample("", {}, value);
}

// ---- Counter, Histogram ----

void Counter::Increment(double by) {
  PREFIXD_CHECK(by >= 0, "a counter cannot go down (increment by ", by, ")");
  value_.fetch_add(by, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> bounds) {
  PREFIXD_CHECK(std::is_sorted(bounds.begin(), bounds.end()) &&
                    std::adjacent_find(bounds.begin(), bounds.end()) == bounds.end(),
                "histogram bounds must be strictly increasing");
  for (double b : bounds) PREFIXD_CHECK(std::isfinite(b), "histogram bounds must be finite");
  data_.counts.assign(bounds.size() + 1, 0);
  data_.bounds = std::move(bounds);
}

void Histogram::Observe(double value, uint64_t n) {
  if (n == 0 || std::isnan(value)) return;
  // The first bucket whose upper bound is >= value (Prometheus buckets are "le").
  const size_t i = static_cast<size_t>(
      std::lower_bound(data_.bounds.begin(), data_.bounds.end(), value) - data_.bounds.begin());
  absl::MutexLock lock(&mu_);
  data_.counts[i] += n;
  data_.sum += value * static_cast<double>(n);
}

HistogramData Histogram::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return data_;
}

// ---- families ----

namespace metrics_internal {

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  PREFIXD_CHECK(IsMetricName(name_), "invalid metric name '", name_, "'");
  for (const std::string& label : label_names_) {
    PREFIXD_CHECK(IsLabelName(label), "invalid label name '", label, "' of ", name_);
    PREFIXD_CHECK(type_ != MetricType::kHistogram || label != "le",
                  "a histogram cannot have a label named le");
  }
}

void FamilyBase::CheckArity(const std::vector<std::string>& values) const {
  PREFIXD_CHECK(values.size() == label_names_.size(), name_, " has ", label_names_.size(),
                " labels, got ", values.size(), " values");
}

Labels FamilyBase::LabelsOf(const std::vector<std::string>& values) const {
  Labels labels;
  for (size_t i = 0; i < values.size(); ++i) labels.emplace_back(label_names_[i], values[i]);
  return labels;
}

}  // namespace metrics_internal

template <typename Metric>
void MetricFamily<Metric>::Write(TextExposition& out) const {
  std::vector<std::pair<std::vector<std::string>, const Metric*>> children;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [values, metric] : children_) children.emplace_back(values, metric.get());
  }
  std::sort(children.begin(), children.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  out.Family(name_, help_, type_);
  for (const auto& [values, metric] : children) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      out.HistogramSample(LabelsOf(values), metric->Snapshot());
    } else {
      out.Sample("", LabelsOf(values), metric->value());
    }
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

// ---- MetricsRegistry ----

template <typename Metric>
MetricFamily<Metric>& MetricsRegistry::Add(std::unique_ptr<MetricFamily<Metric>> family) {
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    PREFIXD_CHECK(f->name() != family->name(), "metric family '", family->name(),
                  "' registered twice");
  }
  MetricFamily<Metric>& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

MetricFamily<Counter>& MetricsRegistry::AddCounter(std::string name, std::string help,
                                                   std::vector<std::string> label_names) {
  return Add(std::make_unique<MetricFamily<Counter>>(std::move(name), std::move(help),
                                                     MetricType::kCounter, std::move(label_names),
                                                     [] { return new Counter(); }));
}

MetricFamily<Gauge>& MetricsRegistry::AddGauge(std::string name, std::string help,
                                               std::vector<std::string> label_names) {
  return Add(std::make_unique<MetricFamily<Gauge>>(std::move(name), std::move(help),
                                                   MetricType::kGauge, std::move(label_names),
                                                   [] { return new Gauge(); }));
}

MetricFamily<Histogram>& MetricsRegistry::AddHistogram(std::string name, std::string help,
                                                       std::vector<double> bounds,
                                                       std::vector<std::string> label_names) {
  Histogram check(bounds);  // crashes here, at registration, on bad bounds
  return Add(std::make_unique<MetricFamily<Histogram>>(
      std::move(name), std::move(help), MetricType::kHistogram, std::move(label_names),
      [bounds = std::move(bounds)] { return new Histogram(bounds); }));
}

void MetricsRegistry::AddCollector(std::function<void(TextExposition&)> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string MetricsRegistry::Expose() const {
  TextExposition out;
  absl::MutexLock lock(&mu_);
  for (const auto& family : families_) family->Write(out);
  for (const auto& collect : collectors_) collect(out);
  return std::move(out).Take();
}

}  // namespace prefixd
