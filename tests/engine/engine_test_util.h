// Helpers for tests that drive a real Engine on the test model.
#ifndef PREFIXD_TESTS_ENGINE_ENGINE_TEST_UTIL_H_
#define PREFIXD_TESTS_ENGINE_ENGINE_TEST_UTIL_H_

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "gtest/gtest.h"

namespace prefixd::testing {

// The checkpoint make-test-model writes at build time, or a copy of it named by the
// environment's PREFIXD_TEST_MODEL_DIR (the test binaries run elsewhere: scripts/gpu_check.sh).
inline std::string TestModelDir() {
  const char* moved = std::getenv("PREFIXD_TEST_MODEL_DIR");
  return moved != nullptr && *moved != '\0' ? moved : PREFIXD_TEST_MODEL_DIR;
}

// An engine on `backend` with the model in `model_dir` (failures are reported, and give
// null).
inline std::unique_ptr<Engine> MakeEngineOn(std::unique_ptr<Backend> backend,
                                            const std::string& model_dir, EngineOptions options) {
  absl::StatusOr<LoadedModel> model = LoadModel(model_dir, {}, *backend);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(std::move(backend), *std::move(model), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// The test model on the CPU, with one compute thread: tests run in parallel on small
// machines (see server_process.h).
inline std::unique_ptr<Engine> MakeTestEngine(EngineOptions options) {
  return MakeEngineOn(MakeCpuBackend(1), TestModelDir(), options);
}

// Everything one request streamed back.
struct Outcome {
  std::vector<TokenId> tokens;
  std::string text;
  std::vector<SampledToken> logprobs;
  absl::Status status;
  FinishReason finish_reason = FinishReason::kNone;
  RequestUsage usage;
  int updates = 0;
  int terminal_updates = 0;
};

// Collects a request's updates; Wait() blocks until the terminal one.
class Stream {
 public:
  UpdateCallback Callback() {
    return [this](GenerationUpdate&& u) {
      absl::MutexLock lock(&mu_);
      ++outcome_.updates;
      outcome_.tokens.insert(outcome_.tokens.end(), u.tokens.begin(), u.tokens.end());
      outcome_.text += u.text;
      for (SampledToken& t : u.logprobs) outcome_.logprobs.push_back(std::move(t));
      if (u.finished) {
        ++outcome_.terminal_updates;
        outcome_.status = u.status;
        outcome_.finish_reason = u.finish_reason;
        outcome_.usage = u.usage;
      }
    };
  }
  Outcome Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Outcome* o) { return o->terminal_updates > 0; }, &outcome_));
    return outcome_;
  }
  // Blocks until at least `n` updates arrived.
  void WaitForUpdates(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return outcome_.updates >= n; };
    mu_.Await(absl::Condition(&enough));
  }

 private:
  absl::Mutex mu_;
  Outcome outcome_ ABSL_GUARDED_BY(mu_);
};

inline GenerationRequest Greedy(std::vector<TokenId> prompt, int max_tokens,
                                std::string tenant = "default") {
  GenerationRequest r;
  r.ns = CacheNamespace{std::move(tenant), "test", ""};
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

// Submits every request at once and waits for all of them.
inline std::vector<Outcome> RunAll(Engine& engine, const std::vector<GenerationRequest>& reqs) {
  std::vector<std::unique_ptr<Stream>> streams;
  for (const GenerationRequest& r : reqs) {
    streams.push_back(std::make_unique<Stream>());
    absl::StatusOr<RequestId> id = engine.Submit(r, streams.back()->Callback());
    EXPECT_TRUE(id.ok()) << id.status();
  }
  std::vector<Outcome> out;
  for (auto& s : streams) out.push_back(s->Wait());
  return out;
}

inline Outcome RunOne(Engine& engine, const GenerationRequest& r) { return RunAll(engine, {r})[0]; }

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_ENGINE_ENGINE_TEST_UTIL_H_
