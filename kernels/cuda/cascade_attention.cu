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
  constexpr float kLn2 = 0.6931471805599453f;

  const int group = blockIdx.z, kv_head = blockIdx.y;
  const int heads = p.num_q_heads / p.num_kv_heads;  // query heads per KV head
  const int first = p.groups[3 * group], end = p.groups[3 * group + 1];
  const int num_keys = p.groups[3 * group + 2] * p.block_size;
  const int rows_total = (end - first) * heads;
  const int row0 = blockIdx.x * kBlockM;
  if (row0 >= rows_total) return;
  const int rows_valid = min(kBlockM, rows_total - row0);

  extern __shared__ __align__(16) unsigned char smem[];
  const flash::Tiles<kHeadDim> tiles(smem);
  // The shared keys, through the first member's table (every member's begins with them).
  const flash::PagedKeys<kHeadDim> keys(p, first, kv_head, num_keys);
  const int64_t qkv_width = int64_t{p.num_q_heads + 2 * p.num_kv_heads} * kHeadDim;
  // Row r of the tile: its member and query head.
  auto member = [&](int r) { return first + (row0 + r) / heads; };
  auto q_head = [&](int r) { return kv_head * heads + (row0 + r) % heads; };
  flash::StartTiles<kHeadDim>(
      tiles, keys,
      [&](int r) {
        return p.qkv + int64_t{p.query_start[member(r)]} * qkv_width + q_head(r) * kHeadDim;
      },
      rows_valid);

  const flash::Fragment f;
  flash::RowState<kHeadDim> st;
  flash::AttendKeyTiles<kHeadDim>(
      tiles, keys, scale_log2, [&](int key, bool) { return key < num_keys; }, f, st);

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
