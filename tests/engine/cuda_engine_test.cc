// The whole model on the GPU: the CUDA engine against the CPU reference on the test
// checkpoint, cache hits against cache off on the GPU, and (where PREFIXD_HF_REFERENCE names
// folders written by tools/hf_reference.py) both backends against Hugging Face transformers.
// The GPU tests skip on a machine without a CUDA device; the CPU's comparison with
// transformers runs wherever PREFIXD_HF_REFERENCE is set.
//
// Tolerance. The CUDA backend keeps weights, activations and K/V in bf16 (8 significant
// bits: each rounding moves a value by up to 2^-9 of itself) and accumulates in fp32; the
// CPU reference is fp32. A logprob therefore differs by a small multiple of 2^-9 of the
// logits' spread after a few layers: against the CPU (and between cache hit and miss on
// the GPU) we allow |Δ logprob| <= 0.05 + 0.02 |logprob| and print the largest difference
// seen. Greedy tokens must be identical, except that bf16 may flip a near tie: where the
// runs first choose differently, the reference must rate the two tokens within twice that
// tolerance of each other (and the comparison stops there, since the sequences differ from
// then on). Against transformers the bf16 tolerance is measured instead (see that test).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_backend.h"
#include "nlohmann/json.hpp"
#include "tests/engine/engine_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::Greedy;
using ::prefixd::testing::MakeEngineOn;
using ::prefixd::testing::Outcome;
using ::prefixd::testing::RunAll;
using ::prefixd::testing::RunOne;
using ::testing::IsEmpty;

constexpr int kNewTokens = 32;

// |Δ logprob| allowed against a reference: atol + rtol |reference|.
struct Tolerance {
  float atol, rtol;
  float operator()(float reference_logprob) const {
    return atol + rtol * std::abs(reference_logprob);
  }
};
constexpr Tolerance kBf16{0.05f, 0.02f};
constexpr Tolerance kFp32{2e-3f, 1e-4f};

std::vector<TokenId> Tokens(int seed, int n, int vocab) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t(n);
  for (TokenId& id : t) id = static_cast<TokenId>(rng() % vocab);
  return t;
}

// What one comparison of greedy outputs found.
struct Agreement {
  int same_tokens = 0;       // leading tokens both chose alike
  bool diverged = false;     // they then chose differently
  float max_error = 0.0f;    // largest |Δ logprob| over the compared steps
  float first_error = 0.0f;  // |Δ logprob| of the first token (the prefill's)
  std::vector<std::string> problems;
};

// Compares `got` with the reference `want` (tokens and, per step, the chosen token's
// logprob and the top alternatives) under the rule in the file comment; what breaks the
// rule is listed in problems, named by `what`.
Agreement Compare(const std::vector<TokenId>& want_tokens,
                  const std::vector<SampledToken>& want_logprobs,
                  const std::vector<TokenId>& got_tokens,
                  const std::vector<SampledToken>& got_logprobs, const std::string& what,
                  Tolerance tol) {
  Agreement a;
  auto problem = [&](size_t step, const std::string& text) {
    a.problems.push_back(absl::StrCat(what, " step ", step, ": ", text));
  };
  if (got_tokens.size() != want_tokens.size()) {
    problem(0, absl::StrCat(got_tokens.size(), " tokens, want ", want_tokens.size()));
  }
  const size_t n =
      std::min({want_tokens.size(), got_tokens.size(), want_logprobs.size(), got_logprobs.size()});
  auto find = [](const SampledToken& s, TokenId token) {
    return std::find_if(s.top.begin(), s.top.end(),
                        [&](const TopLogprob& t) { return t.token == token; });
  };
  for (size_t i = 0; i < n; ++i) {
    const SampledToken& w = want_logprobs[i];
    const SampledToken& g = got_logprobs[i];
    if (got_tokens[i] != want_tokens[i]) {
      a.diverged = true;
      auto theirs = find(w, got_tokens[i]);  // the reference's view of the token chosen
      if (theirs == w.top.end()) {
        problem(i, absl::StrCat("chose ", got_tokens[i], ", not among the reference's top ",
                                w.top.size()));
      } else if (w.logprob - theirs->logprob > 2 * tol(w.logprob)) {
        problem(i, absl::StrCat("chose ", got_tokens[i], " (", theirs->logprob, ") over ",
                                want_tokens[i], " (", w.logprob, "), not a near tie"));
      }
      return a;  // the sequences differ from here on
    }
    ++a.same_tokens;
    const float error = std::abs(g.logprob - w.logprob);
    if (i == 0) a.first_error = error;
    a.max_error = std::max(a.max_error, error);
    if (error > tol(w.logprob)) {
      problem(i, absl::StrCat("logprob ", g.logprob, ", reference ", w.logprob));
    }
    for (const TopLogprob& t : g.top) {
      auto u = find(w, t.token);
      if (u == w.top.end()) continue;
      a.max_error = std::max(a.max_error, std::abs(t.logprob - u->logprob));
      if (std::abs(t.logprob - u->logprob) > tol(u->logprob)) {
        problem(i, absl::StrCat("alternative ", t.token, " logprob ", t.logprob, ", reference ",
                                u->logprob));
      }
    }
  }
  return a;
}

Agreement Compare(const Outcome& want, const Outcome& got, const std::string& what,
                  Tolerance tol = kBf16) {
  EXPECT_TRUE(got.status.ok()) << what << ": " << got.status;
  return Compare(want.tokens, want.logprobs, got.tokens, got.logprobs, what, tol);
}

EngineOptions GpuOptions() {
  EngineOptions o;
  o.kv_cache_tokens = 64 * 1024;  // not 90 % of the card: tests share it
  o.max_batch_tokens = 512;
  o.max_running_requests = 16;
  o.check_invariants = true;
  return o;
}

class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  }
};

// Twelve prompts over a shared system prompt and alone, greedy, with top logprobs.
std::vector<GenerationRequest> Prompts(int vocab) {
  const std::vector<TokenId> system = Tokens(1, 100, vocab);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 12; ++i) {
    std::vector<TokenId> prompt = i < 6 ? system : std::vector<TokenId>{};
    const std::vector<TokenId> own = Tokens(10 + i, 3 + 11 * i, vocab);
    prompt.insert(prompt.end(), own.begin(), own.end());
    GenerationRequest r = Greedy(std::move(prompt), kNewTokens);
    r.sampling.top_logprobs = 5;
    reqs.push_back(std::move(r));
  }
  return reqs;
}

TEST_F(CudaEngineTest, TestCheckpointMatchesTheCpu) {
  EngineOptions cpu_options = GpuOptions();
  cpu_options.prefix_cache = false;
  std::unique_ptr<Engine> cpu =
      MakeEngineOn(MakeCpuBackend(0), ::prefixd::testing::TestModelDir(), cpu_options);
  std::unique_ptr<Engine> gpu =
      MakeEngineOn(MakeCudaBackend(), ::prefixd::testing::TestModelDir(), GpuOptions());
  ASSERT_TRUE(cpu && gpu);
  const std::vector<GenerationRequest> reqs = Prompts(500);
  const std::vector<Outcome> want = RunAll(*cpu, reqs);
  const std::vector<Outcome> got = RunAll(*gpu, reqs);
  int identical = 0;
  float max_error = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Agreement a = Compare(want[i], got[i], absl::StrCat("prompt ", i));
    EXPECT_THAT(a.problems, IsEmpty());
    identical += a.same_tokens == kNewTokens;
    max_error = std::max(max_error, a.max_error);
  }
  std::printf(
      "test checkpoint, GPU vs CPU: %d of %zu prompts identical for %d tokens, largest "
      "logprob difference %.4f\n",
      identical, reqs.size(), kNewTokens, max_error);
  EXPECT_GE(identical, 8);
}

TEST_F(CudaEngineTest, CacheHitsNeverChangeTheOutputOnTheGpu) {
  EngineOptions off = GpuOptions();
  off.prefix_cache = false;
  std::unique_ptr<Engine> reference =
      MakeEngineOn(MakeCudaBackend(), ::prefixd::testing::TestModelDir(), off);
  ASSERT_TRUE(reference);
  const std::vector<GenerationRequest> reqs = Prompts(500);
  std::vector<Outcome> want;
  for (const GenerationRequest& r : reqs) want.push_back(RunOne(*reference, r));
  reference.reset();

  // Cache on, batched, prefill chunked to 32 tokens a step: prompts 1..5 hit the system
  // prompt that prompt 0 left in the cache, and each request runs twice.
  EngineOptions on = GpuOptions();
  on.max_batch_tokens = 32;
  std::unique_ptr<Engine> engine =
      MakeEngineOn(MakeCudaBackend(), ::prefixd::testing::TestModelDir(), on);
  ASSERT_TRUE(engine);
  int64_t cached = 0;
  for (int round = 0; round < 2; ++round) {
    const std::vector<Outcome> got = RunAll(*engine, reqs);
    for (size_t i = 0; i < reqs.size(); ++i) {
      const Agreement a = Compare(want[i], got[i], absl::StrCat("round ", round, " prompt ", i));
      EXPECT_THAT(a.problems, IsEmpty());
      cached += got[i].usage.cached_tokens;
    }
  }
  EXPECT_GT(cached, 0) << "nothing was served from the cache";
  EXPECT_TRUE(engine->CheckInvariants().ok());
}

// Reference outputs that tools/hf_reference.py wrote next to a model it saved: transformers'
// fp32 greedy path (tokens, and per step the chosen token's logprob and the top 5), and
// transformers' bf16 read along that same path (its logprobs of those top 5, its own pick).
struct HfCase {
  std::vector<TokenId> prompt, tokens;
  std::vector<SampledToken> steps;
  std::vector<std::vector<float>> bf16_top;  // per step, aligned with steps[k].top
  std::vector<TokenId> bf16_argmax;
};

std::vector<HfCase> ReadReference(const std::string& path) {
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in);
  std::vector<HfCase> cases;
  for (const auto& c : j.at("cases")) {
    HfCase r;
    r.prompt = c.at("prompt").get<std::vector<TokenId>>();
    r.tokens = c.at("tokens").get<std::vector<TokenId>>();
    for (const auto& step : c.at("steps")) {
      SampledToken t;
      t.logprob = step.at("logprob").get<float>();
      for (const auto& alt : step.at("top")) {
        t.top.push_back(TopLogprob{alt.at(0).get<int32_t>(), alt.at(1).get<float>()});
      }
      r.steps.push_back(std::move(t));
    }
    for (const auto& step : c.at("bf16_forced")) {
      r.bf16_top.push_back(step.at("top").get<std::vector<float>>());
      r.bf16_argmax.push_back(step.at("argmax").get<TokenId>());
    }
    cases.push_back(std::move(r));
  }
  return cases;
}

// How far a run lands from the fp32 reference along the reference's own greedy path.
struct PathAgreement {
  int steps = 0;
  float max_error = 0;  // largest |Δ logprob| over the reference's top 5, every step
  int clear_steps = 0;  // steps whose top-1 margin is more than errors within tolerance move
  int clear_flips = 0;  // of those, steps where the run's first choice differs
  std::vector<std::string> problems;
};

// The reference's top-1 margin at a step: how far its first choice leads its second.
float Margin(const SampledToken& ref) {
  return ref.top.size() < 2 ? 1e9f : ref.top[0].logprob - ref.top[1].logprob;
}

// transformers' bf16 against its fp32: the yardstick of what bf16 alone costs.
PathAgreement HfBf16Agreement(const std::vector<HfCase>& cases) {
  PathAgreement a;
  for (const HfCase& c : cases) {
    for (size_t k = 0; k < c.steps.size(); ++k) {
      ++a.steps;
      for (size_t t = 0; t < c.steps[k].top.size(); ++t) {
        a.max_error = std::max(a.max_error, std::abs(c.bf16_top[k][t] - c.steps[k].top[t].logprob));
      }
    }
  }
  for (const HfCase& c : cases) {
    for (size_t k = 0; k < c.steps.size(); ++k) {
      if (Margin(c.steps[k]) <= 2 * a.max_error) continue;
      ++a.clear_steps;
      a.clear_flips += c.bf16_argmax[k] != c.steps[k].top[0].token;
    }
  }
  return a;
}

// Runs `engine` along each case's reference path (teacher forcing): for step k a request of
// the prompt and the reference's first k tokens generates one token with its top 5. Every
// logprob of the reference's top 5 that the run also lists must be within `tol` of the
// reference's, the reference's first choice must be among the run's top 5, and wherever the
// reference's margin is over the two tokens' tolerances together (so that no errors within
// them can swap the two) the run must choose as the reference did.
PathAgreement RunAlongPath(Engine& engine, const std::vector<HfCase>& cases, Tolerance tol) {
  std::vector<GenerationRequest> reqs;
  std::vector<std::pair<size_t, size_t>> where;  // (case, step)
  for (size_t i = 0; i < cases.size(); ++i) {
    for (size_t k = 0; k < cases[i].steps.size(); ++k) {
      std::vector<TokenId> prompt = cases[i].prompt;
      prompt.insert(prompt.end(), cases[i].tokens.begin(), cases[i].tokens.begin() + k);
      GenerationRequest r = Greedy(std::move(prompt), 1);
      r.sampling.top_logprobs = 5;
      reqs.push_back(std::move(r));
      where.emplace_back(i, k);
    }
  }
  const std::vector<Outcome> got = RunAll(engine, reqs);
  PathAgreement a;
  for (size_t n = 0; n < got.size(); ++n) {
    const auto [i, k] = where[n];
    const std::string what = absl::StrCat("prompt ", i, " step ", k, ": ");
    if (!got[n].status.ok() || got[n].logprobs.size() != 1) {
      a.problems.push_back(absl::StrCat(what, "no token (", got[n].status.ToString(), ")"));
      continue;
    }
    ++a.steps;
    const SampledToken& ref = cases[i].steps[k];
    const SampledToken& ours = got[n].logprobs[0];
    bool has_first = false;
    for (const TopLogprob& r : ref.top) {
      auto it = std::find_if(ours.top.begin(), ours.top.end(),
                             [&](const TopLogprob& t) { return t.token == r.token; });
      if (it == ours.top.end()) continue;
      has_first |= r.token == ref.top[0].token;
      const float error = std::abs(it->logprob - r.logprob);
      a.max_error = std::max(a.max_error, error);
      if (error > tol(r.logprob)) {
        a.problems.push_back(absl::StrCat(what, "token ", r.token, " logprob ", it->logprob,
                                          ", reference ", r.logprob, " (allowed ", tol(r.logprob),
                                          ")"));
      }
    }
    if (!has_first) {
      a.problems.push_back(absl::StrCat(what, "the reference's choice ", ref.top[0].token,
                                        " is not among our top ", ours.top.size()));
    }
    if (ref.top.size() >= 2 && Margin(ref) > tol(ref.top[0].logprob) + tol(ref.top[1].logprob)) {
      ++a.clear_steps;
      if (got[n].tokens[0] != ref.top[0].token) {
        ++a.clear_flips;
        a.problems.push_back(absl::StrCat(what, "chose ", got[n].tokens[0], " over ",
                                          ref.top[0].token, ", which leads by ", Margin(ref)));
      }
    }
  }
  return a;
}

// Against transformers in fp32, along transformers' own greedy path, on both backends.
//  - The CPU computes in fp32 like the reference: within kFp32 at every step, which shows
//    the model is computed as Hugging Face defines it.
//  - The GPU computes in bf16. The tolerance is measured, not guessed: transformers' own
//    bf16 read along the same path lands some distance from its fp32; prefixd's bf16 may
//    land up to 1.5 times as far (issue 15's aim), and must choose as the reference does
//    wherever the reference's margin is over twice that. Both checks can fail on any model.
class HfReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dirs = std::getenv("PREFIXD_HF_REFERENCE");
    if (dirs == nullptr || *dirs == '\0') {
      GTEST_SKIP() << "set PREFIXD_HF_REFERENCE to folders written by tools/hf_reference.py";
    }
    dirs_ = absl::StrSplit(dirs, ':', absl::SkipEmpty());
  }

  // Runs each reference model on the CPU (gpu false) or the GPU, checks it, and records the
  // figures as test properties (in --gtest_output's JSON).
  void Check(bool gpu) {
    for (const std::string& dir : dirs_) {
      SCOPED_TRACE(dir);
      const std::vector<HfCase> cases = ReadReference(dir + "/reference.json");
      ASSERT_FALSE(cases.empty());
      const PathAgreement hf = HfBf16Agreement(cases);
      const Tolerance tol = gpu ? Tolerance{std::max(1.5f * hf.max_error, 1e-4f), 0} : kFp32;
      std::unique_ptr<Engine> engine =
          MakeEngineOn(gpu ? MakeCudaBackend() : MakeCpuBackend(0), dir, GpuOptions());
      ASSERT_TRUE(engine);
      const PathAgreement ours = RunAlongPath(*engine, cases, tol);
      EXPECT_THAT(ours.problems, IsEmpty());
      EXPECT_EQ(ours.steps, hf.steps);
      const std::string arch = std::filesystem::path(dir).filename().string();
      const std::string backend = gpu ? "cuda" : "cpu";
      RecordProperty(arch + "_hf_bf16_max_error", absl::StrCat(hf.max_error));
      RecordProperty(arch + "_" + backend + "_max_error", absl::StrCat(ours.max_error));
      RecordProperty(arch + "_" + backend + "_error_ratio",
                     absl::StrCat(hf.max_error > 0 ? ours.max_error / hf.max_error : 0));
      RecordProperty(arch + "_" + backend + "_clear_flips",
                     absl::StrCat(ours.clear_flips, "/", ours.clear_steps));
      std::printf(
          "%s: %d steps along transformers' fp32 greedy path. transformers bf16: largest "
          "logprob error %.4f, %d of %d clear steps chosen differently. prefixd on %s: largest "
          "error %.4f (%.2fx transformers bf16's; allowed %.4f + %.4f |lp|), %d of %d clear "
          "steps chosen differently\n",
          dir.c_str(), hf.steps, hf.max_error, hf.clear_flips, hf.clear_steps, backend.c_str(),
          ours.max_error, hf.max_error > 0 ? ours.max_error / hf.max_error : 0.0, tol.atol,
          tol.rtol, ours.clear_flips, ours.clear_steps);
    }
  }

  std::vector<std::string> dirs_;
};

TEST_F(HfReferenceTest, TheCpuMatchesTransformersFp32AlongItsGreedyPath) { Check(false); }

TEST_F(HfReferenceTest, TheGpuLandsWithinTransformersOwnBf16Error) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  Check(true);
}

}  // namespace
}  // namespace prefixd
