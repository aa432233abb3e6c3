// prefixctl as a user runs it: exit codes, what goes to stdout and stderr, --json.
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

  const ProcessResult health = Run({"--json", "health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(nlohmann::json::parse(health.out)["status"], "SERVING");

  const ProcessResult flush = Run({"--json", "flush"});
  ASSERT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_TRUE(nlohmann::json::parse(flush.out)["freed_blocks"].is_number_integer());
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

TEST_F(PrefixctlLiveTest, ServerErrorsExitOneWithCodeAndMessage) {
  const ProcessResult r = Run({"generate", "--token_ids=1,2,99999999"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
}

}  // namespace
}  // namespace prefixd
