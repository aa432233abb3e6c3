// prefix-bench as a user runs it, against live servers at the cpu-tiny preset.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/clients/subprocess.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::RunProcess;

ProcessResult PrefixBench(std::vector<std::string> args) {
  args.insert(args.begin(), PREFIX_BENCH_PATH);
  return RunProcess(args);
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  if (dir == nullptr) dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name + "." + std::to_string(getpid()) +
         ".json";
}

TEST(PrefixBenchTest, HelpDescribesTheWorkloadAndFlags) {
  const ProcessResult r = PrefixBench({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* word :
       {"generated-shared-prefix", "--preset", "cpu-tiny", "--request_rate", "--concurrency",
        "--json", "--compare_no_cache", "88.2 %", "--workload=multi-turn", "--conversations",
        "--turns", "re-tokenized", "C=16 T=6"}) {
    EXPECT_THAT(r.out, HasSubstr(word));
  }
}

TEST(PrefixBenchTest, UsageErrorsExitTwo) {
  EXPECT_EQ(PrefixBench({"--preset=enormous"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"--num_groups=0"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"--request_rate=-1"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"--compare_no_cache"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"stray"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"--workload=chat-arena"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"--turns=3"}).exit_code, 2) << "multi-turn only";
  EXPECT_EQ(PrefixBench({"--workload=multi-turn", "--num_groups=3"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"--workload=multi-turn", "--turns=0"}).exit_code, 2);
  EXPECT_EQ(PrefixBench({"--workload=multi-turn", "--preset=enormous"}).exit_code, 2);
}

TEST(PrefixBenchTest, UnreachableServerExitsThree) {
  const ProcessResult r =
      PrefixBench({"--preset=cpu-tiny", "--target=unix:/nonexistent/prefix-bench-test.sock"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
}

class PrefixBenchLiveTest : public ::testing::Test {
 protected:
  static std::unique_ptr<testing::ServerProcess> StartServer(const std::vector<std::string>& args) {
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::Start(args);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }
};

TEST_F(PrefixBenchLiveTest, OneAtATimeReachesTheIdealHitRateWithoutErrors) {
  std::unique_ptr<testing::ServerProcess> server = StartServer({});
  ASSERT_NE(server, nullptr);
  const std::string json_path = TempPath("prefix_bench_sequential");
  const ProcessResult r = PrefixBench({"--preset=cpu-tiny", "--concurrency=1",
                                       "--target=" + server->target(), "--json=" + json_path});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("Prefix hit rate:"));
  const nlohmann::json json = ReadJson(json_path);
  std::remove(json_path.c_str());
  const nlohmann::json& results = json["results"];
  const int requests = json["config"]["num_requests"];
  EXPECT_EQ(results["succeeded"], requests);
  EXPECT_EQ(results["failed"], 0);
  EXPECT_TRUE(results["errors"].empty());
  EXPECT_EQ(results["completion_tokens"].get<int>(),
            requests * json["config"]["output_len"].get<int>());
  // One request at a time: every later prompt of a group finds its system prompt cached,
  // which is exactly the ideal when S is a multiple of the block size.
  const double ideal = results["ideal_hit_rate"];
  EXPECT_NEAR(results["achieved_hit_rate"].get<double>(), ideal, 0.02);
  EXPECT_GT(results["ttft_ms"]["p50"].get<double>(), 0);
  EXPECT_GT(results["output_token_throughput"].get<double>(), 0);
}

TEST_F(PrefixBenchLiveTest, AllAtOnceCompletesWithoutErrors) {
  std::unique_ptr<testing::ServerProcess> server = StartServer({});
  ASSERT_NE(server, nullptr);
  const std::string json_path = TempPath("prefix_bench_burst");
  const ProcessResult r = PrefixBench(
      {"--preset=cpu-tiny", "--warmup=2", "--target=" + server->target(), "--json=" + json_path});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json json = ReadJson(json_path);
  std::remove(json_path.c_str());
  const nlohmann::json& results = json["results"];
  EXPECT_EQ(results["failed"], 0);
  EXPECT_EQ(results["succeeded"], json["config"]["num_requests"]);
  // Requests of a group racing for the same uncached prefix can only lower the rate.
  EXPECT_LE(results["achieved_hit_rate"].get<double>(),
            results["ideal_hit_rate"].get<double>() + 1e-9);
}

// Multi-turn chats: every turn after the first finds the previous turn's prompt and reply
// in the cache, as far as the reply's text re-tokenizes to the ids the model generated.
TEST_F(PrefixBenchLiveTest, MultiTurnConversationsFindTheirHistoryInTheCache) {
  std::unique_ptr<testing::ServerProcess> server = StartServer({});
  ASSERT_NE(server, nullptr);
  const std::string json_path = TempPath("prefix_bench_multi_turn");
  // Sampled replies: the test model's greedy ones are all whitespace, which the chat
  // template trims away, so none would come back as the generated ids.
  const ProcessResult r =
      PrefixBench({"--workload=multi-turn", "--conversations=4", "--turns=3",
                   "--system_prompt_len=32", "--question_len=16", "--output_len=16",
                   "--temperature=1", "--target=" + server->target(), "--json=" + json_path});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("Prefix reuse by turn"));
  EXPECT_THAT(r.out, HasSubstr("Re-tokenized replies differ:"));
  const nlohmann::json json = ReadJson(json_path);
  std::remove(json_path.c_str());
  EXPECT_EQ(json["config"]["workload"], "multi-turn");
  EXPECT_EQ(json["results"]["succeeded"], 12);
  EXPECT_EQ(json["results"]["failed"], 0);
  const nlohmann::json& mt = json["multi_turn"];
  const int block = mt["block_size"];
  ASSERT_GT(block, 0);
  ASSERT_EQ(mt["per_turn"].size(), 3u);
  EXPECT_EQ(mt["total"]["tokenize_disagreements"], 0) << "Tokenize gives Generate's prompt";

  // Every turn after the first: at least the previous turn's full blocks, less one (the last
  // generated token has no KV), when the reply re-tokenized to the generated ids.
  std::map<std::pair<int, int>, nlohmann::json> turns;
  for (const nlohmann::json& t : mt["requests"]) {
    turns[{t["conversation"].get<int>(), t["turn"].get<int>()}] = t;
  }
  ASSERT_EQ(turns.size(), 12u);
  int identical = 0;
  for (const auto& [key, t] : turns) {
    EXPECT_TRUE(t["succeeded"].get<bool>());
    if (key.second == 1) continue;
    const nlohmann::json& prev = turns.at({key.first, key.second - 1});
    const int prev_len = prev["prompt_tokens"].get<int>() + prev["completion_tokens"].get<int>();
    EXPECT_GT(t["prompt_tokens"].get<int>(), prev_len) << "the turn repeats its history";
    if (!t["retokenized_identically"].get<bool>()) continue;
    ++identical;
    EXPECT_GE(t["cached_tokens"].get<int>(), prev_len / block * block - block)
        << "conversation " << key.first << " turn " << key.second;
  }
  std::cout << "replies re-tokenized identically: " << identical << " of 8; mismatches cost "
            << mt["total"]["retokenization_lost_tokens"] << " cached tokens\n";
  EXPECT_GT(identical, 0) << "the check above ran on no turn at all";
  EXPECT_EQ(mt["total"]["retokenization_mismatches"], 8 - identical);

  const double achieved = mt["total"]["cached_tokens"].get<double>();
  const double ideal = mt["total"]["ideal_cached_tokens"].get<double>();
  EXPECT_GT(ideal, 0);
  EXPECT_GE(achieved, 0.95 * ideal) << r.out;
  EXPECT_LE(mt["total"]["ideal_cached_tokens"].get<int>(),
            mt["total"]["ideal_exact_cached_tokens"].get<int>());
  EXPECT_DOUBLE_EQ(json["results"]["ideal_hit_rate"].get<double>(),
                   mt["total"]["ideal_hit_rate"].get<double>());
  EXPECT_GT(json["results"]["ttft_ms"]["p50"].get<double>(), 0);
}

TEST_F(PrefixBenchLiveTest, ComparesAgainstAServerWithoutPrefixCache) {
  std::unique_ptr<testing::ServerProcess> with_cache = StartServer({});
  std::unique_ptr<testing::ServerProcess> without_cache = StartServer({"--prefix_cache=false"});
  ASSERT_NE(with_cache, nullptr);
  ASSERT_NE(without_cache, nullptr);
  const std::string json_path = TempPath("prefix_bench_compare");
  const ProcessResult r =
      PrefixBench({"--preset=cpu-tiny", "--concurrency=1", "--target=" + with_cache->target(),
                   "--compare_no_cache", "--target_no_cache=" + without_cache->target(),
                   "--json=" + json_path});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("prefix cache vs. no prefix cache"));
  const nlohmann::json json = ReadJson(json_path);
  std::remove(json_path.c_str());
  EXPECT_EQ(json["no_cache"]["results"]["failed"], 0);
  EXPECT_EQ(json["no_cache"]["results"]["cached_tokens"], 0);
  EXPECT_GT(json["results"]["cached_tokens"].get<int>(), 0);
  EXPECT_GT(json["comparison"]["output_throughput_ratio"].get<double>(), 0);
  EXPECT_GT(json["comparison"]["ttft_p50_speedup"].get<double>(), 0);
}

}  // namespace
}  // namespace prefixd
