// A backend that records graphs on the CPU, for testing the callers of Backend::Capture
// and Replay without a GPU (LlamaModel's decode graphs).
//
// It forwards every call to a CPU backend. Capture records the ops `record` queues, with
// their arguments by value and without running them, as a CUDA stream capture does; Replay
// runs the recorded ops on the memory's current contents, as a CUDA graph launch does. So a
// caller that changes a pointer or a host-side argument between replays, instead of device
// memory in place, gets wrong results here as it would on the GPU. MoveScratch() plays an
// op's scratch memory growing: graphs recorded before it are refused by Replay.
#ifndef PREFIXD_TESTS_ENGINE_RECORDING_BACKEND_H_
#define PREFIXD_TESTS_ENGINE_RECORDING_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/check.h"
#include "kernels/kernels.h"

namespace prefixd::testing {

class RecordingBackend final : public Backend {
 public:
  explicit RecordingBackend(std::unique_ptr<Backend> cpu) : cpu_(std::move(cpu)) {}

  // Read from any thread (the engine's scheduler thread records and replays).
  int64_t captures() const { return captures_.load(); }
  int64_t replays() const { return replays_.load(); }
  void MoveScratch() { ++scratch_moves_; }

  DeviceKind device() const override { return cpu_->device(); }
  DType compute_dtype() const override { return cpu_->compute_dtype(); }
  std::string Describe() const override { return "recording " + cpu_->Describe(); }
  std::optional<int64_t> FreeMemoryBytes() const override { return cpu_->FreeMemoryBytes(); }
  bool UsesSharedPrefixGroups() const override { return cpu_->UsesSharedPrefixGroups(); }

  DeviceTensor Allocate(DType dtype, std::initializer_list<int64_t> dims) override {
    DeviceTensor t = cpu_->Allocate(dtype, dims);
    // Re-home the tensor's memory with this backend so that it is freed through here.
    const Tensor view = t.view();
    t.view().data = nullptr;  // t no longer frees it
    return DeviceTensor(this, view);
  }
  void Free(void* data) override { cpu_->Free(data); }
  void CopyFromHost(const void* src, Tensor& dst) override {
    Unrecorded();
    cpu_->CopyFromHost(src, dst);
  }
  void CopyToHost(const Tensor& src, void* dst) override {
    Unrecorded();
    cpu_->CopyToHost(src, dst);
  }
  void ConvertFromHost(const void* src, DType src_dtype, Tensor& dst) override {
    Unrecorded();
    cpu_->ConvertFromHost(src, src_dtype, dst);
  }
  void Synchronize() override { Unrecorded(); }
  void* AllocateHost(size_t bytes) override { return cpu_->AllocateHost(bytes); }
  void FreeHost(void* data) override { cpu_->FreeHost(data); }
  void CopyAsync(absl::Span<const MemCopy> copies, CopyDirection direction) override {
    Unrecorded();
    cpu_->CopyAsync(copies, direction);
  }
  void WaitForCopies() override {
    Unrecorded();
    cpu_->WaitForCopies();
  }
  void FillRandom(Tensor& t, uint64_t seed, float scale) override {
    Unrecorded();
    cpu_->FillRandom(t, seed, scale);
  }
  void Fill(Tensor& t, float value) override {
    Unrecorded();
    cpu_->Fill(t, value);
  }

  // ---- Ops: recorded while capturing, run otherwise ----
  void Embedding(const Tensor& table, const Tensor& ids, Tensor& out) override {
    Op([=, this]() mutable { cpu_->Embedding(table, ids, out); });
  }
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override {
    Op([=, this]() mutable { cpu_->RmsNorm(x, weight, eps, out); });
  }
  void AddRmsNorm(Tensor& residual, const Tensor& x, const Tensor& weight, float eps,
                  Tensor& out) override {
    Op([=, this]() mutable { cpu_->AddRmsNorm(residual, x, weight, eps, out); });
  }
  void Gemm(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
    const bool has_bias = bias != nullptr;
    const Tensor b = has_bias ? *bias : Tensor();
    Op([=, this]() mutable { cpu_->Gemm(x, w, has_bias ? &b : nullptr, out); });
  }
  void RopeAndStoreKv(Tensor& qkv, const Tensor& positions, const Tensor& inv_freq,
                      const Tensor& slots, const AttentionShape& shape, KvCacheLayer& kv) override {
    Op([=, this]() mutable { cpu_->RopeAndStoreKv(qkv, positions, inv_freq, slots, shape, kv); });
  }
  void PagedAttention(const Tensor& qkv, const AttentionMetadata& meta, const AttentionShape& shape,
                      const KvCacheLayer& kv, float scale, Tensor& out) override {
    Op([=, this]() mutable { cpu_->PagedAttention(qkv, meta, shape, kv, scale, out); });
  }
  void SiluMul(const Tensor& gate_up, Tensor& out) override {
    Op([=, this]() mutable { cpu_->SiluMul(gate_up, out); });
  }
  void GatherRows(const Tensor& x, const Tensor& rows, Tensor& out) override {
    Op([=, this]() mutable { cpu_->GatherRows(x, rows, out); });
  }
  void Sample(const Tensor& logits, absl::Span<const SamplingRow> rows,
              absl::Span<SampledToken> out) override {
    Unrecorded();
    cpu_->Sample(logits, rows, out);
  }

  // ---- Graphs ----
  bool CanCapture() const override { return true; }
  std::unique_ptr<OpGraph> Capture(const std::function<void()>& record) override {
    PREFIXD_CHECK(recording_ == nullptr, "Capture while capturing");
    auto graph = std::make_unique<Graph>();
    graph->scratch_moves = scratch_moves_;
    recording_ = graph.get();
    record();
    recording_ = nullptr;
    ++captures_;
    return graph;
  }
  bool Replay(const OpGraph& graph) override {
    Unrecorded();
    const auto& g = static_cast<const Graph&>(graph);
    if (g.scratch_moves != scratch_moves_) return false;
    for (const std::function<void()>& op : g.ops) op();
    ++replays_;
    return true;
  }

 private:
  struct Graph final : OpGraph {
    std::vector<std::function<void()>> ops;
    uint64_t scratch_moves = 0;
  };

  void Op(std::function<void()> op) {
    if (recording_ != nullptr) {
      recording_->ops.push_back(std::move(op));
    } else {
      op();
    }
  }
  // What a CUDA stream capture refuses (copies, synchronisation, sampling to the host).
  void Unrecorded() const {
    PREFIXD_CHECK(recording_ == nullptr, "a call that a graph cannot record, while recording");
  }

  std::unique_ptr<Backend> cpu_;
  Graph* recording_ = nullptr;
  std::atomic<uint64_t> scratch_moves_ = 0;
  std::atomic<int64_t> captures_ = 0, replays_ = 0;
};

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_ENGINE_RECORDING_BACKEND_H_
