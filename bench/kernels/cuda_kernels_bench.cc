// bench/kernels/cuda_kernels_bench.cc — the CUDA backend's main ops at Llama-3-8B shapes
// (D 4096, Hq 32, Hkv 8, d 128, I 14336, V 128256), timed on the device with CUDA events,
// reporting achieved bandwidth or FLOP/s against the H100's measured peaks (device copy
// ≈ 3.0 TB/s, bf16 matmul ≈ 790 TFLOP/s; see DEVICE.md).
//
//   build-cuda/bench/kernels/cuda_kernels_bench --benchmark_min_time=0.2
// Exits at once, successfully, on a machine without a CUDA device.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/kernels.h"

namespace prefixd {
namespace {

constexpr int kHidden = 4096, kHq = 32, kHkv = 8, kHeadDim = 128, kInter = 14336;
constexpr int kVocab = 128256;
constexpr int kQkvWidth = (kHq + 2 * kHkv) * kHeadDim;
constexpr double kPeakBytesPerSecond = 3.0e12;  // H100 device-to-device copy, measured
constexpr double kPeakFlops = 790e12;           // H100 bf16 matmul, measured

CudaBackend& Cuda() {
  static CudaBackend* backend = new CudaBackend(0);
  return *backend;
}

DeviceTensor Random(std::initializer_list<int64_t> dims, uint64_t seed, float scale = 1.0f) {
  DeviceTensor t = Cuda().Allocate(DType::kBF16, dims);
  Cuda().FillRandom(t.view(), seed, scale);
  return t;
}

DeviceTensor Ints(const std::vector<int32_t>& host, std::initializer_list<int64_t> dims) {
  DeviceTensor t = Cuda().Allocate(DType::kI32, dims);
  Cuda().CopyFromHost(host.data(), t.view());
  return t;
}

// Times `op` on the backend's stream with CUDA events, one run per iteration (after one
// warm-up run); the benchmark must use UseManualTime(). The time includes any gaps where the
// GPU waits for the host to launch the next kernel.
template <typename Op>
void TimeOnDevice(benchmark::State& state, Op op) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  op();
  Cuda().Synchronize();
  for (auto _ : state) {
    cudaEventRecord(start, Cuda().stream());
    op();
    cudaEventRecord(stop, Cuda().stream());
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

void ReportBandwidth(benchmark::State& state, double bytes_per_run) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes_per_run * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["%peak_bw"] =
      benchmark::Counter(100.0 * bytes_per_run * state.iterations() / kPeakBytesPerSecond,
                         benchmark::Counter::kIsRate);
}

// ---- The bound: device-to-device copy ----

// A 1 GiB copy on the backend's stream; GB/s counts bytes read plus bytes written, the
// figure every "% of the bandwidth bound" divides by (scripts/gpu_check.sh reads it).
void BM_DeviceCopy(benchmark::State& state) {
  const int64_t bytes = int64_t{1} << 30;
  DeviceTensor src = Cuda().Allocate(DType::kBF16, {bytes / 2});
  DeviceTensor dst = Cuda().Allocate(DType::kBF16, {bytes / 2});
  Cuda().Fill(src.view(), 1.0f);
  TimeOnDevice(state, [&] {
    cudaMemcpyAsync(dst.view().data, src.view().data, bytes, cudaMemcpyDeviceToDevice,
                    Cuda().stream());
  });
  ReportBandwidth(state, 2.0 * static_cast<double>(bytes));
}
BENCHMARK(BM_DeviceCopy)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

// A paged cache of `seqs` sequences of `context_len` tokens with shuffled block tables.
struct PagedBatch {
  DeviceTensor qkv, k, v, query_start, context_lens, block_tables, out;
  AttentionMetadata meta;
};

PagedBatch MakePagedBatch(int seqs, int query_len, int context_len, int block_size = 16) {
  PagedBatch b;
  const int blocks_per_seq = (context_len + block_size - 1) / block_size;
  const int num_blocks = seqs * blocks_per_seq, tokens = seqs * query_len;
  b.qkv = Random({tokens, kQkvWidth}, 7);
  b.k = Random({num_blocks, kHkv, block_size, kHeadDim}, 8);
  b.v = Random({num_blocks, kHkv, block_size, kHeadDim}, 9);
  std::vector<int32_t> query_start(seqs + 1), context_lens(seqs, context_len), tables(num_blocks);
  std::iota(tables.begin(), tables.end(), 0);
  std::shuffle(tables.begin(), tables.end(), std::mt19937(1));
  for (int s = 0; s <= seqs; ++s) query_start[s] = s * query_len;
  b.query_start = Ints(query_start, {seqs + 1});
  b.context_lens = Ints(context_lens, {seqs});
  b.block_tables = Ints(tables, {seqs, blocks_per_seq});
  b.out = Cuda().Allocate(DType::kBF16, {tokens, kHq * kHeadDim});
  b.meta = AttentionMetadata{seqs,
                             tokens,
                             block_size,
                             blocks_per_seq,
                             query_len,
                             context_len,
                             b.query_start.view(),
                             b.context_lens.view(),
                             b.block_tables.view(),
                             /*num_groups=*/0,
                             {},
                             /*max_group_seqs=*/0};
  return b;
}

// ---- Decode attention: the bandwidth target ----

// args: sequences, context length. Bytes: every cached key and value once (q and out are
// noise next to them).
void BM_DecodeAttention(benchmark::State& state) {
  const int seqs = static_cast<int>(state.range(0)), context = static_cast<int>(state.range(1));
  PagedBatch b = MakePagedBatch(seqs, 1, context);
  const KvCacheLayer kv{b.k.view(), b.v.view()};
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  TimeOnDevice(state, [&] {
    Cuda().PagedAttention(b.qkv.view(), b.meta, {kHq, kHkv, kHeadDim}, kv, scale, b.out.view());
  });
  ReportBandwidth(state, 2.0 * seqs * context * kHkv * kHeadDim * sizeof(uint16_t));
}
BENCHMARK(BM_DecodeAttention)
    ->Args({32, 4096})  // the target: >= 80 % of 3.0 TB/s
    ->Args({1, 4096})
    ->Args({8, 16384})
    ->Args({64, 1024})
    ->Args({256, 512})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Cascade: decode over a shared prefix ----

// args: sequences, shared prefix tokens, private tokens each, cascade (0 plain, 1 groups).
// Every sequence's table begins with the same prefix blocks, as the prefix cache hands them
// out; with cascade the whole batch is one group. Issue 16's case: 256 x (2048 + 128), aim
// >= 3x faster with cascade. Bytes: what the plain kernels read (every sequence's K and V);
// the cascade reads the prefix once per 64 query rows instead, mostly from L2.
void BM_CascadeDecodeAttention(benchmark::State& state) {
  const int seqs = static_cast<int>(state.range(0)), prefix = static_cast<int>(state.range(1));
  const int own = static_cast<int>(state.range(2));
  const bool cascade = state.range(3) == 1;
  constexpr int kBlockSize = 16;
  const int shared_blocks = prefix / kBlockSize, own_blocks = (own + kBlockSize - 1) / kBlockSize;
  const int width = shared_blocks + own_blocks, num_blocks = shared_blocks + seqs * own_blocks;
  PagedBatch b;
  b.qkv = Random({seqs, kQkvWidth}, 7);
  b.k = Random({num_blocks, kHkv, kBlockSize, kHeadDim}, 8);
  b.v = Random({num_blocks, kHkv, kBlockSize, kHeadDim}, 9);
  std::vector<int32_t> query_start(seqs + 1), context_lens(seqs, prefix + own),
      tables(static_cast<size_t>(seqs) * width);
  for (int s = 0; s <= seqs; ++s) query_start[s] = s;
  for (int s = 0; s < seqs; ++s) {
    for (int j = 0; j < width; ++j) {
      tables[static_cast<size_t>(s) * width + j] =
          j < shared_blocks ? j : shared_blocks + s * own_blocks + (j - shared_blocks);
    }
  }
  b.query_start = Ints(query_start, {seqs + 1});
  b.context_lens = Ints(context_lens, {seqs});
  b.block_tables = Ints(tables, {seqs, width});
  b.out = Cuda().Allocate(DType::kBF16, {seqs, kHq * kHeadDim});
  DeviceTensor groups = Ints({0, seqs, shared_blocks}, {1, 3});
  b.meta = AttentionMetadata{seqs,
                             seqs,
                             kBlockSize,
                             width,
                             1,
                             prefix + own,
                             b.query_start.view(),
                             b.context_lens.view(),
                             b.block_tables.view(),
                             cascade ? 1 : 0,
                             cascade ? groups.view() : Tensor(),
                             cascade ? seqs : 0};
  const KvCacheLayer kv{b.k.view(), b.v.view()};
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  TimeOnDevice(state, [&] {
    Cuda().PagedAttention(b.qkv.view(), b.meta, {kHq, kHkv, kHeadDim}, kv, scale, b.out.view());
  });
  ReportBandwidth(state, 2.0 * seqs * (prefix + own) * kHkv * kHeadDim * sizeof(uint16_t));
  state.SetLabel(cascade ? "cascade" : "plain");
}
BENCHMARK(BM_CascadeDecodeAttention)
    ->Args({256, 2048, 128, 0})
    ->Args({256, 2048, 128, 1})
    ->Args({64, 2048, 128, 0})
    ->Args({64, 2048, 128, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Prefill attention ----

// args: sequences, new tokens per sequence, context length per sequence.
void BM_PrefillAttention(benchmark::State& state) {
  const int seqs = static_cast<int>(state.range(0)), query_len = static_cast<int>(state.range(1));
  const int context = static_cast<int>(state.range(2));
  PagedBatch b = MakePagedBatch(seqs, query_len, context);
  const KvCacheLayer kv{b.k.view(), b.v.view()};
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  TimeOnDevice(state, [&] {
    Cuda().PagedAttention(b.qkv.view(), b.meta, {kHq, kHkv, kHeadDim}, kv, scale, b.out.view());
  });
  // QKᵀ and PV over the causal triangle of each sequence.
  double pairs = 0;
  for (int i = 0; i < query_len; ++i) pairs += context - query_len + i + 1;
  const double flops = 4.0 * pairs * seqs * kHq * kHeadDim;
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e12, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PrefillAttention)
    ->Args({1, 2048, 2048})  // whole prefill
    ->Args({4, 512, 4096})   // chunks over long cached prefixes
    ->Args({1, 8192, 8192})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Gemm ----

// out[T, N] = x[T, K] · w[N, K]ᵀ; args: T, N, K, f32 output (the lm_head's logits).
void BM_Gemm(benchmark::State& state) {
  const int64_t t = state.range(0), n = state.range(1), k = state.range(2);
  const bool out_f32 = state.range(3) != 0;
  DeviceTensor x = Random({t, k}, 1), w = Random({n, k}, 2, 0.02f);
  DeviceTensor out = Cuda().Allocate(out_f32 ? DType::kF32 : DType::kBF16, {t, n});
  TimeOnDevice(state, [&] { Cuda().Gemm(x.view(), w.view(), nullptr, out.view()); });
  const double flops = 2.0 * t * n * k;
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e12, benchmark::Counter::kIsRate);
  state.counters["%peak_flops"] = benchmark::Counter(
      100.0 * flops * state.iterations() / kPeakFlops, benchmark::Counter::kIsRate);
  ReportBandwidth(state, 2.0 * n * k);  // weight bytes: what bounds small T
}
BENCHMARK(BM_Gemm)
    // Prefill: qkv, o, gate_up, down at 512, 2048 and 8192 tokens.
    ->Args({512, kQkvWidth, kHidden, 0})
    ->Args({2048, kQkvWidth, kHidden, 0})
    ->Args({2048, kHidden, kHidden, 0})
    ->Args({2048, 2 * kInter, kHidden, 0})
    ->Args({2048, kHidden, kInter, 0})
    ->Args({8192, 2 * kInter, kHidden, 0})
    // Decode: weight-bandwidth bound.
    ->Args({1, 2 * kInter, kHidden, 0})
    ->Args({32, 2 * kInter, kHidden, 0})
    ->Args({32, kVocab, kHidden, 1})  // lm_head, f32 logits
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// ---- Row-wise ops ----

void BM_AddRmsNorm(benchmark::State& state) {
  const int64_t t = state.range(0);
  DeviceTensor residual = Random({t, kHidden}, 3), x = Random({t, kHidden}, 4);
  DeviceTensor w = Random({kHidden}, 5), out = Cuda().Allocate(DType::kBF16, {t, kHidden});
  TimeOnDevice(state,
               [&] { Cuda().AddRmsNorm(residual.view(), x.view(), w.view(), 1e-5f, out.view()); });
  ReportBandwidth(state, 4.0 * t * kHidden * sizeof(uint16_t));  // residual r/w, x, out
}
BENCHMARK(BM_AddRmsNorm)->Arg(1)->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_SiluMul(benchmark::State& state) {
  const int64_t t = state.range(0);
  DeviceTensor gate_up = Random({t, 2 * kInter}, 6);
  DeviceTensor out = Cuda().Allocate(DType::kBF16, {t, kInter});
  TimeOnDevice(state, [&] { Cuda().SiluMul(gate_up.view(), out.view()); });
  ReportBandwidth(state, 3.0 * t * kInter * sizeof(uint16_t));
}
BENCHMARK(BM_SiluMul)->Arg(1)->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- One decode layer ----

// One Llama-3-8B layer of a decode step, op after op as the model runs it (no CUDA graph),
// for `seqs` sequences at context 1024. Batch 1 is bound by reading the layer's weights
// (436 MiB): 145 µs at 3.0 TB/s.
void BM_DecodeLayer(benchmark::State& state) {
  Backend& be = Cuda();
  const int seqs = static_cast<int>(state.range(0));
  constexpr int kContext = 1024, kBlockSize = 16, kBlocksPerSeq = kContext / kBlockSize;
  DeviceTensor norm_w = Random({kHidden}, 11), w_qkv = Random({kQkvWidth, kHidden}, 12, 0.02f);
  DeviceTensor w_o = Random({kHidden, kHq * kHeadDim}, 13, 0.02f);
  DeviceTensor w_gate_up = Random({2 * kInter, kHidden}, 14, 0.02f);
  DeviceTensor w_down = Random({kHidden, kInter}, 15, 0.02f);
  DeviceTensor k = Random({seqs * kBlocksPerSeq, kHkv, kBlockSize, kHeadDim}, 16);
  DeviceTensor v = Random({seqs * kBlocksPerSeq, kHkv, kBlockSize, kHeadDim}, 17);
  DeviceTensor residual = Random({seqs, kHidden}, 18), hidden = Random({seqs, kHidden}, 19);
  DeviceTensor qkv = Random({seqs, kQkvWidth}, 20), attn = Random({seqs, kHq * kHeadDim}, 21);
  DeviceTensor proj = Random({seqs, kHidden}, 22), gate_up = Random({seqs, 2 * kInter}, 23);
  DeviceTensor act = Random({seqs, kInter}, 24);
  std::vector<int32_t> query_start(seqs + 1), context_lens(seqs, kContext), positions(seqs),
      slots(seqs), tables(seqs * kBlocksPerSeq);
  std::iota(query_start.begin(), query_start.end(), 0);
  std::iota(tables.begin(), tables.end(), 0);
  for (int s = 0; s < seqs; ++s) {
    positions[s] = kContext - 1;
    slots[s] = tables[s * kBlocksPerSeq + kBlocksPerSeq - 1] * kBlockSize + kBlockSize - 1;
  }
  DeviceTensor qs = Ints(query_start, {seqs + 1}), cl = Ints(context_lens, {seqs});
  DeviceTensor bt = Ints(tables, {seqs, kBlocksPerSeq}), pos = Ints(positions, {seqs});
  DeviceTensor sl = Ints(slots, {seqs});
  std::vector<float> inv_freq(kHeadDim / 2);
  for (int j = 0; j < kHeadDim / 2; ++j) inv_freq[j] = std::pow(500000.0f, -2.0f * j / kHeadDim);
  DeviceTensor freq = be.Allocate(DType::kF32, {kHeadDim / 2});
  be.CopyFromHost(inv_freq.data(), freq.view());
  const AttentionMetadata meta{seqs,      seqs,      kBlockSize, kBlocksPerSeq,    1, kContext,
                               qs.view(), cl.view(), bt.view(),  /*num_groups=*/0, {}};
  KvCacheLayer kv{k.view(), v.view()};
  const AttentionShape shape{kHq, kHkv, kHeadDim};
  TimeOnDevice(state, [&] {
    be.Gemm(hidden.view(), w_qkv.view(), nullptr, qkv.view());
    be.RopeAndStoreKv(qkv.view(), pos.view(), freq.view(), sl.view(), shape, kv);
    be.PagedAttention(qkv.view(), meta, shape, kv, 0.088f, attn.view());
    be.Gemm(attn.view(), w_o.view(), nullptr, proj.view());
    be.AddRmsNorm(residual.view(), proj.view(), norm_w.view(), 1e-5f, hidden.view());
    be.Gemm(hidden.view(), w_gate_up.view(), nullptr, gate_up.view());
    be.SiluMul(gate_up.view(), act.view());
    be.Gemm(act.view(), w_down.view(), nullptr, proj.view());
    be.AddRmsNorm(residual.view(), proj.view(), norm_w.view(), 1e-5f, hidden.view());
  });
  const double weight_bytes = 2.0 * kHidden * (double{kQkvWidth} + kHq * kHeadDim + 3.0 * kInter);
  ReportBandwidth(state, weight_bytes);
}
BENCHMARK(BM_DecodeLayer)->Arg(1)->Arg(32)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- Sampling ----

// args: batch, temperature x 10, top_k, top_p x 100. Includes the copy of tokens to the host.
void BM_Sample(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  DeviceTensor logits = Cuda().Allocate(DType::kF32, {batch, kVocab});
  Cuda().FillRandom(logits.view(), 10, 8.0f);
  std::vector<SamplingRow> rows(batch);
  for (int b = 0; b < batch; ++b) {
    rows[b].temperature = state.range(1) / 10.0f;
    rows[b].top_k = static_cast<int>(state.range(2));
    rows[b].top_p = state.range(3) / 100.0f;
    rows[b].seed = b;
    rows[b].num_top_logprobs = 5;
  }
  std::vector<SampledToken> out(batch);
  uint64_t step = 0;
  TimeOnDevice(state, [&] {
    for (SamplingRow& row : rows) row.step = step;
    ++step;
    Cuda().Sample(logits.view(), rows, absl::MakeSpan(out));
  });
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_Sample)
    ->Args({32, 0, 0, 100})   // greedy (with top logprobs: sorted)
    ->Args({32, 7, 50, 100})  // top-k
    ->Args({32, 10, 0, 90})   // top-p over the whole vocabulary
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace prefixd

int main(int argc, char** argv) {
  if (!prefixd::CudaDeviceAvailable()) {
    std::printf("cuda_kernels_bench: no CUDA device, nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
