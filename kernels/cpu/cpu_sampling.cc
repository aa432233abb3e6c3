// kernels/cpu/cpu_sampling.cc — one token per row of logits, as kernels.h specifies.
//
// Cost per row is O(V) plus small sorts: the top-k cut and the top logprobs come from a
// bounded heap, and the probability order that top-p and the inverse CDF walk is sorted
// only as far as the walk goes (a few dozen tokens for a peaked distribution). A 152k
// vocabulary is sorted whole only when the walk really needs all of it.
// Probabilities are fp32 (as on a GPU); their sums are taken in double, so where the top-p
// cut and the draw land barely depends on summation order.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "base/check.h"
#include "kernels/cpu/check_shape.h"
#include "kernels/cpu/cpu_backend.h"

namespace prefixd {
namespace {

constexpr int kMaxTopLogprobs = 20;

// Token a ranks before token b: higher logit, then lower id.
bool RanksBefore(const float* logits, int32_t a, int32_t b) {
  return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

// The k highest-ranked ids of logits[0, n), best first. O(n log k): a heap of the best k
// so far whose root is the worst of them, so most tokens are rejected by one comparison.
std::vector<int32_t> TopIds(const float* logits, int32_t n, int k) {
  k = std::min(k, n);
  std::vector<int32_t> heap;
  heap.reserve(k);
  auto worse = [logits](int32_t a, int32_t b) { return RanksBefore(logits, a, b); };
  for (int32_t id = 0; id < n; ++id) {
    if (static_cast<int>(heap.size()) < k) {
      heap.push_back(id);
      std::push_heap(heap.begin(), heap.end(), worse);
    } else if (k > 0 && RanksBefore(logits, id, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), worse);
      heap.back() = id;
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), worse);
  return heap;
}

int32_t Argmax(const float* logits, int32_t n) {
  int32_t best = 0;
  for (int32_t id = 1; id < n; ++id) {
    if (logits[id] > logits[best]) best = id;  // strict: the lowest id wins ties
  }
  return best;
}

// log(sum(exp(logits))), stable; the row's log_softmax is logits - LogSumExp.
double LogSumExp(const float* logits, int32_t n) {
  float max = logits[0];
  for (int32_t id = 1; id < n; ++id) max = std::max(max, logits[id]);
  double sum = 0.0;
  for (int32_t id = 0; id < n; ++id) sum += std::exp(logits[id] - max);
  return max + std::log(sum);
}

struct Candidate {
  float prob;
  int32_t id;
};

// Probability descending, then id ascending. A function object, so the sorts inline it.
struct ProbOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.prob > b.prob || (a.prob == b.prob && a.id < b.id);
  }
};

// The candidates in ProbOrder, sorted only as far as a walk from the top needs.
class SortedCandidates {
 public:
  explicit SortedCandidates(std::vector<Candidate>& candidates) : c_(candidates) {}

  size_t size() const { return c_.size(); }

  // Sorts a front of the order that holds at least `mass` of probability (up to rounding).
  // One pass buckets the probabilities by binary exponent and sums each bucket's mass;
  // the buckets from the top down to the one where `mass` is reached move to the front and
  // are sorted. Each of their probabilities is above every one left behind, so the front is
  // final: O(V) plus a sort of about what the walk needs (at most twice as many tokens).
  void SortFrontHolding(double mass) {
    auto bucket = [](float prob) { return std::bit_cast<uint32_t>(prob) >> 23; };  // prob >= 0
    std::array<double, 256> bucket_mass{};
    for (const Candidate& c : c_) bucket_mass[bucket(c.prob)] += c.prob;
    uint32_t lowest = 255;
    for (double acc = 0.0; lowest > 0; --lowest) {
      if ((acc += bucket_mass[lowest]) > 0.0 && acc >= mass) break;
    }
    const auto front_end = std::partition(
        c_.begin(), c_.end(), [&](const Candidate& c) { return bucket(c.prob) >= lowest; });
    std::sort(c_.begin(), front_end, ProbOrder());
    sorted_ = front_end - c_.begin();
  }

  // The i-th candidate in ProbOrder; if rounding made the walk go past the sorted front,
  // the rest is sorted too.
  const Candidate& operator[](size_t i) {
    if (i >= sorted_) {
      std::sort(c_.begin() + sorted_, c_.end(), ProbOrder());
      sorted_ = c_.size();
    }
    return c_[i];
  }

 private:
  std::vector<Candidate>& c_;
  size_t sorted_ = 0;
};

// Draws a token with temperature > 0 and top_k != 1 (see kernels.h for the semantics).
int32_t SampleFromDistribution(const float* logits, int32_t vocab, const SamplingRow& params,
                               std::vector<Candidate>& candidates) {
  candidates.clear();
  if (params.top_k > 0 && params.top_k < vocab) {
    for (int32_t id : TopIds(logits, vocab, params.top_k)) candidates.push_back({0.0f, id});
  } else {
    candidates.resize(vocab);
    for (int32_t id = 0; id < vocab; ++id) candidates[id] = {0.0f, id};
  }
  // softmax(logits / temperature) over the candidates.
  float max_scaled = -std::numeric_limits<float>::infinity();
  for (Candidate& c : candidates) {
    c.prob = logits[c.id] / params.temperature;
    max_scaled = std::max(max_scaled, c.prob);
  }
  double total = 0.0;
  for (Candidate& c : candidates) {
    c.prob = std::exp(c.prob - max_scaled);
    total += c.prob;
  }
  for (Candidate& c : candidates) c.prob = static_cast<float>(c.prob / total);

  const double u = SamplingUniform(params.seed, params.step);
  SortedCandidates sorted(candidates);
  // kept: the shortest prefix whose mass reaches top_p (at least one token). top_p = 1
  // keeps every candidate, whatever rounding does to the running sum.
  size_t kept = sorted.size();
  double kept_mass = 0.0;
  if (params.top_p < 1.0f) {
    sorted.SortFrontHolding(params.top_p);
    for (size_t i = 0; i < sorted.size(); ++i) {
      kept_mass += sorted[i].prob;
      if (kept_mass >= params.top_p) {
        kept = i + 1;
        break;
      }
    }
  } else {
    for (const Candidate& c : candidates) kept_mass += c.prob;
    sorted.SortFrontHolding(u * kept_mass);
  }
  // Inverse CDF over the kept prefix, renormalised.
  const double target = u * kept_mass;
  double cumulative = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    cumulative += sorted[i].prob;
    if (cumulative > target) return sorted[i].id;
  }
  return sorted[kept - 1].id;  // rounding left target at the very end of the mass
}

void SampleRow(const float* logits, int32_t vocab, const SamplingRow& params, SampledToken& out,
               std::vector<Candidate>& scratch) {
  PREFIXD_CHECK(params.temperature >= 0.0f && std::isfinite(params.temperature) &&
                    params.top_k >= 0 && params.top_p > 0.0f && params.top_p <= 1.0f &&
                    params.num_top_logprobs >= 0 && params.num_top_logprobs <= kMaxTopLogprobs,
                "Sample: invalid sampling parameters temperature=", params.temperature,
                " top_k=", params.top_k, " top_p=", params.top_p,
                " num_top_logprobs=", params.num_top_logprobs);
  const double log_sum_exp = LogSumExp(logits, vocab);
  auto logprob = [&](int32_t id) { return static_cast<float>(logits[id] - log_sum_exp); };

  if (params.temperature == 0.0f || params.top_k == 1) {
    out.token = Argmax(logits, vocab);
  } else {
    out.token = SampleFromDistribution(logits, vocab, params, scratch);
  }
  out.logprob = logprob(out.token);
  out.top.clear();
  for (int32_t id : TopIds(logits, vocab, params.num_top_logprobs)) {
    out.top.push_back({id, logprob(id)});
  }
}

}  // namespace

void CpuBackend::Sample(const Tensor& logits, absl::Span<const SamplingRow> rows,
                        absl::Span<SampledToken> out) {
  CheckShape("Sample", "logits", logits, DType::kF32, {kAnySize, kAnySize});
  const int64_t batch = logits.dim(0), vocab = logits.dim(1);
  PREFIXD_CHECK(
      static_cast<int64_t>(rows.size()) == batch && static_cast<int64_t>(out.size()) == batch,
      "Sample: logits ", logits.ShapeString(), " with ", rows.size(), " sampling rows and ",
      out.size(), " outputs");
  PREFIXD_CHECK(vocab > 0 && vocab <= std::numeric_limits<int32_t>::max(),
                "Sample: bad vocabulary size in logits ", logits.ShapeString());
  const float* data = logits.as<float>();
  ParallelFor(batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<Candidate> scratch;
    for (int64_t b = begin; b < end; ++b) {
      SampleRow(data + b * vocab, static_cast<int32_t>(vocab), rows[b], out[b], scratch);
    }
  });
}

}  // namespace prefixd
