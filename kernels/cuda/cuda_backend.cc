// kernels/cuda/cuda_backend.cc — CudaBackend: device, stream and memory, initialisation, and
// the row-wise ops (shape checks here, kernels in the .cu files). Attention and sampling
// have their own files (cuda_attention.cc, cuda_sampling.cc); the gemm is cuda_gemm.cc.
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "kernels/cpu/check_shape.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace prefixd {
namespace {

using cuda::bf16;

bf16* Bf16(const Tensor& t) { return static_cast<bf16*>(t.data); }

}  // namespace

// ---- ScratchBuffer ----

ScratchBuffer::~ScratchBuffer() {
  if (data_ == nullptr) return;
  if (kind_ == Kind::kDevice) {
    cudaFree(data_);
  } else {
    cudaFreeHost(data_);
  }
}

void* ScratchBuffer::Get(size_t bytes, cudaStream_t stream, const char* what) {
  if (bytes <= capacity_ && data_ != nullptr) return data_;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  PREFIXD_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  PREFIXD_CHECK(capture == cudaStreamCaptureStatusNone, "the ", what, " scratch must grow from ",
                capacity_, " to ", bytes,
                " bytes while the stream is being captured: run the largest step once before "
                "capturing");
  PREFIXD_CUDA_CHECK(cudaStreamSynchronize(stream));  // earlier ops may use the old memory
  // Grow by at least half, so that slowly rising sizes do not reallocate every step.
  const size_t capacity = std::max(bytes, capacity_ + capacity_ / 2);
  if (kind_ == Kind::kDevice) {
    if (data_ != nullptr) PREFIXD_CUDA_CHECK(cudaFree(data_));
    data_ = nullptr;
    const cudaError_t status = cudaMalloc(&data_, capacity);
    PREFIXD_CHECK(status == cudaSuccess, "cannot allocate ", capacity,
                  " bytes of device memory for the ", what,
                  " scratch: ", cudaGetErrorString(status));
  } else {
    if (data_ != nullptr) PREFIXD_CUDA_CHECK(cudaFreeHost(data_));
    data_ = nullptr;
    const cudaError_t status = cudaMallocHost(&data_, capacity);
    PREFIXD_CHECK(status == cudaSuccess, "cannot allocate ", capacity,
                  " bytes of pinned host memory for the ", what,
                  " scratch: ", cudaGetErrorString(status));
  }
  capacity_ = capacity;
  ++moves_;
  return data_;
}

// ---- Graphs ----

namespace {

class CudaGraph final : public OpGraph {
 public:
  CudaGraph(cudaGraphExec_t exec, uint64_t scratch_moves)
      : exec_(exec), scratch_moves_(scratch_moves) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  cudaGraphExec_t exec() const { return exec_; }
  uint64_t scratch_moves() const { return scratch_moves_; }

 private:
  cudaGraphExec_t exec_;
  uint64_t scratch_moves_;
};

}  // namespace

uint64_t CudaBackend::ScratchMoves() const {
  uint64_t moves = attention_scratch_.moves() + sample_scratch_.moves() + sample_io_.moves() +
                   sample_host_.moves();
  for (const ScratchBuffer& b : staging_host_) moves += b.moves();
  for (const ScratchBuffer& b : staging_device_) moves += b.moves();
  return moves;
}

std::unique_ptr<OpGraph> CudaBackend::Capture(const std::function<void()>& record) {
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  record();
  cudaGraph_t graph = nullptr;
  PREFIXD_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  PREFIXD_CUDA_CHECK(status);
  return std::make_unique<CudaGraph>(exec, ScratchMoves());
}

bool CudaBackend::Replay(const OpGraph& graph) {
  const auto& g = static_cast<const CudaGraph&>(graph);
  if (g.scratch_moves() != ScratchMoves()) return false;
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cudaGraphLaunch(g.exec(), stream_));
  return true;
}

// ---- Device, stream ----

bool CudaDeviceAvailable() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it: no driver or no device is an answer, not a failure
    return false;
  }
  return count > 0;
}

absl::Status CudaDeviceUsable(int device) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device (", cudaGetErrorString(status), ")"));
  }
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " devices)"));
  }
  cudaDeviceProp prop;
  if (const cudaError_t e = cudaGetDeviceProperties(&prop, device); e != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, ": ", cudaGetErrorString(e)));
  }
  const int cc = prop.major * 10 + prop.minor;
  if (cc < 80) {
    return absl::FailedPreconditionError(absl::StrCat(
        prop.name, " is sm_", cc, "; the CUDA backend needs sm_80 or newer (bf16 tensor cores)"));
  }
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device);
  const cudaError_t image = cuda::CheckKernelImage();
  cudaSetDevice(previous);
  if (image != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "this build has no CUDA code for ", prop.name, " (sm_", cc, "): ",
        cudaGetErrorString(image), "; rebuild with CMAKE_CUDA_ARCHITECTURES including ", cc));
  }
  return absl::OkStatus();
}

std::unique_ptr<Backend> MakeCudaBackend(int device) {
  return std::make_unique<CudaBackend>(device);
}

CudaBackend::CudaBackend(int device) : device_(device) {
  const char* cascade = std::getenv("PREFIXD_CUDA_CASCADE");
  cascade_ = cascade != nullptr && std::string_view(cascade) == "1";
  const absl::Status usable = CudaDeviceUsable(device);
  PREFIXD_CHECK(usable.ok(), "MakeCudaBackend: ", usable.message());
  MakeCurrent();
  cudaDeviceProp prop;
  PREFIXD_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  name_ = prop.name;
  compute_capability_ = prop.major * 10 + prop.minor;
  num_sms_ = prop.multiProcessorCount;
  total_memory_ = prop.totalGlobalMem;
  PREFIXD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  for (cudaEvent_t& event : staging_free_) {
    PREFIXD_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  PREFIXD_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  PREFIXD_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark_, cudaEventDisableTiming));
  PREFIXD_CUDA_CHECK(cudaEventCreateWithFlags(&copies_done_, cudaEventDisableTiming));
  gemm_ = std::make_unique<cuda::LtGemm>();
}

CudaBackend::~CudaBackend() {
  MakeCurrent();
  cudaStreamSynchronize(stream_);
  gemm_.reset();
  for (cudaEvent_t event : staging_free_) {
    if (event != nullptr) cudaEventDestroy(event);
  }
  cudaStreamSynchronize(copy_stream_);
  cudaEventDestroy(compute_mark_);
  cudaEventDestroy(copies_done_);
  cudaStreamDestroy(copy_stream_);
  cudaStreamDestroy(stream_);
}

void CudaBackend::MakeCurrent() const { PREFIXD_CUDA_CHECK(cudaSetDevice(device_)); }

std::optional<int64_t> CudaBackend::FreeMemoryBytes() const {
  size_t free_bytes = 0, total_bytes = 0;
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<int64_t>(free_bytes);
}

std::string CudaBackend::Describe() const {
  // e.g. "cuda:0 (NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB, bf16)"
  const double gib = static_cast<double>(total_memory_) / (1 << 30);
  return absl::StrCat("cuda:", device_, " (", name_, ", sm_", compute_capability_, ", ", num_sms_,
                      " SMs, ", static_cast<int>(gib * 10) / 10.0, " GiB, bf16)");
}

// ---- Memory ----

DeviceTensor CudaBackend::Allocate(DType dtype, std::initializer_list<int64_t> dims) {
  MakeCurrent();
  Tensor view(nullptr, dtype, dims);
  // Never zero bytes, so even an empty tensor owns a distinct non-null allocation.
  const size_t bytes = std::max<size_t>(view.nbytes(), 256);
  const cudaError_t status = cudaMalloc(&view.data, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    PREFIXD_CHECK(false, "cuda:", device_, ": cannot allocate ", view.ShapeString(), " (", bytes,
                  " bytes): ", cudaGetErrorString(status), "; ", free_bytes, " of ", total_bytes,
                  " bytes are free");
  }
  return DeviceTensor(this, view);
}

void CudaBackend::Free(void* data) {
  MakeCurrent();
  // cudaFree waits for the device, so no queued op still uses the memory.
  PREFIXD_CUDA_CHECK(cudaFree(data));
}

void* CudaBackend::AllocateHost(size_t bytes) {
  MakeCurrent();
  void* data = nullptr;
  if (cudaHostAlloc(&data, std::max<size_t>(bytes, 1), cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();  // not sticky: the device is fine, the host said no
    return nullptr;
  }
  return data;
}

void CudaBackend::FreeHost(void* data) {
  MakeCurrent();
  // cudaFreeHost waits for the device, so no queued copy still uses the memory.
  PREFIXD_CUDA_CHECK(cudaFreeHost(data));
}

void CudaBackend::CopyAsync(absl::Span<const MemCopy> copies, CopyDirection direction) {
  if (copies.empty()) return;
  MakeCurrent();
  // After the ops queued so far (they may still read or write these blocks)...
  PREFIXD_CUDA_CHECK(cudaEventRecord(compute_mark_, stream_));
  PREFIXD_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, compute_mark_, 0));
  const cudaMemcpyKind kind =
      direction == CopyDirection::kToHost ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
  for (const MemCopy& c : copies) {
    PREFIXD_CUDA_CHECK(cudaMemcpyAsync(c.dst, c.src, c.bytes, kind, copy_stream_));
  }
  // ...and before the ops queued after WaitForCopies.
  PREFIXD_CUDA_CHECK(cudaEventRecord(copies_done_, copy_stream_));
  copies_pending_ = true;
}

void CudaBackend::WaitForCopies() {
  if (!copies_pending_) return;
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cudaStreamWaitEvent(stream_, copies_done_, 0));
  copies_pending_ = false;
}

void CudaBackend::CopyFromHost(const void* src, Tensor& dst) {
  if (dst.nbytes() == 0) return;
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cudaMemcpyAsync(dst.data, src, dst.nbytes(), cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::CopyToHost(const Tensor& src, void* dst) {
  if (src.nbytes() == 0) return;
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cudaMemcpyAsync(dst, src.data, src.nbytes(), cudaMemcpyDeviceToHost, stream_));
  PREFIXD_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::ConvertFromHost(const void* src, DType src_dtype, Tensor& dst) {
  PREFIXD_CHECK(dst.dtype == DType::kBF16, "ConvertFromHost: dst is ", dst.ShapeString(),
                ", expected the compute dtype bf16");
  PREFIXD_CHECK(src_dtype == DType::kF32 || src_dtype == DType::kBF16 || src_dtype == DType::kF16,
                "ConvertFromHost: cannot convert ", DTypeName(src_dtype), " to bf16");
  MakeCurrent();
  const int64_t n = dst.numel();
  const size_t element = DTypeSize(src_dtype);
  const int64_t chunk = static_cast<int64_t>(kStagingBytes / element);
  const char* in = static_cast<const char*>(src);
  for (int64_t begin = 0, slot = 0; begin < n; begin += chunk, slot ^= 1) {
    const int64_t count = std::min(chunk, n - begin);
    const size_t bytes = static_cast<size_t>(count) * element;
    // The slot's previous chunk has been converted, so its buffers are free.
    PREFIXD_CUDA_CHECK(cudaEventSynchronize(staging_free_[slot]));
    void* pinned = staging_host_[slot].Get(kStagingBytes, stream_, "ConvertFromHost staging");
    std::memcpy(pinned, in + static_cast<size_t>(begin) * element, bytes);
    bf16* out = Bf16(dst) + begin;
    if (src_dtype == DType::kBF16) {
      PREFIXD_CUDA_CHECK(cudaMemcpyAsync(out, pinned, bytes, cudaMemcpyHostToDevice, stream_));
    } else {
      void* staged = staging_device_[slot].Get(kStagingBytes, stream_, "ConvertFromHost staging");
      PREFIXD_CUDA_CHECK(cudaMemcpyAsync(staged, pinned, bytes, cudaMemcpyHostToDevice, stream_));
      if (src_dtype == DType::kF32) {
        PREFIXD_CUDA_CHECK(
            cuda::LaunchConvertToBf16(static_cast<const float*>(staged), count, out, stream_));
      } else {
        PREFIXD_CUDA_CHECK(
            cuda::LaunchConvertToBf16(static_cast<const __half*>(staged), count, out, stream_));
      }
    }
    PREFIXD_CUDA_CHECK(cudaEventRecord(staging_free_[slot], stream_));
  }
}

void CudaBackend::Synchronize() {
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- Initialisation ----

void CudaBackend::FillRandom(Tensor& t, uint64_t seed, float scale) {
  MakeCurrent();
  if (t.dtype == DType::kBF16) {
    PREFIXD_CUDA_CHECK(cuda::LaunchFillRandom(Bf16(t), t.numel(), seed, scale, stream_));
  } else {
    PREFIXD_CHECK(t.dtype == DType::kF32, "FillRandom: ", t.ShapeString(),
                  " is neither bf16 nor f32");
    PREFIXD_CUDA_CHECK(cuda::LaunchFillRandom(t.as<float>(), t.numel(), seed, scale, stream_));
  }
}

void CudaBackend::Fill(Tensor& t, float value) {
  MakeCurrent();
  if (t.dtype == DType::kBF16) {
    PREFIXD_CUDA_CHECK(cuda::LaunchFill(Bf16(t), t.numel(), value, stream_));
  } else {
    PREFIXD_CHECK(t.dtype == DType::kF32, "Fill: ", t.ShapeString(), " is neither bf16 nor f32");
    PREFIXD_CUDA_CHECK(cuda::LaunchFill(t.as<float>(), t.numel(), value, stream_));
  }
}

// ---- Row-wise ops ----

void CudaBackend::Embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  CheckShape("Embedding", "table", table, DType::kBF16, {kAnySize, kAnySize});
  const int64_t vocab = table.dim(0), hidden = table.dim(1);
  CheckShape("Embedding", "ids", ids, DType::kI32, {kAnySize});
  const int64_t tokens = ids.dim(0);
  CheckShape("Embedding", "out", out, DType::kBF16, {tokens, hidden});
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cuda::LaunchGatherRows(table.data, vocab, hidden * int64_t{sizeof(bf16)},
                                            ids.as<int32_t>(), tokens, out.data, stream_));
}

void CudaBackend::GatherRows(const Tensor& x, const Tensor& rows, Tensor& out) {
  PREFIXD_CHECK(x.rank == 2, "GatherRows: x is ", x.ShapeString(), ", expected a matrix");
  const int64_t num_rows = x.dim(0), width = x.dim(1);
  CheckShape("GatherRows", "rows", rows, DType::kI32, {kAnySize});
  const int64_t gathered = rows.dim(0);
  CheckShape("GatherRows", "out", out, x.dtype, {gathered, width});
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cuda::LaunchGatherRows(x.data, num_rows,
                                            width * static_cast<int64_t>(DTypeSize(x.dtype)),
                                            rows.as<int32_t>(), gathered, out.data, stream_));
}

void CudaBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  CheckShape("RmsNorm", "x", x, DType::kBF16, {kAnySize, kAnySize});
  const int64_t rows = x.dim(0), hidden = x.dim(1);
  CheckShape("RmsNorm", "weight", weight, DType::kBF16, {hidden});
  CheckShape("RmsNorm", "out", out, DType::kBF16, {rows, hidden});
  MakeCurrent();
  PREFIXD_CUDA_CHECK(
      cuda::LaunchRmsNorm(Bf16(x), Bf16(weight), eps, rows, hidden, Bf16(out), stream_));
}

void CudaBackend::AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                             Tensor& out) {
  CheckShape("AddRmsNorm", "residual", residual, DType::kBF16, {kAnySize, kAnySize});
  const int64_t rows = residual.dim(0), hidden = residual.dim(1);
  CheckShape("AddRmsNorm", "x", x, DType::kBF16, {rows, hidden});
  CheckShape("AddRmsNorm", "weight", weight, DType::kBF16, {hidden});
  CheckShape("AddRmsNorm", "out", out, DType::kBF16, {rows, hidden});
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cuda::LaunchAddRmsNorm(Bf16(residual), Bf16(x), Bf16(weight), eps, rows,
                                            hidden, Bf16(out), stream_));
}

void CudaBackend::SiluMul(const Tensor& gate_up, Tensor& out) {
  CheckShape("SiluMul", "gate_up", gate_up, DType::kBF16, {kAnySize, kAnySize});
  const int64_t rows = gate_up.dim(0), inter = gate_up.dim(1) / 2;
  PREFIXD_CHECK(gate_up.dim(1) % 2 == 0, "SiluMul: gate_up ", gate_up.ShapeString(),
                " has an odd number of columns");
  CheckShape("SiluMul", "out", out, DType::kBF16, {rows, inter});
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cuda::LaunchSiluMul(Bf16(gate_up), rows, inter, Bf16(out), stream_));
}

// ---- Gemm ----

void CudaBackend::Gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  CheckShape("Gemm", "x", x, DType::kBF16, {kAnySize, kAnySize});
  const int64_t m = x.dim(0), k = x.dim(1);
  CheckShape("Gemm", "w", w, DType::kBF16, {kAnySize, k});
  const int64_t n = w.dim(0);
  const bool out_f32 = out.dtype == DType::kF32;
  CheckShape("Gemm", "out", out, out_f32 ? DType::kF32 : DType::kBF16, {m, n});
  if (bias != nullptr) CheckShape("Gemm", "bias", *bias, DType::kBF16, {n});
  MakeCurrent();
  gemm_->Run(Bf16(x), Bf16(w), bias != nullptr ? Bf16(*bias) : nullptr, m, n, k, out.data, out_f32,
             stream_);
}

// ---- RoPE and KV store ----

void CudaBackend::RopeAndStoreKv(Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                                 const Tensor& slots, const AttentionShape& shape,
                                 KvCacheLayer& kv) {
  const int64_t hq = shape.num_q_heads, hkv = shape.num_kv_heads, d = shape.head_dim;
  PREFIXD_CHECK(hq > 0 && hkv > 0 && d > 0 && d % 2 == 0 && hq % hkv == 0,
                "RopeAndStoreKv: bad attention shape Hq=", hq, " Hkv=", hkv, " d=", d);
  CheckShape("RopeAndStoreKv", "qkv", qkv, DType::kBF16, {kAnySize, (hq + 2 * hkv) * d});
  const int64_t tokens = qkv.dim(0);
  CheckShape("RopeAndStoreKv", "positions", positions, DType::kI32, {tokens});
  CheckShape("RopeAndStoreKv", "inv_freq", inv_freq, DType::kF32, {d / 2});
  CheckShape("RopeAndStoreKv", "slots", slots, DType::kI32, {tokens});
  CheckShape("RopeAndStoreKv", "kv.k", kv.k, DType::kBF16, {kAnySize, hkv, kAnySize, d});
  const int64_t num_blocks = kv.k.dim(0), block_size = kv.k.dim(2);
  CheckShape("RopeAndStoreKv", "kv.v", kv.v, DType::kBF16, {num_blocks, hkv, block_size, d});
  PREFIXD_CHECK(num_blocks * block_size <= std::numeric_limits<int32_t>::max(),
                "RopeAndStoreKv: a cache of ", num_blocks, " blocks of ", block_size,
                " slots is over the int32 slot range");
  cuda::RopeStoreKvParams p;
  p.qkv = Bf16(qkv);
  p.positions = positions.as<int32_t>();
  p.inv_freq = inv_freq.as<float>();
  p.slots = slots.as<int32_t>();
  p.k_cache = Bf16(kv.k);
  p.v_cache = Bf16(kv.v);
  p.num_tokens = tokens;
  p.num_blocks = num_blocks;
  p.block_size = static_cast<int>(block_size);
  p.num_q_heads = static_cast<int>(hq);
  p.num_kv_heads = static_cast<int>(hkv);
  p.head_dim = static_cast<int>(d);
  MakeCurrent();
  PREFIXD_CUDA_CHECK(cuda::LaunchRopeAndStoreKv(p, stream_));
}

}  // namespace prefixd
