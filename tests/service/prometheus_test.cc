// /metrics as Prometheus itself reads it: a real Prometheus server (Debian's package)
// scrapes a live prefixd on loopback, and the hit rate comes back through its query API.
// Prometheus marks a target "down" when the exposition does not parse, so a scrape that is
// "up" is the parser's verdict. Skips when prometheus is not installed.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/service/observability_util.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::prefixd::testing::DemoteAndPromote;
using ::prefixd::testing::GenerateClient;
using ::prefixd::testing::HostTierServerFlags;
using ::prefixd::testing::PollUntil;
using ::prefixd::testing::RandomTokens;
using ::prefixd::testing::ServerProcess;
using Json = nlohmann::json;

constexpr char kPrometheus[] = "/usr/bin/prometheus";

// A free loopback TCP port (the kernel's pick; released for the child to bind).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// A Prometheus server scraping one target every second, in a temporary directory that
// goes with it.
class PrometheusProcess {
 public:
  explicit PrometheusProcess(const std::string& target) {
    char dir[] = "/tmp/prefixd-prometheus-XXXXXX";
    dir_ = mkdtemp(dir);
    port_ = FreePort();
    std::ofstream(dir_ + "/prometheus.yml") << absl::StrCat(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: prefixd\n"
        "    static_configs:\n"
        "      - targets: ['",
        target, "']\n");
    pid_ = fork();
    if (pid_ == 0) {
      const int log = open((dir_ + "/prometheus.log").c_str(), O_WRONLY | O_CREAT, 0644);
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      std::vector<std::string> args = {
          kPrometheus,
          "--config.file=" + dir_ + "/prometheus.yml",
          "--storage.tsdb.path=" + dir_ + "/data",
          absl::StrCat("--web.listen-address=127.0.0.1:", port_),
          "--log.level=warn",
      };
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(kPrometheus, argv.data());
      _exit(127);
    }
  }

  ~PrometheusProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      // Bounded: a clean shutdown takes well under a second; then it is killed.
      const bool exited =
          PollUntil([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, absl::Seconds(10));
      if (!exited) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string log() const {
    std::ifstream in(dir_ + "/prometheus.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // GET an API path; the parsed JSON, or null when Prometheus does not answer (yet).
  Json Api(const std::string& path, const httplib::Params& params = {}) const {
    httplib::Client client("127.0.0.1", port_);
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(5, 0);
    auto res = client.Get(path.c_str(), params, httplib::Headers{});
    if (!res || res->status != 200) return nullptr;
    return Json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  }

  // An instant query's single value, or NaN when it has no result.
  double Query(const std::string& promql) const {
    const Json j = Api("/api/v1/query", {{"query", promql}});
    if (j.is_null() || j["status"] != "success" || j["data"]["result"].empty()) return NAN;
    return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
  }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

TEST(PrometheusTest, ScrapesPrefixdAndReadsTheHitRateBack) {
  if (access(kPrometheus, X_OK) != 0) {
    GTEST_SKIP() << kPrometheus << " is not installed (scripts/setup.sh installs Debian's "
                 << "prometheus package)";
  }
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_FALSE((*server)->http_address().empty());
  // Traffic with a repeated system prompt: every request after the first hits the cache.
  GenerateClient client((*server)->target());
  auto traffic = [&client](int seed) {
    const std::vector<int32_t> system = RandomTokens(seed, 96);
    for (int i = 0; i < 4; ++i) {
      const auto r = client.Generate(
          testing::GreedyRequest(testing::Concat(system, RandomTokens(seed * 100 + i, 12)), 6));
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    }
  };
  // A first round before Prometheus starts: the tenant's series exist from its first scrape
  // on (rate() needs a sample before the traffic it measures), already well above zero (so
  // that rate() extrapolates the hits and the queries alike).
  traffic(1);
  if (HasFatalFailure()) return;
  PrometheusProcess prometheus((*server)->http_address());

  // The first scrape: Prometheus parsed the exposition (a parse error marks it "down").
  Json target;
  const bool up = PollUntil(
      [&] {
        const Json j = prometheus.Api("/api/v1/targets");
        if (j.is_null() || j["data"]["activeTargets"].empty()) return false;
        target = j["data"]["activeTargets"][0];
        return target["health"] == "up";
      },
      absl::Seconds(30), absl::Milliseconds(200));
  ASSERT_TRUE(up) << "target: " << target.dump(2) << "\nprometheus log:\n" << prometheus.log();
  EXPECT_EQ(target["lastError"], "");
  const v1::CacheStats before = client.Stats();
  ASSERT_TRUE(PollUntil([&] {
    return prometheus.Query("prefixd_prefix_cache_queries_tokens_total") == before.query_tokens();
  }));

  // The second round, while Prometheus watches.
  traffic(2);
  if (HasFatalFailure()) return;
  const v1::CacheStats stats = client.Stats();
  ASSERT_EQ(stats.hit_tokens(), 2 * 3 * 96);

  // Wait for a scrape taken after the traffic, then read the numbers back.
  ASSERT_TRUE(PollUntil(
      [&] {
        return prometheus.Query("prefixd_prefix_cache_hits_tokens_total{tenant=\"default\"}") ==
               stats.hit_tokens();
      },
      absl::Seconds(30), absl::Milliseconds(200)))
      << prometheus.log();
  EXPECT_DOUBLE_EQ(prometheus.Query("prefixd_prefix_cache_hit_ratio"), stats.hit_rate());
  EXPECT_EQ(prometheus.Query("prefixd_prefix_cache_queries_tokens_total"), stats.query_tokens());
  EXPECT_EQ(prometheus.Query("up{job=\"prefixd\"}"), 1);
  EXPECT_EQ(prometheus.Query("sum(prefixd_requests_total{code=\"OK\"})"), 8);

  // The README's PromQL: the recent hit rate from the counters' rates (the second round's),
  // and p99 TTFT from the histogram.
  const double recent_hit_rate = prometheus.Query(
      "sum(rate(prefixd_prefix_cache_hits_tokens_total[1m])) / "
      "sum(rate(prefixd_prefix_cache_queries_tokens_total[1m]))");
  EXPECT_NEAR(recent_hit_rate,
              static_cast<double>(stats.hit_tokens() - before.hit_tokens()) /
                  (stats.query_tokens() - before.query_tokens()),
              1e-6);
  const double p99_ttft = prometheus.Query(
      "histogram_quantile(0.99, sum by (le) "
      "(rate(prefixd_time_to_first_token_seconds_bucket[1m])))");
  EXPECT_TRUE(std::isfinite(p99_ttft) && p99_ttft > 0) << p99_ttft;
  EXPECT_GT(prometheus.Query("sum(increase(prefixd_generated_tokens_total[1m]))"), 0);
}

TEST(PrometheusTest, ReadsTheHostTierBack) {
  if (access(kPrometheus, X_OK) != 0) {
    GTEST_SKIP() << kPrometheus << " is not installed (scripts/setup.sh installs Debian's "
                 << "prometheus package)";
  }
  auto server = ServerProcess::Start(HostTierServerFlags());
  ASSERT_TRUE(server.ok()) << server.status();
  GenerateClient client((*server)->target());
  const v1::CacheStats stats = DemoteAndPromote(client);
  ASSERT_GT(stats.promoted_blocks(), 0);
  PrometheusProcess prometheus((*server)->http_address());
  ASSERT_TRUE(PollUntil(
      [&] {
        return prometheus.Query("prefixd_kv_promoted_blocks_total") == stats.promoted_blocks();
      },
      absl::Seconds(30), absl::Milliseconds(200)))
      << prometheus.log();
  EXPECT_EQ(prometheus.Query("prefixd_kv_host_capacity_blocks"), 64);
  EXPECT_EQ(prometheus.Query("prefixd_kv_demoted_blocks_total"), stats.demoted_blocks());
  EXPECT_EQ(prometheus.Query("sum(prefixd_kv_host_blocks)"), 64);
  EXPECT_EQ(prometheus.Query("prefixd_kv_host_blocks{state=\"evictable\"}"),
            stats.host_blocks().evictable());
  EXPECT_EQ(prometheus.Query("prefixd_kv_host_transfer_bytes_total{direction=\"to_device\"}"),
            stats.bytes_to_device());
  EXPECT_EQ(prometheus.Query("prefixd_kv_host_transfer_bytes_total{direction=\"to_host\"}"),
            stats.bytes_to_host());
  EXPECT_EQ(prometheus.Query("prefixd_prefix_cache_host_hits_tokens_total{tenant=\"default\"}"),
            stats.host_hit_tokens());
  EXPECT_EQ(prometheus.Query("prefixd_kv_promotion_wait_seconds_count"), 1)
      << "one request waited for its blocks to come back";
  EXPECT_GT(prometheus.Query("prefixd_kv_host_allocated_bytes"), 0);
}

}  // namespace
}  // namespace prefixd
