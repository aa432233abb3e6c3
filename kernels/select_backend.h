// kernels/select_backend.h — the backend a binary runs on, chosen by name: "cuda", "cpu",
// or "auto" (CUDA when this build has it and a device is present, else the CPU).
//
// Link kernels_select; it brings kernels_cuda along when nvcc was found at configure time.
#ifndef PREFIXD_KERNELS_SELECT_BACKEND_H_
#define PREFIXD_KERNELS_SELECT_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/kernels.h"

namespace prefixd {

// Whether this build contains the CUDA backend.
bool CudaBackendBuilt();

// Makes the backend `name` names ("auto", "cpu" or "cuda"). cpu_threads: the CPU backend's
// threads (0: every core); cuda_device: the device the CUDA backend runs on. Errors:
// INVALID_ARGUMENT for an unknown name, FAILED_PRECONDITION when "cuda" is asked for and
// this build has no CUDA backend or no usable device is present.
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const std::string& name, int cpu_threads,
                                                     int cuda_device = 0);

}  // namespace prefixd

#endif  // PREFIXD_KERNELS_SELECT_BACKEND_H_
