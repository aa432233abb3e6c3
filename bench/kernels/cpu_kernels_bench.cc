// bench/kernels/cpu_kernels_bench.cc — the CPU backend's main ops at Llama-3-8B shapes
// (D 4096, Hq 32, Hkv 8, d 128, I 14336, V 128256), with achieved FLOP/s or bytes/s.
//
//   build-cpu/bench/kernels/cpu_kernels_bench --benchmark_min_time=0.2
// Threads: PREFIXD_BENCH_THREADS (default 0: all cores).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/kernels.h"

namespace prefixd {
namespace {

constexpr int kHidden = 4096, kHq = 32, kHkv = 8, kHeadDim = 128, kInter = 14336;
constexpr int kVocab = 128256;

Backend& SharedBackend() {
  static Backend* backend = [] {
    const char* env = std::getenv("PREFIXD_BENCH_THREADS");
    return MakeCpuBackend(env != nullptr ? std::atoi(env) : 0).release();
  }();
  return *backend;
}

DeviceTensor Random(std::initializer_list<int64_t> dims, uint64_t seed, float scale = 1.0f) {
  DeviceTensor t = SharedBackend().Allocate(DType::kF32, dims);
  SharedBackend().FillRandom(t.view(), seed, scale);
  return t;
}

DeviceTensor Ints(const std::vector<int32_t>& host, std::initializer_list<int64_t> dims) {
  DeviceTensor t = SharedBackend().Allocate(DType::kI32, dims);
  SharedBackend().CopyFromHost(host.data(), t.view());
  return t;
}

// out[T, N] = x[T, K] · w[N, K]ᵀ; args: T, N, K.
void BM_Gemm(benchmark::State& state) {
  const int64_t t = state.range(0), n = state.range(1), k = state.range(2);
  DeviceTensor x = Random({t, k}, 1), w = Random({n, k}, 2, 0.02f);
  DeviceTensor out = SharedBackend().Allocate(DType::kF32, {t, n});
  for (auto _ : state) SharedBackend().Gemm(x.view(), w.view(), nullptr, out.view());
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * t * n * k * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(4.0 * n * k * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Gemm)
    ->Args({1, 4096, 4096})
    ->Args({8, 4096, 4096})
    ->Args({128, 4096, 4096})
    ->Args({512, 6144, 4096})
    ->UseRealTime();

void BM_RmsNorm(benchmark::State& state) {
  const int64_t t = state.range(0);
  DeviceTensor x = Random({t, kHidden}, 3), w = Random({kHidden}, 4);
  DeviceTensor out = SharedBackend().Allocate(DType::kF32, {t, kHidden});
  for (auto _ : state) SharedBackend().RmsNorm(x.view(), w.view(), 1e-5f, out.view());
  state.SetBytesProcessed(state.iterations() * 2 * t * kHidden * 4);
}
BENCHMARK(BM_RmsNorm)->Arg(1)->Arg(512)->UseRealTime();

void BM_SiluMul(benchmark::State& state) {
  const int64_t t = state.range(0);
  DeviceTensor gate_up = Random({t, 2 * kInter}, 5);
  DeviceTensor out = SharedBackend().Allocate(DType::kF32, {t, kInter});
  for (auto _ : state) SharedBackend().SiluMul(gate_up.view(), out.view());
  state.SetBytesProcessed(state.iterations() * 3 * t * kInter * 4);
}
BENCHMARK(BM_SiluMul)->Arg(1)->Arg(512)->UseRealTime();

void BM_RopeAndStoreKv(benchmark::State& state) {
  const int t = static_cast<int>(state.range(0));
  constexpr int kBlockSize = 16;
  const int num_blocks = (t + kBlockSize - 1) / kBlockSize;
  DeviceTensor qkv = Random({t, (kHq + 2 * kHkv) * kHeadDim}, 6);
  std::vector<int32_t> positions(t);
  std::iota(positions.begin(), positions.end(), 0);
  DeviceTensor pos = Ints(positions, {t}), slots = Ints(positions, {t});
  std::vector<float> inv_freq(kHeadDim / 2);
  for (int j = 0; j < kHeadDim / 2; ++j) inv_freq[j] = std::pow(500000.0f, -2.0f * j / kHeadDim);
  DeviceTensor freq = SharedBackend().Allocate(DType::kF32, {kHeadDim / 2});
  SharedBackend().CopyFromHost(inv_freq.data(), freq.view());
  DeviceTensor k = SharedBackend().Allocate(DType::kF32, {num_blocks, kHkv, kBlockSize, kHeadDim});
  DeviceTensor v = SharedBackend().Allocate(DType::kF32, {num_blocks, kHkv, kBlockSize, kHeadDim});
  KvCacheLayer kv{k.view(), v.view()};
  const AttentionShape shape{kHq, kHkv, kHeadDim};
  for (auto _ : state) {
    SharedBackend().RopeAndStoreKv(qkv.view(), pos.view(), freq.view(), slots.view(), shape, kv);
  }
  state.SetItemsProcessed(state.iterations() * t);
}
BENCHMARK(BM_RopeAndStoreKv)->Arg(1)->Arg(512)->UseRealTime();

// args: sequences, new tokens per sequence, context length per sequence.
void BM_PagedAttention(benchmark::State& state) {
  const int seqs = static_cast<int>(state.range(0)), query_len = static_cast<int>(state.range(1));
  const int context_len = static_cast<int>(state.range(2));
  constexpr int kBlockSize = 16;
  const int blocks_per_seq = (context_len + kBlockSize - 1) / kBlockSize;
  const int num_blocks = seqs * blocks_per_seq, tokens = seqs * query_len;
  DeviceTensor qkv = Random({tokens, (kHq + 2 * kHkv) * kHeadDim}, 7);
  DeviceTensor k = Random({num_blocks, kHkv, kBlockSize, kHeadDim}, 8);
  DeviceTensor v = Random({num_blocks, kHkv, kBlockSize, kHeadDim}, 9);
  std::vector<int32_t> query_start(seqs + 1), context_lens(seqs, context_len);
  std::vector<int32_t> tables(num_blocks);
  std::iota(tables.begin(), tables.end(), 0);
  std::shuffle(tables.begin(), tables.end(), std::mt19937(1));
  for (int s = 0; s <= seqs; ++s) query_start[s] = s * query_len;
  DeviceTensor qs = Ints(query_start, {seqs + 1}), cl = Ints(context_lens, {seqs});
  DeviceTensor bt = Ints(tables, {seqs, blocks_per_seq});
  DeviceTensor out = SharedBackend().Allocate(DType::kF32, {tokens, kHq * kHeadDim});
  AttentionMetadata meta{seqs,      tokens,    kBlockSize, blocks_per_seq,   query_len, context_len,
                         qs.view(), cl.view(), bt.view(),  /*num_groups=*/0, {}};
  const KvCacheLayer kv{k.view(), v.view()};
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  for (auto _ : state) {
    SharedBackend().PagedAttention(qkv.view(), meta, {kHq, kHkv, kHeadDim}, kv, scale, out.view());
  }
  // Score and value flops over the causal triangle of each sequence.
  double pairs = 0;
  for (int i = 0; i < query_len; ++i) pairs += context_len - query_len + i + 1;
  state.counters["GFLOP/s"] = benchmark::Counter(
      4.0 * pairs * seqs * kHq * kHeadDim * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["kv_GB/s"] =
      benchmark::Counter(2.0 * context_len * seqs * kHkv * kHeadDim * 4 * state.iterations() / 1e9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedAttention)
    ->Args({8, 1, 2048})     // decode
    ->Args({1, 512, 2048})   // chunked prefill over a cached prefix
    ->Args({1, 1024, 1024})  // whole prefill
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// One Llama-3-8B layer of a decode step, op after op as the model runs it, for `seqs`
// sequences at context 1024: shows the cost of handing the cores back and forth between
// OpenBLAS's threads (gemms) and the backend's own (everything else).
void BM_DecodeLayer(benchmark::State& state) {
  Backend& be = SharedBackend();
  const int seqs = static_cast<int>(state.range(0));
  constexpr int kContext = 1024, kBlockSize = 16, kBlocksPerSeq = kContext / kBlockSize;
  const int64_t qkv_width = (kHq + 2 * kHkv) * kHeadDim;
  DeviceTensor norm_w = Random({kHidden}, 11), w_qkv = Random({qkv_width, kHidden}, 12, 0.02f);
  DeviceTensor w_o = Random({kHidden, kHq * kHeadDim}, 13, 0.02f);
  DeviceTensor w_gate_up = Random({2 * kInter, kHidden}, 14, 0.02f);
  DeviceTensor w_down = Random({kHidden, kInter}, 15, 0.02f);
  DeviceTensor k = Random({seqs * kBlocksPerSeq, kHkv, kBlockSize, kHeadDim}, 16);
  DeviceTensor v = Random({seqs * kBlocksPerSeq, kHkv, kBlockSize, kHeadDim}, 17);
  DeviceTensor residual = Random({seqs, kHidden}, 18), hidden = Random({seqs, kHidden}, 19);
  DeviceTensor qkv = Random({seqs, qkv_width}, 20), attn = Random({seqs, kHq * kHeadDim}, 21);
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
  DeviceTensor inv_freq = Random({kHeadDim / 2}, 25, 0.5f);
  AttentionMetadata meta{seqs,      seqs,      kBlockSize, kBlocksPerSeq,    1, kContext,
                         qs.view(), cl.view(), bt.view(),  /*num_groups=*/0, {}};
  KvCacheLayer kv{k.view(), v.view()};
  const AttentionShape shape{kHq, kHkv, kHeadDim};
  for (auto _ : state) {
    be.Gemm(hidden.view(), w_qkv.view(), nullptr, qkv.view());
    be.RopeAndStoreKv(qkv.view(), pos.view(), inv_freq.view(), sl.view(), shape, kv);
    be.PagedAttention(qkv.view(), meta, shape, kv, 0.088f, attn.view());
    be.Gemm(attn.view(), w_o.view(), nullptr, proj.view());
    be.AddRmsNorm(residual.view(), proj.view(), norm_w.view(), 1e-5f, hidden.view());
    be.Gemm(hidden.view(), w_gate_up.view(), nullptr, gate_up.view());
    be.SiluMul(gate_up.view(), act.view());
    be.Gemm(act.view(), w_down.view(), nullptr, proj.view());
    be.AddRmsNorm(residual.view(), proj.view(), norm_w.view(), 1e-5f, hidden.view());
  }
  const double weight_bytes = 4.0 * kHidden * (qkv_width + kHq * kHeadDim + 3 * kInter);
  state.counters["weight_GB/s"] =
      benchmark::Counter(weight_bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeLayer)->Arg(1)->Arg(8)->UseRealTime()->Unit(benchmark::kMillisecond);

// args: batch, temperature x 10, top_k, top_p x 100.
void BM_Sample(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  DeviceTensor logits = Random({batch, kVocab}, 10, 8.0f);
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
  for (auto _ : state) {
    for (SamplingRow& row : rows) row.step = step;
    ++step;
    SharedBackend().Sample(logits.view(), rows, absl::MakeSpan(out));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_Sample)
    ->Args({8, 0, 0, 100})   // greedy
    ->Args({8, 7, 50, 100})  // top-k
    ->Args({8, 10, 0, 90})   // top-p over the whole vocabulary
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace prefixd
