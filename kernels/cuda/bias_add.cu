// kernels/cuda/bias_add.cu — out[r, :] += bias, for the gemms whose bias cuBLASLt's epilogue
// does not add (f32 outputs, and k == 0). Grid (rows, column chunks of 256), one element per
// thread.
#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void AddTo(float* p, float x) { *p += x; }
__device__ __forceinline__ void AddTo(bf16* p, float x) {
  *p = __float2bfloat16_rn(__bfloat162float(*p) + x);
}

// bias: [cols], out: [rows, cols]
template <typename T>
__global__ void AddBiasKernel(const bf16* bias, int64_t cols, T* out) {
  const int64_t col = blockIdx.y * int64_t{blockDim.x} + threadIdx.x;
  if (col >= cols) return;
  AddTo(out + blockIdx.x * cols + col, __bfloat162float(bias[col]));
}

template <typename T>
cudaError_t Launch(const bf16* bias, int64_t rows, int64_t cols, T* out, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(rows),
                  static_cast<unsigned>((cols + kThreads - 1) / kThreads));
  AddBiasKernel<<<grid, kThreads, 0, stream>>>(bias, cols, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchAddBias(const bf16* bias, int64_t rows, int64_t cols, float* out,
                          cudaStream_t stream) {
  return Launch(bias, rows, cols, out, stream);
}
cudaError_t LaunchAddBias(const bf16* bias, int64_t rows, int64_t cols, bf16* out,
                          cudaStream_t stream) {
  return Launch(bias, rows, cols, out, stream);
}

}  // namespace prefixd::cuda
