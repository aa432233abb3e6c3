// kernels/cuda/cascade_attention.cu — the shared-prefix (cascade) pass of decode attention:
// for each group of decode sequences whose block tables begin with the same blocks
// (kernels.h, AttentionMetadata::groups), the queries of all members attend to those shared
// blocks in one pass, so each shared K/V tile is read once per 64 query rows instead of once
// per member. Its partials (max, sum, unnormalised accumulator per member and query head)
// are merged with the members' private keys by the decode reduction (decode_attention.cu),
// by log-sum-exp, exactly as the partials of two partitions of one sequence are.
//
// SharedPrefixKernel: grid (row tiles, Hkv, num_groups), 128 threads (4 warps), the
// prefill kernel's scheme (prefill_attention.cu) on other rows. The query rows of a group
// and KV head are (member, query head of the KV head) pairs, member-major: with G query heads
// per KV head, row R is member R / G, query head kv_head * G + R % G. A CTA takes 64 of them;
// warp w owns 16. It walks the shared keys (shared_blocks * block_size, through the first
// member's block table, which every member shares) in tiles of 64 with cp.async:
//   S = Q Kᵀ          mma.sync m16n8k16, bf16 in, fp32 accumulate
//   mask              only keys past the shared prefix (the last tile's padding): every
//                     member's position is after every shared key, so nothing is causal here
//   online softmax    base 2, with scale * log2(e) folded into S
//   O += P V          P repacked to bf16 A fragments, V by ldmatrix.trans
// and writes, per real row, max (converted to natural-log units, the decode kernels'),
// sum and O.
//
// LaunchGroupKeyBegins first writes each sequence's first private key (0 outside groups)
// and checks the groups on the device.
#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kBlockM = 64;  // query rows per CTA
constexpr int kBlockN = 64;  // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
static_assert(kBlockM == 16 * kWarps, "each warp owns 16 query rows");

template <int kHeadDim>
constexpr int kStride = kHeadDim + 8;  // 16 bytes of padding: conflict-free ldmatrix

template <int kHeadDim>
constexpr size_t SmemBytes() {
  return sizeof(bf16) * 3 * kBlockM * kStride<kHeadDim>;  // Q, K and V tiles
}

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
  constexpr int kDimSlices = kHeadDim / 16;  // k-slices of QKᵀ
  constexpr int kDimTiles = kHeadDim / 8;    // n-tiles of O
  constexpr int kKeyTiles = kBlockN / 8;     // n-tiles of S
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

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int g = lane / 4, t = lane % 4;  // mma fragment coordinates
  const int row_a = warp * 16 + g, row_b = row_a + 8;

  uint32_t q_frag[kDimSlices][4];
  float o[kDimTiles][4];
#pragma unroll
  for (int i = 0; i < kDimTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float max_a = -INFINITY, max_b = -INFINITY;  // running max (base-2 scaled scores)
  float sum_a = 0.0f, sum_b = 0.0f;            // this thread's part of the running sums

  for (int key_tile = 0; key_tile < num_key_tiles; ++key_tile) {
    CpAsyncWaitAll();
    __syncthreads();  // K tile (and Q) landed; every warp is done with the previous V tile
    if (key_tile == 0) {
#pragma unroll
      for (int s = 0; s < kDimSlices; ++s) {
        LdMatrixX4(q_frag[s],
                   q_tile + (warp * 16 + lane % 16) * kStrideE + s * 16 + (lane / 16) * 8);
      }
    }
    load_kv_tile(v_tile, p.v_cache, key_tile);
    CpAsyncCommit();

    // ---- S = Q Kᵀ: 16 x 64 per warp ----
    float s[kKeyTiles][4];
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDimSlices; ++d) {
#pragma unroll
      for (int np = 0; np < kKeyTiles / 2; ++np) {
        const int i = lane / 8;
        uint32_t b[4];
        LdMatrixX4(b,
                   k_tile + (np * 16 + (i / 2) * 8 + lane % 8) * kStrideE + d * 16 + (i % 2) * 8);
        MmaBf16(s[2 * np], q_frag[d], b[0], b[1]);
        MmaBf16(s[2 * np + 1], q_frag[d], b[2], b[3]);
      }
    }

    // ---- mask (the last tile's keys past the prefix), online softmax ----
    const int first_key = key_tile * kBlockN;
    float tile_max_a = -INFINITY, tile_max_b = -INFINITY;
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = first_key + n * 8 + 2 * t + (e & 1);
        s[n][e] = key < num_keys ? s[n][e] * scale_log2 : -INFINITY;
      }
      tile_max_a = fmaxf(tile_max_a, fmaxf(s[n][0], s[n][1]));
      tile_max_b = fmaxf(tile_max_b, fmaxf(s[n][2], s[n][3]));
    }
#pragma unroll
    for (int offset = 1; offset < 4; offset <<= 1) {
      tile_max_a = fmaxf(tile_max_a, __shfl_xor_sync(kFullMask, tile_max_a, offset));
      tile_max_b = fmaxf(tile_max_b, __shfl_xor_sync(kFullMask, tile_max_b, offset));
    }
    // Every tile holds at least one shared key, so the maxes are finite from tile 0 on.
    const float new_max_a = fmaxf(max_a, tile_max_a), new_max_b = fmaxf(max_b, tile_max_b);
    const float correction_a = exp2f(max_a - new_max_a), correction_b = exp2f(max_b - new_max_b);
    max_a = new_max_a;
    max_b = new_max_b;
    sum_a *= correction_a;
    sum_b *= correction_b;
#pragma unroll
    for (int i = 0; i < kDimTiles; ++i) {
      o[i][0] *= correction_a;
      o[i][1] *= correction_a;
      o[i][2] *= correction_b;
      o[i][3] *= correction_b;
    }
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
      s[n][0] = exp2f(s[n][0] - max_a);
      s[n][1] = exp2f(s[n][1] - max_a);
      s[n][2] = exp2f(s[n][2] - max_b);
      s[n][3] = exp2f(s[n][3] - max_b);
      sum_a += s[n][0] + s[n][1];
      sum_b += s[n][2] + s[n][3];
    }

    CpAsyncWaitAll();
    __syncthreads();  // V tile landed; every warp is done with the K tile
    if (key_tile + 1 < num_key_tiles) load_kv_tile(k_tile, p.k_cache, key_tile + 1);
    CpAsyncCommit();

    // ---- O += P V ----
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint32_t a[4] = {PackBf16x2(s[2 * kk][0], s[2 * kk][1]),
                             PackBf16x2(s[2 * kk][2], s[2 * kk][3]),
                             PackBf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             PackBf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kDimTiles / 2; ++dp) {
        const int i = lane / 8;
        uint32_t b[4];
        LdMatrixX4Trans(
            b, v_tile + (kk * 16 + (i % 2) * 8 + lane % 8) * kStrideE + dp * 16 + (i / 2) * 8);
        MmaBf16(o[2 * dp], a, b[0], b[1]);
        MmaBf16(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }

  // ---- the partials of the real rows ----
#pragma unroll
  for (int offset = 1; offset < 4; offset <<= 1) {
    sum_a += __shfl_xor_sync(kFullMask, sum_a, offset);
    sum_b += __shfl_xor_sync(kFullMask, sum_b, offset);
  }
  auto write = [&](int r, float m, float l, int part) {  // part 0: o[.][0..1], 1: o[.][2..3]
    const int64_t row = int64_t{member(r)} * p.num_q_heads + q_head(r);
    float* acc = shared.acc + row * kHeadDim + 2 * t;
#pragma unroll
    for (int i = 0; i < kDimTiles; ++i) {
      acc[i * 8] = o[i][2 * part];
      acc[i * 8 + 1] = o[i][2 * part + 1];
    }
    if (t == 0) {
      shared.max[row] = m * kLn2;  // base-2 scaled score -> the scaled score itself
      shared.sum[row] = l;
    }
  };
  if (row_a < rows_valid) write(row_a, max_a, sum_a, 0);
  if (row_b < rows_valid) write(row_b, max_b, sum_b, 1);
}

template <int kHeadDim>
cudaError_t Launch(const PagedAttentionParams& p, SharedPartials shared, cudaStream_t stream) {
  constexpr size_t kSmem = SmemBytes<kHeadDim>();
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
