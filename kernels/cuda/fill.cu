// kernels/cuda/fill.cu — FillRandom and Fill: every element written independently, so one
// grid-stride loop each.
//
// FillRandom reproduces kernels.h's RandomValue bit for bit: the same SplitMix64 integer
// arithmetic, the 24-bit uniform (exact in fp32), 2u - 1 (exact), and one rounded product,
// written with explicit _rn intrinsics so that no contraction can change the rounding. bf16
// tensors get that fp32 value rounded to nearest even, as the CPU's value would be.
#include <algorithm>

#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

int64_t GridFor(int64_t n) {
  return std::min(kMaxBlocks, std::max<int64_t>(1, (n + kThreads - 1) / kThreads));
}

__device__ __forceinline__ float RandomValue(uint64_t seed, uint64_t index, float scale) {
  constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;
  const uint64_t bits = SplitMix64(seed + (index + 1) * kGoldenGamma) >> 40;
  const float u = __fmul_rn(static_cast<float>(bits), 1.0f / 16777216.0f);  // exact
  return __fmul_rn(scale, __fsub_rn(__fmul_rn(2.0f, u), 1.0f));
}

__device__ __forceinline__ void Put(float* out, int64_t i, float x) { out[i] = x; }
__device__ __forceinline__ void Put(bf16* out, int64_t i, float x) {
  out[i] = __float2bfloat16_rn(x);
}

// out: [n]
template <typename T>
__global__ void FillRandomKernel(T* out, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    Put(out, i, RandomValue(seed, static_cast<uint64_t>(i), scale));
  }
}

// out: [n]
template <typename T>
__global__ void FillKernel(T* out, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    Put(out, i, value);
  }
}

template <typename T>
cudaError_t FillRandom(T* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  FillRandomKernel<<<GridFor(n), kThreads, 0, stream>>>(out, n, seed, scale);
  return cudaGetLastError();
}

template <typename T>
cudaError_t Fill(T* out, int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  FillKernel<<<GridFor(n), kThreads, 0, stream>>>(out, n, value);
  return cudaGetLastError();
}

}  // namespace

cudaError_t CheckKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, FillKernel<float>);
}

cudaError_t LaunchFillRandom(float* out, int64_t n, uint64_t seed, float scale,
                             cudaStream_t stream) {
  return FillRandom(out, n, seed, scale, stream);
}
cudaError_t LaunchFillRandom(bf16* out, int64_t n, uint64_t seed, float scale,
                             cudaStream_t stream) {
  return FillRandom(out, n, seed, scale, stream);
}
cudaError_t LaunchFill(float* out, int64_t n, float value, cudaStream_t stream) {
  return Fill(out, n, value, stream);
}
cudaError_t LaunchFill(bf16* out, int64_t n, float value, cudaStream_t stream) {
  return Fill(out, n, value, stream);
}

}  // namespace prefixd::cuda
