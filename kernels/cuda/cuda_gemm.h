// kernels/cuda/cuda_gemm.h — Backend::Gemm on the device: cuBLASLt, bf16 inputs, fp32
// compute, bf16 or f32 output, bias in the epilogue.
#ifndef PREFIXD_KERNELS_CUDA_CUDA_GEMM_H_
#define PREFIXD_KERNELS_CUDA_CUDA_GEMM_H_

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/container/flat_hash_map.h"

namespace prefixd::cuda {

// Runs out[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n]), all row-major. In cuBLASLt's column-major
// terms the same memory is D (n x m, ld n) = Aᵀ · B with A = w seen as k x n (ld k) and B = x
// seen as k x m (ld k); the bias epilogue adds bias[i] to row i of D, i.e. to column i of
// out. One plan (descriptors + heuristic algorithm) per distinct shape,
// output type and pointer alignment, made on first use and cached, so a steady-state call
// only enqueues the matmul: no allocation, no synchronisation (CUDA-graph capturable).
//
// Not thread-safe: owned by one CudaBackend. Create it with the backend's device current.
class LtGemm {
 public:
  LtGemm();  // the cuBLASLt handle and a kWorkspaceBytes workspace on the current device
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // x: [m, k], w: [n, k], bias: [n] or nullptr (bf16); out: [m, n], f32 if out_f32 else bf16.
  void Run(const __nv_bfloat16* x, const __nv_bfloat16* w, const __nv_bfloat16* bias, int64_t m,
           int64_t n, int64_t k, void* out, bool out_f32, cudaStream_t stream);

  // cuBLASLt's recommended workspace for Hopper.
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

 private:
  struct PlanKey {
    int64_t m, n, k;
    bool out_f32;
    bool bias_epilogue;
    uint32_t align_x, align_w, align_out;  // bytes, powers of two up to 256

    bool operator==(const PlanKey&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const PlanKey& key) {
      return H::combine(std::move(h), key.m, key.n, key.k, key.out_f32, key.bias_epilogue,
                        key.align_x, key.align_w, key.align_out);
    }
  };
  struct Plan;  // owns the descriptors

  Plan& PlanFor(const PlanKey& key);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  absl::flat_hash_map<PlanKey, std::unique_ptr<Plan>> plans_;
};

}  // namespace prefixd::cuda

#endif  // PREFIXD_KERNELS_CUDA_CUDA_GEMM_H_
