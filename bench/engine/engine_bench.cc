// Time to first token with and without a cached system prompt, a returning conversation's
// (recomputed, promoted from the host tier, or still cached), prefill time, and decode
// throughput, through the real Engine on any backend and model.
//
//   build/bench/engine/engine_bench --benchmark_format=json --benchmark_out=engine.json
//   build/bench/engine/engine_bench --backend=cuda --model=random:llama-3-8b
//       --decode_batches=1,16,64,256 --context=512  (one line)
//
// BM_TimeToFirstToken/miss and /hit run in one process, so their ratio is what to read on a
// noisy machine (docs/benchmarks.md). Defaults: the test model on the auto backend.
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "kernels/select_backend.h"

ABSL_FLAG(std::string, model, PREFIXD_TEST_MODEL_DIR,
          "model folder or random:<preset> (default: the test model)");
ABSL_FLAG(std::string, backend, "auto", "auto, cpu or cuda");
ABSL_FLAG(int, threads, 0, "CPU backend threads (0: every core)");
ABSL_FLAG(std::string, decode_batches, "1,16", "batch sizes of BM_Decode, comma-separated");
ABSL_FLAG(int, context, 32, "prompt tokens of each BM_Decode request");
ABSL_FLAG(int, new_tokens, 128, "tokens each BM_Decode request generates");
ABSL_FLAG(int, prefill_tokens, 2048, "prompt tokens of BM_Prefill");
ABSL_FLAG(int64_t, kv_cache_tokens, 0, "KV cache capacity in tokens (0: sized automatically)");
ABSL_FLAG(int, conversation_tokens, 2048,
          "history of BM_ReturningConversation's conversation (e.g. 8192 on a GPU)");
ABSL_FLAG(bool, cuda_graphs, true, "decode steps as CUDA graphs (EngineOptions::cuda_graphs)");
ABSL_FLAG(double, min_time_s, 0,
          "measured seconds each benchmark runs at least (0: each one's own default, 1 to 3 s; "
          "scripts/gpu_check.sh shortens them)");

namespace prefixd {
namespace {

constexpr int kSystemTokens = 2048;
constexpr int kQuestionTokens = 64;

std::vector<TokenId> RandomTokens(std::mt19937& rng, int n) {
  std::vector<TokenId> t(n);
  for (TokenId& id : t) id = static_cast<TokenId>(rng() % 500);
  return t;
}

// `kv_tokens` / `host_tokens` > 0: the device pool's and the host tier's sizes in tokens
// (else the flag's, and no host tier).
std::unique_ptr<Engine> MakeEngine(int max_running, int max_batch_tokens = 4096,
                                   int64_t kv_tokens = 0, int64_t host_tokens = 0) {
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      MakeBackend(absl::GetFlag(FLAGS_backend), absl::GetFlag(FLAGS_threads));
  if (!backend.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", backend.status().ToString().c_str());
    std::exit(2);
  }
  absl::StatusOr<LoadedModel> model = LoadModel(absl::GetFlag(FLAGS_model), {}, **backend);
  if (!model.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", model.status().ToString().c_str());
    std::exit(2);
  }
  EngineOptions o;
  o.kv_cache_tokens = absl::GetFlag(FLAGS_kv_cache_tokens);
  if (o.kv_cache_tokens == 0 && !(*backend)->FreeMemoryBytes().has_value()) {
    o.kv_cache_tokens = 64 * 1024;  // the CPU: enough for every benchmark here
  }
  o.max_batch_tokens = max_batch_tokens;  // a whole 2112-token prompt in one step by default
  o.max_running_requests = max_running;
  o.host_kv_cache_bytes = 0;
  o.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  if (kv_tokens > 0) o.kv_cache_tokens = kv_tokens;
  if (host_tokens > 0) {
    o.host_kv_cache_bytes =
        host_tokens / o.block_size *
        KvCache::BytesPerBlock(model->config, o.block_size, (*backend)->compute_dtype());
  }
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(*std::move(backend), *std::move(model), o);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", engine.status().ToString().c_str());
    std::exit(2);
  }
  return *std::move(engine);
}

GenerationRequest Request(std::vector<TokenId> prompt, int max_tokens) {
  GenerationRequest r;
  r.ns = {"bench", "test", ""};
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

// Submits and returns the time from Submit to the first generated token.
absl::Duration TimeToFirstToken(Engine& engine, GenerationRequest r) {
  absl::Notification first, done;
  absl::Time first_at;
  const absl::Time start = absl::Now();
  auto submitted = engine.Submit(std::move(r), [&](GenerationUpdate&& u) {
    if (!u.tokens.empty() && !first.HasBeenNotified()) {
      first_at = absl::Now();
      first.Notify();
    }
    if (u.finished) done.Notify();
  });
  if (!submitted.ok()) std::abort();
  done.WaitForNotification();
  return first_at - start;
}

// arg 0: miss (every system prompt new), 1: hit (one system prompt, cached once).
void BM_TimeToFirstToken(benchmark::State& state) {
  const bool hit = state.range(0) == 1;
  std::unique_ptr<Engine> engine = MakeEngine(4);
  std::mt19937 rng(42);
  std::vector<TokenId> system = RandomTokens(rng, kSystemTokens);
  if (hit) TimeToFirstToken(*engine, Request(system, 1));  // warm the cache
  int64_t cached = 0;
  for (auto _ : state) {
    if (!hit) system = RandomTokens(rng, kSystemTokens);
    std::vector<TokenId> prompt = system;
    const std::vector<TokenId> question = RandomTokens(rng, kQuestionTokens);
    prompt.insert(prompt.end(), question.begin(), question.end());
    state.SetIterationTime(absl::ToDoubleSeconds(TimeToFirstToken(*engine, Request(prompt, 1))));
  }
  cached = engine->Stats().counters.prompt_tokens_cached;
  state.counters["cached_tokens_per_request"] =
      benchmark::Counter(static_cast<double>(cached) / state.iterations());
  state.SetLabel(hit ? "hit" : "miss");
}

// Time to first token of a `prefill_tokens` prompt that nothing in the cache matches: one
// whole-prompt prefill step plus the first sample.
void BM_Prefill(benchmark::State& state) {
  const int n = absl::GetFlag(FLAGS_prefill_tokens);
  std::unique_ptr<Engine> engine = MakeEngine(1, std::max(n, 256));
  std::mt19937 rng(11);
  TimeToFirstToken(*engine, Request(RandomTokens(rng, n), 1));  // warm-up
  for (auto _ : state) {
    state.SetIterationTime(
        absl::ToDoubleSeconds(TimeToFirstToken(*engine, Request(RandomTokens(rng, n), 1))));
  }
  state.counters["prompt_tokens"] = n;
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
}

// Decode throughput: `batch` requests of a `context`-token prompt, `new_tokens` new tokens
// each, measured from the last request's first token to the first request's last, when all
// `batch` are decoding together.
void BM_Decode(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int context = absl::GetFlag(FLAGS_context);
  const int new_tokens = absl::GetFlag(FLAGS_new_tokens);
  std::unique_ptr<Engine> engine = MakeEngine(batch);
  std::mt19937 rng(7);
  int64_t tokens = 0;
  double seconds = 0;
  auto run_once = [&] {
    absl::Mutex mu;
    int remaining = batch;
    std::vector<int> generated(batch, 0);
    // When every request has its first token, and when the first one finishes: the span in
    // which the whole batch decodes together.
    absl::Time all_started = absl::InfinitePast(), first_done = absl::InfiniteFuture();
    int started = 0;
    int64_t steady_tokens = 0;
    for (int i = 0; i < batch; ++i) {
      auto submitted = engine->Submit(
          Request(RandomTokens(rng, context), new_tokens), [&, i](GenerationUpdate&& u) {
            absl::MutexLock lock(&mu);
            const absl::Time now = absl::Now();
            if (!u.tokens.empty() && generated[i] == 0 && ++started == batch) all_started = now;
            if (started == batch && first_done == absl::InfiniteFuture() && generated[i] > 0) {
              steady_tokens += static_cast<int64_t>(u.tokens.size());
            }
            generated[i] += static_cast<int>(u.tokens.size());
            if (u.finished) {
              first_done = std::min(first_done, now);
              --remaining;
            }
          });
      if (!submitted.ok()) std::abort();
    }
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int* r) { return *r == 0; }, &remaining));
    return std::pair<int64_t, double>(steady_tokens,
                                      absl::ToDoubleSeconds(first_done - all_started));
  };
  run_once();  // warm-up
  for (auto _ : state) {
    const auto [n, s] = run_once();
    state.SetIterationTime(s);
    tokens += n;
    seconds += s;
  }
  // What a step must read at least, for the bandwidth bound (docs/benchmarks.md): every
  // weight once, and each sequence's K/V so far.
  const ModelConfig& config = engine->config();
  const DType dtype = engine->backend().compute_dtype();
  state.counters["weight_bytes"] =
      static_cast<double>(config.NumParameters()) * static_cast<double>(DTypeSize(dtype));
  state.counters["kv_bytes_per_token"] =
      static_cast<double>(KvCache::BytesPerBlock(config, 16, dtype)) / 16;
  // Decode steps replayed as CUDA graphs (0 where the backend records none).
  const EngineStats stats = engine->Stats();
  state.counters["graph_replays_per_step"] =
      stats.counters.steps > 0
          ? static_cast<double>(stats.decode_graphs.replays) / stats.counters.steps
          : 0;
  state.counters["context"] = context;
  state.counters["new_tokens"] = new_tokens;
  state.counters["tokens_per_second"] = seconds > 0 ? tokens / seconds : 0;
  state.counters["step_ms"] = tokens > 0 ? 1e3 * seconds * batch / tokens : 0;
}

// A conversation comes back after other traffic pushed its history out of the device:
// time to first token of its next turn (the history plus a 64-token question) when the
// history is recomputed (arg 0: no host tier), promoted from the host tier (1), or still
// on the device (2: a plain hit). The device pool holds two conversations; two others of
// the same length run in between. Promotion's cost is host minus device; the bytes
// promoted per turn over that gives the promotion bandwidth (docs/benchmarks.md).
void BM_ReturningConversation(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  const int n = absl::GetFlag(FLAGS_conversation_tokens);
  const int64_t pool = 2 * int64_t{n} + 4 * kQuestionTokens;
  std::unique_ptr<Engine> engine =
      MakeEngine(1, std::max(n + kQuestionTokens, 256), pool, mode == 1 ? 4 * int64_t{n} : 0);
  std::mt19937 rng(5);
  int64_t promoted_bytes = 0, cached = 0;
  for (auto _ : state) {  // manual time: only the returning turn counts
    std::vector<TokenId> history = RandomTokens(rng, n);
    TimeToFirstToken(*engine, Request(history, 1));
    if (mode != 2) {
      for (int i = 0; i < 2; ++i) TimeToFirstToken(*engine, Request(RandomTokens(rng, n), 1));
    }
    const std::vector<TokenId> question = RandomTokens(rng, kQuestionTokens);
    history.insert(history.end(), question.begin(), question.end());
    const EngineStats before = engine->Stats();
    state.SetIterationTime(absl::ToDoubleSeconds(TimeToFirstToken(*engine, Request(history, 1))));
    const EngineStats after = engine->Stats();
    promoted_bytes += after.host_kv.bytes_to_device - before.host_kv.bytes_to_device;
    cached += after.counters.prompt_tokens_cached - before.counters.prompt_tokens_cached;
  }
  state.counters["history_tokens"] = n;
  state.counters["cached_tokens_per_turn"] =
      benchmark::Counter(static_cast<double>(cached) / state.iterations());
  state.counters["promoted_bytes_per_turn"] =
      benchmark::Counter(static_cast<double>(promoted_bytes) / state.iterations());
  state.SetLabel(mode == 0 ? "recompute" : mode == 1 ? "host" : "device");
}

}  // namespace
}  // namespace prefixd

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  using prefixd::BM_Decode;
  using prefixd::BM_Prefill;
  using prefixd::BM_ReturningConversation;
  using prefixd::BM_TimeToFirstToken;
  const double min_time_s = absl::GetFlag(FLAGS_min_time_s);
  auto min_time = [&](double seconds) { return min_time_s > 0 ? min_time_s : seconds; };
  benchmark::RegisterBenchmark("BM_TimeToFirstToken", BM_TimeToFirstToken)
      ->ArgName("hit")
      ->Arg(0)
      ->Arg(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(min_time(2.0));
  benchmark::RegisterBenchmark("BM_ReturningConversation", BM_ReturningConversation)
      ->ArgName("from")
      ->Arg(0)
      ->Arg(1)
      ->Arg(2)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(min_time(3.0));
  benchmark::RegisterBenchmark("BM_Prefill", BM_Prefill)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(min_time(1.0));
  auto* decode = benchmark::RegisterBenchmark("BM_Decode", BM_Decode)
                     ->ArgName("batch")
                     ->UseManualTime()
                     ->Unit(benchmark::kMillisecond)
                     ->Iterations(2);
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_decode_batches), ',')) {
    int batch = 0;
    if (!absl::SimpleAtoi(b, &batch) || batch < 1) {
      std::fprintf(stderr, "engine_bench: bad --decode_batches entry '%s'\n",
                   std::string(b).c_str());
      return 2;
    }
    decode->Arg(batch);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
