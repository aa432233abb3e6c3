// Time to first token with and without a cached system prompt, and decode throughput, on
// the test model through the real Engine (CPU backend).
//
//   build/bench/engine/engine_bench --benchmark_format=json --benchmark_out=engine.json
//
// BM_TimeToFirstToken/miss and /hit run in one process, so their ratio is what to read on a
// noisy machine (docs/benchmarks.md).
#include <memory>
#include <random>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "engine/engine.h"
#include "engine/model_loader.h"

namespace prefixd {
namespace {

constexpr int kSystemTokens = 2048;
constexpr int kQuestionTokens = 64;

std::vector<TokenId> RandomTokens(std::mt19937& rng, int n) {
  std::vector<TokenId> t(n);
  for (TokenId& id : t) id = static_cast<TokenId>(rng() % 500);
  return t;
}

std::unique_ptr<Engine> MakeEngine(int max_running) {
  std::unique_ptr<Backend> backend = MakeCpuBackend();
  absl::StatusOr<LoadedModel> model = LoadModel(PREFIXD_TEST_MODEL_DIR, "", *backend);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    std::abort();
  }
  EngineOptions o;
  o.kv_cache_tokens = 64 * 1024;
  o.max_batch_tokens = 4096;  // a whole 2112-token prompt in one step
  o.max_running_requests = max_running;
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(std::move(backend), *std::move(model), o);
  if (!engine.ok()) std::abort();
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
BENCHMARK(BM_TimeToFirstToken)
    ->ArgName("hit")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

// Decode throughput: `batch` requests of a 32-token prompt, 128 new tokens each, measured
// from the first token to the last.
void BM_Decode(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  constexpr int kNewTokens = 128;
  std::unique_ptr<Engine> engine = MakeEngine(batch);
  std::mt19937 rng(7);
  int64_t tokens = 0;
  for (auto _ : state) {
    absl::Mutex mu;
    int remaining = batch;
    absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
    for (int i = 0; i < batch; ++i) {
      auto submitted = engine->Submit(Request(RandomTokens(rng, 32), kNewTokens),
                                      [&](GenerationUpdate&& u) {
                                        absl::MutexLock lock(&mu);
                                        const absl::Time now = absl::Now();
                                        if (!u.tokens.empty()) first = std::min(first, now);
                                        if (u.finished) {
                                          last = std::max(last, now);
                                          --remaining;
                                        }
                                      });
      if (!submitted.ok()) std::abort();
    }
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* r) { return *r == 0; }, &remaining));
    state.SetIterationTime(absl::ToDoubleSeconds(last - first));
    tokens += int64_t{batch} * (kNewTokens - 1);
  }
  state.counters["tokens_per_second"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode)->ArgName("batch")->Arg(1)->Arg(16)->UseManualTime()->Unit(
    benchmark::kMillisecond);

}  // namespace
}  // namespace prefixd

BENCHMARK_MAIN();
