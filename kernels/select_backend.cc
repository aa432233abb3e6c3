// kernels/select_backend.cc — see select_backend.h.
#include "kernels/select_backend.h"

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#ifdef PREFIXD_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace prefixd {

bool CudaBackendBuilt() {
#ifdef PREFIXD_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const std::string& name, int cpu_threads,
                                                     int cuda_device) {
  if (name != "auto" && name != "cpu" && name != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown backend \"", name, "\": use auto, cpu or cuda"));
  }
  if (cpu_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CPU threads must be >= 0 (0: every core), got ", cpu_threads));
  }
  if (cuda_device < 0) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA device must be >= 0, got ", cuda_device));
  }
  if (name == "cpu") return MakeCpuBackend(cpu_threads);
#ifdef PREFIXD_HAVE_CUDA
  if (!CudaDeviceAvailable()) {
    if (name == "cuda") {
      return absl::FailedPreconditionError(
          "backend cuda: no CUDA device is visible (no driver, no GPU, or "
          "CUDA_VISIBLE_DEVICES hides them)");
    }
    return MakeCpuBackend(cpu_threads);
  }
  if (const absl::Status usable = CudaDeviceUsable(cuda_device); !usable.ok()) {
    // A GPU that cannot run the CUDA backend: an error when it was asked for by name; with
    // auto, the CPU, saying why.
    if (name == "cuda") {
      return absl::FailedPreconditionError(absl::StrCat("backend cuda: ", usable.message()));
    }
    std::fprintf(stderr, "prefixd: not using the GPU (%s); running on the CPU\n",
                 std::string(usable.message()).c_str());
    return MakeCpuBackend(cpu_threads);
  }
  return MakeCudaBackend(cuda_device);
#else
  if (name == "cuda") {
    return absl::FailedPreconditionError(
        "backend cuda: this prefixd was built without CUDA (nvcc was not found at configure "
        "time)");
  }
#endif
  return MakeCpuBackend(cpu_threads);
}

}  // namespace prefixd
