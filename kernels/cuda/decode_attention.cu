// kernels/cuda/decode_attention.cu — paged attention of decode rows (query_len 1),
// grouped-query aware and split along the sequence (flash-decoding).
//
// Decode reads every cached key and value once per step and does little arithmetic with
// them, so it is bound by memory bandwidth; the design is about streaming K and V at full
// speed exactly once:
//
// 1. DecodePartitionKernel, grid (num_partitions, Hkv * head_chunks, num_seqs), 128 threads.
//    A CTA takes one sequence, one KV head and one partition of `partition_size` keys. It
//    serves all query heads of the KV head's group (up to kHeads = 1, 2, 4 or 8 at once; a
//    larger group takes several head chunks), so K and V are read once per group, not once
//    per query head. Keys are found through the block table (the partition's block ids are
//    staged in shared memory first). Each lane owns kVec = 8 consecutive elements of a key
//    row (one 16-byte load); d / 8 lanes cover a row, so a warp reads 32 * 16 bytes of
//    consecutive rows per load, and each lane issues kUnroll loads before using them.
//      QK:      scores[h][i] = (scale * q_h) · k_i  (fp32; a shuffle reduction over the lanes of
//               a row) into shared memory, for the partition's keys.
//      softmax: per head, max m and sum l of exp(score - m) over the partition; the scores
//               become the weights exp(score - m).
//      PV:      acc_h = Σ_i weight[h][i] · v_i, each lane accumulating its 8 columns over its
//               rows, then summed across the rows of a warp (shuffles) and across the warps
//               (shared memory).
//    With one partition in the grid, the CTA writes out = acc / l itself; otherwise it writes
//    the partial (m, l, acc) for its (sequence, query head, partition).
// 2. DecodeReduceKernel, grid (Hq, num_seqs), 128 threads: combines a row's partials with
//    log-sum-exp weights, M = max_p m_p:  out = Σ_p e^(m_p - M) acc_p / Σ_p e^(m_p - M) l_p.
//
// Cascade (shared-prefix groups, plan.cascade): cascade_attention.cu first attends each
// group's shared blocks for all its members at once; the partition kernel then covers only a
// member's private keys (from key_begin), and the reduction, which always runs, folds the
// shared partial in as one more partition.
//
// Sequences whose query_len is not 1 are skipped (their rows are the prefill kernel's).
// Everything per step comes from device memory; only the grid comes from the host hints
// (max_context_len), so the launches can be captured in a CUDA graph that is replayed for
// steps whose hints are no larger.
#include <algorithm>

#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kVec = 8;     // bf16 per 16-byte load
constexpr int kUnroll = 4;  // loads in flight per lane before the first use
constexpr int kMaxPartitionSize = 512;
constexpr int kMinPartitionSize = 128;

// Partials of one split: [num_seqs, Hq, num_partitions] maxes and sums, then
// [num_seqs, Hq, num_partitions, d] accumulators.
struct Partials {
  float* max;
  float* sum;
  float* acc;
};

Partials PartialsIn(void* scratch, const PagedAttentionParams& p, int num_partitions) {
  const size_t rows = size_t{static_cast<size_t>(p.num_seqs)} * p.num_q_heads * num_partitions;
  float* base = static_cast<float*>(scratch);
  return {base, base + rows, base + 2 * rows};
}

// Bytes of the shared `weights` array, which also holds the cross-warp accumulator sum.
__host__ __device__ constexpr size_t WeightsBytes(int head_dim, int heads, int partition_size) {
  const size_t weights = sizeof(float) * heads * partition_size;
  const size_t warp_acc = sizeof(float) * kWarps * heads * head_dim;
  return weights > warp_acc ? weights : warp_acc;
}

__device__ __forceinline__ void CheckSequence(const PagedAttentionParams& p, int seq, int query_len,
                                              int context_len) {
  PREFIXD_DEVICE_CHECK(
      0 <= query_len && query_len <= p.max_query_len && query_len <= context_len &&
          context_len <= p.max_context_len && context_len <= p.max_blocks_per_seq * p.block_size,
      "PagedAttention: sequence %d has query_len %d and context_len %d (max_query_len %d, "
      "max_context_len %d, max_blocks_per_seq %d, block_size %d)",
      seq, query_len, context_len, p.max_query_len, p.max_context_len, p.max_blocks_per_seq,
      p.block_size);
}

// Shared memory (dynamic): float weights[kHeads][partition_size] — reused for the cross-warp
// sum of accumulators, float [kWarps][kHeads][kHeadDim], once the weights are consumed —
// then int block_ids[partition_size / block_size + 2].
// key_begin: with cascade, each sequence's first private key (its group's shared keys are
// cascade_attention.cu's); nullptr: every key from 0.
template <int kHeadDim, int kHeads>
__global__ void __launch_bounds__(kThreads)
    DecodePartitionKernel(PagedAttentionParams p, int partition_size, int head_chunks,
                          Partials partials, const int32_t* key_begin) {
  constexpr int kLanesPerRow = kHeadDim / kVec;           // lanes that hold one key row
  constexpr int kRowsPerWarp = kWarpSize / kLanesPerRow;  // key rows a warp loads at once
  constexpr int kRowsPerStep = kWarps * kRowsPerWarp;     // ... the CTA
  static_assert(kHeadDim % kVec == 0 && kWarpSize % kLanesPerRow == 0, "unsupported head dim");

  const int seq = blockIdx.z;
  const int partition = blockIdx.x;
  const int kv_head = blockIdx.y / head_chunks;
  const int group = p.num_q_heads / p.num_kv_heads;
  const int first_head = kv_head * group + (blockIdx.y % head_chunks) * kHeads;
  const int num_heads = min(kHeads, kv_head * group + group - first_head);  // of this CTA

  const int query_start = p.query_start[seq];
  const int query_len = p.query_start[seq + 1] - query_start;
  const int context_len = p.context_lens[seq];
  CheckSequence(p, seq, query_len, context_len);
  if (query_len != 1) return;
  const int first_key = key_begin != nullptr ? key_begin[seq] : 0;
  const int end = min(context_len, (partition + 1) * partition_size);
  if (partition * partition_size >= context_len || end <= first_key) return;
  const int begin = max(partition * partition_size, first_key);
  const int n = end - begin;  // keys of this partition, >= 1

  extern __shared__ __align__(16) unsigned char smem[];
  float* weights = reinterpret_cast<float*>(smem);  // [kHeads][partition_size]
  int* block_ids = reinterpret_cast<int*>(smem + WeightsBytes(kHeadDim, kHeads, partition_size));
  __shared__ float head_max[kHeads], head_sum[kHeads];

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int row_in_warp = lane / kLanesPerRow;
  const int col = (lane % kLanesPerRow) * kVec;

  // Stage the partition's block ids.
  const BlockDivider blocks(p.block_size);
  const int first_block = blocks.Block(begin);
  const int num_blocks_here = blocks.Block(end - 1) - first_block + 1;
  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
  for (int i = threadIdx.x; i < num_blocks_here; i += kThreads) {
    const int32_t id = table[first_block + i];
    PREFIXD_DEVICE_CHECK(0 <= id && id < p.num_blocks,
                         "PagedAttention: block_tables[%d][%d] = %d is outside the cache of "
                         "%lld blocks",
                         seq, first_block + i, id, static_cast<long long>(p.num_blocks));
    block_ids[i] = id;
  }

  // This lane's 8 columns of each query head, pre-scaled, fp32. Heads past num_heads are 0.
  float q[kHeads][kVec];
  const int64_t qkv_width = int64_t{p.num_q_heads + 2 * p.num_kv_heads} * kHeadDim;
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    if (h < num_heads) {
      LoadBf16<kVec>(p.qkv + query_start * qkv_width + (first_head + h) * kHeadDim + col, q[h]);
#pragma unroll
      for (int e = 0; e < kVec; ++e) q[h][e] *= p.scale;
    } else {
#pragma unroll
      for (int e = 0; e < kVec; ++e) q[h][e] = 0.0f;
    }
  }
  __syncthreads();  // block_ids

  // Element offset of this lane's 8 columns of key `i` (0-based in the partition).
  const int64_t head_stride = int64_t{p.block_size} * kHeadDim;
  auto row_offset = [&](int i) {
    const int position = begin + i;
    const int64_t block = block_ids[blocks.Block(position) - first_block];
    return (block * p.num_kv_heads + kv_head) * head_stride +
           int64_t{blocks.Offset(position)} * kHeadDim + col;
  };

  // ---- QK: scores into `weights` ----
  // Warp w handles rows base + u * kRowsPerStep + row_in_warp; the loop bounds depend on the
  // warp only, so the shuffles below always see the full warp.
  for (int base = warp * kRowsPerWarp; base < n; base += kRowsPerStep * kUnroll) {
    uint4 k[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * kRowsPerStep + row_in_warp;
      k[u] = i < n ? *reinterpret_cast<const uint4*>(p.k_cache + row_offset(i))
                   : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[kVec];
      UnpackBf16x8(k[u], kf);
      float dot[kHeads];
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        dot[h] = 0.0f;
#pragma unroll
        for (int e = 0; e < kVec; ++e) dot[h] += q[h][e] * kf[e];
#pragma unroll
        for (int offset = kLanesPerRow / 2; offset > 0; offset >>= 1) {
          dot[h] += __shfl_xor_sync(kFullMask, dot[h], offset);
        }
      }
      const int i = base + u * kRowsPerStep + row_in_warp;
      if (i < n && lane % kLanesPerRow == 0) {
#pragma unroll
        for (int h = 0; h < kHeads; ++h) weights[h * partition_size + i] = dot[h];
      }
    }
  }
  __syncthreads();

  // ---- softmax statistics: one warp per head ----
  for (int h = warp; h < kHeads; h += kWarps) {
    float* w = weights + h * partition_size;
    float m = -INFINITY;
    for (int i = lane; i < n; i += kWarpSize) m = fmaxf(m, w[i]);
    m = WarpReduceMax(m);
    float l = 0.0f;
    for (int i = lane; i < n; i += kWarpSize) {
      const float e = expf(w[i] - m);
      w[i] = e;
      l += e;
    }
    l = WarpReduceSum(l);
    if (lane == 0) {
      head_max[h] = m;
      head_sum[h] = l;
    }
  }
  __syncthreads();

  // ---- PV ----
  float acc[kHeads][kVec];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc[h][e] = 0.0f;
  }
  for (int base = warp * kRowsPerWarp; base < n; base += kRowsPerStep * kUnroll) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * kRowsPerStep + row_in_warp;
      v[u] = i < n ? *reinterpret_cast<const uint4*>(p.v_cache + row_offset(i))
                   : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * kRowsPerStep + row_in_warp;
      if (i >= n) continue;
      float vf[kVec];
      UnpackBf16x8(v[u], vf);
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        const float w = weights[h * partition_size + i];
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[h][e] += w * vf[e];
      }
    }
  }
  // Sum over the rows of the warp: lanes with the same columns are kLanesPerRow apart.
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
#pragma unroll
      for (int offset = kLanesPerRow; offset < kWarpSize; offset <<= 1) {
        acc[h][e] += __shfl_xor_sync(kFullMask, acc[h][e], offset);
      }
    }
  }
  __syncthreads();            // every warp is done with `weights`: reuse it for the cross-warp sum
  float* warp_acc = weights;  // [kWarps][kHeads][kHeadDim]
  if (row_in_warp == 0) {
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) warp_acc[(warp * kHeads + h) * kHeadDim + col + e] = acc[h][e];
    }
  }
  __syncthreads();

  // One partition and no cascade: this CTA has the whole answer.
  const bool direct = gridDim.x == 1 && key_begin == nullptr;
  for (int i = threadIdx.x; i < num_heads * kHeadDim; i += kThreads) {
    const int h = i / kHeadDim, c = i % kHeadDim;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += warp_acc[(w * kHeads + h) * kHeadDim + c];
    const int q_head = first_head + h;
    if (direct) {
      // Every row sees at least its own key, so head_sum >= 1.
      p.out[int64_t{query_start} * p.num_q_heads * kHeadDim + q_head * kHeadDim + c] =
          __float2bfloat16_rn(sum / head_sum[h]);
    } else {
      const int64_t row = (int64_t{seq} * p.num_q_heads + q_head) * gridDim.x + partition;
      partials.acc[row * kHeadDim + c] = sum;
      if (c == 0) {
        partials.max[row] = head_max[h];
        partials.sum[row] = head_sum[h];
      }
    }
  }
}

// out[row of seq, q_head, :] from the partials of the sequence's partitions, and with
// cascade (key_begin set) of its group's shared pass for a member of a group.
template <int kHeadDim>
__global__ void __launch_bounds__(kThreads)
    DecodeReduceKernel(PagedAttentionParams p, int partition_size, int num_partitions,
                       Partials partials, const int32_t* key_begin, SharedPartials shared) {
  const int seq = blockIdx.y, q_head = blockIdx.x;
  const int query_start = p.query_start[seq];
  if (p.query_start[seq + 1] - query_start != 1) return;
  const int first_key = key_begin != nullptr ? key_begin[seq] : 0;
  const int first_part = first_key / partition_size;  // the partitions that wrote partials
  const int parts = (p.context_lens[seq] + partition_size - 1) / partition_size;
  const int64_t first = (int64_t{seq} * p.num_q_heads + q_head) * num_partitions;
  const int64_t shared_row = int64_t{seq} * p.num_q_heads + q_head;
  const bool has_shared = first_key > 0;

  float global_max = has_shared ? shared.max[shared_row] : -INFINITY;
  for (int i = first_part; i < parts; ++i) {
    global_max = fmaxf(global_max, partials.max[first + i]);
  }
  float total =
      has_shared ? shared.sum[shared_row] * expf(shared.max[shared_row] - global_max) : 0.0f;
  for (int i = first_part; i < parts; ++i) {
    total += partials.sum[first + i] * expf(partials.max[first + i] - global_max);
  }
  for (int c = threadIdx.x; c < kHeadDim; c += kThreads) {
    float acc = has_shared ? shared.acc[shared_row * kHeadDim + c] *
                                 expf(shared.max[shared_row] - global_max)
                           : 0.0f;
    for (int i = first_part; i < parts; ++i) {
      acc += partials.acc[(first + i) * kHeadDim + c] * expf(partials.max[first + i] - global_max);
    }
    p.out[int64_t{query_start} * p.num_q_heads * kHeadDim + q_head * kHeadDim + c] =
        __float2bfloat16_rn(acc / total);
  }
}

size_t PartitionSmemBytes(int head_dim, int heads, int partition_size, int block_size) {
  return WeightsBytes(head_dim, heads, partition_size) +
         sizeof(int) * (partition_size / block_size + 2);
}

template <int kHeadDim, int kHeads>
cudaError_t LaunchPartition(const PagedAttentionParams& p, const DecodeAttentionPlan& plan,
                            const Partials& partials, const int32_t* key_begin,
                            cudaStream_t stream) {
  const size_t smem = PartitionSmemBytes(kHeadDim, kHeads, plan.partition_size, p.block_size);
  auto* kernel = DecodePartitionKernel<kHeadDim, kHeads>;
  if (smem > 48 * 1024) {
    const cudaError_t status = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (status != cudaSuccess) return status;
  }
  const dim3 grid(plan.num_partitions, p.num_kv_heads * plan.head_chunks, p.num_seqs);
  kernel<<<grid, kThreads, smem, stream>>>(p, plan.partition_size, plan.head_chunks, partials,
                                           key_begin);
  return cudaGetLastError();
}

template <int kHeadDim>
cudaError_t LaunchForHeadDim(const PagedAttentionParams& p, const DecodeAttentionPlan& plan,
                             void* scratch, cudaStream_t stream) {
  const Partials partials = PartialsIn(scratch, p, plan.num_partitions);
  // Cascade: each sequence's first private key, then the groups' shared pass.
  int32_t* key_begin = nullptr;
  SharedPartials shared{nullptr, nullptr, nullptr};
  cudaError_t status = cudaSuccess;
  if (plan.cascade) {
    char* base = static_cast<char*>(scratch);
    key_begin = reinterpret_cast<int32_t*>(base + plan.key_begin_offset);
    const size_t rows = static_cast<size_t>(p.num_seqs) * p.num_q_heads;
    float* f = reinterpret_cast<float*>(base + plan.shared_offset);
    shared = SharedPartials{f, f + rows, f + 2 * rows};
    status = LaunchGroupKeyBegins(p, key_begin, stream);
    if (status == cudaSuccess) status = LaunchSharedPrefixAttention(p, shared, stream);
    if (status != cudaSuccess) return status;
  }
  switch (plan.heads_per_cta) {
    case 1:
      status = LaunchPartition<kHeadDim, 1>(p, plan, partials, key_begin, stream);
      break;
    case 2:
      status = LaunchPartition<kHeadDim, 2>(p, plan, partials, key_begin, stream);
      break;
    case 4:
      status = LaunchPartition<kHeadDim, 4>(p, plan, partials, key_begin, stream);
      break;
    default:
      status = LaunchPartition<kHeadDim, 8>(p, plan, partials, key_begin, stream);
      break;
  }
  if (status != cudaSuccess || (plan.num_partitions == 1 && !plan.cascade)) return status;
  const dim3 grid(p.num_q_heads, p.num_seqs);
  DecodeReduceKernel<kHeadDim><<<grid, kThreads, 0, stream>>>(
      p, plan.partition_size, plan.num_partitions, partials, key_begin, shared);
  return cudaGetLastError();
}

}  // namespace

DecodeAttentionPlan PlanDecodeAttention(const PagedAttentionParams& p, int num_sms) {
  DecodeAttentionPlan plan;
  const int group = p.num_q_heads / p.num_kv_heads;
  plan.heads_per_cta = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
  plan.head_chunks = (group + plan.heads_per_cta - 1) / plan.heads_per_cta;
  // Long partitions keep the partials small; shorter ones give small batches enough CTAs to
  // fill the GPU (about two waves).
  const int64_t ctas_per_partition = int64_t{p.num_seqs} * p.num_kv_heads * plan.head_chunks;
  const int context = std::max(1, p.max_context_len);
  plan.partition_size = kMaxPartitionSize;
  while (plan.partition_size > kMinPartitionSize &&
         ctas_per_partition * ((context + plan.partition_size - 1) / plan.partition_size) <
             2 * int64_t{num_sms}) {
    plan.partition_size /= 2;
  }
  plan.num_partitions = (context + plan.partition_size - 1) / plan.partition_size;
  plan.cascade = p.num_groups > 0;
  const size_t rows = static_cast<size_t>(p.num_seqs) * p.num_q_heads;
  const size_t partials = plan.num_partitions == 1 && !plan.cascade
                              ? 0
                              : sizeof(float) * rows * plan.num_partitions * (p.head_dim + 2);
  plan.scratch_bytes = partials;
  if (plan.cascade) {
    plan.shared_offset = partials;
    plan.key_begin_offset = partials + sizeof(float) * rows * (p.head_dim + 2);
    plan.scratch_bytes = plan.key_begin_offset + sizeof(int32_t) * p.num_seqs;
  }
  return plan;
}

cudaError_t LaunchDecodeAttention(const PagedAttentionParams& p, const DecodeAttentionPlan& plan,
                                  void* scratch, cudaStream_t stream) {
  if (p.num_seqs == 0 || p.num_tokens == 0) return cudaSuccess;
  switch (p.head_dim) {
    case 32:
      return LaunchForHeadDim<32>(p, plan, scratch, stream);
    case 64:
      return LaunchForHeadDim<64>(p, plan, scratch, stream);
    case 128:
      return LaunchForHeadDim<128>(p, plan, scratch, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace prefixd::cuda
