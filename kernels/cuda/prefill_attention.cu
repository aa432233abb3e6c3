// kernels/cuda/prefill_attention.cu — paged causal attention of prefill rows (query_len > 1:
// a whole prompt, or a chunk of one over its cached prefix pages), flash-attention 2 style
// on the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate), online softmax, no
// score matrix in memory.
//
// Grid (q_tiles, Hq, num_seqs), 128 threads (4 warps). A CTA takes kBlockM = 64 query rows
// of one sequence and one query head; warp w owns rows 16w..16w+15. It walks the keys the
// tile can see (0 .. position of its last row) in tiles of kBlockN = 64, gathered through
// the block table into shared memory with cp.async (rows past the visible keys are
// zero-filled, so no stale or NaN data ever meets a zero weight):
//   S = Q Kᵀ          (ldmatrix of Q once into registers, of K per tile; fp32 accumulators)
//   mask              key j is visible to the row at position p iff j <= p (causal; the
//                     row's position is context_len - query_len + its index in the chunk)
//   online softmax    m' = max(m, rowmax S), l' = l 2^(m - m') + Σ 2^(S - m'), O *= 2^(m - m')
//                     (base 2, with scale * log2(e) folded into S)
//   O += P V          (P from the S accumulators, repacked to bf16 A fragments in registers;
//                     V fragments by ldmatrix.trans)
// and finally writes O / l as bf16. Loads overlap compute: V of tile n is in flight during
// S = Q K_nᵀ, K of tile n+1 during O += P V_n.
//
// The q tiles of a sequence are visited last first (they see the most keys). Sequences with
// query_len <= 1 are skipped (decode rows are the decode kernels'). K and V tiles of a KV
// head are re-read by each query head of its group, mostly from L2.
#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kBlockM = 64;  // query rows per CTA
constexpr int kBlockN = 64;  // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;
static_assert(kBlockM == 16 * kWarps, "each warp owns 16 query rows");

// Shared-memory row stride in elements: 8 bf16 (16 bytes) of padding put the 8 rows an
// ldmatrix phase reads in 8 different 16-byte bank groups.
template <int kHeadDim>
constexpr int kStride = kHeadDim + 8;

template <int kHeadDim>
constexpr size_t SmemBytes() {
  return sizeof(bf16) * 3 * kBlockM * kStride<kHeadDim>;  // Q, K and V tiles (kBlockN == kBlockM)
}

// Copies rows [0, 64) of a tile into shared memory [64][kStride] with 16-byte cp.async;
// row r comes from src(r), or is zero-filled when !valid(r).
template <int kHeadDim, typename RowSource, typename RowValid>
__device__ __forceinline__ void LoadTile(bf16* tile, RowSource src, RowValid valid,
                                         const bf16* any_valid_address) {
  LoadRowsAsync<kBlockN, kHeadDim, kStride<kHeadDim>, kThreads>(tile, src, valid,
                                                                any_valid_address);
}

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads)
    PrefillAttentionKernel(PagedAttentionParams p, float scale_log2) {
  constexpr int kStrideE = kStride<kHeadDim>;
  constexpr int kDimSlices = kHeadDim / 16;  // k-slices of QKᵀ
  constexpr int kDimTiles = kHeadDim / 8;    // n-tiles of O
  constexpr int kKeyTiles = kBlockN / 8;     // n-tiles of S

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
  const int num_key_tiles = (num_keys + kBlockN - 1) / kBlockN;

  extern __shared__ __align__(16) unsigned char smem[];
  bf16* q_tile = reinterpret_cast<bf16*>(smem);  // [kBlockM][kStride]
  bf16* k_tile = q_tile + kBlockM * kStrideE;    // [kBlockN][kStride]
  bf16* v_tile = k_tile + kBlockN * kStrideE;    // [kBlockN][kStride]

  const int64_t qkv_width = int64_t{p.num_q_heads + 2 * p.num_kv_heads} * kHeadDim;
  const int32_t* table = p.block_tables + int64_t{seq} * p.max_blocks_per_seq;
  const int64_t head_stride = int64_t{p.block_size} * kHeadDim;
  const BlockDivider blocks(p.block_size);
  // Start of key `j`'s row for this KV head in a cache [num_blocks, Hkv, block_size, d].
  auto key_row = [&](const bf16* cache, int j) {
    const int32_t block = table[blocks.Block(j)];
    PREFIXD_DEVICE_CHECK(0 <= block && block < p.num_blocks,
                         "PagedAttention: block_tables[%d][%d] = %d is outside the cache of "
                         "%lld blocks",
                         seq, blocks.Block(j), block, static_cast<long long>(p.num_blocks));
    return cache + (int64_t{block} * p.num_kv_heads + kv_head) * head_stride +
           int64_t{blocks.Offset(j)} * kHeadDim;
  };
  auto load_kv_tile = [&](bf16* tile, const bf16* cache, int key_tile) {
    const int first_key = key_tile * kBlockN;
    LoadTile<kHeadDim>(
        tile, [&](int r) { return key_row(cache, first_key + r); },
        [&](int r) { return first_key + r < num_keys; }, cache);
  };

  // Q tile and K tile 0.
  LoadTile<kHeadDim>(
      q_tile,
      [&](int r) { return p.qkv + (query_start + row0 + r) * qkv_width + q_head * kHeadDim; },
      [&](int r) { return r < rows_valid; }, p.qkv);
  load_kv_tile(k_tile, p.k_cache, 0);
  CpAsyncCommit();

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int g = lane / 4, t = lane % 4;  // mma fragment coordinates
  // This thread's two rows (g and g + 8 of the warp's 16), as positions in the sequence.
  const int row_a = warp * 16 + g, row_b = row_a + 8;
  const int position_a = first_position + row_a, position_b = first_position + row_b;

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
      // A fragments of Q: lanes 0-15 address rows 0-15 at column 0, lanes 16-31 at column 8.
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
        // Matrices: keys 16np+0..7 / dims 16d+0..7 (b0 of n-tile 2np), dims +8 (its b1),
        // keys +8..15 dims +0 (b0 of n-tile 2np+1), dims +8 (its b1).
        const int i = lane / 8;
        uint32_t b[4];
        LdMatrixX4(b,
                   k_tile + (np * 16 + (i / 2) * 8 + lane % 8) * kStrideE + d * 16 + (i % 2) * 8);
        MmaBf16(s[2 * np], q_frag[d], b[0], b[1]);
        MmaBf16(s[2 * np + 1], q_frag[d], b[2], b[3]);
      }
    }

    // ---- mask, online softmax ----
    const int first_key = key_tile * kBlockN;
    float tile_max_a = -INFINITY, tile_max_b = -INFINITY;
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = first_key + n * 8 + 2 * t + (e & 1);
        const bool visible = key <= (e < 2 ? position_a : position_b) && key < num_keys;
        s[n][e] = visible ? s[n][e] * scale_log2 : -INFINITY;
      }
      tile_max_a = fmaxf(tile_max_a, fmaxf(s[n][0], s[n][1]));
      tile_max_b = fmaxf(tile_max_b, fmaxf(s[n][2], s[n][3]));
    }
    // The four threads of a quad hold the same two rows.
#pragma unroll
    for (int offset = 1; offset < 4; offset <<= 1) {
      tile_max_a = fmaxf(tile_max_a, __shfl_xor_sync(kFullMask, tile_max_a, offset));
      tile_max_b = fmaxf(tile_max_b, __shfl_xor_sync(kFullMask, tile_max_b, offset));
    }
    const float new_max_a = fmaxf(max_a, tile_max_a), new_max_b = fmaxf(max_b, tile_max_b);
    // A row that has seen no visible key yet (only padding rows past the chunk) keeps a
    // -inf max; subtract 0 instead so that no inf - inf NaN appears.
    const float base_a = new_max_a == -INFINITY ? 0.0f : new_max_a;
    const float base_b = new_max_b == -INFINITY ? 0.0f : new_max_b;
    const float correction_a = exp2f(max_a - base_a), correction_b = exp2f(max_b - base_b);
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
      s[n][0] = exp2f(s[n][0] - base_a);
      s[n][1] = exp2f(s[n][1] - base_a);
      s[n][2] = exp2f(s[n][2] - base_b);
      s[n][3] = exp2f(s[n][3] - base_b);
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
      // P's A fragment for keys 16kk..16kk+15 is S's n-tiles 2kk and 2kk+1.
      const uint32_t a[4] = {PackBf16x2(s[2 * kk][0], s[2 * kk][1]),
                             PackBf16x2(s[2 * kk][2], s[2 * kk][3]),
                             PackBf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             PackBf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kDimTiles / 2; ++dp) {
        // Matrices (transposed): keys 16kk+0..7 / dims 16dp+0..7 (b0 of d-tile 2dp), keys
        // +8..15 (its b1), keys +0..7 dims +8 (b0 of d-tile 2dp+1), keys +8..15 dims +8.
        const int i = lane / 8;
        uint32_t b[4];
        LdMatrixX4Trans(
            b, v_tile + (kk * 16 + (i % 2) * 8 + lane % 8) * kStrideE + dp * 16 + (i / 2) * 8);
        MmaBf16(o[2 * dp], a, b[0], b[1]);
        MmaBf16(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }

  // ---- out = O / l ----
#pragma unroll
  for (int offset = 1; offset < 4; offset <<= 1) {
    sum_a += __shfl_xor_sync(kFullMask, sum_a, offset);
    sum_b += __shfl_xor_sync(kFullMask, sum_b, offset);
  }
  const int64_t out_width = int64_t{p.num_q_heads} * kHeadDim;
  bf16* out = p.out + int64_t{query_start + row0} * out_width + q_head * kHeadDim + 2 * t;
  // Every real row sees at least its own key, so its sum is >= 1.
  const float inv_a = row_a < rows_valid ? 1.0f / sum_a : 0.0f;
  const float inv_b = row_b < rows_valid ? 1.0f / sum_b : 0.0f;
#pragma unroll
  for (int i = 0; i < kDimTiles; ++i) {
    if (row_a < rows_valid) {
      *reinterpret_cast<__nv_bfloat162*>(out + row_a * out_width + i * 8) =
          __floats2bfloat162_rn(o[i][0] * inv_a, o[i][1] * inv_a);
    }
    if (row_b < rows_valid) {
      *reinterpret_cast<__nv_bfloat162*>(out + row_b * out_width + i * 8) =
          __floats2bfloat162_rn(o[i][2] * inv_b, o[i][3] * inv_b);
    }
  }
}

template <int kHeadDim>
cudaError_t Launch(const PagedAttentionParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = SmemBytes<kHeadDim>();
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
