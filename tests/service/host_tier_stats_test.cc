// The host KV tier as everything outside the engine shows it: GetStats (an admin's view and
// a tenant's), /metrics, the dashboard's data, and cache events on gRPC and in vLLM's wire
// format. A real engine on the test model with a 16-block device pool and a 64-block host
// tier: alice's prompt is cached, pushed to the host tier by three of bob's, then asked
// again and brought back.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "msgpack.hpp"
#include "nlohmann/json.hpp"
#include "service/convert.h"
#include "service/dashboard_sampler.h"
#include "service/kv_events.h"
#include "service/serving_metrics.h"
#include "tests/engine/engine_test_util.h"
#include "tests/service/observability_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::Greedy;
using ::prefixd::testing::Outcome;
using ::prefixd::testing::ParseSamples;
using ::prefixd::testing::RunOne;
using Json = nlohmann::json;

constexpr int kBlock = 16;
constexpr int kHostBlocks = 64;
constexpr int kPromptTokens = 96;  // 6 blocks

std::vector<TokenId> Prompt(int seed) {
  std::vector<TokenId> ids;
  for (int i = 0; i < kPromptTokens; ++i) ids.push_back((seed * 131 + i * 7) % 500);
  return ids;
}

// An engine (with a host tier of `host_blocks`, or none), its metrics as the server wires
// them, and every cache event it emitted, in order.
class Server {
 public:
  explicit Server(int host_blocks) {
    EngineOptions options;
    options.block_size = kBlock;
    options.kv_cache_tokens = 16 * kBlock;
    options.max_running_requests = 2;
    options.max_batch_tokens = 256;
    options.host_kv_cache_bytes = 0;
    if (host_blocks > 0) {
      // The test model's block on the CPU: 2 (K, V) x 4 layers x 4 KV heads x 16 tokens x
      // 32 dims x 4 bytes.
      options.host_kv_cache_bytes = int64_t{host_blocks} * 2 * 4 * 4 * kBlock * 32 * 4;
    }
    options.check_invariants = true;
    engine_ = testing::MakeTestEngine(options);
    if (engine_ == nullptr) return;
    metrics_ = std::make_unique<ServingMetrics>(engine_.get());
    engine_->SetStepObserver([m = metrics_.get()](const StepReport& step) { m->RecordStep(step); });
    subscription_ = engine_->Subscribe(
        [this](const CacheEvent& event) {
          absl::MutexLock lock(&mu_);
          events_.push_back(event);
        },
        nullptr);
  }
  ~Server() {
    if (engine_ == nullptr) return;
    engine_->Unsubscribe(subscription_);
    engine_->SetStepObserver(nullptr);
  }

  Engine* engine() { return engine_.get(); }
  ServingMetrics& metrics() { return *metrics_; }
  std::vector<CacheEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

  // Alice's prompt, three of bob's (which push hers out of the device pool), then alice's
  // again: her second request, whose cached tokens came back from the host tier.
  Outcome RunScenario() {
    EXPECT_TRUE(RunOne(*engine_, Greedy(Prompt(1), 1, "alice")).status.ok());
    for (int seed : {2, 3, 4}) {
      EXPECT_TRUE(RunOne(*engine_, Greedy(Prompt(seed), 1, "bob")).status.ok());
    }
    Outcome again = RunOne(*engine_, Greedy(Prompt(1), 1, "alice"));
    EXPECT_TRUE(again.status.ok()) << again.status;
    return again;
  }

 private:
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ServingMetrics> metrics_;
  int64_t subscription_ = -1;
  absl::Mutex mu_;
  std::vector<CacheEvent> events_ ABSL_GUARDED_BY(mu_);
};

const v1::NamespaceStats* Row(const v1::CacheStats& stats, const std::string& name) {
  for (const v1::NamespaceStats& ns : stats.namespaces()) {
    if (ns.name() == name) return &ns;
  }
  return nullptr;
}

TEST(HostTierStatsTest, GetStatsShowsAnAdminBothTiersAndTheBytesMoved) {
  Server server(kHostBlocks);
  ASSERT_NE(server.engine(), nullptr);
  const Outcome again = server.RunScenario();
  ASSERT_GT(again.usage.cached_tokens, 0) << "alice's prefix came back from the host tier";

  v1::CacheStats stats;
  FillCacheStats(server.engine()->Stats(), /*all_namespaces=*/true, {}, stats);
  ASSERT_TRUE(stats.has_host_blocks());
  const v1::BlockCounts& host = stats.host_blocks();
  EXPECT_EQ(host.total(), kHostBlocks);
  EXPECT_EQ(host.free() + host.evictable() + host.in_use(), host.total());
  EXPECT_GT(host.evictable(), 0) << "bob's evicted blocks wait in the host tier";
  EXPECT_EQ(host.in_use(), 0) << "nothing is being promoted at rest";
  EXPECT_EQ(host.pinned(), 0);

  // Every cached token of alice's second request came from the host tier.
  EXPECT_EQ(stats.host_hit_tokens(), again.usage.cached_tokens);
  EXPECT_EQ(stats.promoted_blocks(), again.usage.cached_tokens / kBlock);
  EXPECT_GE(stats.demoted_blocks(), stats.promoted_blocks());
  EXPECT_GE(stats.evicted_blocks(), stats.demoted_blocks());
  EXPECT_EQ(stats.dropped_blocks(), 0);
  EXPECT_EQ(stats.host_evicted_blocks(), 0);
  EXPECT_EQ(stats.host_allocation_failures(), 0);
  const int64_t block_bytes = server.engine()->host_kv_cache_bytes() / kHostBlocks;
  EXPECT_EQ(stats.bytes_to_host(), stats.demoted_blocks() * block_bytes);
  EXPECT_EQ(stats.bytes_to_device(), stats.promoted_blocks() * block_bytes);
  EXPECT_GT(stats.host_bytes_allocated(), 0);
  EXPECT_LE(stats.host_bytes_allocated(), server.engine()->host_kv_cache_bytes());

  // Per namespace: alice's hits came from the host, bob's blocks sit there.
  const v1::NamespaceStats* alice = Row(stats, "alice");
  const v1::NamespaceStats* bob = Row(stats, "bob");
  ASSERT_NE(alice, nullptr);
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(alice->host_hit_tokens(), again.usage.cached_tokens);
  EXPECT_EQ(alice->hit_tokens(), again.usage.cached_tokens);
  EXPECT_EQ(bob->host_hit_tokens(), 0);
  EXPECT_EQ(alice->host_cached_blocks() + bob->host_cached_blocks(), host.evictable());
  EXPECT_GT(bob->host_cached_blocks(), 0);
}

TEST(HostTierStatsTest, ATenantSeesItsOwnHostHitsButNotThePools) {
  Server server(kHostBlocks);
  ASSERT_NE(server.engine(), nullptr);
  const Outcome again = server.RunScenario();
  const EngineStats engine_stats = server.engine()->Stats();

  v1::CacheStats alice;
  FillCacheStats(engine_stats, /*all_namespaces=*/false, {"alice"}, alice);
  EXPECT_EQ(alice.host_hit_tokens(), again.usage.cached_tokens);
  ASSERT_EQ(alice.namespaces_size(), 1);
  EXPECT_EQ(alice.namespaces(0).host_hit_tokens(), again.usage.cached_tokens);
  // The pools and the moves follow every tenant's traffic: the operator's only.
  EXPECT_FALSE(alice.has_host_blocks());
  EXPECT_FALSE(alice.has_blocks());
  EXPECT_EQ(alice.demoted_blocks(), 0);
  EXPECT_EQ(alice.promoted_blocks(), 0);
  EXPECT_EQ(alice.bytes_to_host(), 0);
  EXPECT_EQ(alice.bytes_to_device(), 0);
  EXPECT_EQ(alice.host_bytes_allocated(), 0);

  v1::CacheStats bob;
  FillCacheStats(engine_stats, /*all_namespaces=*/false, {"bob"}, bob);
  EXPECT_EQ(bob.host_hit_tokens(), 0) << "alice's host hits are not bob's to see";
  ASSERT_EQ(bob.namespaces_size(), 1);
  EXPECT_EQ(bob.namespaces(0).name(), "bob");
}

TEST(HostTierStatsTest, MetricsCountBothTiersAndThePromotionWait) {
  Server server(kHostBlocks);
  ASSERT_NE(server.engine(), nullptr);
  const Outcome again = server.RunScenario();
  v1::CacheStats stats;
  FillCacheStats(server.engine()->Stats(), /*all_namespaces=*/true, {}, stats);

  const std::string text = server.metrics().Expose();
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE prefixd_kv_promotion_wait_seconds histogram\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE prefixd_kv_host_transfer_bytes_total counter\n"));
  std::map<std::string, double> m = ParseSamples(text);
  EXPECT_EQ(m["prefixd_kv_host_capacity_blocks"], kHostBlocks);
  EXPECT_EQ(m["prefixd_kv_host_capacity_bytes"], server.engine()->host_kv_cache_bytes());
  EXPECT_EQ(m[R"(prefixd_kv_host_blocks{state="free"})"] +
                m[R"(prefixd_kv_host_blocks{state="evictable"})"] +
                m[R"(prefixd_kv_host_blocks{state="in_use"})"],
            kHostBlocks);
  EXPECT_EQ(m[R"(prefixd_kv_host_blocks{state="evictable"})"], stats.host_blocks().evictable());
  EXPECT_EQ(m[R"(prefixd_kv_host_cached_blocks{tenant="bob"})"],
            Row(stats, "bob")->host_cached_blocks());
  EXPECT_EQ(m[R"(prefixd_prefix_cache_host_hits_tokens_total{tenant="alice"})"],
            again.usage.cached_tokens);
  EXPECT_EQ(m[R"(prefixd_prefix_cache_host_hits_tokens_total{tenant="bob"})"], 0);
  EXPECT_EQ(m["prefixd_kv_demoted_blocks_total"], stats.demoted_blocks());
  EXPECT_EQ(m["prefixd_kv_promoted_blocks_total"], stats.promoted_blocks());
  EXPECT_GT(m["prefixd_kv_promoted_blocks_total"], 0);
  EXPECT_EQ(m["prefixd_kv_host_evicted_blocks_total"], 0);
  EXPECT_EQ(m["prefixd_kv_dropped_blocks_total"], 0);
  EXPECT_EQ(m[R"(prefixd_kv_host_transfer_bytes_total{direction="to_host"})"],
            stats.bytes_to_host());
  EXPECT_EQ(m[R"(prefixd_kv_host_transfer_bytes_total{direction="to_device"})"],
            stats.bytes_to_device());
  EXPECT_GT(m[R"(prefixd_kv_host_transfer_bytes_total{direction="to_device"})"], 0);
  EXPECT_EQ(m["prefixd_kv_host_allocated_bytes"], stats.host_bytes_allocated());
  EXPECT_EQ(m["prefixd_kv_host_allocation_failures_total"], 0);
  // One request waited for a promotion: alice's second.
  EXPECT_EQ(m["prefixd_kv_promotion_wait_seconds_count"], 1);
  EXPECT_EQ(m[R"(prefixd_kv_promotion_wait_seconds_bucket{le="+Inf"})"], 1);
  EXPECT_GT(m["prefixd_kv_promotion_wait_seconds_sum"], 0);
}

TEST(HostTierStatsTest, DashboardDataCarriesTheHostTier) {
  Server server(kHostBlocks);
  ASSERT_NE(server.engine(), nullptr);
  const Outcome again = server.RunScenario();
  v1::CacheStats stats;
  FillCacheStats(server.engine()->Stats(), /*all_namespaces=*/true, {}, stats);

  DashboardSampler sampler(server.engine(), &server.metrics());
  const absl::Time now = absl::Now();
  sampler.SampleNow(now);
  const Json data = Json::parse(sampler.DataJson(std::nullopt, now));
  EXPECT_EQ(data["server"]["host_kv_capacity_blocks"], kHostBlocks);
  EXPECT_EQ(data["server"]["host_kv_capacity_bytes"], server.engine()->host_kv_cache_bytes());
  EXPECT_EQ(data["totals"]["host_hit_tokens"], again.usage.cached_tokens);
  EXPECT_EQ(data["totals"]["demoted_blocks"], stats.demoted_blocks());
  EXPECT_EQ(data["totals"]["promoted_blocks"], stats.promoted_blocks());
  EXPECT_EQ(data["totals"]["bytes_to_device"], stats.bytes_to_device());
  EXPECT_EQ(data["series"]["kv_host_evictable"].back(), stats.host_blocks().evictable());
  EXPECT_EQ(data["series"]["kv_host_in_use"].back(), 0);
  EXPECT_EQ(data["series"]["demoted_per_s"].size(), data["series"]["t"].size());
  bool saw_alice = false;
  for (const Json& t : data["tenants"]) {
    if (t["name"] != "alice") continue;
    saw_alice = true;
    EXPECT_EQ(t["host_hit_tokens"], again.usage.cached_tokens);
  }
  EXPECT_TRUE(saw_alice);
}

// The medium of each event of an EventBatch as a vLLM subscriber decodes it: (type, medium).
std::vector<std::pair<std::string, std::string>> DecodeMedia(const std::string& payload) {
  std::vector<std::pair<std::string, std::string>> out;
  msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
  const msgpack::object& batch = handle.get();
  const msgpack::object& events = batch.via.array.ptr[1];
  for (uint32_t i = 0; i < events.via.array.size; ++i) {
    const msgpack::object& e = events.via.array.ptr[i];
    if (e.type == msgpack::type::MAP) {
      std::map<std::string, msgpack::object> fields;
      for (uint32_t k = 0; k < e.via.map.size; ++k) {
        fields[e.via.map.ptr[k].key.as<std::string>()] = e.via.map.ptr[k].val;
      }
      out.emplace_back(fields["type"].as<std::string>(), fields["medium"].as<std::string>());
    } else {
      const msgpack::object* a = e.via.array.ptr;
      const std::string type = a[0].as<std::string>();
      out.emplace_back(type, a[type == "BlockStored" ? 6 : 2].as<std::string>());
    }
  }
  return out;
}

TEST(HostTierStatsTest, EventsSayWhichMemoryTheBlocksAreIn) {
  Server server(kHostBlocks);
  ASSERT_NE(server.engine(), nullptr);
  server.RunScenario();
  const EngineStats engine_stats = server.engine()->Stats();
  const std::vector<CacheEvent> events = server.events();

  // A watcher's index per medium, from the gRPC events: it matches each tier's contents.
  using Entry = std::pair<std::string, v1::Medium>;
  std::map<Entry, int> index;
  bool demotion = false, promotion = false;
  std::map<std::string, v1::Medium> removed_from;  // the last removal of each key
  for (const CacheEvent& event : events) {
    v1::CacheEvent message;
    FillCacheEvent(event, kBlock, message);
    if (message.has_stored()) {
      const v1::Medium medium = message.stored().medium();
      ASSERT_NE(medium, v1::MEDIUM_UNSPECIFIED);
      for (const std::string& key : message.stored().block_keys()) {
        EXPECT_EQ(index[Entry(key, medium)]++, 0) << "stored twice in one medium";
        auto it = removed_from.find(key);
        if (it != removed_from.end() && it->second != medium) {
          (medium == v1::MEDIUM_HOST ? demotion : promotion) = true;
        }
      }
    } else {
      const v1::Medium medium = message.removed().medium();
      ASSERT_NE(medium, v1::MEDIUM_UNSPECIFIED);
      for (const std::string& key : message.removed().block_keys()) {
        EXPECT_EQ(index[Entry(key, medium)]--, 1) << "removed a block that medium does not hold";
        removed_from[key] = medium;
      }
    }
  }
  EXPECT_TRUE(demotion) << "a block removed from the device was stored in the host tier";
  EXPECT_TRUE(promotion) << "a block removed from the host tier was stored on the device";
  int device = 0, host = 0;
  for (const auto& [key, count] : index) (key.second == v1::MEDIUM_HOST ? host : device) += count;
  EXPECT_EQ(device, engine_stats.cache.tree.cached_blocks);
  EXPECT_EQ(host, engine_stats.cache.tree.host_cached_blocks);

  // vLLM's wire format: "GPU" for the device, "CPU" for the host tier, in both layouts.
  int host_events = 0;
  for (const CacheEvent& event : events) host_events += event.medium == CacheEvent::Medium::kHost;
  ASSERT_GT(host_events, 0);
  for (KvEventsFormat format : {KvEventsFormat::kArray, KvEventsFormat::kMap}) {
    const auto media = DecodeMedia(EncodeEventBatch(events, 0, kBlock, format));
    ASSERT_EQ(media.size(), events.size());
    int cpu = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      const bool on_host = events[i].medium == CacheEvent::Medium::kHost;
      EXPECT_EQ(media[i].second, on_host ? "CPU" : "GPU") << media[i].first << " #" << i;
      cpu += on_host;
    }
    EXPECT_EQ(cpu, host_events);
  }
}

TEST(HostTierStatsTest, WithoutAHostTierNothingShowsOne) {
  Server server(/*host_blocks=*/0);
  ASSERT_NE(server.engine(), nullptr);
  server.RunScenario();
  v1::CacheStats stats;
  FillCacheStats(server.engine()->Stats(), /*all_namespaces=*/true, {}, stats);
  EXPECT_TRUE(stats.has_blocks());
  EXPECT_FALSE(stats.has_host_blocks()) << "no host tier: unset, not an empty one";
  EXPECT_EQ(stats.demoted_blocks(), 0);
  EXPECT_EQ(stats.host_hit_tokens(), 0);
  EXPECT_GT(stats.evicted_blocks(), 0) << "evicted blocks are dropped";

  std::map<std::string, double> m = ParseSamples(server.metrics().Expose());
  EXPECT_EQ(m["prefixd_kv_host_capacity_blocks"], 0);
  EXPECT_EQ(m["prefixd_kv_host_capacity_bytes"], 0);
  EXPECT_EQ(m["prefixd_kv_promotion_wait_seconds_count"], 0);

  DashboardSampler sampler(server.engine(), &server.metrics());
  const absl::Time now = absl::Now();
  sampler.SampleNow(now);
  EXPECT_EQ(Json::parse(sampler.DataJson(std::nullopt, now))["server"]["host_kv_capacity_blocks"],
            0);

  const std::vector<CacheEvent> events = server.events();
  ASSERT_FALSE(events.empty());
  for (const CacheEvent& event : events) {
    v1::CacheEvent message;
    FillCacheEvent(event, kBlock, message);
    EXPECT_EQ(message.has_stored() ? message.stored().medium() : message.removed().medium(),
              v1::MEDIUM_DEVICE);
  }
  for (const auto& [type, medium] :
       DecodeMedia(EncodeEventBatch(events, 0, kBlock, KvEventsFormat::kMap))) {
    EXPECT_EQ(medium, "GPU") << type;
  }
}

}  // namespace
}  // namespace prefixd
