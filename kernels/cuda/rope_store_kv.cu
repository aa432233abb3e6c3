// kernels/cuda/rope_store_kv.cu — RopeAndStoreKv: rotate-half RoPE of every q and k head of
// a token, fused with writing its (rotated) k and v heads into their KV cache slot.
//
// Grid (num_tokens), 128 threads: one CTA per token. The CTA first computes the token's
// d/2 (cos, sin) pairs into shared memory — angle = float(pos) * inv_freq[j] in fp32 with the
// accurate cosf/sinf (sincosf), as the CPU does — then rotates the Hq + Hkv heads in vectors
// of kVec pairs (x[j..j+kVec), x[j+d/2..j+d/2+kVec)), writing q and k back into qkv and k
// also into the cache, and finally copies the v heads into the cache. kVec is 8 (16-byte
// accesses) when d/2 % 8 == 0 and the pointers are 16-byte aligned, else 1.
#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 128;

// Shared memory: float cos[d/2], sin[d/2].
template <int kVec>
__global__ void RopeAndStoreKvKernel(RopeStoreKvParams p) {
  extern __shared__ float trig[];
  const int d = p.head_dim, half = d / 2, hq = p.num_q_heads, hkv = p.num_kv_heads;
  float* cos_j = trig;
  float* sin_j = trig + half;
  const int64_t t = blockIdx.x;
  const int32_t pos = p.positions[t];
  const int32_t slot = p.slots[t];
  PREFIXD_DEVICE_CHECK(pos >= 0, "RopeAndStoreKv: positions[%lld] = %d", static_cast<long long>(t),
                       pos);
  PREFIXD_DEVICE_CHECK(0 <= slot && slot < p.num_blocks * p.block_size,
                       "RopeAndStoreKv: slots[%lld] = %d is outside the cache of %lld slots",
                       static_cast<long long>(t), slot,
                       static_cast<long long>(p.num_blocks * p.block_size));
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const float angle = static_cast<float>(pos) * p.inv_freq[j];
    sincosf(angle, &sin_j[j], &cos_j[j]);
  }
  __syncthreads();

  bf16* row = p.qkv + t * (hq + 2 * hkv) * int64_t{d};
  // Cache layout [num_blocks, Hkv, block_size, d]: kv head h of this token starts at
  // ((block * Hkv + h) * block_size + offset) * d.
  const int64_t block = slot / p.block_size, offset = slot % p.block_size;
  auto cache_at = [&](int h) { return ((block * hkv + h) * p.block_size + offset) * d; };

  // Rotate q heads 0..Hq-1 and k heads Hq..Hq+Hkv-1 alike (they are adjacent in the row).
  const int vecs_per_head = half / kVec;
  for (int i = threadIdx.x; i < (hq + hkv) * vecs_per_head; i += blockDim.x) {
    const int h = i / vecs_per_head, j = (i % vecs_per_head) * kVec;
    bf16* x = row + h * d;
    float x0[kVec], x1[kVec], r0[kVec], r1[kVec];
    LoadBf16<kVec>(x + j, x0);
    LoadBf16<kVec>(x + half + j, x1);
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float c = cos_j[j + e], s = sin_j[j + e];
      r0[e] = x0[e] * c - x1[e] * s;
      r1[e] = x1[e] * c + x0[e] * s;
    }
    StoreBf16<kVec>(x + j, r0);
    StoreBf16<kVec>(x + half + j, r1);
    if (h >= hq) {
      bf16* k = p.k_cache + cache_at(h - hq);
      StoreBf16<kVec>(k + j, r0);
      StoreBf16<kVec>(k + half + j, r1);
    }
  }

  // Copy the v heads.
  const bf16* v = row + (hq + hkv) * d;
  const int vecs_per_v_head = d / kVec;
  for (int i = threadIdx.x; i < hkv * vecs_per_v_head; i += blockDim.x) {
    const int h = i / vecs_per_v_head, j = (i % vecs_per_v_head) * kVec;
    float x[kVec];
    LoadBf16<kVec>(v + h * d + j, x);
    StoreBf16<kVec>(p.v_cache + cache_at(h) + j, x);
  }
}

}  // namespace

cudaError_t LaunchRopeAndStoreKv(const RopeStoreKvParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  const size_t smem = sizeof(float) * p.head_dim;  // cos and sin of d/2 angles
  const unsigned grid = static_cast<unsigned>(p.num_tokens);
  if ((p.head_dim / 2) % 8 == 0 && IsAligned(p.qkv, 16) && IsAligned(p.k_cache, 16) &&
      IsAligned(p.v_cache, 16)) {
    RopeAndStoreKvKernel<8><<<grid, kThreads, smem, stream>>>(p);
  } else {
    RopeAndStoreKvKernel<1><<<grid, kThreads, smem, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace prefixd::cuda
