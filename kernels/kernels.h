// kernels/kernels.h — the one set of ops the model is written against.
//
// A Backend owns a device's memory and runs ops on it: cpu/ is the fp32 reference
// (always built), cuda/ is bf16 storage with fp32 accumulation (built when nvcc is found).
// Every op is specified here precisely enough that the two agree within floating-point
// tolerance; each CUDA op is tested against its CPU twin.
//
// Conventions: tensors are row-major and contiguous unless a parameter says otherwise.
// T = tokens in the step (all sequences' new tokens, concatenated), D = hidden size,
// Hq / Hkv = query / key-value heads, d = head dim, V = vocabulary, B = sampled rows.
// Ops run in order on the backend's stream; results are visible to later ops at once and
// to the host after Synchronize() (the CPU backend is synchronous).
#ifndef PREFIXD_KERNELS_KERNELS_H_
#define PREFIXD_KERNELS_KERNELS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace prefixd {

// The names are C strings, not std::string_view: Debian's Abseil has its own
// absl::string_view, and absl::StrCat does not accept a std::string_view.
enum class DType : uint8_t { kF32, kBF16, kF16, kI32 };
size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);  // "f32", "bf16", "f16", "i32"

enum class DeviceKind : uint8_t { kCpu, kCuda };
const char* DeviceKindName(DeviceKind device);  // "cpu", "cuda"

inline constexpr int kMaxRank = 4;

// A non-owning view of a contiguous row-major tensor in one backend's memory.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};

  Tensor() = default;
  Tensor(void* data, DType dtype, std::initializer_list<int64_t> dims);
  Tensor(void* data, DType dtype, absl::Span<const int64_t> dims);

  int64_t dim(int i) const { return shape[i]; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // Rows [begin, end) of the first dimension, as a view.
  Tensor Rows(int64_t begin, int64_t end) const;
  // The same memory under another shape with the same number of elements.
  Tensor Reshaped(std::initializer_list<int64_t> dims) const;
  std::string ShapeString() const;  // e.g. "bf16[16, 4096]"
};

class Backend;

// Owns one allocation of a Backend; move-only. The backend must outlive it.
class DeviceTensor {
 public:
  DeviceTensor() = default;
  DeviceTensor(Backend* backend, Tensor view) : backend_(backend), view_(view) {}
  DeviceTensor(DeviceTensor&& other) noexcept { *this = std::move(other); }
  DeviceTensor& operator=(DeviceTensor&& other) noexcept;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor();

  const Tensor& view() const { return view_; }
  Tensor& view() { return view_; }
  bool empty() const { return view_.data == nullptr; }

 private:
  Backend* backend_ = nullptr;
  Tensor view_;
};

// One layer's paged KV cache. k, v: [num_blocks, Hkv, block_size, d], activation dtype.
// Token at position p of a sequence lives in block table[p / block_size], offset
// p % block_size.
struct KvCacheLayer {
  Tensor k;
  Tensor v;
};

struct AttentionShape {
  int num_q_heads = 0;
  int num_kv_heads = 0;  // divides num_q_heads: query head h reads kv head h / (Hq / Hkv)
  int head_dim = 0;
};

// Which rows of the step belong to which sequence, and where each sequence's keys live.
// Tensors are int32 in the backend's memory; the scalars are host-side launch hints.
struct AttentionMetadata {
  int num_seqs = 0;
  int num_tokens = 0;  // T
  int block_size = 0;
  int max_blocks_per_seq = 0;
  int max_query_len = 0;
  int max_context_len = 0;
  // [num_seqs + 1]: the new tokens of sequence s are rows [query_start[s], query_start[s+1]).
  Tensor query_start;
  // [num_seqs]: keys of sequence s, its new tokens included; they are its last
  // query_len keys, so new token i (0-based) sits at position context_len - query_len + i.
  Tensor context_lens;
  // [num_seqs, max_blocks_per_seq]: the blocks holding sequence s's positions, in order.
  Tensor block_tables;
  // Shared-prefix groups (cascade attention); optional, num_groups 0 when there are none.
  // Row g of `groups` is (first, end, shared_blocks): sequences [first, end), one or more
  // consecutive decode sequences (one new token each) whose block tables begin with the same
  // shared_blocks (>= 1) blocks, all before each one's last block. Groups are disjoint and
  // in order. A backend may read those blocks' K/V once for the whole group instead of once
  // per sequence; the output must equal the plain computation within the backend's rounding
  // (the CPU's is bit-identical). Sequences in no group are computed plainly.
  int num_groups = 0;
  Tensor groups;  // [num_groups, 3] i32 in the backend's memory
  // Host-side hint: no group has more sequences (0: unknown; num_seqs bounds them).
  int max_group_seqs = 0;
};

// How to draw one token from one row of logits. Sampling is a pure function of
// (logits, params, seed, step), so a request replays exactly from its seed.
struct SamplingRow {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0: no cut
  float top_p = 1.0f;        // in (0, 1]
  uint64_t seed = 0;
  uint64_t step = 0;         // index of the token in the completion
  int num_top_logprobs = 0;  // 0..20
};

struct TopLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;         // of `token` under log_softmax(raw logits)
  std::vector<TopLogprob> top;  // num_top_logprobs most likely tokens, most likely first
};

// The uniform draw in [0, 1) used for (seed, step): SplitMix64 of
// seed + (step + 1) * 0x9E3779B97F4A7C15, top 24 bits / 2^24. Shared by every backend.
float SamplingUniform(uint64_t seed, uint64_t step);
// The value FillRandom writes at flat index i: SplitMix64 of
// seed + (i + 1) * 0x9E3779B97F4A7C15, top 24 bits u / 2^24, mapped to scale * (2u - 1).
float RandomValue(uint64_t seed, uint64_t index, float scale);

// Ops recorded once and replayed as one launch (a CUDA graph). Made by Backend::Capture.
class OpGraph {
 public:
  virtual ~OpGraph() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceKind device() const = 0;
  // dtype of weights, activations and the KV cache on this backend (kF32 on the CPU).
  virtual DType compute_dtype() const = 0;
  virtual std::string Describe() const = 0;  // e.g. "cpu (2 threads, OpenBLAS)"
  // Device memory free now, in bytes, for sizing the KV cache; nullopt where the question
  // has no useful answer (host memory: the CPU backend).
  virtual std::optional<int64_t> FreeMemoryBytes() const { return std::nullopt; }
  // Whether PagedAttention reads a shared-prefix group's blocks once (AttentionMetadata's
  // groups); where not, callers need not find the groups at all.
  virtual bool UsesSharedPrefixGroups() const { return false; }

  // ---- Memory ----
  // Uninitialised. Crashes if the device is out of memory (sizes are checked up front).
  virtual DeviceTensor Allocate(DType dtype, std::initializer_list<int64_t> dims) = 0;
  virtual void Free(void* data) = 0;
  // Copies host memory holding `dst.nbytes()` bytes of dst's dtype into dst.
  virtual void CopyFromHost(const void* src, Tensor& dst) = 0;
  virtual void CopyToHost(const Tensor& src, void* dst) = 0;
  // Converts host data of dtype `src_dtype` (F32, BF16 or F16; dst.numel() elements) into
  // dst, which has the compute dtype. Used to load weights from any checkpoint dtype.
  virtual void ConvertFromHost(const void* src, DType src_dtype, Tensor& dst) = 0;
  virtual void Synchronize() = 0;

  // ---- Host memory and transfers (the KV cache's host tier) ----
  // `bytes` of host memory that transfers to and from this backend's memory run fast from
  // (page-locked on CUDA), or nullptr when the system will not give it. Never crashes.
  virtual void* AllocateHost(size_t bytes) = 0;
  virtual void FreeHost(void* data) = 0;
  struct MemCopy {
    void* dst = nullptr;
    const void* src = nullptr;
    size_t bytes = 0;
  };
  enum class CopyDirection { kToHost, kToDevice };
  // Copies between this backend's memory and AllocateHost memory, in order, on a transfer
  // queue of their own: they start after every op queued before the call and may overlap
  // the ops queued after it, which must not touch their memory until WaitForCopies().
  // (The CPU backend copies at once.)
  virtual void CopyAsync(absl::Span<const MemCopy> copies, CopyDirection direction) = 0;
  // Ops queued after this call wait for every copy queued before it (the host does not).
  virtual void WaitForCopies() = 0;

  // ---- Initialisation ----
  // t[i] = RandomValue(seed, i, scale) for the flat index i.
  virtual void FillRandom(Tensor& t, uint64_t seed, float scale) = 0;
  virtual void Fill(Tensor& t, float value) = 0;

  // ---- Ops ----
  // out[t, :] = table[ids[t], :].  table: [V, D], ids: [T] i32, out: [T, D].
  virtual void Embedding(const Tensor& table, const Tensor& ids, Tensor& out) = 0;

  // out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight.  x, out: [T, D]; weight: [D].
  // Statistics in fp32.
  virtual void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;

  // residual += x, then out = RmsNorm(residual, weight, eps). residual, x, out: [T, D].
  virtual void AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                          Tensor& out) = 0;

  // out = x · wᵀ (+ bias).  x: [T, K], w: [N, K], bias: [N] or nullptr, out: [T, N].
  // Accumulation in fp32. out has the compute dtype, or f32 (the engine's logits).
  virtual void Gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) = 0;

  // qkv: [T, (Hq + 2 Hkv) d], each row q heads then k heads then v heads.
  // Rotates every q and k head in place with rotate-half RoPE (the Hugging Face Llama
  // convention): for j < d/2, with angle = float(positions[t]) * inv_freq[j] computed in
  // fp32, (x[j], x[j + d/2]) <- (x[j] cos - x[j + d/2] sin, x[j + d/2] cos + x[j] sin).
  // Then writes row t's k and v heads into `kv` at slot slots[t] (block slot / block_size,
  // offset slot % block_size). positions, slots: [T] i32; inv_freq: [d/2] f32.
  virtual void RopeAndStoreKv(Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                              const Tensor& slots, const AttentionShape& shape,
                              KvCacheLayer& kv) = 0;

  // Causal attention of each new token over its sequence's cached keys (which already
  // include the new tokens, written by RopeAndStoreKv):
  //   out[t, h, :] = softmax_j(scale * q[t, h] · k[j, h / group]) · v[j, h / group]
  // over positions j <= the token's own position. q is read from the q heads of
  // qkv ([T, (Hq + 2 Hkv) d]); out: [T, Hq d]. Softmax in fp32.
  virtual void PagedAttention(const Tensor& qkv, const AttentionMetadata& meta,
                              const AttentionShape& shape, const KvCacheLayer& kv, float scale,
                              Tensor& out) = 0;

  // out = silu(gate_up[:, :I]) * gate_up[:, I:].  gate_up: [T, 2I], out: [T, I].
  virtual void SiluMul(const Tensor& gate_up, Tensor& out) = 0;

  // out[b, :] = x[rows[b], :].  x: [T, D], rows: [B] i32, out: [B, D].
  virtual void GatherRows(const Tensor& x, const Tensor& rows, Tensor& out) = 0;

  // Draws one token per row of logits ([B, V] f32) and returns it to the host:
  //   logprobs = log_softmax(logits) (raw, before temperature);
  //   temperature 0 (or top_k 1): argmax, lowest id on ties;
  //   otherwise p = softmax(logits / temperature) over the top_k highest logits (all when
  //   0; ties at the cut go to the lower id), ordered by probability descending then id
  //   ascending; keep the shortest prefix whose mass reaches top_p (at least one token;
  //   top_p 1 keeps all); renormalise; pick the first token whose cumulative mass exceeds
  //   SamplingUniform(seed, step) * kept mass.
  virtual void Sample(const Tensor& logits, absl::Span<const SamplingRow> rows,
                      absl::Span<SampledToken> out) = 0;

  // ---- Graphs ----
  // Whether Capture records (CUDA); where not, callers need not prepare steps for graphs.
  virtual bool CanCapture() const { return false; }
  // Records the ops `record` queues, without running them, into a graph that Replay runs as
  // one launch; nullptr where the backend cannot record (the CPU: then `record` is not
  // called). A replay reads the same pointers and host-side arguments the ops were recorded
  // with: the caller changes only the contents of device memory between replays (step
  // metadata updated in place) and keeps every tensor it recorded alive. Ops whose scratch
  // memory would have to grow must not be recorded: run the same ops once unrecorded first.
  virtual std::unique_ptr<OpGraph> Capture(const std::function<void()>& record) {
    (void)record;
    return nullptr;
  }
  // Runs a graph of this backend's after the ops queued so far. False, running nothing,
  // when memory the graph used has moved since it was recorded (an op's scratch grew): the
  // caller runs the ops unrecorded and records them again.
  virtual bool Replay(const OpGraph& graph) {
    (void)graph;
    return false;
  }
};

// The CPU reference backend (always available).
std::unique_ptr<Backend> MakeCpuBackend(int num_threads = 0 /* 0: all cores */);

}  // namespace prefixd

#endif  // PREFIXD_KERNELS_KERNELS_H_
