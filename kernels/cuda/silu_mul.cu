// kernels/cuda/silu_mul.cu — out = silu(gate) * up, gate_up = [gate | up] per row, in fp32
// with one rounding to bf16 at the end.
//
// Grid (rows, column chunks of 256 threads * kVec), one vector of kVec columns per thread;
// 16-byte vectors when inter % 8 == 0 and the pointers are 16-byte aligned.
#include "kernels/cuda/helpers.cuh"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

constexpr int kThreads = 256;

// gate_up: [rows, 2 inter], out: [rows, inter]
template <int kVec>
__global__ void SiluMulKernel(const bf16* gate_up, int64_t inter, bf16* out) {
  const int64_t row = blockIdx.x;
  const int64_t col = (blockIdx.y * int64_t{blockDim.x} + threadIdx.x) * kVec;
  if (col >= inter) return;
  float gate[kVec], up[kVec], o[kVec];
  LoadBf16<kVec>(gate_up + row * 2 * inter + col, gate);
  LoadBf16<kVec>(gate_up + row * 2 * inter + inter + col, up);
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    // silu(g) = g * sigmoid(g); for g -> -inf, expf(-g) = inf gives -0, not NaN.
    o[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
  }
  StoreBf16<kVec>(out + row * inter + col, o);
}

template <int kVec>
cudaError_t Launch(const bf16* gate_up, int64_t rows, int64_t inter, bf16* out,
                   cudaStream_t stream) {
  const int64_t vectors = (inter + kVec - 1) / kVec;
  const dim3 grid(static_cast<unsigned>(rows),
                  static_cast<unsigned>((vectors + kThreads - 1) / kThreads));
  SiluMulKernel<kVec><<<grid, kThreads, 0, stream>>>(gate_up, inter, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSiluMul(const bf16* gate_up, int64_t rows, int64_t inter, bf16* out,
                          cudaStream_t stream) {
  if (rows == 0 || inter == 0) return cudaSuccess;
  if (inter % 8 == 0 && IsAligned(gate_up, 16) && IsAligned(out, 16)) {
    return Launch<8>(gate_up, rows, inter, out, stream);
  }
  return Launch<1>(gate_up, rows, inter, out, stream);
}

}  // namespace prefixd::cuda
