// kernels/cpu/cpu_backend.h — the fp32 reference backend of kernels.h.
//
// Everything lives in host memory in fp32 (the KV cache included); ops run synchronously
// on the calling thread plus a ThreadPool, and gemms go to OpenBLAS. The op bodies are
// split by concept: cpu_backend.cc (memory, elementwise, gemm, rope), cpu_attention.cc,
// cpu_sampling.cc.
#ifndef PREFIXD_KERNELS_CPU_CPU_BACKEND_H_
#define PREFIXD_KERNELS_CPU_CPU_BACKEND_H_

#include <string>

#include "kernels/cpu/thread_pool.h"
#include "kernels/kernels.h"

namespace prefixd {

// One backend is driven by one thread at a time (the scheduler). OpenBLAS's thread count
// is process-wide: each CpuBackend sets it to its own thread count before every gemm.
class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads);  // >= 1

  DeviceKind device() const override { return DeviceKind::kCpu; }
  DType compute_dtype() const override { return DType::kF32; }
  std::string Describe() const override;

  DeviceTensor Allocate(DType dtype, std::initializer_list<int64_t> dims) override;
  void Free(void* data) override;
  void CopyFromHost(const void* src, Tensor& dst) override;
  void CopyToHost(const Tensor& src, void* dst) override;
  void ConvertFromHost(const void* src, DType src_dtype, Tensor& dst) override;
  void Synchronize() override {}
  bool UsesSharedPrefixGroups() const override { return true; }
  void* AllocateHost(size_t bytes) override;
  void FreeHost(void* data) override;
  // Copies at once (memcpy, spread over the pool); WaitForCopies has nothing to wait for.
  void CopyAsync(absl::Span<const MemCopy> copies, CopyDirection direction) override;
  void WaitForCopies() override {}

  void FillRandom(Tensor& t, uint64_t seed, float scale) override;
  void Fill(Tensor& t, float value) override;

  void Embedding(const Tensor& table, const Tensor& ids, Tensor& out) override;
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                  Tensor& out) override;
  void Gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override;
  void RopeAndStoreKv(Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                      const Tensor& slots, const AttentionShape& shape, KvCacheLayer& kv) override;
  void PagedAttention(const Tensor& qkv, const AttentionMetadata& meta, const AttentionShape& shape,
                      const KvCacheLayer& kv, float scale, Tensor& out) override;
  void SiluMul(const Tensor& gate_up, Tensor& out) override;
  void GatherRows(const Tensor& x, const Tensor& rows, Tensor& out) override;
  void Sample(const Tensor& logits, absl::Span<const SamplingRow> rows,
              absl::Span<SampledToken> out) override;

 private:
  // Runs fn over [0, n) in ranges of `grain`; `grain` is sized so that a range is worth
  // waking a thread for (tens of microseconds of work).
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
    pool_.ParallelFor(n, grain, fn);
  }

  ThreadPool pool_;
};

}  // namespace prefixd

#endif  // PREFIXD_KERNELS_CPU_CPU_BACKEND_H_
