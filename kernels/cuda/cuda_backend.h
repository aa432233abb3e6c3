// kernels/cuda/cuda_backend.h — the CUDA backend of kernels.h: bf16 storage (weights,
// activations, KV cache) with fp32 accumulation, on one device and one stream it owns.
//
// Plain C++: includes no CUDA header, so any target may include it. Built only when nvcc is
// found (PREFIXD_HAVE_CUDA); link kernels_cuda.
#ifndef PREFIXD_KERNELS_CUDA_CUDA_BACKEND_H_
#define PREFIXD_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/status.h"
#include "kernels/kernels.h"

namespace prefixd {

// True when the CUDA runtime sees at least one device (false without a driver or a GPU).
// Never crashes, so tests and benchmarks use it to skip.
bool CudaDeviceAvailable();

// OK when MakeCudaBackend(device) can run there: the device exists, is sm_80 or newer
// (bf16 tensor cores), and this build has code for it; else FAILED_PRECONDITION saying why.
absl::Status CudaDeviceUsable(int device);

// A backend on CUDA device `device`. Crashes, naming the reason, if that device cannot be
// used (check CudaDeviceUsable first to answer with a status instead). See
// kernels/cuda/cuda_backend_impl.h for the stream, synchronisation and scratch memory rules.
std::unique_ptr<Backend> MakeCudaBackend(int device = 0);

}  // namespace prefixd

#endif  // PREFIXD_KERNELS_CUDA_CUDA_BACKEND_H_
