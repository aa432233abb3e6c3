// kernels/cuda/cuda_gemm.cc — LtGemm: cached cuBLASLt plans for the model's gemms.
#include "kernels/cuda/cuda_gemm.h"

#include <algorithm>

#include "base/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace prefixd::cuda {
namespace {

// The alignment cuBLASLt may assume for a pointer: its largest power-of-two divisor, at most
// 256 (cuBLASLt's default assumption, which a Rows() view need not meet).
uint32_t AlignmentOf(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  if (address == 0) return 256;
  return static_cast<uint32_t>(std::min<uintptr_t>(256, address & (~address + 1)));
}

}  // namespace

struct LtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

LtGemm::LtGemm() {
  PREFIXD_CUBLAS_CHECK(cublasLtCreate(&handle_));
  PREFIXD_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
}

LtGemm::~LtGemm() {
  plans_.clear();
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

LtGemm::Plan& LtGemm::PlanFor(const PlanKey& key) {
  std::unique_ptr<Plan>& slot = plans_[key];
  if (slot != nullptr) return *slot;
  auto plan = std::make_unique<Plan>();
  PREFIXD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, no_transpose = CUBLAS_OP_N;
  PREFIXD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                      &transpose, sizeof(transpose)));
  PREFIXD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                      &no_transpose, sizeof(no_transpose)));
  if (key.bias_epilogue) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_16BF;
    PREFIXD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                        &epilogue, sizeof(epilogue)));
    PREFIXD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  // Column-major views of the row-major tensors (see the class comment).
  const auto k = static_cast<uint64_t>(key.k), n = static_cast<uint64_t>(key.n),
             m = static_cast<uint64_t>(key.m);
  PREFIXD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, k, n, key.k));
  PREFIXD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, k, m, key.k));
  PREFIXD_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan->d, key.out_f32 ? CUDA_R_32F : CUDA_R_16BF, n, m, key.n));

  cublasLtMatmulPreference_t preference = nullptr;
  PREFIXD_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace_bytes = kWorkspaceBytes;
  PREFIXD_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof(workspace_bytes)));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_out},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_out}};
  for (const auto& [attribute, bytes] : alignments) {
    PREFIXD_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(preference, attribute, &bytes, sizeof(bytes)));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      handle_, plan->op, plan->a, plan->b, plan->d, plan->d, preference, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  PREFIXD_CHECK(status == CUBLAS_STATUS_SUCCESS && found > 0,
                "Gemm: cuBLASLt has no algorithm for out[", key.m, ", ", key.n, "] = x[", key.m,
                ", ", key.k, "] · w[", key.n, ", ", key.k, "]ᵀ (bf16 in, ",
                key.out_f32 ? "f32" : "bf16", " out", key.bias_epilogue ? ", bias" : "",
                ", alignments x ", key.align_x, " w ", key.align_w, " out ", key.align_out,
                "): ", cublasLtGetStatusString(status));
  plan->algo = result.algo;
  slot = std::move(plan);
  return *slot;
}

void LtGemm::Run(const __nv_bfloat16* x, const __nv_bfloat16* w, const __nv_bfloat16* bias,
                 int64_t m, int64_t n, int64_t k, void* out, bool out_f32, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // An empty sum: cuBLASLt wants k >= 1.
    if (out_f32) {
      PREFIXD_CUDA_CHECK(LaunchFill(static_cast<float*>(out), m * n, 0.0f, stream));
      if (bias != nullptr) {
        PREFIXD_CUDA_CHECK(LaunchAddBias(bias, m, n, static_cast<float*>(out), stream));
      }
    } else {
      PREFIXD_CUDA_CHECK(LaunchFill(static_cast<__nv_bfloat16*>(out), m * n, 0.0f, stream));
      if (bias != nullptr) {
        PREFIXD_CUDA_CHECK(LaunchAddBias(bias, m, n, static_cast<__nv_bfloat16*>(out), stream));
      }
    }
    return;
  }
  // The epilogue adds a bf16 bias to a bf16 output; an f32 output (the logits) gets it from a
  // small kernel afterwards, as does a bias not 16-byte aligned.
  const bool bias_epilogue = bias != nullptr && !out_f32 && AlignmentOf(bias) >= 16;
  const PlanKey key{
      m, n, k, out_f32, bias_epilogue, AlignmentOf(x), AlignmentOf(w), AlignmentOf(out)};
  Plan& plan = PlanFor(key);
  if (bias_epilogue) {
    PREFIXD_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &bias, sizeof(bias)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  PREFIXD_CUBLAS_CHECK(cublasLtMatmul(handle_, plan.op, &alpha, w, plan.a, x, plan.b, &beta, out,
                                      plan.d, out, plan.d, &plan.algo, workspace_, kWorkspaceBytes,
                                      stream));
  if (bias != nullptr && !bias_epilogue) {
    if (out_f32) {
      PREFIXD_CUDA_CHECK(LaunchAddBias(bias, m, n, static_cast<float*>(out), stream));
    } else {
      PREFIXD_CUDA_CHECK(LaunchAddBias(bias, m, n, static_cast<__nv_bfloat16*>(out), stream));
    }
  }
}

}  // namespace prefixd::cuda
