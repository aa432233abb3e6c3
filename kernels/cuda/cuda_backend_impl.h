// kernels/cuda/cuda_backend_impl.h — CudaBackend, the CUDA implementation of kernels.h's
// Backend (bf16 storage, fp32 accumulation). Internal to kernels/cuda: users include
// cuda_backend.h and call MakeCudaBackend().
//
// Streams and synchronisation. Every op is enqueued on the one stream the backend owns and
// returns without waiting for the device:
//   - CopyFromHost enqueues the copy. For pageable host memory (what the engine passes)
//     CUDA stages the bytes before returning, so `src` may be reused at once; pinned memory
//     (cudaMallocHost) must stay unchanged until the next Synchronize().
//   - ConvertFromHost stages `src` through pinned buffers; `src` may be reused on return.
//   - CopyToHost and Sample wait for the stream (every op before them) and return with the
//     host data filled in.
//   - Synchronize waits for the stream; an asynchronous fault (such as a device-side check
//     of an out-of-range block id) crashes there with CUDA's error name.
// Ops never allocate, synchronise or copy to the host once their scratch has grown (see
// below), so a decode step's ops can be captured in a CUDA graph (Capture / Replay; the
// engine's decode graphs, engine/llama_model.h); the host-side hints of AttentionMetadata
// then fix the grid, so a graph must be captured with hints at least as large as any step
// it is replayed for.
//
// Scratch memory, grown on demand and never shrunk; growing synchronises the stream and
// crashes if the stream is being captured, so run the largest shapes once before capturing:
//   - decode attention partials: num_seqs * Hq * ceil(max_context_len / partition) * (d + 2)
//     floats, partition 512 keys for batches that fill the GPU (128 to 256 for small ones);
//     e.g. 256 sequences x 32 heads of d 128 at 8192 tokens: 65 MiB;
//   - Sample: about 16 * min(B, 64) * V bytes plus CUB's sort storage (64 rows of a 128256
//     vocabulary: 125 MiB), and a few KiB per row of parameters and results;
//   - cuBLASLt: a fixed 32 MiB workspace; ConvertFromHost: 2 x 16 MiB, on first use.
//
// Not thread-safe: one thread drives a backend (the scheduler).
#ifndef PREFIXD_KERNELS_CUDA_CUDA_BACKEND_IMPL_H_
#define PREFIXD_KERNELS_CUDA_CUDA_BACKEND_IMPL_H_

#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kernels/cuda/cuda_gemm.h"
#include "kernels/kernels.h"

namespace prefixd {

// Device or pinned host memory that grows on demand and is freed with its owner.
class ScratchBuffer {
 public:
  enum class Kind { kDevice, kPinnedHost };
  explicit ScratchBuffer(Kind kind) : kind_(kind) {}
  ~ScratchBuffer();
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  // At least `bytes` (the old contents are lost when it grows). Growing waits for `stream`
  // (earlier ops may still use the old memory) and crashes if `stream` is being captured;
  // `what` names the buffer in that message.
  void* Get(size_t bytes, cudaStream_t stream, const char* what);
  // How many times the memory has moved (grown).
  uint64_t moves() const { return moves_; }

 private:
  Kind kind_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
  uint64_t moves_ = 0;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;

  DeviceKind device() const override { return DeviceKind::kCuda; }
  DType compute_dtype() const override { return DType::kBF16; }
  std::string Describe() const override;
  std::optional<int64_t> FreeMemoryBytes() const override;
  // The cascade kernel (cascade_attention.cu) reads a group's shared blocks once; the engine
  // finds groups for it only with PREFIXD_CUDA_CASCADE=1 in the environment until a GPU
  // session has tested and timed it (PagedAttention takes groups either way).
  bool UsesSharedPrefixGroups() const override { return cascade_; }

  DeviceTensor Allocate(DType dtype, std::initializer_list<int64_t> dims) override;
  void Free(void* data) override;
  void CopyFromHost(const void* src, Tensor& dst) override;
  void CopyToHost(const Tensor& src, void* dst) override;
  void ConvertFromHost(const void* src, DType src_dtype, Tensor& dst) override;
  void Synchronize() override;
  // Pinned (cudaHostAlloc); nullptr when the host refuses.
  void* AllocateHost(size_t bytes) override;
  void FreeHost(void* data) override;
  // On the copy stream: it waits for the compute stream's ops queued so far, then copies;
  // WaitForCopies makes the compute stream wait for the copies (a device-side wait).
  void CopyAsync(absl::Span<const MemCopy> copies, CopyDirection direction) override;
  void WaitForCopies() override;

  void FillRandom(Tensor& t, uint64_t seed, float scale) override;
  void Fill(Tensor& t, float value) override;

  void Embedding(const Tensor& table, const Tensor& ids, Tensor& out) override;
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                  Tensor& out) override;
  // out is bf16, or f32 (the engine's logits); bias, when given, is bf16.
  void Gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override;
  void RopeAndStoreKv(Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                      const Tensor& slots, const AttentionShape& shape, KvCacheLayer& kv) override;
  // meta.max_query_len == 1 (a decode step): the flash-decoding kernels only. Otherwise the
  // tensor-core prefill kernel runs for the sequences with query_len > 1 and the decode
  // kernels for those with query_len == 1 (each kernel skips the other's sequences, reading
  // query_len from the device metadata). Head dims 32, 64 and 128.
  void PagedAttention(const Tensor& qkv, const AttentionMetadata& meta, const AttentionShape& shape,
                      const KvCacheLayer& kv, float scale, Tensor& out) override;
  void SiluMul(const Tensor& gate_up, Tensor& out) override;
  // Any dtype, as long as x and out share it.
  void GatherRows(const Tensor& x, const Tensor& rows, Tensor& out) override;
  void Sample(const Tensor& logits, absl::Span<const SamplingRow> rows,
              absl::Span<SampledToken> out) override;

  // Stream capture into a CUDA graph (thread-local mode: other threads' CUDA calls are not
  // disturbed). A graph remembers the scratch buffers' moves at capture; Replay refuses it
  // once any of them has grown since.
  bool CanCapture() const override { return true; }
  std::unique_ptr<OpGraph> Capture(const std::function<void()>& record) override;
  bool Replay(const OpGraph& graph) override;

  cudaStream_t stream() const { return stream_; }

 private:
  // Makes the backend's device current for the calling thread.
  void MakeCurrent() const;
  // The scratch buffers' moves so far, summed: a graph recorded at another count may read
  // freed memory.
  uint64_t ScratchMoves() const;

  int device_;
  bool cascade_ = false;
  std::string name_;
  int compute_capability_ = 0;  // e.g. 90
  int num_sms_ = 0;
  size_t total_memory_ = 0;
  cudaStream_t stream_ = nullptr;
  // The host tier's transfers: copy_stream_ starts after compute_mark_ (recorded on
  // stream_), and copies_done_ marks the last copy queued.
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t compute_mark_ = nullptr;
  cudaEvent_t copies_done_ = nullptr;
  bool copies_pending_ = false;
  std::unique_ptr<cuda::LtGemm> gemm_;

  ScratchBuffer attention_scratch_{ScratchBuffer::Kind::kDevice};
  ScratchBuffer sample_scratch_{ScratchBuffer::Kind::kDevice};
  ScratchBuffer sample_io_{ScratchBuffer::Kind::kDevice};        // row params, then results
  ScratchBuffer sample_host_{ScratchBuffer::Kind::kPinnedHost};  // the same, on the host

  // ConvertFromHost's double buffer: host chunks are copied into pinned memory, sent to the
  // device and converted there; slot i is reused once conversion_done_[i] has fired.
  static constexpr size_t kStagingBytes = size_t{16} << 20;
  std::array<ScratchBuffer, 2> staging_host_{ScratchBuffer(ScratchBuffer::Kind::kPinnedHost),
                                             ScratchBuffer(ScratchBuffer::Kind::kPinnedHost)};
  std::array<ScratchBuffer, 2> staging_device_{ScratchBuffer(ScratchBuffer::Kind::kDevice),
                                               ScratchBuffer(ScratchBuffer::Kind::kDevice)};
  std::array<cudaEvent_t, 2> staging_free_{};
};

}  // namespace prefixd

#endif  // PREFIXD_KERNELS_CUDA_CUDA_BACKEND_IMPL_H_
