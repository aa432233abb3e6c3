// kernels/cuda/flash_tile.cuh — the key loop of one query tile, flash-attention 2 style on
// the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate), online softmax, no score
// matrix in memory. Shared by the prefill kernel (prefill_attention.cu) and the cascade's
// shared-prefix pass (cascade_attention.cu), which differ in which rows a tile holds, which
// keys each row sees, and what they write at the end.
//
// A CTA of 4 warps holds kBlockM = 64 query rows in shared memory; warp w owns rows
// 16w..16w+15. The keys are walked in tiles of kBlockN = 64, gathered into shared memory with
// cp.async (rows past the keys are zero-filled, so no stale or NaN data ever meets a zero
// weight):
//   S = Q Kᵀ          (ldmatrix of Q once into registers, of K per tile; fp32 accumulators)
//   mask              visible(key, row b?) per element
//   online softmax    m' = max(m, rowmax S), l' = l 2^(m - m') + Σ 2^(S - m'), O *= 2^(m - m')
//                     (base 2, with scale * log2(e) folded into S)
//   O += P V          (P from the S accumulators, repacked to bf16 A fragments in registers;
//                     V fragments by ldmatrix.trans)
// Loads overlap compute: V of tile n is in flight during S = Q K_nᵀ, K of tile n+1 during
// O += P V_n.
#ifndef PREFIXD_KERNELS_CUDA_FLASH_TILE_CUH_
#define PREFIXD_KERNELS_CUDA_FLASH_TILE_CUH_

#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda::flash {

inline constexpr int kBlockM = 64;  // query rows per CTA
inline constexpr int kBlockN = 64;  // keys per tile
inline constexpr int kWarps = 4;
inline constexpr int kThreads = kWarps * kWarpSize;
static_assert(kBlockM == 16 * kWarps, "each warp owns 16 query rows");

// Shared-memory row stride in elements: 8 bf16 (16 bytes) of padding put the 8 rows an
// ldmatrix phase reads in 8 different 16-byte bank groups.
template <int kHeadDim>
inline constexpr int kStride = kHeadDim + 8;

template <int kHeadDim>
constexpr size_t SmemBytes() {
  return sizeof(bf16) * 3 * kBlockM * kStride<kHeadDim>;  // Q, K and V tiles (kBlockN == kBlockM)
}

// This thread's place in the mma fragments: its two rows of the tile (g and g + 8 of its
// warp's 16) and its column pair t.
struct Fragment {
  int warp, lane, g, t, row_a, row_b;
  __device__ Fragment()
      : warp(threadIdx.x / kWarpSize),
        lane(threadIdx.x % kWarpSize),
        g(lane / 4),
        t(lane % 4),
        row_a(warp * 16 + g),
        row_b(row_a + 8) {}
};

// The running state of this thread's two rows: O (d-tile i holds columns 8i + 2t, 8i + 2t + 1
// of row a in [0..1], of row b in [2..3]), the running max (base-2 scaled scores) and this
// thread's part of the running sums (QuadSum gives a row's whole sum).
template <int kHeadDim>
struct RowState {
  float o[kHeadDim / 8][4];
  float max_a = -INFINITY, max_b = -INFINITY;
  float sum_a = 0.0f, sum_b = 0.0f;
  __device__ RowState() {
#pragma unroll
    for (int i = 0; i < kHeadDim / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  }
};

// The CTA's Q, K and V tiles in dynamic shared memory (SmemBytes), [64][kStride] each.
template <int kHeadDim>
struct Tiles {
  bf16 *q, *k, *v;
  __device__ explicit Tiles(unsigned char* smem)
      : q(reinterpret_cast<bf16*>(smem)),
        k(q + kBlockM * kStride<kHeadDim>),
        v(k + kBlockN * kStride<kHeadDim>) {}
};

// Keys [0, num_keys) of one KV head, found through block table row `seq` of a paged cache
// [num_blocks, Hkv, block_size, d]. LoadTile queues tile `key_tile` of them (cp.async, rows
// past num_keys zero-filled); a block id outside the cache traps.
template <int kHeadDim>
struct PagedKeys {
  const PagedAttentionParams& p;
  int seq, kv_head, num_keys;
  const int32_t* table;
  BlockDivider blocks;

  __device__ PagedKeys(const PagedAttentionParams& params, int seq_, int kv_head_, int num_keys_)
      : p(params),
        seq(seq_),
        kv_head(kv_head_),
        num_keys(num_keys_),
        table(params.block_tables + int64_t{seq_} * params.max_blocks_per_seq),
        blocks(params.block_size) {}

  __device__ const bf16* Row(const bf16* cache, int j) const {
    const int32_t block = table[blocks.Block(j)];
    PREFIXD_DEVICE_CHECK(0 <= block && block < p.num_blocks,
                         "PagedAttention: block_tables[%d][%d] = %d is outside the cache of "
                         "%lld blocks",
                         seq, blocks.Block(j), block, static_cast<long long>(p.num_blocks));
    return cache + (int64_t{block} * p.num_kv_heads + kv_head) * p.block_size * kHeadDim +
           int64_t{blocks.Offset(j)} * kHeadDim;
  }

  __device__ void LoadTile(bf16* tile, const bf16* cache, int key_tile) const {
    const int first_key = key_tile * kBlockN;
    LoadRowsAsync<kBlockN, kHeadDim, kStride<kHeadDim>, kThreads>(
        tile, [&](int r) { return Row(cache, first_key + r); },
        [&](int r) { return first_key + r < num_keys; }, cache);
  }
};

// The four threads of a quad hold the same two rows: the sum of their parts.
__device__ __forceinline__ float QuadSum(float x) {
#pragma unroll
  for (int offset = 1; offset < 4; offset <<= 1) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

// Queues the tile's query rows (row r from q_row(r), zero-filled from rows_valid) and key
// tile 0, and commits them: what AttendKeyTiles starts from.
template <int kHeadDim, typename QRow>
__device__ __forceinline__ void StartTiles(const Tiles<kHeadDim>& tiles,
                                           const PagedKeys<kHeadDim>& keys, QRow q_row,
                                           int rows_valid) {
  LoadRowsAsync<kBlockM, kHeadDim, kStride<kHeadDim>, kThreads>(
      tiles.q, q_row, [&](int r) { return r < rows_valid; }, keys.p.qkv);
  keys.LoadTile(tiles.k, keys.p.k_cache, 0);
  CpAsyncCommit();
}

// Attends the tile's queries (tiles.q, queued with cp.async and committed by the caller,
// together with key tile 0 in tiles.k: StartTiles) to all of `keys`; visible(key, row_b)
// says whether `key` counts for this thread's row a (row_b false) or row b (true). Every
// __syncthreads() here is reached by the whole CTA.
template <int kHeadDim, typename Visible>
__device__ __forceinline__ void AttendKeyTiles(const Tiles<kHeadDim>& tiles,
                                               const PagedKeys<kHeadDim>& keys, float scale_log2,
                                               Visible visible, const Fragment& f,
                                               RowState<kHeadDim>& st) {
  constexpr int kStrideE = kStride<kHeadDim>;
  const bf16* q_tile = tiles.q;
  bf16* k_tile = tiles.k;
  bf16* v_tile = tiles.v;
  const bf16 *k_cache = keys.p.k_cache, *v_cache = keys.p.v_cache;
  const int num_key_tiles = (keys.num_keys + kBlockN - 1) / kBlockN;
  auto load_kv_tile = [&](bf16* tile, const bf16* cache, int key_tile) {
    keys.LoadTile(tile, cache, key_tile);
  };
  constexpr int kDimSlices = kHeadDim / 16;  // k-slices of QKᵀ
  constexpr int kDimTiles = kHeadDim / 8;    // n-tiles of O
  constexpr int kKeyTiles = kBlockN / 8;     // n-tiles of S
  const int warp = f.warp, lane = f.lane, t = f.t;
  uint32_t q_frag[kDimSlices][4];

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
    load_kv_tile(v_tile, v_cache, key_tile);
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
        s[n][e] = visible(key, e >= 2) ? s[n][e] * scale_log2 : -INFINITY;
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
    const float new_max_a = fmaxf(st.max_a, tile_max_a), new_max_b = fmaxf(st.max_b, tile_max_b);
    // A row that has seen no visible key yet (only padding rows past the chunk) keeps a
    // -inf max; subtract 0 instead so that no inf - inf NaN appears.
    const float base_a = new_max_a == -INFINITY ? 0.0f : new_max_a;
    const float base_b = new_max_b == -INFINITY ? 0.0f : new_max_b;
    const float correction_a = exp2f(st.max_a - base_a), correction_b = exp2f(st.max_b - base_b);
    st.max_a = new_max_a;
    st.max_b = new_max_b;
    st.sum_a *= correction_a;
    st.sum_b *= correction_b;
#pragma unroll
    for (int i = 0; i < kDimTiles; ++i) {
      st.o[i][0] *= correction_a;
      st.o[i][1] *= correction_a;
      st.o[i][2] *= correction_b;
      st.o[i][3] *= correction_b;
    }
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
      s[n][0] = exp2f(s[n][0] - base_a);
      s[n][1] = exp2f(s[n][1] - base_a);
      s[n][2] = exp2f(s[n][2] - base_b);
      s[n][3] = exp2f(s[n][3] - base_b);
      st.sum_a += s[n][0] + s[n][1];
      st.sum_b += s[n][2] + s[n][3];
    }

    CpAsyncWaitAll();
    __syncthreads();  // V tile landed; every warp is done with the K tile
    if (key_tile + 1 < num_key_tiles) load_kv_tile(k_tile, k_cache, key_tile + 1);
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
        MmaBf16(st.o[2 * dp], a, b[0], b[1]);
        MmaBf16(st.o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }
}

}  // namespace prefixd::cuda::flash

#endif  // PREFIXD_KERNELS_CUDA_FLASH_TILE_CUH_
