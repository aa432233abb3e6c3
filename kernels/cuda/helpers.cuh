// kernels/cuda/helpers.cuh — the device helpers every kernel shares: warp and block
// reductions and scans, bf16 vector loads and stores, cp.async / ldmatrix / mma wrappers,
// and a device-side invariant check. One place, as in zeux/calm's helpers.cuh.
#ifndef PREFIXD_KERNELS_CUDA_HELPERS_CUH_
#define PREFIXD_KERNELS_CUDA_HELPERS_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <type_traits>

namespace prefixd::cuda {

using bf16 = __nv_bfloat16;

inline constexpr unsigned kFullMask = 0xffffffffu;
inline constexpr int kWarpSize = 32;

// A broken invariant found on the device (an out-of-range id or slot from the host: a bug
// in the caller). Prints where and why, then traps: the launch fails and the next call that
// synchronises with the stream crashes on the host with cudaErrorLaunchFailure.
#define PREFIXD_DEVICE_CHECK(condition, format, ...)                                         \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      printf("%s:%d: device check failed: %s: " format "\n", __FILE__, __LINE__, #condition, \
             __VA_ARGS__);                                                                   \
      __trap();                                                                              \
    }                                                                                        \
  } while (false)

// ---- Reductions ----

template <typename T>
__device__ __forceinline__ T WarpReduceSum(T x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(kFullMask, x, offset);
  }
  return x;
}

__device__ __forceinline__ float WarpReduceMax(float x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    x = fmaxf(x, __shfl_xor_sync(kFullMask, x, offset));
  }
  return x;
}

__device__ __forceinline__ int WarpReduceMin(int x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    x = min(x, __shfl_xor_sync(kFullMask, x, offset));
  }
  return x;
}

// Block-wide reductions: every thread of the block must call them and gets the result.
// blockDim.x is a multiple of 32 (at most 1024); `scratch` is __shared__ T[32]. The leading
// barrier lets consecutive reductions share one scratch array.
template <typename T>
__device__ __forceinline__ T BlockReduceSum(T x, T* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  x = WarpReduceSum(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : T(0);
  return WarpReduceSum(x);
}

__device__ __forceinline__ float BlockReduceMax(float x, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  x = WarpReduceMax(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : -INFINITY;
  return WarpReduceMax(x);
}

__device__ __forceinline__ int BlockReduceMin(int x, int* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  x = WarpReduceMin(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : INT_MAX;
  return WarpReduceMin(x);
}

// Inclusive prefix sum over the block in thread order; `*total` gets the block's sum.
// Same calling rules as the reductions.
template <typename T>
__device__ __forceinline__ T BlockInclusiveSum(T x, T* scratch, T* total) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = static_cast<int>(blockDim.x / kWarpSize);
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset <<= 1) {
    const T y = __shfl_up_sync(kFullMask, x, offset);
    if (lane >= offset) x += y;
  }
  __syncthreads();
  if (lane == kWarpSize - 1) scratch[warp] = x;
  __syncthreads();
  if (warp == 0) {
    // Scan of the warp totals, each lane reading and writing only its own entry.
    T w = lane < warps ? scratch[lane] : T(0);
#pragma unroll
    for (int offset = 1; offset < kWarpSize; offset <<= 1) {
      const T y = __shfl_up_sync(kFullMask, w, offset);
      if (lane >= offset) w += y;
    }
    if (lane < warps) scratch[lane] = w;
  }
  __syncthreads();
  if (warp > 0) x += scratch[warp - 1];
  *total = scratch[warps - 1];
  return x;
}

// ---- Paged KV cache addressing ----

// Position -> (block index, offset in block). Block sizes are powers of two in practice (the
// engine requires it), which makes these a shift and a mask instead of an integer division
// per key; any other size still works.
struct BlockDivider {
  int size;
  int shift;  // log2(size) when size is a power of two, else -1

  __device__ __forceinline__ explicit BlockDivider(int block_size) : size(block_size), shift(-1) {
    if ((block_size & (block_size - 1)) == 0) {
      shift = 0;
      while ((1 << shift) < block_size) ++shift;
    }
  }
  __device__ __forceinline__ int Block(int position) const {
    return shift >= 0 ? position >> shift : position / size;
  }
  __device__ __forceinline__ int Offset(int position) const {
    return shift >= 0 ? position & (size - 1) : position % size;
  }
};

// ---- bf16 vectors ----

// Loads N consecutive bf16 (N in {1, 2, 4, 8}; p aligned to 2N bytes) as floats.
template <int N>
__device__ __forceinline__ void LoadBf16(const bf16* p, float (&out)[N]) {
  static_assert(N == 1 || N == 2 || N == 4 || N == 8, "1, 2, 4 or 8 elements");
  if constexpr (N == 1) {
    out[0] = __bfloat162float(*p);
  } else {
    using Word = std::conditional_t<N == 8, uint4, std::conditional_t<N == 4, uint2, uint32_t>>;
    const Word word = *reinterpret_cast<const Word*>(p);
    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&word);
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const float2 f = __bfloat1622float2(pairs[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
}

// Stores N floats as bf16 (round to nearest even), the same N and alignment as LoadBf16.
template <int N>
__device__ __forceinline__ void StoreBf16(bf16* p, const float (&in)[N]) {
  static_assert(N == 1 || N == 2 || N == 4 || N == 8, "1, 2, 4 or 8 elements");
  if constexpr (N == 1) {
    *p = __float2bfloat16_rn(in[0]);
  } else {
    using Word = std::conditional_t<N == 8, uint4, std::conditional_t<N == 4, uint2, uint32_t>>;
    Word word;
    __nv_bfloat162* pairs = reinterpret_cast<__nv_bfloat162*>(&word);
#pragma unroll
    for (int i = 0; i < N / 2; ++i) pairs[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
    *reinterpret_cast<Word*>(p) = word;
  }
}

// 8 bf16 held in a uint4 (one 16-byte load), as floats.
__device__ __forceinline__ void UnpackBf16x8(const uint4& word, float (&out)[8]) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&word);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(pairs[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// Two floats as one register of two bf16, the first in the low half (the mma fragment order).
__device__ __forceinline__ uint32_t PackBf16x2(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// True when p is aligned to `bytes` (a power of two).
__host__ __device__ __forceinline__ bool IsAligned(const void* p, size_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

// ---- sm_80+ data movement and tensor-core instructions (PTX) ----

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes global -> shared without staging in registers. When !valid nothing is
// read and the 16 bytes are zero-filled (src-size 0), so padding rows never hold stale data.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(smem)),
               "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits for all of this thread's cp.async groups; a __syncthreads() must follow before other
// threads read the data.
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_all;\n" ::); }

// Copies kRows rows of kHeadDim bf16 into shared memory [kRows][kStrideE] with 16-byte
// cp.async by the CTA's kThreads threads; row r comes from src(r), or is zero-filled when
// !valid(r) (any_valid_address: a readable address cp.async is given, reading nothing).
template <int kRows, int kHeadDim, int kStrideE, int kThreads, typename RowSource,
          typename RowValid>
__device__ __forceinline__ void LoadRowsAsync(bf16* tile, RowSource src, RowValid valid,
                                              const bf16* any_valid_address) {
  constexpr int kChunksPerRow = kHeadDim / 8;
  for (int i = threadIdx.x; i < kRows * kChunksPerRow; i += kThreads) {
    const int r = i / kChunksPerRow, c = (i % kChunksPerRow) * 8;
    const bool ok = valid(r);
    CpAsync16(tile + r * kStrideE + c, ok ? src(r) + c : any_valid_address, ok);
  }
}

// Four 8x8 b16 matrices from shared memory. Lanes 8i..8i+7 give the row addresses of matrix
// i; lane l receives, of each matrix, row l/4, columns 2(l%4) and 2(l%4)+1 (with .trans: rows
// 2(l%4) and 2(l%4)+1 of column l/4) — the mma.m16n8k16 fragment layouts.
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(smem)));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(smem)));
}

// c[16x8] += a[16x16] · b[16x8], bf16 inputs, fp32 accumulators. With g = lane / 4 and
// t = lane % 4: a = {(g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)};
// b = {(k 2t..2t+1, n g), (k 2t+8..2t+9, n g)}; c = {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}.
__device__ __forceinline__ void MmaBf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- Shared random stream (kernels.h: RandomValue) ----

__host__ __device__ __forceinline__ uint64_t SplitMix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace prefixd::cuda

#endif  // PREFIXD_KERNELS_CUDA_HELPERS_CUH_
