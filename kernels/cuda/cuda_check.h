// kernels/cuda/cuda_check.h — crash with the CUDA or cuBLAS error's name when a runtime call
// fails. Host code only (compiled by the host compiler; the .cu files return cudaError_t
// and leave the checking to their callers).
#ifndef PREFIXD_KERNELS_CUDA_CUDA_CHECK_H_
#define PREFIXD_KERNELS_CUDA_CUDA_CHECK_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "base/check.h"

// PREFIXD_CUDA_CHECK(cudaMemcpyAsync(...)) — crashes unless the call returns cudaSuccess.
// A kernel fault that happened earlier on the stream surfaces at the next call that
// synchronises (Synchronize, CopyToHost, Sample), so its message names that call.
#define PREFIXD_CUDA_CHECK(expr)                                             \
  do {                                                                       \
    const cudaError_t prefixd_cuda_status_ = (expr);                         \
    PREFIXD_CHECK(prefixd_cuda_status_ == cudaSuccess, #expr,                \
                  " failed: ", cudaGetErrorName(prefixd_cuda_status_), " (", \
                  cudaGetErrorString(prefixd_cuda_status_), ")");            \
  } while (false)

#define PREFIXD_CUBLAS_CHECK(expr)                                                  \
  do {                                                                              \
    const cublasStatus_t prefixd_cublas_status_ = (expr);                           \
    PREFIXD_CHECK(prefixd_cublas_status_ == CUBLAS_STATUS_SUCCESS, #expr,           \
                  " failed: ", cublasLtGetStatusName(prefixd_cublas_status_), " (", \
                  cublasLtGetStatusString(prefixd_cublas_status_), ")");            \
  } while (false)

#endif  // PREFIXD_KERNELS_CUDA_CUDA_CHECK_H_
