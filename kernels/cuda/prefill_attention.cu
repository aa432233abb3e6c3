// kernels/cuda/prefill_attention.cu — paged causal attention of prefill rows (query_len > 1:
// a whole prompt, or a chunk of one over its cached prefix pages), flash-attention 2 style
// on the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate), online softmax, no
// score matrix in memory.
//
// Grid (q_tiles, Hq, num_seqs), 128 threads (4 warps). A CTA takes kBlockM = 64 query rows
// of one sequence and one query head and walks the keys the tile can see (0 .. position of
// its last row) with flash_tile.cuh's loop; a key j is visible to the row at position p iff
// j <= p (causal; the row's position is context_len - query_len + its index in the chunk).
// It finally writes O / l as bf16.
//
// The q tiles of a sequence are visited last first (they see the most keys). Sequences with
// query_len <= 1 are skipped (decode rows are the decode kernels'). K and V tiles of a KV
// head are re-read by each query head of its group, mostly from L2.
#include "kernels/cuda/flash_tile.cuh"
#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

using flash::kBlockM;
using flash::kBlockN;
using flash::kThreads;

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads)
    PrefillAttentionKernel(PagedAttentionParams p, float scale_log2) {
  const int seq = blockIdx.z, q_head = blockIdx.y;
  const int kv_head = q_head / (p.num_q_heads / p.num_kv_heads);
  const int query_start = p.query_start[seq];
  const int query_len = p.query_start[seq + 1] - query_start;
  const int context_len = p.context_lens[seq];
  PREFIXD_DEVICE_CHECK(
      0 <= query_len && query_len <= p.max_query_len && query_len <= context_len &&
          context_len <= p.max_context_len && context_len <= p.max_blocks_per_seq * p.block_size,
      "PagedAttention: sequence %d has query_len %d and context_len %d (max_query_len %d, "
      "max_context_len %d, max_blocks_per_seq %d, block_size %d)",
      seq, query_len, context_len, p.max_query_len, p.max_context_len, p.max_blocks_per_seq,
      p.block_size);
  if (query_len <= 1) return;
  const int tile_index = gridDim.x - 1 - blockIdx.x;  // heaviest tiles first
  const int row0 = tile_index * kBlockM;              // first row of the tile in the chunk
  if (row0 >= query_len) return;
  const int rows_valid = min(kBlockM, query_len - row0);
  const int first_position = context_len - query_len + row0;  // of the tile's row 0
  const int num_keys = first_position + rows_valid;           // keys the last row sees

  extern __shared__ __align__(16) unsigned char smem[];
  const flash::Tiles<kHeadDim> tiles(smem);
  const flash::PagedKeys<kHeadDim> keys(p, seq, kv_head, num_keys);
  const int64_t qkv_width = int64_t{p.num_q_heads + 2 * p.num_kv_heads} * kHeadDim;
  flash::StartTiles<kHeadDim>(
      tiles, keys,
      [&](int r) { return p.qkv + (query_start + row0 + r) * qkv_width + q_head * kHeadDim; },
      rows_valid);

  // This thread's two rows, as positions in the sequence.
  const flash::Fragment f;
  const int position_a = first_position + f.row_a, position_b = first_position + f.row_b;
  flash::RowState<kHeadDim> st;
  flash::AttendKeyTiles<kHeadDim>(
      tiles, keys, scale_log2,
      [&](int key, bool row_b) {
        return key <= (row_b ? position_b : position_a) && key < num_keys;
      },
      f, st);

  // ---- out = O / l ----
  const float sum_a = flash::QuadSum(st.sum_a), sum_b = flash::QuadSum(st.sum_b);
  const int64_t out_width = int64_t{p.num_q_heads} * kHeadDim;
  bf16* out = p.out + int64_t{query_start + row0} * out_width + q_head * kHeadDim + 2 * f.t;
  // Every real row sees at least its own key, so its sum is >= 1.
  const int row_a = f.row_a, row_b = f.row_b;
  const float inv_a = row_a < rows_valid ? 1.0f / sum_a : 0.0f;
  const float inv_b = row_b < rows_valid ? 1.0f / sum_b : 0.0f;
#pragma unroll
  for (int i = 0; i < kHeadDim / 8; ++i) {
    if (row_a < rows_valid) {
      *reinterpret_cast<__nv_bfloat162*>(out + row_a * out_width + i * 8) =
          __floats2bfloat162_rn(st.o[i][0] * inv_a, st.o[i][1] * inv_a);
    }
    if (row_b < rows_valid) {
      *reinterpret_cast<__nv_bfloat162*>(out + row_b * out_width + i * 8) =
          __floats2bfloat162_rn(st.o[i][2] * inv_b, st.o[i][3] * inv_b);
    }
  }
}

template <int kHeadDim>
cudaError_t Launch(const PagedAttentionParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = flash::SmemBytes<kHeadDim>();
  auto* kernel = PrefillAttentionKernel<kHeadDim>;
  if (kSmem > 48 * 1024) {
    const cudaError_t status = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem));
    if (status != cudaSuccess) return status;
  }
  const dim3 grid((p.max_query_len + kBlockM - 1) / kBlockM, p.num_q_heads, p.num_seqs);
  constexpr float kLog2e = 1.4426950408889634f;
  kernel<<<grid, kThreads, kSmem, stream>>>(p, p.scale * kLog2e);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPrefillAttention(const PagedAttentionParams& p, cudaStream_t stream) {
  if (p.num_seqs == 0 || p.num_tokens == 0 || p.max_query_len <= 1) return cudaSuccess;
  switch (p.head_dim) {
    case 32:
      return Launch<32>(p, stream);
    case 64:
      return Launch<64>(p, stream);
    case 128:
      return Launch<128>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace prefixd::cuda
