// kernels/cuda/cascade_attention.cu — the shared-prefix (cascade) pass of decode attention:
// for each group of decode sequences whose block tables begin with the same blocks
// (kernels.h, AttentionMetadata::groups), the queries of all members attend to those shared
// blocks in one pass, so each shared K/V tile is read once per 64 query rows instead of once
// per member. Its partials (max, sum, unnormalised accumulator per member and query head)
// are merged with the members' private keys by the decode reduction (decode_attention.cu),
// by log-sum-exp, exactly as the partials of two partitions of one sequence are.
//
// SharedPrefixKernel: grid (row tiles, Hkv, num_groups), 128 threads (4 warps). The query
// rows of a group and KV head are (member, query head of the KV head) pairs, member-major:
// with G query heads per KV head, row R is member R / G, query head kv_head * G + R % G. A
// CTA takes 64 of them and walks the shared keys (shared_blocks * block_size, through the
// first member's block table, which every member shares) with flash_tile.cuh's loop; every
// shared key is visible to every row (each member's position is past all of them), so the
// only mask is the last tile's padding. It writes, per real row, the max (converted to
// natural-log units, the decode kernels'), the sum and the unnormalised O.
//
// LaunchGroupKeyBegins first writes each sequence's first private key (0 outside groups)
// and checks the groups on the device.
#include "kernels/cuda/flash_tile.cuh"
#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

using flash::kBlockM;
using flash::kBlockN;
using flash::kStride;
using flash::kThreads;

__global__ void GroupKeyBeginsKernel(PagedAttentionParams p, int32_t* key_begin) {
  const int seq = blockIdx.x * blockDim.x + threadIdx.x;
  if (seq >= p.num_seqs) return;
  int begin = 0;
  for (int g = 0; g < p.num_groups; ++g) {
    const int first = p.groups[3 * g], end = p.groups[3 * g + 1], shared = p.groups[3 * g + 2];
    PREFIXD_DEVICE_CHECK(0 <= first && first < end && end <= p.num_seqs && shared >= 1 &&
                             (p.max_group_seqs <= 0 || end - first <= p.max_group_seqs),
                         "PagedAttention: group %d is (%d, %d, %d) in a batch of %d sequences "
                         "(max_group_seqs %d)",
                         g, first, end, shared, p.num_seqs, p.max_group_seqs);
    if (first <= seq && seq < end) begin = shared * p.block_size;
  }
  if (begin > 0) {
    const int query_len = p.query_start[seq + 1] - p.query_start[seq];
    PREFIXD_DEVICE_CHECK(query_len == 1 && begin < p.context_lens[seq],
                         "PagedAttention: sequence %d of a group has query_len %d and "
                         "context_len %d, not one decode token past its %d shared keys",
                         seq, query_len, p.context_lens[seq], begin);
  }
  key_begin[seq] = begin;
}

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads)
    SharedPrefixKernel(PagedAttentionParams p, float scale_log2, SharedPartials shared) {
  constexpr int kStrideE = kStride<kHeadDim>;
  constexpr float kLn2 = 0.6931471805599453f;

  const int group = blockIdx.z, kv_head = blockIdx.y;
  const int heads = p.num_q_heads / p.num_kv_heads;  // query heads per KV head
  const int first = p.groups[3 * group], end = p.groups[3 * group + 1];
  const int num_keys = p.groups[3 * group + 2] * p.block_size;
  const int rows_total = (end - first) * heads;
  const int row0 = blockIdx.x * kBlockM;
  if (row0 >= rows_total) return;
  const int rows_valid = min(kBlockM, rows_total - row0);
  const int num_key_tiles = (num_keys + kBlockN - 1) / kBlockN;

  extern __shared__ __align__(16) unsigned char smem[];
  bf16* q_tile = reinterpret_cast<bf16*>(smem);  // [kBlockM][kStride]
  bf16* k_tile = q_tile + kBlockM * kStrideE;    // [kBlockN][kStride]
  bf16* v_tile = k_tile + kBlockN * kStrideE;    // [kBlockN][kStride]

  const int64_t qkv_width = int64_t{p.num_q_heads + 2 * p.num_kv_heads} * kHeadDim;
  // Row r of the tile: its member and query head.
  auto member = [&](int r) { return first + (row0 + r) / heads; };
  auto q_head = [&](int r) { return kv_head * heads + (row0 + r) % heads; };
  const int32_t* table = p.block_tables + int64_t{first} * p.max_blocks_per_seq;
  const int64_t head_stride = int64_t{p.block_size} * kHeadDim;
  const BlockDivider blocks(p.block_size);
  auto key_row = [&](const bf16* cache, int j) {
    const int32_t block = table[blocks.Block(j)];
    PREFIXD_DEVICE_CHECK(0 <= block && block < p.num_blocks,
                         "PagedAttention: block_tables[%d][%d] = %d is outside the cache of "
                         "%lld blocks",
                         first, blocks.Block(j), block, static_cast<long long>(p.num_blocks));
    return cache + (int64_t{block} * p.num_kv_heads + kv_head) * head_stride +
           int64_t{blocks.Offset(j)} * kHeadDim;
  };
  auto load_kv_tile = [&](bf16* tile, const bf16* cache, int key_tile) {
    const int first_key = key_tile * kBlockN;
    LoadRowsAsync<kBlockN, kHeadDim, kStrideE, kThreads>(
        tile, [&](int r) { return key_row(cache, first_key + r); },
        [&](int r) { return first_key + r < num_keys; }, cache);
  };

  // Q rows (each member's one decode row) and K tile 0.
  LoadRowsAsync<kBlockM, kHeadDim, kStrideE, kThreads>(
      q_tile,
      [&](int r) {
        return p.qkv + int64_t{p.query_start[member(r)]} * qkv_width + q_head(r) * kHeadDim;
      },
      [&](int r) { return r < rows_valid; }, p.qkv);
  load_kv_tile(k_tile, p.k_cache, 0);
  CpAsyncCommit();

  const flash::Fragment f;
  flash::RowState<kHeadDim> st;
  flash::AttendKeyTiles<kHeadDim>(
      q_tile, k_tile, v_tile, p.k_cache, p.v_cache, num_key_tiles, scale_log2, load_kv_tile,
      [&](int key, bool) { return key < num_keys; }, f, st);

  // ---- the partials of the real rows ----
  const float sum_a = flash::QuadSum(st.sum_a), sum_b = flash::QuadSum(st.sum_b);
  auto write = [&](int r, float m, float l, int part) {  // part 0: o[.][0..1], 1: o[.][2..3]
    const int64_t row = int64_t{member(r)} * p.num_q_heads + q_head(r);
    float* acc = shared.acc + row * kHeadDim + 2 * f.t;
#pragma unroll
    for (int i = 0; i < kHeadDim / 8; ++i) {
      acc[i * 8] = st.o[i][2 * part];
      acc[i * 8 + 1] = st.o[i][2 * part + 1];
    }
    if (f.t == 0) {
      shared.max[row] = m * kLn2;  // base-2 scaled score -> the scaled score itself
      shared.sum[row] = l;
    }
  };
  if (f.row_a < rows_valid) write(f.row_a, st.max_a, sum_a, 0);
  if (f.row_b < rows_valid) write(f.row_b, st.max_b, sum_b, 1);
}

template <int kHeadDim>
cudaError_t Launch(const PagedAttentionParams& p, SharedPartials shared, cudaStream_t stream) {
  constexpr size_t kSmem = flash::SmemBytes<kHeadDim>();
  auto* kernel = SharedPrefixKernel<kHeadDim>;
  if (kSmem > 48 * 1024) {
    const cudaError_t status = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem));
    if (status != cudaSuccess) return status;
  }
  const int max_seqs = p.max_group_seqs > 0 ? p.max_group_seqs : p.num_seqs;
  const int rows = max_seqs * (p.num_q_heads / p.num_kv_heads);
  const dim3 grid((rows + kBlockM - 1) / kBlockM, p.num_kv_heads, p.num_groups);
  constexpr float kLog2e = 1.4426950408889634f;
  kernel<<<grid, kThreads, kSmem, stream>>>(p, p.scale * kLog2e, shared);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchGroupKeyBegins(const PagedAttentionParams& p, int32_t* key_begin,
                                 cudaStream_t stream) {
  if (p.num_seqs == 0) return cudaSuccess;
  constexpr int kBlock = 256;
  GroupKeyBeginsKernel<<<(p.num_seqs + kBlock - 1) / kBlock, kBlock, 0, stream>>>(p, key_begin);
  return cudaGetLastError();
}

cudaError_t LaunchSharedPrefixAttention(const PagedAttentionParams& p, SharedPartials shared,
                                        cudaStream_t stream) {
  if (p.num_groups == 0) return cudaSuccess;
  switch (p.head_dim) {
    case 32:
      return Launch<32>(p, shared, stream);
    case 64:
      return Launch<64>(p, shared, stream);
    case 128:
      return Launch<128>(p, shared, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace prefixd::cuda
