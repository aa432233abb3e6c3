// kernels/cuda/rmsnorm.cu — RmsNorm and the fused AddRmsNorm:
//   [residual = bf16(residual + x), then] out = v / sqrt(mean(v^2) + eps) * weight,
// v being x (RmsNorm) or the rounded residual (AddRmsNorm), statistics in fp32.
//
// Grid (rows), up to 512 threads: one CTA per row. Pass 1 reads the row (and writes the new
// residual), a block reduction gives the sum of squares, pass 2 re-reads the same elements
// (the same thread, from L1/L2) and writes out. Each thread touches the same columns in both
// passes, so out may alias x. Rows are read in 16-byte vectors when dim % 8 == 0 and every
// pointer is 16-byte aligned, else element by element.
#include <algorithm>

#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kMaxThreads = 512;

// residual (kAddResidual only), x, out: [rows, dim]; weight: [dim].
template <int kVec, bool kAddResidual>
__global__ void RmsNormKernel(bf16* residual, const bf16* x, const bf16* weight, float eps,
                              int64_t dim, bf16* out) {
  __shared__ float scratch[32];
  const int64_t offset = blockIdx.x * dim;
  const bf16* x_row = x + offset;
  bf16* res_row = kAddResidual ? residual + offset : nullptr;
  const bf16* in_row = kAddResidual ? res_row : x_row;  // what pass 2 normalises

  float sum_sq = 0.0f;
  for (int64_t c = threadIdx.x * int64_t{kVec}; c < dim; c += int64_t{blockDim.x} * kVec) {
    float v[kVec];
    LoadBf16<kVec>(x_row + c, v);
    if constexpr (kAddResidual) {
      float r[kVec];
      LoadBf16<kVec>(res_row + c, r);
      // Normalise the residual as stored (rounded), so out = RmsNorm(residual) exactly.
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        v[i] = __bfloat162float(__float2bfloat16_rn(r[i] + v[i]));
      }
      StoreBf16<kVec>(res_row + c, v);
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) sum_sq += v[i] * v[i];
  }
  sum_sq = BlockReduceSum(sum_sq, scratch);
  const float inv_rms = 1.0f / sqrtf(sum_sq / static_cast<float>(dim) + eps);

  bf16* out_row = out + offset;
  for (int64_t c = threadIdx.x * int64_t{kVec}; c < dim; c += int64_t{blockDim.x} * kVec) {
    float v[kVec], w[kVec];
    LoadBf16<kVec>(in_row + c, v);
    LoadBf16<kVec>(weight + c, w);
#pragma unroll
    for (int i = 0; i < kVec; ++i) v[i] = v[i] * inv_rms * w[i];
    StoreBf16<kVec>(out_row + c, v);
  }
}

template <bool kAddResidual>
cudaError_t Launch(bf16* residual, const bf16* x, const bf16* weight, float eps, int64_t rows,
                   int64_t dim, bf16* out, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return cudaSuccess;
  const bool vectorized = dim % 8 == 0 && IsAligned(x, 16) && IsAligned(weight, 16) &&
                          IsAligned(out, 16) && (!kAddResidual || IsAligned(residual, 16));
  const int vec = vectorized ? 8 : 1;
  // Enough threads for one pass over the row, in whole warps, at most kMaxThreads.
  const int64_t vectors = (dim + vec - 1) / vec;
  const int threads =
      static_cast<int>(std::clamp<int64_t>((vectors + 31) / 32 * 32, 32, kMaxThreads));
  const unsigned grid = static_cast<unsigned>(rows);
  if (vectorized) {
    RmsNormKernel<8, kAddResidual>
        <<<grid, threads, 0, stream>>>(residual, x, weight, eps, dim, out);
  } else {
    RmsNormKernel<1, kAddResidual>
        <<<grid, threads, 0, stream>>>(residual, x, weight, eps, dim, out);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchRmsNorm(const bf16* x, const bf16* weight, float eps, int64_t rows, int64_t dim,
                          bf16* out, cudaStream_t stream) {
  return Launch<false>(nullptr, x, weight, eps, rows, dim, out, stream);
}

cudaError_t LaunchAddRmsNorm(bf16* residual, const bf16* x, const bf16* weight, float eps,
                             int64_t rows, int64_t dim, bf16* out, cudaStream_t stream) {
  return Launch<true>(residual, x, weight, eps, rows, dim, out, stream);
}

}  // namespace prefixd::cuda
