// kernels/cuda/sampling.cu — Sample on the device, with exactly kernels.h's semantics, so
// that only token ids and logprobs cross to the host.
//
// Three steps per call, each over all rows at once:
// 1. SampleStatsKernel, grid (rows), 1024 threads: max and argmax (lowest id on ties), and
//    log(Σ exp(logit - max)) in double for the raw log_softmax; for rows that sample or want
//    top logprobs, copies (logit, id) into the sort buffers (-0 normalised to +0, so that it
//    ties with +0 as on the CPU) and sets the row's sort segment.
// 2. SortRowsDescending (segmented_sort.cu): CUB's stable segmented radix sort puts each such
//    row in "higher logit, then lower id" order — the order of top_k's cut (ties at the cut go
//    to the lower id) and of the top logprobs.
// 3. SampleSelectKernel, grid (rows), 1024 threads: greedy rows take the argmax. Sampling
//    rows follow the CPU reference (kernels/cpu/cpu_sampling.cc) step by step on the sorted
//    row: the candidates are its first top_k (all when 0); p_i = float(expf(logit_i / T -
//    max / T) / total) with total in double; the top-p cut is the first prefix whose double
//    cumulative sum reaches top_p; the draw is the first position whose cumulative sum
//    exceeds u * kept_mass. Cumulative sums are block-wide prefix scans in double, tile by
//    tile from the top of the order, stopping at the first tile that crosses (one tile for a
//    peaked distribution). Probability order equals logit order except where distinct logits
//    round to the same probability; there the CPU orders by id, so the drawn position is
//    mapped to the same rank by id within its run of equal probabilities.
// Sums differ from the CPU's only by summation order (about 1e-16 relative, in double), and
// expf from glibc's by an ulp, so a draw can differ from the CPU's only where it lands within
// that rounding of a boundary between two tokens.
#include <algorithm>
#include <climits>

#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 1024;
// The longest run of equal probabilities searched for the id-order tie rule (see above).
constexpr int kMaxTieRun = 32;

struct SampleRowStats {
  double log_sum_exp;  // log(Σ exp(logit)) of the raw logits
  int32_t argmax;
};

// Views of the scratch memory of one LaunchSample call (rows x vocab).
struct SampleScratch {
  float* keys_in;         // [rows, vocab] logits to sort
  float* keys_out;        // [rows, vocab] sorted logits
  int32_t* ids_in;        // [rows, vocab]
  int32_t* ids_out;       // [rows, vocab] token ids in sorted order
  int32_t* begin;         // [rows] sort segments
  int32_t* end;           // [rows]
  SampleRowStats* stats;  // [rows]
  void* sort_temp;
  size_t sort_temp_bytes;
  size_t total_bytes;
};

size_t AlignUp(size_t bytes) { return (bytes + 255) / 256 * 256; }

// With base == nullptr, only the sizes are meaningful.
SampleScratch LayOutScratch(void* base, int rows, int vocab) {
  SampleScratch s{};
  const size_t items = static_cast<size_t>(rows) * vocab;
  size_t offset = 0;
  auto take = [&](size_t bytes) {
    void* p = base == nullptr ? nullptr : static_cast<char*>(base) + offset;
    offset += AlignUp(bytes);
    return p;
  };
  s.keys_in = static_cast<float*>(take(items * sizeof(float)));
  s.keys_out = static_cast<float*>(take(items * sizeof(float)));
  s.ids_in = static_cast<int32_t*>(take(items * sizeof(int32_t)));
  s.ids_out = static_cast<int32_t*>(take(items * sizeof(int32_t)));
  s.begin = static_cast<int32_t*>(take(rows * sizeof(int32_t)));
  s.end = static_cast<int32_t*>(take(rows * sizeof(int32_t)));
  s.stats = static_cast<SampleRowStats*>(take(rows * sizeof(SampleRowStats)));
  SortRowsDescending(nullptr, &s.sort_temp_bytes, nullptr, nullptr, nullptr, nullptr,
                     static_cast<int>(items), rows, nullptr, nullptr, nullptr);
  s.sort_temp = take(s.sort_temp_bytes);
  s.total_bytes = offset;
  return s;
}

// Whether (value a, id a) ranks before (value b, id b): higher value, then lower id.
__device__ __forceinline__ bool RanksBefore(float a, int a_id, float b, int b_id) {
  return a > b || (a == b && a_id < b_id);
}

// logits: [rows, vocab]
__global__ void __launch_bounds__(kThreads)
    SampleStatsKernel(const float* logits, int vocab, const SampleRowParams* params,
                      SampleScratch scratch) {
  __shared__ float best_value[32];
  __shared__ int best_id[32];
  __shared__ double sums[32];
  const int row = blockIdx.x;
  const float* x = logits + int64_t{row} * vocab;
  const bool needs_sort = params[row].needs_sort != 0;

  // Argmax, lowest id on ties: each thread's ids ascend, so a strict > keeps its first max.
  float value = -INFINITY;
  int id = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (id == INT_MAX || x[i] > value) {
      value = x[i];
      id = i;
    }
  }
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    const float other_value = __shfl_xor_sync(kFullMask, value, offset);
    const int other_id = __shfl_xor_sync(kFullMask, id, offset);
    if (RanksBefore(other_value, other_id, value, id)) {
      value = other_value;
      id = other_id;
    }
  }
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  if (lane == 0) {
    best_value[warp] = value;
    best_id[warp] = id;
  }
  __syncthreads();
  value = best_value[lane];
  id = best_id[lane];  // kThreads / 32 == 32 warps: every lane has an entry
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    const float other_value = __shfl_xor_sync(kFullMask, value, offset);
    const int other_id = __shfl_xor_sync(kFullMask, id, offset);
    if (RanksBefore(other_value, other_id, value, id)) {
      value = other_value;
      id = other_id;
    }
  }
  const float max_logit = value;

  // log_softmax's normaliser, as the CPU computes it: fp32 exp, double sum.
  double sum = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    sum += static_cast<double>(expf(x[i] - max_logit));
  }
  sum = BlockReduceSum(sum, sums);

  if (needs_sort) {
    float* keys = scratch.keys_in + int64_t{row} * vocab;
    int32_t* ids = scratch.ids_in + int64_t{row} * vocab;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      keys[i] = x[i] == 0.0f ? 0.0f : x[i];
      ids[i] = i;
    }
  }
  if (threadIdx.x == 0) {
    scratch.stats[row] = {static_cast<double>(max_logit) + log(sum), id == INT_MAX ? 0 : id};
    scratch.begin[row] = row * vocab;
    scratch.end[row] = needs_sort ? (row + 1) * vocab : row * vocab;
  }
}

struct Crossing {
  int index;          // first position where the cumulative sum crosses; -1 if none
  double cumulative;  // the cumulative sum there (the whole sum if none)
};

// Block-wide: walks prob(0), prob(1), ... prob(n - 1) in tiles of kThreads and returns the
// first position whose cumulative sum (double) is > threshold (strict) or >= threshold.
template <typename Prob>
__device__ Crossing FirstCrossing(int n, Prob prob, double threshold, bool strict) {
  __shared__ double scan_scratch[32];
  __shared__ int min_scratch[32];
  __shared__ double crossing_sum;
  double running = 0.0;
  for (int base = 0; base < n; base += kThreads) {
    const int i = base + threadIdx.x;
    const double x = i < n ? static_cast<double>(prob(i)) : 0.0;
    double tile_sum;
    const double cumulative = running + BlockInclusiveSum(x, scan_scratch, &tile_sum);
    const bool hit = i < n && (strict ? cumulative > threshold : cumulative >= threshold);
    const int first = BlockReduceMin(hit ? i : INT_MAX, min_scratch);
    if (first != INT_MAX) {
      if (i == first) crossing_sum = cumulative;
      __syncthreads();
      return {first, crossing_sum};
    }
    running += tile_sum;
  }
  return {-1, running};
}

// Block-wide: the token a sampling row draws; keys/ids are the row in sorted order.
template <typename Key, typename Id>
__device__ int32_t DrawToken(Key key, Id id, int vocab, const SampleRowParams& p) {
  __shared__ double sums[32];
  __shared__ int32_t drawn;
  const int n = p.top_k > 0 && p.top_k < vocab ? p.top_k : vocab;  // candidates
  // softmax(logits / T) over the candidates, the CPU's arithmetic: float division and exp,
  // double total, each probability rounded to float.
  const float max_scaled = key(0) / p.temperature;
  auto unnormalised = [&](int i) { return expf(key(i) / p.temperature - max_scaled); };
  double total = 0.0;
  for (int i = threadIdx.x; i < n; i += kThreads) total += static_cast<double>(unnormalised(i));
  total = BlockReduceSum(total, sums);
  auto prob = [&](int i) {
    return static_cast<float>(static_cast<double>(unnormalised(i)) / total);
  };

  // Top-p: the shortest prefix whose mass reaches top_p; top_p 1 keeps every candidate.
  int kept = n;
  double kept_mass = 0.0;
  if (p.top_p < 1.0f) {
    const Crossing cut = FirstCrossing(n, prob, static_cast<double>(p.top_p), /*strict=*/false);
    if (cut.index >= 0) kept = cut.index + 1;
    kept_mass = cut.cumulative;
  } else {
    double mass = 0.0;
    for (int i = threadIdx.x; i < n; i += kThreads) mass += static_cast<double>(prob(i));
    kept_mass = BlockReduceSum(mass, sums);
  }

  // Inverse CDF over the kept prefix, renormalised.
  const double target = static_cast<double>(p.uniform) * kept_mass;
  const Crossing draw = FirstCrossing(kept, prob, target, /*strict=*/true);
  const int position = draw.index >= 0 ? draw.index : kept - 1;

  if (threadIdx.x == 0) {
    // Within a run of equal probabilities the CPU's order is by id: take the token of the
    // same rank by id as `position` has in the run.
    const float landed = prob(position);
    int lo = position, hi = position + 1;
    while (lo > 0 && position - lo < kMaxTieRun && prob(lo - 1) == landed) --lo;
    while (hi < kept && hi - position < kMaxTieRun && prob(hi) == landed) ++hi;
    int32_t token = id(position);
    for (int a = lo; a < hi; ++a) {
      int smaller = 0;
      for (int b = lo; b < hi; ++b) smaller += id(b) < id(a);
      if (smaller == position - lo) token = id(a);
    }
    drawn = token;
  }
  __syncthreads();
  return drawn;
}

// results: [rows]
__global__ void __launch_bounds__(kThreads)
    SampleSelectKernel(const float* logits, int vocab, const SampleRowParams* params,
                       SampleScratch scratch, SampleRowResult* results) {
  const int row = blockIdx.x;
  const SampleRowParams p = params[row];
  const SampleRowStats stats = scratch.stats[row];
  const float* x = logits + int64_t{row} * vocab;
  // A row of one token is never sorted (a one-element segment): it is its own order.
  const float* sorted_keys = scratch.keys_out + int64_t{row} * vocab;
  const int32_t* sorted_ids = scratch.ids_out + int64_t{row} * vocab;
  const bool one_token = vocab == 1;
  auto key = [&](int i) { return one_token ? x[0] : sorted_keys[i]; };
  auto id = [&](int i) { return one_token ? 0 : sorted_ids[i]; };

  const int32_t token = p.greedy ? stats.argmax : DrawToken(key, id, vocab, p);
  SampleRowResult& result = results[row];
  if (threadIdx.x == 0) {
    result.token = token;
    result.logprob = static_cast<float>(static_cast<double>(x[token]) - stats.log_sum_exp);
  }
  const int i = threadIdx.x;
  if (i < min(p.num_top_logprobs, vocab)) {
    result.top_ids[i] = id(i);
    result.top_logprobs[i] = static_cast<float>(static_cast<double>(key(i)) - stats.log_sum_exp);
  }
}

}  // namespace

size_t SampleScratchBytes(int rows, int vocab) {
  return LayOutScratch(nullptr, rows, vocab).total_bytes;
}

cudaError_t LaunchSample(const float* logits, int rows, int vocab, const SampleRowParams* params,
                         bool any_needs_sort, void* scratch, size_t scratch_bytes,
                         SampleRowResult* results, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const SampleScratch s = LayOutScratch(scratch, rows, vocab);
  if (s.total_bytes > scratch_bytes) return cudaErrorInvalidValue;
  SampleStatsKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, params, s);
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) return status;
  if (any_needs_sort && vocab > 1) {
    size_t temp_bytes = s.sort_temp_bytes;
    status = SortRowsDescending(s.sort_temp, &temp_bytes, s.keys_in, s.keys_out, s.ids_in,
                                s.ids_out, rows * vocab, rows, s.begin, s.end, stream);
    if (status != cudaSuccess) return status;
  }
  SampleSelectKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, params, s, results);
  return cudaGetLastError();
}

}  // namespace prefixd::cuda
