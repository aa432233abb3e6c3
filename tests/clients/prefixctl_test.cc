// prefixctl as a user runs it: exit codes, what goes to stdout and stderr, --json.
#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/clients/subprocess.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::testing::HasSubstr;
using testing::Lines;
using testing::ProcessResult;
using testing::RunProcess;

ProcessResult Prefixctl(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), PREFIXCTL_PATH);
  return RunProcess(args, input);
}

TEST(PrefixctlTest, HelpExplainsEverySubcommand) {
  const ProcessResult r = Prefixctl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* word :
       {"generate", "stats", "pin", "unpin", "flush", "health", "watch", "--json", "--target",
        "--token", "--max_tokens", "--stop", "--top_logprobs", "Exit codes"}) {
    EXPECT_THAT(r.out, HasSubstr(word));
  }
  EXPECT_EQ(Prefixctl({"help"}).exit_code, 0);
}

TEST(PrefixctlTest, UsageErrorsExitTwoAndSendNothing) {
  struct Case {
    std::vector<std::string> args;
    const char* message;
  };
  const std::vector<Case> cases = {
      {{}, "no subcommand"},
      {{"frobnicate"}, "unknown subcommand"},
      {{"--colour=red", "stats"}, "unknown flag --colour"},
      {{"stats", "--max_tokens=3"}, "does not apply to stats"},
      {{"generate"}, "no prompt"},
      {{"generate", "--token_ids=1,x"}, "--token_ids"},
      {{"generate", "--max_tokens=lots", "hi"}, "--max_tokens"},
      {{"generate", "--prompt=a", "b"}, "one way only"},
      {{"flush", "extra"}, "takes no arguments"},
  };
  for (const Case& c : cases) {
    // Pointed at nowhere: a usage error must be found before any connection is tried.
    std::vector<std::string> args = c.args;
    args.insert(args.begin(), "--target=unix:/nonexistent/prefixctl-test.sock");
    const ProcessResult r = Prefixctl(args);
    EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(c.args) << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << ::testing::PrintToString(c.args);
    EXPECT_EQ(r.out, "");
  }
}

TEST(PrefixctlTest, UnreachableServerExitsThreeWithTheStatusCode) {
  const ProcessResult r = Prefixctl({"--target=unix:/nonexistent/prefixctl-test.sock", "stats"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));

  const ProcessResult j =
      Prefixctl({"--json", "--target=unix:/nonexistent/prefixctl-test.sock", "generate", "hi"});
  EXPECT_EQ(j.exit_code, 3);
  EXPECT_EQ(j.out, "");
  const nlohmann::json error = nlohmann::json::parse(j.err);
  EXPECT_EQ(error["error"]["code"], "UNAVAILABLE");
}

class PrefixctlLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::Start({});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  ProcessResult Run(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), "--target=" + server_->target());
    return Prefixctl(args, input);
  }

  std::unique_ptr<testing::ServerProcess> server_;
};

// The usage summary on stderr: "... prompt N tokens, C cached (...) ...".
int CachedTokens(const std::string& err) {
  std::smatch m;
  const std::regex usage("prompt ([0-9]+) tokens, ([0-9]+) cached");
  if (!std::regex_search(err, m, usage)) return -1;
  return std::stoi(m[2]);
}

TEST_F(PrefixctlLiveTest, SecondGenerateWithTheSamePromptIsServedFromTheCache) {
  const std::vector<std::string> args = {
      "generate", "--max_tokens=4", "--temperature=0",
      "You are a helpful assistant. Answer briefly and politely, and never make things up."};
  const ProcessResult first = Run(args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_FALSE(first.out.empty()) << "the text goes to stdout";
  EXPECT_EQ(CachedTokens(first.err), 0) << first.err;
  EXPECT_THAT(first.err, HasSubstr("completion 4 tokens"));

  const ProcessResult second = Run(args);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_GT(CachedTokens(second.err), 0) << second.err;
  EXPECT_EQ(second.out, first.out) << "greedy output does not depend on the cache";
}

TEST_F(PrefixctlLiveTest, JsonOutputParses) {
  const ProcessResult gen =
      Run({"--json", "generate", "--max_tokens=5", "--temperature=0", "--ignore_eos", "--logprobs",
           "--top_logprobs=2", "--request_id=json-test", "Hello there"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_EQ(gen.err, "");
  const std::vector<std::string> lines = Lines(gen.out);
  ASSERT_FALSE(lines.empty());
  int tokens = 0;
  for (const std::string& line : lines) {
    const nlohmann::json j = nlohmann::json::parse(line);
    tokens += static_cast<int>(j["token_ids"].size());
    if (j.contains("logprobs")) {
      EXPECT_EQ(j["logprobs"].size(), j["token_ids"].size());
    }
  }
  EXPECT_EQ(tokens, 5);
  const nlohmann::json last = nlohmann::json::parse(lines.back());
  EXPECT_EQ(last["finish_reason"], "LENGTH");
  EXPECT_EQ(last["usage"]["completion_tokens"], 5);
  EXPECT_EQ(last["request_id"], "json-test");

  const ProcessResult stats = Run({"--json", "stats"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const nlohmann::json s = nlohmann::json::parse(stats.out);
  EXPECT_GT(s["blocks"]["total"].get<int64_t>(), 0);
  EXPECT_GT(s["query_tokens"].get<int64_t>(), 0) << "the generate above was looked up";
  EXPECT_FALSE(s.contains("host_blocks")) << "the CPU backend has no host tier unless asked";

  const ProcessResult health = Run({"--json", "health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(nlohmann::json::parse(health.out)["status"], "SERVING");

  const ProcessResult flush = Run({"--json", "flush"});
  ASSERT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_TRUE(nlohmann::json::parse(flush.out)["freed_blocks"].is_number_integer());
}

TEST(PrefixctlHostTierTest, StatsShowTheHostTier) {
  // A 64-block host tier (the test model's block is 64 KiB on the CPU); a prompt, and 4 more
  // that push it there from a 16-block device pool.
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server = testing::ServerProcess::Start(
      {"--kv_cache_tokens=256", "--max_running_requests=4", "--host_kv_cache_bytes=4M"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = "--target=" + (*server)->target();
  for (int i = 0; i < 5; ++i) {
    const ProcessResult r = Prefixctl({target, "generate", "--max_tokens=1",
                                       "--prompt=" + std::string(80, static_cast<char>('a' + i))});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const ProcessResult text = Prefixctl({target, "stats"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("host tier   64 blocks (")) << text.out;
  EXPECT_THAT(text.out, ::testing::ContainsRegex("host moves  [1-9][0-9]* demoted")) << text.out;
  const ProcessResult json = Prefixctl({target, "--json", "stats"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const nlohmann::json s = nlohmann::json::parse(json.out);
  EXPECT_EQ(s["host_blocks"]["total"], 64);
  EXPECT_GT(s["demoted_blocks"].get<int64_t>(), 0);
  EXPECT_EQ(s["bytes_to_host"].get<int64_t>(), s["demoted_blocks"].get<int64_t>() * 65536);
}

TEST_F(PrefixctlLiveTest, PinAndUnpinReportTokens) {
  const std::string prefix = "--prompt=" + std::string(120, 'x');
  const ProcessResult pin = Run({"--json", "pin", prefix});
  ASSERT_EQ(pin.exit_code, 0) << pin.err;
  const nlohmann::json p = nlohmann::json::parse(pin.out);
  EXPECT_GT(p["pinned_tokens"].get<int>(), 0);
  EXPECT_EQ(p["computed_tokens"], p["pinned_tokens"]);

  const ProcessResult again = Run({"pin", prefix});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("(0 computed now"));

  for (int i = 0; i < 2; ++i) {
    const ProcessResult unpin = Run({"--json", "unpin", prefix});
    ASSERT_EQ(unpin.exit_code, 0) << unpin.err;
    EXPECT_EQ(nlohmann::json::parse(unpin.out)["unpinned_tokens"], p["pinned_tokens"]);
  }
  // Not pinned any more: unpinning again is NOT_FOUND (exit 1), not a silent no-op.
  EXPECT_EQ(Run({"unpin", prefix}).exit_code, 1);
}

// The admin's view of pins (open mode from loopback is an admin): list, unpin by id, and a
// flush that drops pins.
TEST_F(PrefixctlLiveTest, PinsAreListedAndAnAdminUnpinsByIdOrFlushesThem) {
  const ProcessResult first = Run({"--json", "pin", "--prompt=" + std::string(100, 'y')});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(Run({"pin", "--prompt=" + std::string(100, 'z')}).exit_code, 0);
  const ProcessResult listed = Run({"pins"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("tenant"));
  const nlohmann::json pins = nlohmann::json::parse(Run({"--json", "pins"}).out);
  ASSERT_EQ(pins["pins"].size(), 2u) << pins.dump();
  const uint64_t id = nlohmann::json::parse(first.out)["pin_id"].get<uint64_t>();
  EXPECT_EQ(pins["pins"][0]["pin_id"].get<uint64_t>(), id);
  ASSERT_EQ(Run({"unpin", "--pin_id=" + std::to_string(id)}).exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(Run({"--json", "pins"}).out)["pins"].size(), 1u);
  const ProcessResult flushed = Run({"--json", "flush", "--drop_pins"});
  ASSERT_EQ(flushed.exit_code, 0) << flushed.err;
  EXPECT_EQ(nlohmann::json::parse(flushed.out)["unpinned"], 1);
  EXPECT_THAT(Run({"pins"}).out, HasSubstr("no pins"));
}

TEST_F(PrefixctlLiveTest, PromptFromStandardInputAndTokenIds) {
  const ProcessResult piped =
      Run({"generate", "--max_tokens=3", "--temperature=0", "-"}, "a prompt from a pipe");
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_THAT(piped.err, HasSubstr("completion 3 tokens"));

  const ProcessResult ids =
      Run({"--json", "generate", "--max_tokens=3", "--ignore_eos", "--token_ids=10,20,30,40"});
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  const nlohmann::json last = nlohmann::json::parse(Lines(ids.out).back());
  EXPECT_EQ(last["usage"]["prompt_tokens"], 4) << "token ids are used as given";
}

// The summary lines `prefixctl chat` prints on stderr, one per reply:
// "[prompt N tokens, C cached (P%), K tokens out, TTFT T ms]".
struct ChatUsage {
  int prompt = 0;
  int cached = 0;
  int out = 0;
};
std::vector<ChatUsage> ChatUsages(const std::string& err) {
  std::vector<ChatUsage> usages;
  const std::regex line(
      R"(\[prompt ([0-9]+) tokens, ([0-9]+) cached \([0-9]+%\), ([0-9]+) tokens out, TTFT [0-9]+ ms\])");
  for (std::sregex_iterator it(err.begin(), err.end(), line), end; it != end; ++it) {
    usages.push_back({std::stoi((*it)[1]), std::stoi((*it)[2]), std::stoi((*it)[3])});
  }
  return usages;
}

constexpr char kSystem[] =
    "You are a helpful assistant. Answer briefly and politely, keep to the facts, and say so "
    "when you do not know something.";

TEST_F(PrefixctlLiveTest, TokenizeShowsTheRenderedChatTemplateAndIds) {
  const ProcessResult text =
      Run({"tokenize", std::string("--system=") + kSystem, "Hello", "there"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  for (const std::string& part :
       {std::string("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n") + kSystem +
            "<|eot_id|>",
        std::string("<|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>"),
        std::string("<|start_header_id|>assistant<|end_header_id|>\n\n\n--- ")}) {
    EXPECT_THAT(text.out, HasSubstr(part)) << text.out;
  }
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text.out, m, std::regex("--- ([0-9]+) token ids ---\n([0-9,]+)\n")))
      << text.out;
  const int count = std::stoi(m[1]);
  const std::string ids = m[2];
  EXPECT_GT(count, 20);
  EXPECT_EQ(static_cast<int>(std::count(ids.begin(), ids.end(), ',')) + 1, count);

  const ProcessResult json =
      Run({"--json", "tokenize", std::string("--system=") + kSystem, "Hello", "there"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["token_ids"].size(), static_cast<size_t>(count));

  // The ids decode to the rendered text, special tokens and all.
  const ProcessResult back = Run({"--json", "detokenize", ids});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(nlohmann::json::parse(back.out)["text"], j["prompt_text"]);

  // generate runs exactly that prompt.
  const ProcessResult gen = Run({"--json", "generate", std::string("--system=") + kSystem,
                                 "--max_tokens=2", "Hello", "there"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_EQ(nlohmann::json::parse(Lines(gen.out).back())["usage"]["prompt_tokens"], count);
}

TEST_F(PrefixctlLiveTest, TokenizeAConversationFromStandardInput) {
  const std::string conversation =
      R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])";
  const ProcessResult r =
      Run({"--json", "tokenize", "--messages_file=-", "--noadd_generation_prompt"}, conversation);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string text = nlohmann::json::parse(r.out)["prompt_text"];
  EXPECT_THAT(text, HasSubstr("<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"));
  EXPECT_FALSE(text.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n")) << text;

  const ProcessResult plain = Run({"--json", "tokenize", "Just", "text"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(nlohmann::json::parse(plain.out)["prompt_text"], "Just text");
}

TEST_F(PrefixctlLiveTest, ChatThroughAPipeRemembersTheConversation) {
  const ProcessResult r =
      Run({"chat", std::string("--system=") + kSystem, "--max_tokens=8", "--temperature=0",
           "--ignore_eos"},
          "Hello there, how are you today?\n\nTell me more about that, please.\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty()) << "the replies go to stdout";
  const std::vector<ChatUsage> usages = ChatUsages(r.err);
  ASSERT_EQ(usages.size(), 2u) << "two lines, two replies (the blank line is skipped)\n" << r.err;
  EXPECT_EQ(usages[0].out, 8);
  EXPECT_EQ(usages[1].out, 8);
  EXPECT_GT(usages[1].prompt, usages[0].prompt + 8) << "the second turn sends the first";
  EXPECT_GT(usages[1].cached, 0) << "and finds it in the cache\n" << r.err;
  EXPECT_GE(usages[1].cached, usages[0].prompt / 16 * 16 - 16) << r.err;
}

TEST_F(PrefixctlLiveTest, ChatJsonResetAndExit) {
  const ProcessResult r =
      Run({"--json", "chat", std::string("--system=") + kSystem, "--max_tokens=4",
           "--temperature=0", "--ignore_eos", "--request_id=t"},
          "First question here.\n/reset\nFirst question here.\n/bogus\n/exit\nNever sent.\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out << r.err;
  const nlohmann::json first = nlohmann::json::parse(lines[0]);
  const nlohmann::json second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(first["turn"], 1);
  EXPECT_EQ(first["role"], "assistant");
  EXPECT_EQ(first["request_id"], "t-1");
  EXPECT_EQ(first["usage"]["completion_tokens"], 4);
  EXPECT_EQ(second["usage"]["prompt_tokens"], first["usage"]["prompt_tokens"])
      << "after /reset the same question is the same prompt";
  EXPECT_GT(second["usage"]["cached_tokens"].get<int>(), 0);
  EXPECT_THAT(r.err, HasSubstr("unknown command /bogus"));
}

TEST_F(PrefixctlLiveTest, ChatGoesOnAfterARefusedTurn) {
  // A stop token id outside the vocabulary is refused turn after turn, but the chat goes on.
  const ProcessResult r =
      Run({"chat", "--max_tokens=2", "--stop_token_ids=99999999"}, "one\ntwo\n");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(static_cast<int>(std::count(r.err.begin(), r.err.end(), '\n')), 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
}

TEST_F(PrefixctlLiveTest, ServerErrorsExitOneWithCodeAndMessage) {
  const ProcessResult r = Run({"generate", "--token_ids=1,2,99999999"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
}

}  // namespace
}  // namespace prefixd
