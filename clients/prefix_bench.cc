// prefix-bench — load generator for prefixd: the shared-system-prompt workload (SGLang's
// generated-shared-prefix benchmark) and multi-turn chats. Run `prefix-bench --help`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "clients/bench/bench_report.h"
#include "clients/bench/bench_runner.h"
#include "clients/bench/multi_turn_report.h"
#include "clients/bench/multi_turn_runner.h"
#include "clients/bench/multi_turn_workload.h"
#include "clients/bench/openai_runner.h"
#include "clients/bench/workload.h"
#include "clients/cpp/command_line.h"
#include "clients/cpp/prefixd_client.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "prefixd address");
ABSL_FLAG(std::string, token, "", "bearer token (default: $PREFIXD_TOKEN)");
ABSL_FLAG(std::string, tls_ca_file, "", "connect over TLS, trusting this PEM CA");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM client certificate, for mutual TLS");
ABSL_FLAG(std::string, tls_key_file, "", "PEM key of --tls_cert_file");
ABSL_FLAG(std::string, workload, "shared-prefix", "shared-prefix or multi-turn");
ABSL_FLAG(std::string, protocol, "grpc", "grpc, openai or both (shared-prefix)");
ABSL_FLAG(std::string, openai_url, "http://127.0.0.1:8000", "prefixd's OpenAI-compatible API");
ABSL_FLAG(std::string, preset, "default", "workload preset");
ABSL_FLAG(int, conversations, 0, "C: conversations (multi-turn)");
ABSL_FLAG(int, turns, 0, "T: turns per conversation (multi-turn)");
ABSL_FLAG(double, temperature, 0, "sampling temperature of the replies (multi-turn; 0: greedy)");
ABSL_FLAG(int, num_groups, 0, "G: groups (system prompts)");
ABSL_FLAG(int, prompts_per_group, 0, "P: prompts per group");
ABSL_FLAG(int, system_prompt_len, 0, "S: system prompt tokens");
ABSL_FLAG(int, question_len, 0, "Q: question tokens");
ABSL_FLAG(int, output_len, 0, "O: output tokens per request");
ABSL_FLAG(uint64_t, seed, 1, "seed of prompts, order and arrivals");
ABSL_FLAG(int, vocab_size, 512, "vocabulary size of the served model");
ABSL_FLAG(int, max_token_id, 503, "largest token id to draw");
ABSL_FLAG(double, request_rate, std::numeric_limits<double>::infinity(), "requests/s");
ABSL_FLAG(int, concurrency, 0, "streams in flight at most (0: no limit)");
ABSL_FLAG(int, warmup, 0, "warmup requests");
ABSL_FLAG(bool, flush, true, "flush the cache before the run");
ABSL_FLAG(double, timeout_s, 0, "per-request deadline in seconds (0: none)");
ABSL_FLAG(std::string, json, "", "write the results as JSON to this file");
ABSL_FLAG(bool, compare_no_cache, false, "also run against --target_no_cache and compare");
ABSL_FLAG(std::string, target_no_cache, "", "a prefixd started with --prefix_cache=false");
ABSL_FLAG(bool, progress, true, "progress bar on stderr when it is a terminal");

namespace prefixd::bench {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailures = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;

constexpr char kHelp[] =
    R"help(prefix-bench — load generator for prefixd: shared system prompts, multi-turn chats

Usage: prefix-bench [flags]

--workload=shared-prefix (the default) follows SGLang's generated-shared-prefix benchmark:
G groups × P prompts; each prompt is its group's system prompt (S tokens) plus a unique
question (Q tokens), and asks for O output tokens (greedy, ignore_eos). Prompts are random
token ids from a seeded RNG and are sent in a seeded random order, so a seed names one exact
workload.

Prints requests/s, input and output tokens/s, time to first token, inter-token latency, time
per output token and end-to-end latency (mean, p50, p90, p99, max in ms), the prefix hit rate
achieved (sum cached_tokens / sum prompt_tokens) against the ideal (P-1)/P · S/(S+Q), and
failed requests by status code. Exit code: 0 all requests succeeded, 1 some failed, 2 usage
error, 3 server unavailable.

--workload=multi-turn plays C conversations of T turns through the chat path
(GenerateRequest.chat, rendered by the model's chat template). Every conversation starts
with the same system message of about S tokens (none when S is 0); each turn adds a user
message of about Q tokens of random words and asks for O tokens (ignore_eos; greedy unless
--temperature is given); the reply text goes back as the assistant's message. Conversations
run side by side (at most --concurrency), each one's turns in order. Message lengths are
sized with the Tokenize RPC; each turn's prompt ids come from Tokenize on the same
conversation, the generated ids from the stream, and the block size from GetStats.
Besides the figures above it reports, per turn, the hit rate achieved next to the ideal:
every full block of the previous turn's prompt and reply that the new prompt repeats (the
common prefix of the previous prompt ++ generated ids and the new prompt; the last
generated token never has KV, so at most prompt + reply - 1 tokens); the first turn can
share only the system message with conversations started before it. Separately: the ideal
if the reply's text re-tokenized to exactly the generated ids, how many replies did not
(the server's prompt leaves the cached path where they differ), where they parted, and the
cached tokens that cost, with examples.

Server:
  --target=HOST:PORT       prefixd address (default 127.0.0.1:50051)
  --token=TOKEN            bearer token (default: the PREFIXD_TOKEN environment variable)
  --timeout_s=SECONDS      per-request deadline (default 0: none)
  --flush / --noflush      flush the target's cache before the run, so that a previous run
                           cannot inflate the hit rate (default: flush)
  --protocol=NAME          shared-prefix: send the requests over grpc (default), over the
                           OpenAI-compatible API (openai: streamed POST /v1/completions with
                           the prompt as token ids), or both, one after the other on the
                           same server (each after a flush), with the ratios side by side.
                           Health checks and flushes always use gRPC (--target)
  --openai_url=URL         the server's OpenAI-compatible API (default http://127.0.0.1:8000)

Workload:
  --workload=NAME          shared-prefix (default) or multi-turn
  --preset=NAME            shared-prefix:
                           default   G=64 P=16 S=2048 Q=128 O=256 (ideal hit rate 88.2 %)
                           cpu-small G=4  P=4  S=256  Q=32  O=16
                           cpu-tiny  G=2  P=4  S=64   Q=16  O=8
                           multi-turn:
                           default   C=32 T=8 S=1024 Q=128 O=256
                           cpu-small C=16 T=6 S=64   Q=32  O=32 (the test model on a CPU)
                           cpu-tiny  C=4  T=3 S=32   Q=16  O=16
  --num_groups=G --prompts_per_group=P (shared-prefix), --conversations=C --turns=T
  (multi-turn), --system_prompt_len=S (multi-turn: 0 for none) --question_len=Q
  --output_len=O           override the preset's value
  --seed=N                 seed of prompts, order and arrival times (default 1)
  --temperature=T          multi-turn: sample the replies at T, with a seed per turn drawn
                           from --seed (default 0: greedy). A random-weights model's greedy
                           replies can be all whitespace, which chat templates trim away
  --vocab_size=N           vocabulary size of the served model (default 512, the test model)
  --max_token_id=N         largest token id drawn, to avoid special tokens (default 503; for
                           Llama 3: --vocab_size=128256 --max_token_id=127999); the
                           multi-turn workload sends text and needs neither

Load:
  --request_rate=R         Poisson arrivals at R requests/s (multi-turn: conversations
                           started per second); inf sends all at once (default)
  --concurrency=N          at most N streams in flight (multi-turn: N conversations)
                           (default 0: no limit)
  --warmup=N               send N unrelated requests first and leave them out of the results
                           (shared-prefix only)

Output:
  --json=FILE              write configuration, results (and comparison) as JSON; with
                           multi-turn also "multi_turn": per_turn and total figures (hit
                           rates achieved, ideal and ideal_exact, retokenization mismatches
                           and lost tokens, TTFT) and every turn's numbers under "requests"
  --noprogress             no progress bar (it is drawn on stderr only when it is a terminal)

Comparison with the cache off:
  --compare_no_cache --target_no_cache=HOST:PORT
                           run the same workload (same seed) against a second prefixd started
                           with --prefix_cache=false and print the ratios of throughput and
                           TTFT p50/p99
)help";

int UsageError(const std::string& message) {
  std::cerr << "prefix-bench: " << message << "\n";
  return kExitUsage;
}

// Reports a failed preparatory call; returns the exit code it deserves.
int ReportSetupError(const PrefixdClient& client, const char* what, const absl::Status& status) {
  std::cerr << "prefix-bench: " << what << " " << client.options().target << ": "
            << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return status.code() == absl::StatusCode::kUnavailable ? kExitUnavailable : kExitFailures;
}

struct RunOutput {
  BenchReport report;
  int exit_code = kExitOk;
};

// Runs `workload` against one server: over gRPC, or over its OpenAI-compatible API when
// `openai` is set (health check and flush still go over gRPC).
RunOutput RunAgainst(const ClientOptions& client_options, const WorkloadConfig& config,
                     const Workload& workload, const RunOptions& run_options, bool flush,
                     int warmup, const std::string& title,
                     const std::optional<OpenAiTarget>& openai = std::nullopt) {
  RunOutput out;
  PrefixdClient client(client_options);
  // An unreachable server is reported once, not as N failed requests.
  absl::StatusOr<ServingStatus> health = client.CheckHealth();
  absl::Status health_status = health.status();
  if (health.ok() && *health != grpc::health::v1::HealthCheckResponse::SERVING) {
    health_status = absl::UnavailableError("the server is not serving");
  }
  if (!health_status.ok()) {
    out.exit_code = ReportSetupError(client, "health check of", health_status);
    return out;
  }
  if (warmup > 0) {
    RunOptions warmup_options = run_options;
    warmup_options.request_rate = std::numeric_limits<double>::infinity();
    warmup_options.progress_label = run_options.progress_label.empty() ? "" : "warmup";
    warmup_options.request_id_prefix = "bench-warmup";
    const std::vector<BenchRequest> warm_requests = GenerateWarmupRequests(config, warmup);
    RunResult warm = openai ? RunOpenAiRequests(*openai, warm_requests, warmup_options)
                            : RunRequests(client, warm_requests, warmup_options);
    int failed = 0;
    for (const RequestRecord& r : warm.records) failed += FailureReason(r).empty() ? 0 : 1;
    if (failed > 0) std::cerr << "prefix-bench: " << failed << " warmup requests failed\n";
  }
  if (flush) {
    if (absl::Status flushed = client.Flush().status(); !flushed.ok()) {
      out.exit_code = ReportSetupError(client, "flush of", flushed);
      return out;
    }
  }
  RunResult result = openai ? RunOpenAiRequests(*openai, workload.requests, run_options)
                            : RunRequests(client, workload.requests, run_options);
  out.report = BuildReport(result.records, result.duration_s, IdealHitRate(config.shape));
  std::cout << FormatReport(out.report, title) << std::flush;
  if (out.report.failed > 0) out.exit_code = kExitFailures;
  return out;
}

nlohmann::ordered_json RequestRateToJson(double rate) {
  // JSON has no infinity: null means all at once.
  return std::isinf(rate) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(rate);
}

nlohmann::ordered_json ConfigToJson(const WorkloadConfig& c, const RunOptions& r, int warmup) {
  const WorkloadShape& s = c.shape;
  return {{"workload", "shared-prefix"},
          {"preset", absl::GetFlag(FLAGS_preset)},
          {"num_groups", s.num_groups},
          {"prompts_per_group", s.prompts_per_group},
          {"system_prompt_len", s.system_prompt_len},
          {"question_len", s.question_len},
          {"output_len", s.output_len},
          {"num_requests", s.num_requests()},
          {"seed", c.seed},
          {"vocab_size", c.vocab_size},
          {"max_token_id", c.max_token_id},
          {"request_rate", RequestRateToJson(r.request_rate)},
          {"concurrency", r.concurrency},
          {"warmup", warmup}};
}

// What the workloads share: where to send, how hard, and what to compare with.
struct CommonOptions {
  ClientOptions client;
  double request_rate = std::numeric_limits<double>::infinity();
  int concurrency = 0;
  uint64_t seed = 1;
  bool flush = true;
  bool compare = false;
  bool progress = true;
};

// Writes `json` to --json's file, if given; returns `exit_code`, or 1 if it cannot write.
int WriteJson(const nlohmann::ordered_json& json, int exit_code) {
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream file(path, std::ios::trunc);
    file << json.dump(2) << "\n";
    file.close();
    if (!file) {
      std::cerr << "prefix-bench: cannot write " << path << "\n";
      return kExitFailures;
    }
  }
  return exit_code;
}

void WarnIfCached(const ClientOptions& no_cache_options, const BenchReport& without_cache) {
  if (without_cache.cached_tokens > 0) {
    std::cerr << "prefix-bench: warning: " << no_cache_options.target << " served "
              << without_cache.cached_tokens
              << " cached tokens; was it started with --prefix_cache=false?\n";
  }
}

int SharedPrefixMain(const CommandLine& command_line, const CommonOptions& common) {
  for (const char* flag : {"conversations", "turns", "temperature"}) {
    if (command_line.given.contains(flag)) {
      return UsageError(absl::StrCat("--", flag, " applies to --workload=multi-turn only"));
    }
  }
  absl::StatusOr<WorkloadShape> shape = WorkloadPreset(absl::GetFlag(FLAGS_preset));
  if (!shape.ok()) return UsageError(std::string(shape.status().message()));
  auto override_if_given = [&](const char* name, int value, int* field) {
    if (command_line.given.contains(name)) *field = value;
  };
  override_if_given("num_groups", absl::GetFlag(FLAGS_num_groups), &shape->num_groups);
  override_if_given("prompts_per_group", absl::GetFlag(FLAGS_prompts_per_group),
                    &shape->prompts_per_group);
  override_if_given("system_prompt_len", absl::GetFlag(FLAGS_system_prompt_len),
                    &shape->system_prompt_len);
  override_if_given("question_len", absl::GetFlag(FLAGS_question_len), &shape->question_len);
  override_if_given("output_len", absl::GetFlag(FLAGS_output_len), &shape->output_len);

  WorkloadConfig config;
  config.shape = *shape;
  config.seed = common.seed;
  config.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  config.max_token_id = absl::GetFlag(FLAGS_max_token_id);
  absl::StatusOr<Workload> workload = GenerateWorkload(config);
  if (!workload.ok()) return UsageError(std::string(workload.status().message()));
  const int warmup = absl::GetFlag(FLAGS_warmup);
  if (warmup < 0) return UsageError("--warmup must be >= 0");

  RunOptions run_options;
  run_options.request_rate = common.request_rate;
  run_options.concurrency = common.concurrency;
  run_options.seed = config.seed;

  const ClientOptions& client_options = common.client;
  const WorkloadShape& s = config.shape;
  std::cout << absl::StrFormat(
      "prefix-bench: %d requests (G=%d × P=%d, S=%d + Q=%d prompt tokens, O=%d output tokens), "
      "seed %d; request rate %s, concurrency %s\n",
      s.num_requests(), s.num_groups, s.prompts_per_group, s.system_prompt_len, s.question_len,
      s.output_len, config.seed,
      std::isinf(run_options.request_rate) ? "inf" : absl::StrCat(run_options.request_rate),
      run_options.concurrency > 0 ? absl::StrCat(run_options.concurrency) : "unlimited");

  const std::string protocol = absl::GetFlag(FLAGS_protocol);
  std::optional<OpenAiTarget> openai;
  if (protocol != "grpc") {
    absl::StatusOr<OpenAiTarget> target = ParseOpenAiUrl(absl::GetFlag(FLAGS_openai_url));
    if (!target.ok()) return UsageError(std::string(target.status().message()));
    target->bearer_token = client_options.bearer_token;
    target->deadline = client_options.deadline;
    openai = *std::move(target);
  }
  // --protocol=both: gRPC first, then the OpenAI API, each on a flushed cache.
  const std::optional<OpenAiTarget> first =
      protocol == "openai" ? openai : std::optional<OpenAiTarget>();
  const std::string where =
      protocol == "openai" ? absl::GetFlag(FLAGS_openai_url) : client_options.target;
  if (common.progress) run_options.progress_label = "prefix cache";
  RunOutput with_cache = RunAgainst(client_options, config, *workload, run_options, common.flush,
                                    warmup, absl::StrCat("prefix-bench: ", where), first);
  if (with_cache.exit_code == kExitUnavailable) return with_cache.exit_code;

  nlohmann::ordered_json json = {{"config", ConfigToJson(config, run_options, warmup)},
                                 {"target", client_options.target},
                                 {"protocol", protocol == "openai" ? "openai" : "grpc"},
                                 {"results", ReportToJson(with_cache.report)}};
  int exit_code = with_cache.exit_code;
  if (protocol == "both") {
    if (common.progress) run_options.progress_label = "OpenAI API";
    RunOutput over_http =
        RunAgainst(client_options, config, *workload, run_options, common.flush, warmup,
                   absl::StrCat("prefix-bench: ", absl::GetFlag(FLAGS_openai_url)), openai);
    if (over_http.exit_code == kExitUnavailable) return over_http.exit_code;
    const Comparison comparison = Compare(over_http.report, with_cache.report);
    std::cout << FormatComparison(comparison, "OpenAI API vs. gRPC (ratios OpenAI / gRPC)")
              << std::flush;
    json["openai"] = {{"url", absl::GetFlag(FLAGS_openai_url)},
                      {"results", ReportToJson(over_http.report)}};
    json["openai_vs_grpc"] = ComparisonToJson(comparison);
    exit_code = std::max(exit_code, over_http.exit_code);
  }
  if (common.compare) {
    ClientOptions no_cache_options = client_options;
    no_cache_options.target = absl::GetFlag(FLAGS_target_no_cache);
    if (common.progress) run_options.progress_label = "no cache";
    // A server without a prefix cache has nothing to flush.
    RunOutput without_cache =
        RunAgainst(no_cache_options, config, *workload, run_options,
                   /*flush=*/false, warmup,
                   absl::StrCat("prefix-bench: ", no_cache_options.target, " (no prefix cache)"));
    if (without_cache.exit_code == kExitUnavailable) return without_cache.exit_code;
    WarnIfCached(no_cache_options, without_cache.report);
    const Comparison comparison = Compare(with_cache.report, without_cache.report);
    std::cout << FormatComparison(comparison) << std::flush;
    json["no_cache"] = {{"target", no_cache_options.target},
                        {"results", ReportToJson(without_cache.report)}};
    json["comparison"] = ComparisonToJson(comparison);
    exit_code = std::max(exit_code, without_cache.exit_code);
  }
  return WriteJson(json, exit_code);
}

struct MultiTurnOutput {
  BenchReport report;
  MultiTurnReport multi_turn;
  double tokens_per_word = 0;
  int exit_code = kExitOk;
};

MultiTurnOutput RunMultiTurnAgainst(const ClientOptions& client_options,
                                    const MultiTurnShape& shape, double temperature,
                                    const CommonOptions& common, bool flush,
                                    const std::string& progress_label, const std::string& title) {
  MultiTurnOutput out;
  PrefixdClient client(client_options);
  absl::StatusOr<ServingStatus> health = client.CheckHealth();
  absl::Status health_status = health.status();
  if (health.ok() && *health != grpc::health::v1::HealthCheckResponse::SERVING) {
    health_status = absl::UnavailableError("the server is not serving");
  }
  if (!health_status.ok()) {
    out.exit_code = ReportSetupError(client, "health check of", health_status);
    return out;
  }
  absl::StatusOr<v1::CacheStats> stats = client.GetStats();
  if (!stats.ok()) {
    out.exit_code = ReportSetupError(client, "GetStats (for the block size) of", stats.status());
    return out;
  }
  absl::StatusOr<double> tokens_per_word = MeasureTokensPerWord(client);
  if (!tokens_per_word.ok()) {
    out.exit_code = ReportSetupError(client, "Tokenize on", tokens_per_word.status());
    return out;
  }
  out.tokens_per_word = *tokens_per_word;
  if (flush) {
    if (absl::Status flushed = client.Flush().status(); !flushed.ok()) {
      out.exit_code = ReportSetupError(client, "flush of", flushed);
      return out;
    }
  }
  const MultiTurnWorkload workload =
      GenerateMultiTurnWorkload(shape, common.seed, out.tokens_per_word);
  MultiTurnRunOptions options;
  options.output_len = shape.output_len;
  options.temperature = static_cast<float>(temperature);
  options.concurrency = common.concurrency;
  options.conversation_rate = common.request_rate;
  options.seed = common.seed;
  options.progress_label = progress_label;
  MultiTurnRunResult result = RunConversations(client, workload, options);

  out.multi_turn = BuildMultiTurnReport(result.turns, shape.turns, stats->block_size());
  std::vector<RequestRecord> records;
  records.reserve(result.turns.size());
  for (const TurnRecord& t : result.turns) records.push_back(t.request);
  out.report = BuildReport(records, result.duration_s, out.multi_turn.total.ideal_hit_rate());
  std::cout << FormatReport(out.report, title) << FormatMultiTurnReport(out.multi_turn)
            << std::flush;
  if (out.report.failed > 0) out.exit_code = kExitFailures;
  return out;
}

int MultiTurnMain(const CommandLine& command_line, const CommonOptions& common) {
  for (const char* flag :
       {"num_groups", "prompts_per_group", "vocab_size", "max_token_id", "warmup"}) {
    if (command_line.given.contains(flag)) {
      return UsageError(absl::StrCat("--", flag, " applies to --workload=shared-prefix only"));
    }
  }
  absl::StatusOr<MultiTurnShape> shape = MultiTurnPreset(absl::GetFlag(FLAGS_preset));
  if (!shape.ok()) return UsageError(std::string(shape.status().message()));
  auto override_if_given = [&](const char* name, int value, int* field) {
    if (command_line.given.contains(name)) *field = value;
  };
  override_if_given("conversations", absl::GetFlag(FLAGS_conversations), &shape->conversations);
  override_if_given("turns", absl::GetFlag(FLAGS_turns), &shape->turns);
  override_if_given("system_prompt_len", absl::GetFlag(FLAGS_system_prompt_len),
                    &shape->system_prompt_len);
  override_if_given("question_len", absl::GetFlag(FLAGS_question_len), &shape->question_len);
  override_if_given("output_len", absl::GetFlag(FLAGS_output_len), &shape->output_len);
  if (absl::Status s = ValidateMultiTurnShape(*shape); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  const double temperature = absl::GetFlag(FLAGS_temperature);
  if (!(temperature >= 0)) return UsageError("--temperature must be >= 0");

  const MultiTurnShape& s = *shape;
  std::cout << absl::StrFormat(
      "prefix-bench: multi-turn, %d conversations × %d turns (S=%d system, Q=%d question, O=%d "
      "output tokens, %s), seed %d; conversation rate %s, concurrency %s\n",
      s.conversations, s.turns, s.system_prompt_len, s.question_len, s.output_len,
      temperature > 0 ? absl::StrCat("temperature ", temperature) : "greedy", common.seed,
      std::isinf(common.request_rate) ? "inf" : absl::StrCat(common.request_rate),
      common.concurrency > 0 ? absl::StrCat(common.concurrency) : "unlimited");

  MultiTurnOutput with_cache = RunMultiTurnAgainst(
      common.client, s, temperature, common, common.flush, common.progress ? "prefix cache" : "",
      absl::StrCat("prefix-bench: ", common.client.target));
  if (with_cache.exit_code == kExitUnavailable) return with_cache.exit_code;

  nlohmann::ordered_json config = {
      {"workload", "multi-turn"},
      {"preset", absl::GetFlag(FLAGS_preset)},
      {"conversations", s.conversations},
      {"turns", s.turns},
      {"system_prompt_len", s.system_prompt_len},
      {"question_len", s.question_len},
      {"output_len", s.output_len},
      {"temperature", temperature},
      {"num_requests", s.num_requests()},
      {"tokens_per_word", with_cache.tokens_per_word},
      {"system_prompt_words", WordsForTokens(s.system_prompt_len, with_cache.tokens_per_word)},
      {"question_words", WordsForTokens(s.question_len, with_cache.tokens_per_word)},
      {"seed", common.seed},
      {"request_rate", RequestRateToJson(common.request_rate)},
      {"concurrency", common.concurrency}};
  nlohmann::ordered_json json = {{"config", config},
                                 {"target", common.client.target},
                                 {"results", ReportToJson(with_cache.report)},
                                 {"multi_turn", MultiTurnReportToJson(with_cache.multi_turn)}};
  int exit_code = with_cache.exit_code;
  if (common.compare) {
    ClientOptions no_cache_options = common.client;
    no_cache_options.target = absl::GetFlag(FLAGS_target_no_cache);
    MultiTurnOutput without_cache = RunMultiTurnAgainst(
        no_cache_options, s, temperature, common, /*flush=*/false,
        common.progress ? "no cache" : "",
        absl::StrCat("prefix-bench: ", no_cache_options.target, " (no prefix cache)"));
    if (without_cache.exit_code == kExitUnavailable) return without_cache.exit_code;
    WarnIfCached(no_cache_options, without_cache.report);
    const Comparison comparison = Compare(with_cache.report, without_cache.report);
    std::cout << FormatComparison(comparison) << std::flush;
    json["no_cache"] = {{"target", no_cache_options.target},
                        {"results", ReportToJson(without_cache.report)},
                        {"multi_turn", MultiTurnReportToJson(without_cache.multi_turn)}};
    json["comparison"] = ComparisonToJson(comparison);
    exit_code = std::max(exit_code, without_cache.exit_code);
  }
  return WriteJson(json, exit_code);
}

int Main(int argc, char** argv) {
  absl::StatusOr<CommandLine> command_line = ParseCommandLine(
      argc, argv, {.flag_path_fragment = "clients/prefix_bench", .repeated_flags = {}});
  if (!command_line.ok()) return UsageError(std::string(command_line.status().message()));
  if (command_line->help) {
    std::cout << kHelp;
    return kExitOk;
  }
  if (!command_line->positional.empty()) {
    return UsageError(
        absl::StrCat("unexpected argument '", command_line->positional[0], "' (see --help)"));
  }
  const std::string workload = absl::GetFlag(FLAGS_workload);
  if (workload != "shared-prefix" && workload != "multi-turn") {
    return UsageError(
        absl::StrCat("unknown workload '", workload, "' (known: shared-prefix, multi-turn)"));
  }

  CommonOptions common;
  common.request_rate = absl::GetFlag(FLAGS_request_rate);
  common.concurrency = absl::GetFlag(FLAGS_concurrency);
  common.seed = absl::GetFlag(FLAGS_seed);
  common.flush = absl::GetFlag(FLAGS_flush);
  common.compare = absl::GetFlag(FLAGS_compare_no_cache);
  common.progress = absl::GetFlag(FLAGS_progress);
  if (!(common.request_rate > 0)) return UsageError("--request_rate must be > 0 (or inf)");
  if (common.concurrency < 0) return UsageError("--concurrency must be >= 0");
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (timeout_s < 0) return UsageError("--timeout_s must be >= 0");
  const std::string protocol = absl::GetFlag(FLAGS_protocol);
  if (protocol != "grpc" && protocol != "openai" && protocol != "both") {
    return UsageError(
        absl::StrCat("unknown protocol '", protocol, "' (known: grpc, openai, both)"));
  }
  if (protocol != "grpc" && workload != "shared-prefix") {
    return UsageError("--protocol=openai and both apply to --workload=shared-prefix only");
  }
  if (protocol == "both" && common.compare) {
    return UsageError("--compare_no_cache takes one --protocol, not both");
  }
  if (common.compare && absl::GetFlag(FLAGS_target_no_cache).empty()) {
    return UsageError("--compare_no_cache needs --target_no_cache=HOST:PORT");
  }

  ClientOptions& client_options = common.client;
  client_options.target = absl::GetFlag(FLAGS_target);
  client_options.bearer_token = absl::GetFlag(FLAGS_token);
  if (client_options.bearer_token.empty()) {
    if (const char* env = std::getenv("PREFIXD_TOKEN")) client_options.bearer_token = env;
  }
  if (timeout_s > 0) client_options.deadline = absl::Seconds(timeout_s);
  client_options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  client_options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  client_options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  if (absl::Status s = MakeChannelCredentials(client_options).status(); !s.ok()) {
    return UsageError(std::string(s.message()));
  }

  if (workload == "multi-turn") return MultiTurnMain(*command_line, common);
  return SharedPrefixMain(*command_line, common);
}

}  // namespace
}  // namespace prefixd::bench

int main(int argc, char** argv) { return prefixd::bench::Main(argc, argv); }
