// /dashboard in a real browser: headless Chromium (Debian's package) loads the page from a
// live prefixd, runs its script, and the DOM it leaves says what the charts drew (each chart
// <svg> carries data-points). Under a small prefix-bench load the test keeps a screenshot
// in the build folder (dashboard.png) for CI to keep as an artifact. Skips when chromium is
// not installed.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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
using ::prefixd::testing::HttpGet;
using ::prefixd::testing::PollUntil;
using ::prefixd::testing::RandomTokens;
using ::prefixd::testing::ServerProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

constexpr char kChromium[] = "/usr/bin/chromium";

// Runs `command` through the shell; its stdout, and its exit code in `code`.
std::string RunCommand(const std::string& command, int& code) {
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  if (pipe == nullptr) {
    code = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// Loads `url` in headless Chromium, lets its script run for `budget_ms` of virtual time,
// and returns the DOM; with `screenshot`, also writes a 1400×1000 PNG there.
std::string LoadInChromium(const std::string& url, int budget_ms, const std::string& screenshot) {
  char dir[] = "/tmp/prefixd-chromium-XXXXXX";
  const std::string profile = mkdtemp(dir);
  std::vector<std::string> args = {
      "timeout 90",
      kChromium,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--hide-scrollbars",
      "--user-data-dir=" + profile,
      absl::StrCat("--virtual-time-budget=", budget_ms),
      "--window-size=1400,1000",
      "--dump-dom",
  };
  if (!screenshot.empty()) args.push_back("--screenshot=" + screenshot);
  args.push_back(url);
  args.push_back("2>/dev/null");
  int code = 0;
  std::string dom = RunCommand(absl::StrJoin(args, " "), code);
  EXPECT_EQ(code, 0) << "chromium failed";
  std::error_code ignored;
  std::filesystem::remove_all(profile, ignored);
  return dom;
}

constexpr char kAbsent[] = "(absent)";

// The value of `attribute` on the element with id `id` in a serialized DOM, or kAbsent.
std::string Attribute(const std::string& dom, const std::string& id, const std::string& attribute) {
  const size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return kAbsent;
  const size_t open = dom.rfind('<', at);
  const std::string tag = dom.substr(open, dom.find('>', at) - open);
  const std::string key = " " + attribute + "=\"";
  const size_t value = tag.find(key);
  if (value == std::string::npos) return kAbsent;
  const size_t start = value + key.size();
  return tag.substr(start, tag.find('"', start) - start);
}

// What the chart <svg> with `id` contains (between its tags).
std::string ChartBody(const std::string& dom, const std::string& id) {
  const size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t start = dom.find('>', at) + 1;
  return dom.substr(start, dom.find("</svg>", start) - start);
}

// The DOM without its <script> and <style> elements: what the page shows.
std::string Rendered(std::string dom) {
  for (const char* tag : {"script", "style"}) {
    const std::string open = absl::StrCat("<", tag), close = absl::StrCat("</", tag, ">");
    for (size_t at; (at = dom.find(open)) != std::string::npos;) {
      const size_t end = dom.find(close, at);
      dom.erase(at, end == std::string::npos ? std::string::npos : end + close.size() - at);
    }
  }
  return dom;
}

int Points(const std::string& dom, const std::string& id) {
  const std::string v = Attribute(dom, id, "data-points");
  return v == kAbsent ? -1 : std::stoi(v);
}

// The text content of the element with `id` (its tags stripped).
std::string Text(const std::string& dom, const std::string& id) {
  const size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return kAbsent;
  const size_t open = dom.rfind('<', at);
  const std::string tag = dom.substr(open + 1, dom.find_first_of(" >", open) - open - 1);
  const size_t start = dom.find('>', at) + 1;
  const std::string inner = dom.substr(start, dom.find("</" + tag + ">", start) - start);
  std::string text;
  bool in_tag = false;
  for (char c : inner) {
    if (c == '<') in_tag = true;
    if (!in_tag) text += c;
    if (c == '>') in_tag = false;
  }
  return text;
}

const char* const kCharts[] = {"chart-hit",  "chart-saved", "chart-kv",
                               "chart-ttft", "chart-tput",  "chart-queue"};

TEST(DashboardTest, ShowsEmptyChartsAndANoTrafficNoteBeforeAnyRequest) {
  if (access(kChromium, X_OK) != 0) {
    GTEST_SKIP() << kChromium << " is not installed (scripts/setup.sh installs Debian's chromium)";
  }
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string dom =
      LoadInChromium(absl::StrCat("http://", (*server)->http_address(), "/dashboard"), 1500, "");
  ASSERT_THAT(dom, HasSubstr("chart-hit"));
  EXPECT_THAT(Rendered(dom), Not(HasSubstr("NaN")));
  EXPECT_THAT(Rendered(dom), Not(HasSubstr("undefined")));
  // Every chart is drawn, with axes; the ones that need traffic say there is none.
  for (const char* chart : kCharts) {
    EXPECT_GE(Points(dom, chart), 0) << chart;
    EXPECT_THAT(ChartBody(dom, chart), HasSubstr("class=\"grid\"")) << chart;
  }
  EXPECT_EQ(Points(dom, "chart-hit"), 0);
  EXPECT_EQ(Points(dom, "chart-ttft"), 0);
  EXPECT_THAT(ChartBody(dom, "chart-hit"), HasSubstr("no traffic yet"));
  EXPECT_GT(Points(dom, "chart-kv"), 0) << "the pool's free blocks are data too";
  EXPECT_EQ(Attribute(dom, "notice", "hidden"), kAbsent) << "the no-traffic note is shown";
  EXPECT_THAT(dom, HasSubstr(">live<"));
  // No host tier (the CPU backend has none unless asked): nothing about one.
  EXPECT_NE(Attribute(dom, "card-kv-host", "hidden"), kAbsent) << "the host tier card is hidden";
  EXPECT_THAT(Text(dom, "kpi-kv-sub"), Not(HasSubstr("host")));
  EXPECT_EQ((*server)->Stop(), 0);
}

TEST(DashboardTest, ShowsTheHostTierWhenTheServerHasOne) {
  if (access(kChromium, X_OK) != 0) {
    GTEST_SKIP() << kChromium << " is not installed (scripts/setup.sh installs Debian's chromium)";
  }
  auto server = ServerProcess::Start(HostTierServerFlags());
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string http = (*server)->http_address();
  GenerateClient client((*server)->target());
  const v1::CacheStats stats = DemoteAndPromote(client);
  ASSERT_GT(stats.promoted_blocks(), 0);
  ASSERT_GT(stats.host_blocks().evictable(), 0);
  Json data;
  ASSERT_TRUE(PollUntil([&] {
    data = Json::parse(HttpGet(http, "/dashboard/data.json").body);
    return data["totals"]["promoted_blocks"] == stats.promoted_blocks() &&
           data["series"]["kv_host_evictable"].back() == stats.host_blocks().evictable();
  })) << data.dump(2);
  EXPECT_EQ(data["server"]["host_kv_capacity_blocks"], 64);

  // Kept beside dashboard.png, as dashboard-host.png.
  std::string screenshot = PREFIXD_SCREENSHOT;
  screenshot.insert(screenshot.rfind(".png"), "-host");
  std::filesystem::remove(screenshot);
  const std::string dom =
      LoadInChromium(absl::StrCat("http://", http, "/dashboard"), 2500, screenshot);
  ASSERT_THAT(dom, HasSubstr("chart-kv-host"));
  EXPECT_THAT(Rendered(dom), Not(HasSubstr("NaN")));
  EXPECT_THAT(Rendered(dom), Not(HasSubstr("undefined")));
  EXPECT_EQ(Attribute(dom, "card-kv-host", "hidden"), kAbsent) << "the host tier card is shown";
  EXPECT_GT(Points(dom, "chart-kv-host"), 0);
  EXPECT_THAT(ChartBody(dom, "chart-kv-host"), HasSubstr("<path"));
  EXPECT_THAT(Text(dom, "legend-kv-host"), HasSubstr("demoted"));
  EXPECT_THAT(Text(dom, "kv-host-size"), HasSubstr("64 blocks · 4 MiB"));
  EXPECT_THAT(Text(dom, "kpi-kv-sub"), HasSubstr("host"));
  EXPECT_THAT(Text(dom, "tenants"), HasSubstr("host")) << "cached blocks: device + host";
  EXPECT_TRUE(std::filesystem::exists(screenshot)) << screenshot;
  EXPECT_EQ((*server)->Stop(), 0);
}

// A small shared-system-prompt load: prefix-bench's cpu-tiny preset when the build has it,
// the same shape from this test otherwise.
void RunLoad(const std::string& target) {
#ifdef PREFIX_BENCH
  int code = 0;
  const std::string out = RunCommand(
      absl::StrCat(PREFIX_BENCH, " --target=", target, " --preset=cpu-tiny --noprogress 2>&1"),
      code);
  ASSERT_EQ(code, 0) << out;
#else
  GenerateClient client(target);
  for (int g = 0; g < 2; ++g) {
    const std::vector<int32_t> system = RandomTokens(1000 + g, 64);
    for (int p = 0; p < 4; ++p) {
      const auto r = client.Generate(
          testing::GreedyRequest(testing::Concat(system, RandomTokens(g * 10 + p, 16)), 8));
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    }
  }
#endif
}

TEST(DashboardTest, ChartsReceiveDataUnderPrefixBenchLoad) {
  if (access(kChromium, X_OK) != 0) {
    GTEST_SKIP() << kChromium << " is not installed (scripts/setup.sh installs Debian's chromium)";
  }
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string http = (*server)->http_address();
  RunLoad((*server)->target());
  if (HasFatalFailure()) return;

  // Wait until the server's once-a-second sampler has seen the load.
  Json data;
  ASSERT_TRUE(PollUntil([&] {
    data = Json::parse(HttpGet(http, "/dashboard/data.json").body);
    return !data["series"]["hit_rate"].back().is_null() &&
           !data["series"]["ttft_p50_s"].back().is_null() && !data["hot_prefixes"].empty();
  })) << data.dump(2);

  std::filesystem::remove(PREFIXD_SCREENSHOT);
  const std::string dom =
      LoadInChromium(absl::StrCat("http://", http, "/dashboard"), 2500, PREFIXD_SCREENSHOT);
  ASSERT_THAT(dom, HasSubstr("chart-hit"));
  EXPECT_THAT(Rendered(dom), Not(HasSubstr("NaN")));
  EXPECT_THAT(Rendered(dom), Not(HasSubstr("undefined")));
  for (const char* chart : kCharts) {
    EXPECT_GT(Points(dom, chart), 0) << chart;
    EXPECT_EQ(Attribute(dom, chart, "data-empty"), "false") << chart;
    const std::string body = ChartBody(dom, chart);
    EXPECT_TRUE(body.find("<path") != std::string::npos ||
                body.find("<circle") != std::string::npos)
        << chart << " drew nothing: " << body;
  }
  EXPECT_NE(Attribute(dom, "notice", "hidden"), kAbsent) << "traffic: the note is gone";
  EXPECT_EQ(Attribute(dom, "tenants", "data-rows"), "1");
  EXPECT_GE(std::stoi(Attribute(dom, "hot", "data-rows")), 1);
  EXPECT_THAT(dom, HasSubstr(">default<")) << "the tenant's namespace is listed";

  // The artifact: a real PNG of the page.
  std::ifstream png(PREFIXD_SCREENSHOT, std::ios::binary);
  std::string header(8, '\0');
  png.read(header.data(), 8);
  EXPECT_EQ(header, "\x89PNG\r\n\x1a\n") << "no screenshot at " << PREFIXD_SCREENSHOT;
  EXPECT_GT(std::filesystem::file_size(PREFIXD_SCREENSHOT), 20000u);
  EXPECT_EQ((*server)->Stop(), 0);
}

}  // namespace
}  // namespace prefixd
