// prefixctl — command-line client for prefixd. Run `prefixctl --help` for the subcommands.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "clients/cpp/command_line.h"
#include "clients/cpp/prefixd_client.h"
#include "clients/prefixctl/chat.h"
#include "clients/prefixctl/cli_args.h"
#include "clients/prefixctl/commands.h"

// Every subcommand.
ABSL_FLAG(std::string, target, "127.0.0.1:50051", "prefixd address");
ABSL_FLAG(std::string, token, "", "bearer token (default: $PREFIXD_TOKEN)");
ABSL_FLAG(std::string, tls_ca_file, "", "connect over TLS, trusting this PEM CA");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM client certificate, for mutual TLS");
ABSL_FLAG(std::string, tls_key_file, "", "PEM key of --tls_cert_file");
ABSL_FLAG(bool, json, false, "machine-readable output");
ABSL_FLAG(absl::Duration, timeout, absl::InfiniteDuration(), "deadline of each call");
// generate, pin, unpin.
ABSL_FLAG(std::string, prompt, "", "prompt text; - reads standard input");
ABSL_FLAG(std::string, token_ids, "", "prompt as token ids, e.g. 1,2,3");
ABSL_FLAG(std::string, shared_namespace, "", "a shared cache namespace granted to the caller");
// A conversation as the prompt (generate, tokenize, pin, unpin; chat's start).
ABSL_FLAG(bool, chat, false, "the prompt words are a user message rendered by the chat template");
ABSL_FLAG(std::string, system, "", "system message of the conversation");
ABSL_FLAG(std::string, system_file, "", "file holding the system message; - reads stdin");
ABSL_FLAG(std::string, messages_file, "",
          "JSON conversation [{role, content}, ...]; - reads stdin");
ABSL_FLAG(bool, add_generation_prompt, true, "end the rendered prompt with the assistant's header");
// detokenize.
ABSL_FLAG(bool, skip_special_tokens, false, "leave special tokens (BOS, ...) out of the text");
// generate.
ABSL_FLAG(int, max_tokens, 128, "tokens to generate at most (0: up to the context)");
ABSL_FLAG(float, temperature, 1.0f, "sampling temperature (0: greedy)");
ABSL_FLAG(int, top_k, 0, "top-k cut (0: none)");
ABSL_FLAG(float, top_p, 1.0f, "nucleus sampling threshold");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(std::string, stop_token_ids, "", "token ids that end the generation, e.g. 13,29");
ABSL_FLAG(bool, ignore_eos, false, "keep generating after EOS");
ABSL_FLAG(bool, logprobs, false, "return the logprob of each token");
ABSL_FLAG(int, top_logprobs, 0, "also return this many alternatives per token (0..20)");
ABSL_FLAG(std::string, request_id, "", "request id echoed by the server");
// health.
ABSL_FLAG(std::string, service, "", "service name to check (default: the whole server)");
ABSL_FLAG(uint64_t, pin_id, 0, "unpin: an admin's unpin of any pin by its id (see pins)");
ABSL_FLAG(bool, drop_pins, false, "flush: undo every pin first (admins)");

namespace prefixd::ctl {
namespace {

constexpr char kHelp[] = R"help(prefixctl — command-line client for prefixd

Usage: prefixctl [flags] <subcommand> [prompt words...]

Subcommands:
  generate PROMPT...   Stream a completion. The text goes to stdout as it arrives; the usage
                       (prompt tokens, how many came from the prefix cache, completion tokens,
                       queue / first-token / total time) goes to stderr at the end, so
                       `prefixctl generate ... > out.txt` captures only the text. Ctrl-C
                       cancels the request (exit 130).
  chat                 An interactive conversation: type a message per line (a pipe works
                       too). Each turn sends the whole conversation, rendered by the model's
                       chat template, streams the reply to stdout and adds it to the
                       conversation; then stderr gets a line like
                         [prompt 812 tokens, 796 cached (98%), 41 tokens out, TTFT 12 ms]
                       The previous turns come from the prefix cache. /reset forgets the
                       conversation (but keeps --system and --messages_file), /exit or EOF
                       (Ctrl-D) ends it, //text sends "/text". Ctrl-C stops the reply being
                       written (what was shown stays in the conversation); at the "> " prompt
                       it ends the chat. A turn the server refuses is reported and forgotten.
  tokenize PROMPT...   The prompt exactly as generate would run it: the rendered text (for a
                       conversation: the chat template's output, special tokens and all)
                       between two rules, then its token ids, comma-separated (as
                       --token_ids takes them).
  detokenize ID...     Token ids back to text (ids as arguments, "1 2 3" or "1,2,3", or
                       --token_ids); the text goes to stdout verbatim.
  stats                Cache statistics: hit rate, blocks by state (free, evictable, in use,
                       pinned), insert/evict counters, running and waiting requests, and a
                       table per namespace.
  pin PROMPT...        Prefill the prompt's prefix if needed and keep its full blocks from
                       eviction; prints the pinned tokens and how many were computed now.
                       Pins nest: pinning twice needs two unpins.
  unpin PROMPT...      Release one of your pins of the prefix; prints the unpinned tokens.
                       Admins: unpin --pin_id=N undoes anyone's pin N.
  pins                 Admins: every pin (id, tenant, namespace, tokens, nesting, age).
  flush                Drop every cached block that no request uses and no pin holds
                       (--drop_pins: undo every pin first; admins).
  health               grpc.health.v1 check; prints SERVING (exit 0) or another status
                       (exit 3).
  watch                Print block stored/removed events as they happen (first a snapshot of
                       the cache, then live events) until Ctrl-C.

The prompt (generate, tokenize, pin, unpin) is the words after the subcommand, joined by
spaces (use -- before words that start with -), or --prompt=TEXT (--prompt=- or a lone -
reads stdin), or --token_ids=1,2,3 (token ids, used as given; not for tokenize).

Or it is a conversation, rendered on the server by the model's chat template, when any of
--chat, --system, --system_file or --messages_file is given: the system message, then the
file's messages, then the words (or --prompt), if any, as the user's message.
  --chat                   the words are the user's message (no system message needed)
  --system=TEXT            the system message
  --system_file=FILE       the system message, read from FILE (- reads stdin)
  --messages_file=FILE     a JSON conversation (- reads stdin), as OpenAI and transformers
                           write it: [{"role": "system", "content": "..."}, {"role": "user",
                           "content": "..."}, {"role": "assistant", ...}, ...]; content may be
                           a string, null or [{"type": "text", "text": "..."}]; tool_calls,
                           tool_call_id, name and other fields are passed on. Or an object
                           {"messages": [...], "tools": [...], "add_generation_prompt": b,
                           "continue_final_message": b, "chat_template_kwargs": {...}}.
  --noadd_generation_prompt
                           do not end the prompt with the assistant's header (default: end
                           with it, except for pin and unpin, whose conversation is a prefix:
                           `prefixctl pin --system_file=sys.txt` keeps the rendered system
                           message of every chat that starts with it in the cache)

Flags for every subcommand:
  --target=HOST:PORT       prefixd address (default 127.0.0.1:50051; also unix:/path)
  --token=TOKEN            bearer token sent as `authorization: Bearer TOKEN` (default: the
                           PREFIXD_TOKEN environment variable)
  --json                   print JSON: one object per line (generate: one per streamed
                           message, the last with finish_reason and usage; watch: one per
                           event); errors go to stderr as {"error":{"code",...}}
  --timeout=DURATION       deadline of each call, e.g. 30s or 500ms (default: none; watch
                           never has one)

generate:
  --max_tokens=N           tokens to generate at most (default 128; 0: up to the context)
  --temperature=T          0 is greedy (server default 1.0)
  --top_k=K                keep the K most likely tokens (default 0: no cut)
  --top_p=P                nucleus sampling, in (0, 1] (server default 1.0)
  --seed=N                 same seed, prompt and parameters: same output (default: random)
  --stop=TEXT              stop before this text would be emitted; repeat for several
  --stop_token_ids=1,2     stop after any of these token ids
  --ignore_eos             keep generating after the end-of-sequence token
  --logprobs               print each token's logprob (stderr table, or in the JSON)
  --top_logprobs=N         and its N most likely alternatives (0..20; implies --logprobs)
  --request_id=ID          id the server echoes in responses and logs
  --shared_namespace=NAME  use a shared cache namespace the server grants to the caller
chat:
  the prompt and sampling flags of generate (--system, --system_file, --messages_file: the
  start of the conversation; --max_tokens, --temperature, --top_k, --top_p, --seed, --stop,
  --stop_token_ids, --ignore_eos, --request_id (turn N sends ID-N), --shared_namespace);
  --json prints one object per turn: {"turn", "role", "content", "finish_reason", "usage"}
detokenize:
  --skip_special_tokens    leave special tokens (BOS, end of turn, ...) out of the text
tokenize, pin, unpin:
  --shared_namespace=NAME  as for generate (tokenize: the namespace whose remembered chat
                           replies the prompt may reuse, as generate's would)
health:
  --service=NAME           check one service instead of the whole server

Exit codes: 0 success; 1 the server returned an error (printed as CODE: message); 2 usage
error (nothing was sent); 3 the server is unavailable (cannot connect, draining, or health
not SERVING); 130 generate interrupted by Ctrl-C. chat: 1 when some turn failed.

Examples:
  prefixctl generate --max_tokens=32 --temperature=0 Once upon a time
  prefixctl --json generate --token_ids=1,2,3 | jq .usage
  prefixctl generate --system="You are terse." What is a prefix cache?
  prefixctl tokenize --messages_file=conversation.json
  prefixctl detokenize 504 17 99
  prefixctl chat --system_file=system_prompt.txt --max_tokens=256
  printf 'Hello\nAnd again\n' | prefixctl chat --temperature=0
  prefixctl stats
  prefixctl pin --prompt="$(cat system_prompt.txt)"
  prefixctl watch --json
)help";

const absl::flat_hash_set<std::string>& GlobalFlags() {
  static const auto* flags = new absl::flat_hash_set<std::string>{
      "target", "token", "json", "timeout", "tls_ca_file", "tls_cert_file", "tls_key_file"};
  return *flags;
}

// The subcommands, and the flags each accepts besides the global ones.
const absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>& Subcommands() {
  static const auto* table = new absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>{
      {"generate",
       {"prompt", "token_ids", "shared_namespace", "max_tokens", "temperature", "top_k", "top_p",
        "seed", "stop", "stop_token_ids", "ignore_eos", "logprobs", "top_logprobs", "request_id",
        "chat", "system", "system_file", "messages_file", "add_generation_prompt"}},
      {"chat",
       {"system", "system_file", "messages_file", "shared_namespace", "max_tokens", "temperature",
        "top_k", "top_p", "seed", "stop", "stop_token_ids", "ignore_eos", "request_id"}},
      {"tokenize",
       {"prompt", "chat", "system", "system_file", "messages_file", "add_generation_prompt",
        "shared_namespace"}},
      {"detokenize", {"token_ids", "skip_special_tokens"}},
      {"stats", {}},
      {"pin",
       {"prompt", "token_ids", "shared_namespace", "chat", "system", "system_file", "messages_file",
        "add_generation_prompt"}},
      {"unpin",
       {"prompt", "token_ids", "shared_namespace", "chat", "system", "system_file", "messages_file",
        "add_generation_prompt", "pin_id"}},
      {"pins", {}},
      {"flush", {"drop_pins"}},
      {"health", {"service"}},
      {"watch", {}},
  };
  return *table;
}

int UsageError(const std::string& message) {
  std::cerr << "prefixctl: " << message << "\n";
  return kExitUsage;
}

PromptSources PromptSourcesFromFlags(const CommandLine& command_line) {
  PromptSources sources;
  sources.words.assign(command_line.positional.begin() + 1, command_line.positional.end());
  sources.prompt_flag_given = command_line.given.contains("prompt");
  sources.prompt_flag = absl::GetFlag(FLAGS_prompt);
  sources.token_ids_flag_given = command_line.given.contains("token_ids");
  sources.token_ids_flag = absl::GetFlag(FLAGS_token_ids);
  sources.chat_flag = absl::GetFlag(FLAGS_chat);
  sources.system_given = command_line.given.contains("system");
  sources.system = absl::GetFlag(FLAGS_system);
  sources.system_file_given = command_line.given.contains("system_file");
  sources.system_file = absl::GetFlag(FLAGS_system_file);
  sources.messages_file_given = command_line.given.contains("messages_file");
  sources.messages_file = absl::GetFlag(FLAGS_messages_file);
  if (command_line.given.contains("add_generation_prompt")) {
    sources.add_generation_prompt = absl::GetFlag(FLAGS_add_generation_prompt);
  }
  return sources;
}

absl::StatusOr<v1::GenerateRequest> GenerateRequestFromFlags(const CommandLine& command_line,
                                                             const Prompt& prompt) {
  v1::GenerateRequest request;
  SetPrompt(prompt, &request);
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  request.set_shared_namespace(absl::GetFlag(FLAGS_shared_namespace));
  v1::SamplingParams* sampling = request.mutable_sampling();
  // Unset fields keep the server's defaults; only flags that were given are sent.
  const auto& given = command_line.given;
  if (given.contains("temperature")) sampling->set_temperature(absl::GetFlag(FLAGS_temperature));
  if (given.contains("top_p")) sampling->set_top_p(absl::GetFlag(FLAGS_top_p));
  if (given.contains("seed")) sampling->set_seed(absl::GetFlag(FLAGS_seed));
  sampling->set_top_k(absl::GetFlag(FLAGS_top_k));
  sampling->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  sampling->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  if (auto it = command_line.repeated.find("stop"); it != command_line.repeated.end()) {
    for (const std::string& stop : it->second) sampling->add_stop(stop);
  }
  if (given.contains("stop_token_ids")) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseTokenIds(absl::GetFlag(FLAGS_stop_token_ids));
    if (!ids.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--stop_token_ids: ", ids.status().message()));
    }
    for (int32_t id : *ids) sampling->add_stop_token_ids(id);
  }
  const int top_logprobs = absl::GetFlag(FLAGS_top_logprobs);
  if (absl::GetFlag(FLAGS_logprobs) || top_logprobs > 0) {
    request.mutable_logprobs()->set_enabled(true);
    request.mutable_logprobs()->set_top_n(top_logprobs);
  }
  return request;
}

// Ids from the arguments ("1 2 3", "1,2,3" or both) or from --token_ids.
absl::StatusOr<v1::DetokenizeRequest> DetokenizeRequestFromFlags(const CommandLine& command_line) {
  std::vector<std::string> args(command_line.positional.begin() + 1, command_line.positional.end());
  if (command_line.given.contains("token_ids")) args.push_back(absl::GetFlag(FLAGS_token_ids));
  std::vector<std::string> parts;
  for (const std::string& arg : args) {
    for (absl::string_view id : absl::StrSplit(arg, absl::ByAnyChar(", \t\n"), absl::SkipEmpty())) {
      parts.emplace_back(id);
    }
  }
  if (parts.empty()) {
    return absl::InvalidArgumentError("no token ids: give them as arguments or --token_ids");
  }
  v1::DetokenizeRequest request;
  for (const std::string& part : parts) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("'", part, "' is not a token id"));
    }
    request.add_token_ids(id);
  }
  request.set_skip_special_tokens(absl::GetFlag(FLAGS_skip_special_tokens));
  return request;
}

int Main(int argc, char** argv) {
  absl::StatusOr<CommandLine> command_line = ParseCommandLine(
      argc, argv, {.flag_path_fragment = "clients/prefixctl/", .repeated_flags = {"stop"}});
  if (!command_line.ok()) return UsageError(std::string(command_line.status().message()));
  if (command_line->help ||
      (!command_line->positional.empty() && command_line->positional[0] == "help")) {
    std::cout << kHelp;
    return kExitOk;
  }
  if (command_line->positional.empty()) {
    return UsageError(
        "no subcommand (generate, chat, tokenize, detokenize, stats, pin, unpin, pins, flush, "
        "health, watch); see prefixctl --help");
  }
  const std::string& name = command_line->positional[0];
  auto subcommand = Subcommands().find(name);
  if (subcommand == Subcommands().end()) {
    return UsageError(absl::StrCat("unknown subcommand '", name, "'; see prefixctl --help"));
  }
  for (const std::string& flag : command_line->given) {
    if (!GlobalFlags().contains(flag) && !subcommand->second.contains(flag)) {
      return UsageError(absl::StrCat("flag --", flag, " does not apply to ", name));
    }
  }
  const bool takes_prompt =
      name == "generate" || name == "pin" || name == "unpin" || name == "tokenize";
  const bool takes_arguments = takes_prompt || name == "detokenize";
  if (!takes_arguments && command_line->positional.size() > 1) {
    return UsageError(
        absl::StrCat(name, " takes no arguments (got '", command_line->positional[1], "')"));
  }

  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.bearer_token = absl::GetFlag(FLAGS_token);
  if (options.bearer_token.empty()) {
    if (const char* env = std::getenv("PREFIXD_TOKEN")) options.bearer_token = env;
  }
  options.deadline = absl::GetFlag(FLAGS_timeout);
  if (options.deadline <= absl::ZeroDuration()) return UsageError("--timeout must be positive");
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  if (absl::Status s = MakeChannelCredentials(options).status(); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  PrefixdClient client(options);
  const CommandContext ctx{.client = client,
                           .json = absl::GetFlag(FLAGS_json),
                           .out = std::cout,
                           .err = std::cerr,
                           .out_is_terminal = isatty(STDOUT_FILENO) == 1};

  if (name == "stats") return RunStats(ctx);
  if (name == "flush") return RunFlush(ctx, absl::GetFlag(FLAGS_drop_pins));
  if (name == "pins") return RunPins(ctx);
  if (name == "unpin" && absl::GetFlag(FLAGS_pin_id) != 0) {
    v1::UnpinRequest request;
    request.set_pin_id(absl::GetFlag(FLAGS_pin_id));
    return RunUnpin(ctx, request);
  }
  if (name == "health") return RunHealth(ctx, absl::GetFlag(FLAGS_service));
  if (name == "watch") return RunWatch(ctx);
  if (name == "detokenize") {
    absl::StatusOr<v1::DetokenizeRequest> request = DetokenizeRequestFromFlags(*command_line);
    if (!request.ok()) return UsageError(std::string(request.status().message()));
    return RunDetokenize(ctx, *request);
  }
  if (name == "chat") {
    const PromptSources sources = PromptSourcesFromFlags(*command_line);
    if (sources.system_file == "-" || sources.messages_file == "-") {
      return UsageError("chat reads the user's messages from stdin: give files by name");
    }
    absl::StatusOr<v1::Conversation> start = ResolveConversationStart(sources, std::cin);
    if (!start.ok()) return UsageError(std::string(start.status().message()));
    absl::StatusOr<v1::GenerateRequest> request = GenerateRequestFromFlags(*command_line, Prompt());
    if (!request.ok()) return UsageError(std::string(request.status().message()));
    ChatOptions options{.start = *std::move(start),
                        .request = *std::move(request),
                        .in_is_terminal = isatty(STDIN_FILENO) == 1};
    return RunChat(ctx, std::cin, options);
  }

  absl::StatusOr<Prompt> prompt = ResolvePrompt(PromptSourcesFromFlags(*command_line), std::cin);
  if (!prompt.ok()) return UsageError(std::string(prompt.status().message()));
  if (name == "tokenize") {
    if (prompt->is_token_ids) return UsageError("tokenize takes text or a conversation");
    v1::TokenizeRequest request;
    SetPrompt(*prompt, &request);
    request.set_shared_namespace(absl::GetFlag(FLAGS_shared_namespace));
    return RunTokenize(ctx, request);
  }
  // A conversation pinned is a prefix of later ones: no assistant header at its end.
  if ((name == "pin" || name == "unpin") && prompt->is_chat &&
      !prompt->chat.has_add_generation_prompt()) {
    prompt->chat.set_add_generation_prompt(false);
  }
  if (name == "generate") {
    absl::StatusOr<v1::GenerateRequest> request = GenerateRequestFromFlags(*command_line, *prompt);
    if (!request.ok()) return UsageError(std::string(request.status().message()));
    return RunGenerate(ctx, *request);
  }
  if (name == "pin") {
    v1::PinRequest request;
    SetPrompt(*prompt, &request);
    request.set_shared_namespace(absl::GetFlag(FLAGS_shared_namespace));
    return RunPin(ctx, request);
  }
  v1::UnpinRequest request;
  SetPrompt(*prompt, &request);
  request.set_shared_namespace(absl::GetFlag(FLAGS_shared_namespace));
  return RunUnpin(ctx, request);
}

}  // namespace
}  // namespace prefixd::ctl

int main(int argc, char** argv) { return prefixd::ctl::Main(argc, argv); }
