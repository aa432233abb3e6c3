// prefixd — the server binary: flags, model loading with progress, serving, draining.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "absl/flags/flag.h"
#include "absl/flags/internal/program_name.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "kernels/kernels.h"
#include "kernels/select_backend.h"
#include "service/server.h"
#include "service/tenants.h"

ABSL_FLAG(std::string, model, PREFIXD_DEFAULT_MODEL,
          "Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or "
          "random:<preset> (tiny, llama-3.2-1b, llama-3-8b, qwen2-0.5b: random weights of real "
          "shapes, for benchmarks). Default: the test model the build writes.");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json to use instead of the model folder's");
ABSL_FLAG(std::string, chat_template, "",
          "Jinja chat template file to use instead of the model folder's (tokenizer_config.json "
          "\"chat_template\" or chat_template.jinja); chat prompts are rendered with it");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC address to serve on; port 0 picks a free port. Use 0.0.0.0:PORT to accept "
          "connections from other machines.");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8080",
          "HTTP side port for operators: /metrics (Prometheus), /dashboard (live page), "
          "/healthz, /readyz; port 0 picks a free port; empty turns the port off");
ABSL_FLAG(std::string, openai_listen, "127.0.0.1:8000",
          "OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, "
          "/tokenize, /detokenize, /health): same tenants, cache and TLS as gRPC; port 0 picks a "
          "free port; empty turns it off");
ABSL_FLAG(std::string, served_model_name, "",
          "the model name the OpenAI API lists and accepts in \"model\"; default: the model's id "
          "(its folder name)");
ABSL_FLAG(std::string, kv_events_endpoint, "",
          "publish the prefix cache's block events (stored, removed) on a ZeroMQ PUB socket "
          "bound here, in vLLM's KV-events format, for cache-aware routers (llm-d, Dynamo, "
          "SGLang's router), e.g. tcp://127.0.0.1:5557 (vLLM's port; tcp://HOST:* picks one); "
          "the events carry every tenant's token ids: keep it on loopback or a private "
          "network; empty: off");
ABSL_FLAG(std::string, kv_events_replica_id, "",
          "this replica's name in the KV events topic kv@<replica>@<model> (llm-d's "
          "convention); default: the host name and gRPC port");
ABSL_FLAG(std::string, kv_events_format, "array",
          "event layout: \"array\" (msgspec array_like structs, as vLLM sent them before June "
          "2026 and llm-d, Dynamo and SGLang read them) or \"map\" (the tagged maps vLLM sends "
          "since)");
ABSL_FLAG(std::string, request_log, "",
          "file to append the request log to (one line per finished or refused request: time, "
          "id, tenant, protocol, prompt/cached/completion tokens, queue time, TTFT, total, "
          "status); empty: stderr");
ABSL_FLAG(std::string, log_level, "info",
          "request log level: info logs every request, warn only failed and refused ones, off "
          "none (also trace, debug, error, critical)");
ABSL_FLAG(bool, log_prompts, false,
          "also log each request's prompt text (JSON-escaped); off by default because prompts "
          "may hold users' private data");
ABSL_FLAG(int, block_size, 16,
          "tokens per KV cache block (a power of two); only full blocks "
          "are shared between requests");
ABSL_FLAG(int64_t, kv_cache_tokens, 0,
          "KV cache capacity in tokens; 0 sizes it automatically (1 GiB on the CPU)");
ABSL_FLAG(std::string, host_kv_cache_bytes, "auto",
          "the KV cache's second tier in host memory: blocks evicted from the device move "
          "there and come back on a hit instead of being recomputed. A size in bytes, with an "
          "optional suffix K, M, G or T (powers of 1024, e.g. 64G); 0 turns it off; auto: off "
          "on the CPU backend (it would copy memory to memory), a quarter of the RAM on a GPU. "
          "Memory is taken as the tier fills; a size over the machine's RAM is refused");
ABSL_FLAG(int, max_batch_tokens, 2048,
          "tokens computed per step: prefill chunks and one decode token per running request");
ABSL_FLAG(int, max_running_requests, 64, "requests batched together at most");
ABSL_FLAG(int, max_queued_requests, 1024,
          "requests waiting for a place at most; beyond, Generate says RESOURCE_EXHAUSTED");
ABSL_FLAG(bool, prefix_cache, true,
          "share KV blocks of common prefixes between requests (false: every request computes "
          "its whole prompt; for comparisons)");
ABSL_FLAG(bool, cascade_attention, true,
          "decode requests that share cached prefix blocks in groups whose attention reads "
          "those blocks once per group (false: once per request; for comparisons)");
ABSL_FLAG(bool, cuda_graphs, true,
          "on the CUDA backend, run decode steps as CUDA graphs recorded per bucket of batch size "
          "and context length (one launch a step instead of hundreds); false: launch every op");
ABSL_FLAG(bool, allow_unauthenticated, false,
          "serve without --tokens_file on an address other machines can reach (--listen or "
          "--openai_listen not loopback); admin calls still only from this machine");
ABSL_FLAG(std::string, tokens_file, "",
          "JSON file of tenants and their bearer tokens; without it every call is in one "
          "namespace and no token is asked for (see README, Tenants)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(30),
          "on SIGTERM/SIGINT, how long running requests get to finish before they are "
          "cancelled");
ABSL_FLAG(int, max_message_bytes, 4 << 20,
          "largest request message accepted; larger ones get RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, backend, "auto",
          "where the model runs: cuda (bf16 on an NVIDIA GPU), cpu (fp32 reference), or auto "
          "(cuda when this build has it and a GPU is visible, else cpu)");
ABSL_FLAG(int, cuda_device, 0, "CUDA device to run on (with the cuda backend)");
ABSL_FLAG(double, gpu_memory_fraction, 0.9,
          "share of the GPU's free memory (after the weights) prefixd may use for the KV "
          "cache and activations, when --kv_cache_tokens is 0");
ABSL_FLAG(int, threads, 0, "CPU backend threads; 0: every core this process may use");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain: with --tls_key_file, the gRPC port speaks TLS only");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle: clients must present a certificate it signed (mutual TLS); a "
          "certificate's common name can then identify a tenant (tokens file: "
          "client_common_names)");
ABSL_FLAG(
    int, reply_memory_mib, 64,
    "memory for the token ids of recent chat replies (keyed by namespace): a conversation's next "
    "turn runs the ids the model generated instead of re-tokenizing the reply's text, so "
    "the cache serves the reply's blocks (0: off, replies are re-tokenized exactly as "
    "transformers' apply_chat_template does)");
ABSL_FLAG(int, watch_queue_events, 10000,
          "cache events queued for one WatchEvents client before it is dropped as too slow");
ABSL_FLAG(bool, check_invariants, false,
          "debugging: check the KV cache's invariants after every engine step and abort on a "
          "violation (slow; used by the soak test)");

namespace prefixd {
namespace {

int signal_pipe[2] = {-1, -1};

// The first SIGTERM/SIGINT drains (the main thread reads it from the pipe); a second one,
// from an operator who will not wait for the drain, exits at once.
volatile sig_atomic_t signals_seen = 0;

void OnSignal(int signo) {
  const sig_atomic_t seen = signals_seen;
  signals_seen = seen + 1;
  if (seen > 0) {
    static constexpr char kMessage[] =
        "prefixd: second signal while draining, exiting now (running requests are dropped)\n";
    [[maybe_unused]] ssize_t n = write(2, kMessage, sizeof(kMessage) - 1);
    _exit(128 + signo);
  }
  const char c = static_cast<char>(signo);
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &c, 1);
}

// Progress of a long load on stderr: a bar redrawn in place on a terminal, a line every
// 10 % otherwise (logs).
class LoadProgress {
 public:
  explicit LoadProgress(std::string what) : what_(std::move(what)), tty_(isatty(2)) {}
  void operator()(int64_t done, int64_t total) {
    if (total <= 0) return;
    const int percent = static_cast<int>(100 * done / total);
    if (tty_) {
      if (percent == last_) return;
      const int width = 30, filled = percent * width / 100;
      std::fprintf(stderr, "\r%s [%s%s] %3d%%", what_.c_str(), std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), percent);
      if (done == total) std::fprintf(stderr, "\n");
    } else if (percent / 10 != last_ / 10 || done == total) {
      std::fprintf(stderr, "%s: %d%%\n", what_.c_str(), percent);
    }
    last_ = percent;
  }

 private:
  std::string what_;
  bool tty_;
  int last_ = -1;
};

std::string Bytes(int64_t n) {
  if (n >= (int64_t{1} << 30)) return absl::StrFormat("%.1f GiB", n / double(int64_t{1} << 30));
  return absl::StrFormat("%.1f MiB", n / double(1 << 20));
}

// "auto", or bytes with an optional K/M/G/T suffix (powers of 1024; "KiB", "GB" and the
// like read the same).
absl::StatusOr<int64_t> ParseHostKvBytes(std::string text) {
  if (text == "auto") return EngineOptions::kHostKvAuto;
  const std::string original = text;
  for (const char* unit : {"iB", "B", "ib", "b"}) {
    if (text.size() > std::strlen(unit) && absl::EndsWith(text, unit)) {
      text.resize(text.size() - std::strlen(unit));
      break;
    }
  }
  int shift = 0;  // K, M, G, T: 2^10, 2^20, 2^30, 2^40
  if (const size_t unit = text.empty()
                              ? std::string::npos
                              : std::string_view("KMGT").find(static_cast<char>(
                                    std::toupper(static_cast<unsigned char>(text.back()))));
      unit != std::string::npos) {
    shift = 10 * static_cast<int>(unit + 1);
    text.pop_back();
  }
  double value = 0;
  if (text.empty() || !absl::SimpleAtod(text, &value) || !(value >= 0) ||
      value * std::ldexp(1.0, shift) > 9.0e18) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host_kv_cache_bytes=", original,
                     ": expected auto, 0, or a size such as 64G, 512M or 1073741824"));
  }
  return static_cast<int64_t>(value * std::ldexp(1.0, shift));
}

int Run() {
  // Flags and tenants first: a bad value or tokens file should fail before a long model load.
  absl::StatusOr<int64_t> host_kv_bytes =
      ParseHostKvBytes(absl::GetFlag(FLAGS_host_kv_cache_bytes));
  if (!host_kv_bytes.ok()) {
    std::fprintf(stderr, "prefixd: %s\n", std::string(host_kv_bytes.status().message()).c_str());
    return 2;
  }
  TenantDirectory tenants = TenantDirectory::Open();
  if (const std::string path = absl::GetFlag(FLAGS_tokens_file); !path.empty()) {
    absl::StatusOr<TenantDirectory> dir = TenantDirectory::FromFile(path);
    if (!dir.ok()) {
      std::fprintf(stderr, "prefixd: %s\n", dir.status().ToString().c_str());
      return 2;
    }
    tenants = *std::move(dir);
  }

  // Open mode (no tokens file) is for one machine or a trusted network: every caller shares
  // one namespace. Listening beyond this machine that way needs the operator's word.
  if (!tenants.requires_identity()) {
    for (const auto& [flag, address] :
         {std::pair<const char*, std::string>{"--listen", absl::GetFlag(FLAGS_listen)},
          {"--openai_listen", absl::GetFlag(FLAGS_openai_listen)}}) {
      if (address.empty() || IsLoopbackListenAddress(address)) continue;
      if (!absl::GetFlag(FLAGS_allow_unauthenticated)) {
        std::fprintf(stderr,
                     "prefixd: %s=%s accepts connections from other machines, and without "
                     "--tokens_file every caller would share one cache namespace with no "
                     "identity; give --tokens_file (see README, Tenants), or "
                     "--allow_unauthenticated to serve open anyway\n",
                     flag, address.c_str());
        return 2;
      }
      std::fprintf(stderr,
                   "prefixd: warning: %s=%s without --tokens_file (--allow_unauthenticated): "
                   "anyone who can reach it may generate; admin calls (Flush, WatchEvents, "
                   "every namespace's stats) only from this machine\n",
                   flag, address.c_str());
    }
  }

  // TLS files too: a wrong path or a key that does not match should not wait for the model.
  const TlsOptions tls{absl::GetFlag(FLAGS_tls_cert_file), absl::GetFlag(FLAGS_tls_key_file),
                       absl::GetFlag(FLAGS_tls_client_ca_file)};
  if (absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> c = MakeServerCredentials(tls);
      !c.ok()) {
    std::fprintf(stderr, "prefixd: %s\n", c.status().ToString().c_str());
    return 2;
  }

  absl::StatusOr<std::unique_ptr<Backend>> made = MakeBackend(
      absl::GetFlag(FLAGS_backend), absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_cuda_device));
  if (!made.ok()) {
    std::fprintf(stderr, "prefixd: %s\n", made.status().ToString().c_str());
    return 2;
  }
  std::unique_ptr<Backend> backend = *std::move(made);
  const std::string model_spec = absl::GetFlag(FLAGS_model);
  const absl::Time load_start = absl::Now();
  LoadProgress progress(absl::StrCat("loading ", model_spec));
  absl::StatusOr<LoadedModel> model =
      LoadModel(model_spec,
                ModelOverrides{.tokenizer_path = absl::GetFlag(FLAGS_tokenizer),
                               .chat_template_path = absl::GetFlag(FLAGS_chat_template)},
                *backend, [&progress](int64_t done, int64_t total) { progress(done, total); });
  if (!model.ok()) {
    std::fprintf(stderr, "prefixd: cannot load the model: %s\n", model.status().ToString().c_str());
    return 2;
  }
  std::fprintf(stderr, "prefixd: model %s: %s, on %s (%.1f s)\n", model->id.c_str(),
               model->config.Summary().c_str(), backend->Describe().c_str(),
               absl::ToDoubleSeconds(absl::Now() - load_start));
  if (model->chat_template != nullptr) {
    std::fprintf(stderr, "prefixd: chat template %s; stop tokens %s\n",
                 absl::StrJoin(model->chat_template->names(), ", ").c_str(),
                 absl::StrJoin(model->config.eos_token_ids, ", ").c_str());
  } else {
    std::fprintf(stderr,
                 "prefixd: no chat template: chat prompts are refused (give --chat_template)\n");
  }

  EngineOptions options;
  options.block_size = absl::GetFlag(FLAGS_block_size);
  options.kv_cache_tokens = absl::GetFlag(FLAGS_kv_cache_tokens);
  options.host_kv_cache_bytes = *host_kv_bytes;
  options.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  options.max_running_requests = absl::GetFlag(FLAGS_max_running_requests);
  options.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  options.prefix_cache = absl::GetFlag(FLAGS_prefix_cache);
  options.cascade_attention = absl::GetFlag(FLAGS_cascade_attention);
  options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  options.check_invariants = absl::GetFlag(FLAGS_check_invariants);
  options.gpu_memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
  options.tenant_policies = tenants.Policies();  // weights and guaranteed KV shares
  const ModelConfig config = model->config;
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(std::move(backend), *std::move(model), options);
  if (!engine.ok()) {
    std::fprintf(stderr, "prefixd: %s\n", engine.status().ToString().c_str());
    return 2;
  }
  const int64_t kv_tokens = (*engine)->kv_cache_tokens();
  std::fprintf(
      stderr,
      "prefixd: KV cache %lld tokens in blocks of %d (%s), context %d tokens, prefix "
      "cache %s, %s\n",
      static_cast<long long>(kv_tokens), options.block_size,
      Bytes(
          kv_tokens / options.block_size *
          KvCache::BytesPerBlock(config, options.block_size, (*engine)->backend().compute_dtype()))
          .c_str(),
      (*engine)->max_context_len(), options.prefix_cache ? "on" : "off",
      tenants.requires_identity()
          ? absl::StrCat(tenants.num_tenants(), " tenants (bearer tokens required)").c_str()
          : "no tokens file (one namespace)");
  if ((*engine)->host_kv_cache_tokens() > 0) {
    std::fprintf(stderr,
                 "prefixd: host KV tier %lld tokens (%s, taken as it fills): evicted blocks move "
                 "there and come back on a hit\n",
                 static_cast<long long>((*engine)->host_kv_cache_tokens()),
                 Bytes((*engine)->host_kv_cache_bytes()).c_str());
  }

  ServerOptions server_options;
  server_options.listen = absl::GetFlag(FLAGS_listen);
  server_options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  server_options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  server_options.tls = tls;
  if (absl::GetFlag(FLAGS_watch_queue_events) < 1) {
    std::fprintf(stderr, "prefixd: --watch_queue_events must be at least 1\n");
    return 2;
  }
  server_options.max_queued_cache_events = absl::GetFlag(FLAGS_watch_queue_events);
  if (absl::GetFlag(FLAGS_reply_memory_mib) < 0) {
    std::fprintf(stderr, "prefixd: --reply_memory_mib must be 0 or more\n");
    return 2;
  }
  server_options.reply_memory_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_reply_memory_mib))
                                      << 20;
  server_options.http_listen = absl::GetFlag(FLAGS_http_listen);
  server_options.openai_listen = absl::GetFlag(FLAGS_openai_listen);
  server_options.served_model_name = absl::GetFlag(FLAGS_served_model_name);
  if (!absl::GetFlag(FLAGS_kv_events_endpoint).empty()) {
    absl::StatusOr<KvEventsFormat> format =
        ParseKvEventsFormat(absl::GetFlag(FLAGS_kv_events_format));
    if (!format.ok()) {
      std::fprintf(stderr, "prefixd: --kv_events_format: %s\n",
                   std::string(format.status().message()).c_str());
      return 2;
    }
    std::string replica = absl::GetFlag(FLAGS_kv_events_replica_id);
    if (replica.empty()) {
      char host[256] = {};
      gethostname(host, sizeof(host) - 1);
      const std::string listen = absl::GetFlag(FLAGS_listen);
      replica = absl::StrCat(host, ":", listen.substr(listen.rfind(':') + 1));
    }
    const std::string served = server_options.served_model_name.empty()
                                   ? (*engine)->model_id()
                                   : server_options.served_model_name;
    // Routers split the topic at '@' into exactly three parts.
    if (replica.find('@') != std::string::npos || served.find('@') != std::string::npos) {
      std::fprintf(stderr,
                   "prefixd: the KV events topic kv@%s@%s would not parse: neither the replica "
                   "id nor the model name may contain '@' (--kv_events_replica_id, "
                   "--served_model_name)\n",
                   replica.c_str(), served.c_str());
      return 2;
    }
    server_options.kv_events = {.endpoint = absl::GetFlag(FLAGS_kv_events_endpoint),
                                .topic = absl::StrCat("kv@", replica, "@", served),
                                .format = *format};
  }
  server_options.request_log = {.path = absl::GetFlag(FLAGS_request_log),
                                .level = absl::GetFlag(FLAGS_log_level),
                                .log_prompts = absl::GetFlag(FLAGS_log_prompts)};
  absl::StatusOr<std::unique_ptr<PrefixdServer>> server =
      PrefixdServer::Start(engine->get(), std::move(tenants), server_options);
  if (!server.ok()) {
    std::fprintf(stderr, "prefixd: %s\n", server.status().ToString().c_str());
    return 2;
  }
  // The dashboard line first: "listening on" is the last line of a successful start.
  if (const std::string http = (*server)->http_address(); !http.empty()) {
    std::printf("prefixd: dashboard on http://%s/dashboard\n", http.c_str());
  }
  if (const std::string openai = (*server)->openai_url(); !openai.empty()) {
    std::printf("prefixd: OpenAI-compatible API on %s/v1\n", openai.c_str());
  }
  if (const std::string events = (*server)->kv_events_endpoint(); !events.empty()) {
    std::printf("prefixd: KV events on %s, topic %s\n", events.c_str(),
                server_options.kv_events.topic.c_str());
  }
  std::printf("prefixd: listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);

  char signo = 0;
  while (read(signal_pipe[0], &signo, 1) < 0 && errno == EINTR) {
  }
  std::fprintf(stderr, "prefixd: %s, draining (grace %s)\n", strsignal(signo),
               absl::FormatDuration(server_options.shutdown_grace).c_str());
  (*server)->Drain();
  server->reset();
  engine->reset();
  std::fprintf(stderr, "prefixd: stopped\n");
  return 0;
}

}  // namespace
}  // namespace prefixd

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "prefixd — LLM generation over gRPC with a KV cache shared across requests.\n\n"
      "  prefixd [--model=DIR|random:PRESET] [--listen=HOST:PORT] [--tokens_file=FILE] ...\n\n"
      "Serves prefixd.v1.Generation and prefixd.v1.Cache (see proto/prefixd/v1), "
      "grpc.health.v1.Health and server reflection; the OpenAI-compatible HTTP API "
      "(--openai_listen: /v1/chat/completions, /v1/completions, /v1/models); Prometheus "
      "metrics and a live dashboard on the HTTP port (--http_listen). One line per request "
      "goes to the request log (stderr, or --request_log). SIGTERM or SIGINT drains: health turns "
      "NOT_SERVING, new calls get UNAVAILABLE, running requests finish within "
      "--shutdown_grace, then prefixd exits 0; a second signal exits at once.");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view path) {
    return path.find("service/main.cc") != absl::string_view::npos;
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  // --help is an answer, not an error: exit 0 (Abseil's own --help handling exits 1).
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-help" || arg == "-h") {
      absl::flags_internal::SetProgramInvocationName(argv[0]);
      absl::flags_internal::FlagsHelp(std::cout, "service/main.cc",
                                      absl::flags_internal::HelpFormat::kHumanReadable,
                                      absl::ProgramUsageMessage());
      return 0;
    }
  }
  absl::ParseCommandLine(argc, argv);

  if (pipe2(prefixd::signal_pipe, O_CLOEXEC) != 0) {
    std::perror("prefixd: pipe");
    return 1;
  }
  struct sigaction action = {};
  action.sa_handler = prefixd::OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Every open stream of the OpenAI port is a descriptor: take the hard limit, not the
  // soft default (often 1024).
  if (struct rlimit files;
      getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  return prefixd::Run();
}
