// kernels/cuda/convert.cu — f32 or f16 to bf16 (round to nearest even), for ConvertFromHost's
// staged chunks. Elementwise: one grid-stride loop.
#include <algorithm>

#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }  // exact

// in, out: [n]
template <typename T>
__global__ void ConvertToBf16Kernel(const T* in, int64_t n, bf16* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __float2bfloat16_rn(ToFloat(in[i]));
  }
}

template <typename T>
cudaError_t ConvertToBf16(const T* in, int64_t n, bf16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int64_t blocks = std::min(kMaxBlocks, (n + kThreads - 1) / kThreads);
  ConvertToBf16Kernel<<<blocks, kThreads, 0, stream>>>(in, n, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchConvertToBf16(const float* in, int64_t n, bf16* out, cudaStream_t stream) {
  return ConvertToBf16(in, n, out, stream);
}
cudaError_t LaunchConvertToBf16(const __half* in, int64_t n, bf16* out, cudaStream_t stream) {
  return ConvertToBf16(in, n, out, stream);
}

}  // namespace prefixd::cuda
