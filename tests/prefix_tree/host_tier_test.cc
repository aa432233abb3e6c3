// The prefix cache's host tier: demotion on eviction, promotion on a hit, its own LRU and
// capacity, the transfers the engine carries out. Unit cases first, then a randomized run
// that simulates both memories: every block's contents are a label of the tokens its KV was
// computed for, transfers copy labels as the engine copies bytes, and every block a request
// uses must carry the label of its own tokens. The invariants are checked after every step.
//
// Seeded and reproducible: PREFIXD_SEED=<n>, PREFIXD_DIFF_OPS=<n> (default 3000 per case).
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prefix_tree/prefix_cache.h"

namespace prefixd {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int kBlock = 4;
const CacheNamespace kAlice{"alice", "m", ""};
const CacheNamespace kBob{"bob", "m", ""};

std::vector<TokenId> Range(int first, int n) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

PrefixCacheOptions Options(int32_t device_blocks, int32_t host_blocks) {
  PrefixCacheOptions o;
  o.num_blocks = device_blocks;
  o.tree.block_size = kBlock;
  o.tree.seed = 7;
  o.tree.host_blocks = host_blocks;
  return o;
}

// Computes `tokens` the way the scheduler does: match, allocate the rest, insert, release.
// Returns the match's device blocks before the release.
void Compute(PrefixCache& cache, const CacheNamespace& ns, const std::vector<TokenId>& tokens) {
  PrefixMatch m = cache.Match(ns, tokens);
  ASSERT_TRUE(cache.Promote(m).ok());
  const int need = static_cast<int>(tokens.size()) / kBlock - m.num_blocks();
  std::vector<BlockId> table(m.blocks().begin(), m.blocks().end());
  absl::StatusOr<std::vector<BlockId>> more = cache.Allocate(need);
  ASSERT_TRUE(more.ok()) << more.status();
  table.insert(table.end(), more->begin(), more->end());
  InsertResult r = cache.Insert(m, tokens, table);
  for (int i : r.duplicate_indices) cache.Free({table[i]});
  cache.Release(m);
}

TEST(HostTierTest, EvictionDemotesAndAHitPromotesBack) {
  PrefixCache cache(Options(4, 8));
  Compute(cache, kAlice, Range(0, 16));  // 4 blocks: the whole device pool
  EXPECT_THAT(cache.TakeTransfers(), IsEmpty());
  Compute(cache, kBob, Range(100, 8));  // 2 blocks: two of alice's go to the host
  std::vector<BlockTransfer> t = cache.TakeTransfers();
  ASSERT_EQ(t.size(), 2u);
  for (const BlockTransfer& x : t) EXPECT_EQ(x.direction, BlockTransfer::Direction::kToHost);
  CacheStats s = cache.Stats();
  EXPECT_EQ(s.tree.cached_blocks, 4);
  EXPECT_EQ(s.tree.host_cached_blocks, 2);
  EXPECT_EQ(s.tree.demoted_blocks, 2);
  EXPECT_EQ(s.tree.dropped_blocks, 0);
  ASSERT_TRUE(cache.CheckInvariants().ok()) << cache.CheckInvariants();

  // Alice's prompt is still all cached: two blocks on the device, two on the host (the
  // tail: an edge is evicted from its end).
  PrefixMatch m = cache.Match(kAlice, Range(0, 17), /*count=*/false);
  EXPECT_EQ(m.num_blocks(), 2);
  EXPECT_EQ(m.num_host_blocks(), 2);
  const std::vector<BlockId> host(m.host_blocks().begin(), m.host_blocks().end());
  ASSERT_TRUE(cache.Promote(m).ok());
  EXPECT_EQ(m.num_blocks(), 4);
  EXPECT_EQ(m.num_host_blocks(), 0);
  EXPECT_EQ(m.promoted_blocks(), 2);
  t = cache.TakeTransfers();
  // Room for the promoted blocks came from bob's (demoted first), then the copies back.
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[0].direction, BlockTransfer::Direction::kToHost);
  EXPECT_EQ(t[1].direction, BlockTransfer::Direction::kToHost);
  EXPECT_EQ(t[2].direction, BlockTransfer::Direction::kToDevice);
  EXPECT_EQ(t[3].direction, BlockTransfer::Direction::kToDevice);
  EXPECT_EQ(t[2].host, host[0]);
  EXPECT_EQ(t[3].host, host[1]);
  EXPECT_EQ(t[2].device, m.blocks()[2]);
  EXPECT_EQ(t[3].device, m.blocks()[3]);
  // The slots the promotions read were not reused by the demotions queued with them.
  EXPECT_NE(t[0].host, host[0]);
  EXPECT_NE(t[0].host, host[1]);
  EXPECT_NE(t[1].host, host[0]);
  EXPECT_NE(t[1].host, host[1]);
  cache.CountLookup(kAlice, m, 17);
  s = cache.Stats();
  EXPECT_EQ(s.tree.hit_tokens, 16);  // the earlier Computes' lookups hit nothing
  EXPECT_EQ(s.tree.host_hit_tokens, 8);
  EXPECT_EQ(s.tree.promoted_blocks, 2);
  cache.Release(m);
  ASSERT_TRUE(cache.CheckInvariants().ok()) << cache.CheckInvariants();
}

TEST(HostTierTest, TheHostTierEvictsItsOwnLeastRecentlyUsedBlocks) {
  PrefixCache cache(Options(2, 2));
  Compute(cache, kAlice, Range(0, 8));    // a0 a1
  Compute(cache, kAlice, Range(50, 8));   // b0 b1; a0 a1 to the host
  Compute(cache, kAlice, Range(100, 8));  // c0 c1; b to the host, a dropped from it
  (void)cache.TakeTransfers();
  CacheStats s = cache.Stats();
  EXPECT_EQ(s.tree.host_cached_blocks, 2);
  EXPECT_EQ(s.tree.host_evicted_blocks, 2);
  EXPECT_EQ(s.host_blocks.free + s.host_blocks.evictable + s.host_blocks.in_use, 2);
  PrefixMatch a = cache.Match(kAlice, Range(0, 8));
  EXPECT_EQ(a.num_blocks() + a.num_host_blocks(), 0);
  cache.Release(a);
  PrefixMatch b = cache.Match(kAlice, Range(50, 8));
  EXPECT_EQ(b.num_host_blocks(), 2);
  cache.Release(b);
  ASSERT_TRUE(cache.CheckInvariants().ok()) << cache.CheckInvariants();
}

TEST(HostTierTest, ComputingABlockTheHostHasTakesTheComputedCopy) {
  PrefixCache cache(Options(2, 4));
  Compute(cache, kAlice, Range(0, 8));
  Compute(cache, kBob, Range(0, 8));  // alice's two blocks go to the host
  (void)cache.TakeTransfers();
  // A request that does not promote (as after a failed Promote) computes the blocks again:
  // the tree takes its device blocks and frees the host slots, without a copy.
  PrefixMatch m = cache.Match(kAlice, {});
  absl::StatusOr<std::vector<BlockId>> blocks = cache.Allocate(2);
  ASSERT_TRUE(blocks.ok());
  (void)cache.TakeTransfers();
  InsertResult r = cache.Insert(m, Range(0, 8), *blocks);
  EXPECT_THAT(r.duplicate_indices, IsEmpty());
  EXPECT_EQ(r.new_blocks, 0);
  EXPECT_THAT(m.blocks(), ElementsAre((*blocks)[0], (*blocks)[1]));
  EXPECT_THAT(cache.TakeTransfers(), IsEmpty());
  CacheStats s = cache.Stats();
  EXPECT_EQ(s.tree.host_cached_blocks, 2);  // bob's, demoted for the allocation
  EXPECT_EQ(s.tree.promoted_blocks, 0);
  cache.Release(m);
  ASSERT_TRUE(cache.CheckInvariants().ok()) << cache.CheckInvariants();
}

TEST(HostTierTest, PinsStayOnTheDevice) {
  PrefixCache cache(Options(4, 4));
  Compute(cache, kAlice, Range(0, 16));
  Compute(cache, kBob, Range(0, 8));  // alice's last two blocks to the host
  (void)cache.TakeTransfers();
  absl::StatusOr<int> pinned = cache.Pin(kAlice, Range(0, 16));
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(*pinned, 8);  // only the part on the device
  EXPECT_EQ(cache.Stats().blocks.pinned, 2);
  ASSERT_TRUE(cache.CheckInvariants().ok()) << cache.CheckInvariants();
  ASSERT_TRUE(cache.Unpin(kAlice, Range(0, 16)).ok());
}

TEST(HostTierTest, FlushEmptiesBothTiers) {
  PrefixCache cache(Options(2, 4));
  Compute(cache, kAlice, Range(0, 8));
  Compute(cache, kBob, Range(0, 8));
  (void)cache.TakeTransfers();
  EXPECT_EQ(cache.Flush(), 2);
  CacheStats s = cache.Stats();
  EXPECT_EQ(s.tree.cached_blocks, 0);
  EXPECT_EQ(s.tree.host_cached_blocks, 0);
  EXPECT_EQ(s.tree.flushed_blocks, 4);
  EXPECT_EQ(s.host_blocks.free, 4);
  ASSERT_TRUE(cache.CheckInvariants().ok()) << cache.CheckInvariants();
}

TEST(HostTierTest, ATierThatCannotGrowDropsWhatItCannotTake) {
  PrefixCacheOptions o = Options(2, 8);
  int32_t budget = 1;  // memory for one slot, then none
  int calls = 0;
  o.tree.grow_host = [&](int32_t n) {
    ++calls;
    const int32_t got = std::min(n, budget);
    budget -= got;
    return got;
  };
  PrefixCache cache(o);
  Compute(cache, kAlice, Range(0, 8));
  Compute(cache, kBob, Range(0, 8));
  (void)cache.TakeTransfers();
  CacheStats s = cache.Stats();
  EXPECT_EQ(s.tree.host_usable_blocks, 1);
  EXPECT_EQ(s.tree.host_grow_failures, 1);
  EXPECT_EQ(s.tree.demoted_blocks + s.tree.dropped_blocks, 2);
  EXPECT_EQ(s.tree.host_cached_blocks + s.tree.host_evicted_blocks, s.tree.demoted_blocks);
  // Once growing failed, it is not tried again at every eviction.
  const int calls_before = calls;
  Compute(cache, kAlice, Range(200, 8));
  EXPECT_EQ(calls, calls_before);
  ASSERT_TRUE(cache.CheckInvariants().ok()) << cache.CheckInvariants();
}

TEST(HostTierTest, EventsNameTheMedium) {
  PrefixCache cache(Options(2, 4));
  std::vector<std::string> log;
  cache.SetEventSink([&](const CacheEvent& e) {
    log.push_back(absl::StrCat(e.kind == CacheEvent::Kind::kStored ? "stored" : "removed", " ",
                               e.medium == CacheEvent::Medium::kDevice ? "GPU" : "CPU", " ",
                               e.keys.size()));
  });
  Compute(cache, kAlice, Range(0, 8));
  Compute(cache, kBob, Range(0, 8));
  PrefixMatch m = cache.Match(kAlice, Range(0, 9));
  ASSERT_TRUE(cache.Promote(m).ok());
  cache.Release(m);
  EXPECT_THAT(log, ElementsAre("stored GPU 2",                     // alice
                               "removed GPU 2", "stored CPU 2",    // alice demoted
                               "stored GPU 2",                     // bob
                               "removed GPU 2", "stored CPU 2",    // bob demoted
                               "removed CPU 2", "stored GPU 2"));  // alice promoted
  std::vector<CacheEvent> snapshot = cache.tree().Snapshot();
  ASSERT_EQ(snapshot.size(), 2u);
  int host = 0;
  for (const CacheEvent& e : snapshot) host += e.medium == CacheEvent::Medium::kHost;
  EXPECT_EQ(host, 1);
}

// ---- Randomized, with both memories simulated ----

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  uint64_t parsed = 0;
  if (value == nullptr || !absl::SimpleAtoi(value, &parsed)) return fallback;
  return parsed;
}

struct Case {
  const char* name;
  int block_size;
  int32_t device_blocks;
  int32_t host_blocks;
  int vocab;
  bool collide;    // every block has the same key
  int grow_chunk;  // 0: all host slots usable at once; else grown this many at a time
  int grow_limit;  // slots the "memory" can give (grow_chunk > 0)
};

BlockKey Colliding(uint64_t, const BlockKey&, absl::Span<const TokenId>) { return {1, 2}; }

class HostTierRandomTest : public ::testing::TestWithParam<Case> {};

// A request as the scheduler keeps it.
struct Req {
  int ns = 0;
  std::vector<TokenId> tokens;
  std::vector<BlockId> table;  // [0, match.num_blocks()) cached, the rest private
  PrefixMatch match;
  int computed = 0;  // whole blocks whose KV is in table
};

TEST_P(HostTierRandomTest, EveryBlockHoldsItsOwnTokensKv) {
  const Case c = GetParam();
  uint64_t seed = EnvOr("PREFIXD_SEED", 20261205);
  for (const char* p = c.name; *p != '\0'; ++p)
    seed = (seed ^ static_cast<uint8_t>(*p)) * 1099511628211ull;
  const int64_t ops = static_cast<int64_t>(EnvOr("PREFIXD_DIFF_OPS", 3000));
  std::mt19937_64 rng(seed);
  auto below = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  const int bs = c.block_size;

  PrefixCacheOptions o;
  o.num_blocks = c.device_blocks;
  o.tree.block_size = bs;
  o.tree.seed = seed;
  o.tree.host_blocks = c.host_blocks;
  if (c.collide) o.tree.hash = &Colliding;
  int granted = 0;
  if (c.grow_chunk > 0) {
    o.tree.grow_host = [&](int32_t n) {
      const int32_t got = std::min({n + c.grow_chunk - 1, c.grow_limit - granted});
      granted += std::max(got, 0);
      return std::max(got, 0);
    };
  }
  PrefixCache cache(o);
  const CacheNamespace spaces[2] = {kAlice, kBob};

  // The memories: the label of what each block's KV was computed for.
  std::vector<std::string> device(c.device_blocks), host(c.host_blocks);
  auto label = [&](int ns, const std::vector<TokenId>& tokens, int block) {
    return absl::StrCat(ns, ":",
                        absl::StrJoin(tokens.begin(), tokens.begin() + (block + 1) * bs, ","));
  };
  // Writes the step does after its transfers (the forward pass).
  std::vector<std::pair<BlockId, std::string>> writes;
  auto run_step = [&] {
    std::vector<BlockTransfer> t = cache.TakeTransfers();
    for (const BlockTransfer& x : t) {
      if (x.direction == BlockTransfer::Direction::kToHost) host.at(x.host) = device.at(x.device);
    }
    for (const BlockTransfer& x : t) {
      if (x.direction == BlockTransfer::Direction::kToDevice) device.at(x.device) = host.at(x.host);
    }
    for (auto& [b, l] : writes) device.at(b) = l;
    writes.clear();
  };

  std::vector<Req> reqs;
  std::vector<std::vector<TokenId>> recent;
  int64_t promoted = 0, hits = 0, demoted_seen = 0;
  auto new_tokens = [&] {
    std::vector<TokenId> t;
    if (!recent.empty() && below(4) != 0) {
      const auto& base = recent[below(static_cast<int>(recent.size()))];
      t.assign(base.begin(), base.begin() + below(static_cast<int>(base.size()) + 1));
    }
    const int extra = 1 + below(6 * bs);
    for (int i = 0; i < extra; ++i) t.push_back(below(c.vocab));
    return t;
  };
  auto check_request = [&](const Req& r, const char* when) {
    for (int i = 0; i < r.computed; ++i) {
      ASSERT_EQ(device.at(r.table[i]), label(r.ns, r.tokens, i))
          << when << ": block " << i << " of a request holds another prompt's KV";
    }
  };
  auto finish = [&](size_t i) {
    Req& r = reqs[i];
    cache.Free(absl::MakeConstSpan(r.table).subspan(r.match.num_blocks()));
    cache.Release(r.match);
    recent.push_back(r.tokens);
    if (recent.size() > 12) recent.erase(recent.begin());
    reqs.erase(reqs.begin() + static_cast<std::ptrdiff_t>(i));
  };

  for (int64_t op = 0; op < ops; ++op) {
    const int kind = below(10);
    if (kind < 4 || reqs.empty()) {
      // A new request: match, promote, allocate the rest, compute it (this step).
      Req r;
      r.ns = below(2);
      r.tokens = new_tokens();
      const int full = static_cast<int>(r.tokens.size()) / bs;
      r.match = cache.Match(spaces[r.ns], r.tokens);
      hits += r.match.num_blocks() + r.match.num_host_blocks();
      // Before promotion the host copies already hold the right KV (after this step's
      // earlier transfers: run them first, as a step boundary would).
      if (cache.Promote(r.match).ok()) {
        promoted += r.match.promoted_blocks();
        r.table.assign(r.match.blocks().begin(), r.match.blocks().end());
        absl::StatusOr<std::vector<BlockId>> more =
            cache.Allocate(full - static_cast<int>(r.table.size()));
        if (more.ok()) {
          for (int i = static_cast<int>(r.table.size()); i < full; ++i) {
            writes.emplace_back((*more)[i - r.table.size()], label(r.ns, r.tokens, i));
          }
          r.table.insert(r.table.end(), more->begin(), more->end());
          run_step();
          r.computed = full;
          check_request(r, "after admission");
          InsertResult ins = cache.Insert(r.match, r.tokens, r.table);
          for (int i : ins.duplicate_indices) {
            cache.Free({r.table[i]});
            r.table[i] = r.match.blocks()[i];
          }
          // Blocks a collision kept private stay the request's (table beyond the match).
          check_request(r, "after insertion");
          reqs.push_back(std::move(r));
        } else {
          run_step();
          cache.Release(r.match);
        }
      } else {
        run_step();
        cache.Release(r.match);
      }
    } else if (kind < 7) {
      finish(below(static_cast<int>(reqs.size())));
    } else if (kind == 7) {
      // A decode block for a running request.
      Req& r = reqs[below(static_cast<int>(reqs.size()))];
      absl::StatusOr<std::vector<BlockId>> b = cache.Allocate(1);
      if (b.ok()) {
        for (int i = 0; i < bs; ++i) r.tokens.push_back(below(c.vocab));
        writes.emplace_back((*b)[0], label(r.ns, r.tokens, r.computed));
        r.table.push_back((*b)[0]);
        run_step();
        ++r.computed;
        check_request(r, "after a decode block");
        InsertResult ins = cache.Insert(r.match, r.tokens, r.table);
        for (int i : ins.duplicate_indices) {
          cache.Free({r.table[i]});
          r.table[i] = r.match.blocks()[i];
        }
      } else {
        run_step();
      }
    } else if (kind == 8) {
      const std::vector<TokenId> t = new_tokens();
      const CacheNamespace& ns = spaces[below(2)];
      absl::StatusOr<int> pinned = cache.Pin(ns, t);
      ASSERT_TRUE(pinned.ok());
      if (*pinned > 0) {
        ASSERT_TRUE(cache.Unpin(ns, t).ok());
      }
    } else if (below(20) == 0) {
      cache.Flush();
    }
    run_step();
    if (HasFatalFailure()) FAIL() << "seed " << seed << ", case " << c.name << ", op " << op;
    std::vector<BlockId> privates;
    for (const Req& r : reqs) {
      privates.insert(privates.end(), r.table.begin() + r.match.num_blocks(), r.table.end());
    }
    const absl::Status s = cache.CheckInvariants(privates);
    ASSERT_TRUE(s.ok()) << "seed " << seed << ", case " << c.name << ", op " << op << ": " << s;
  }
  demoted_seen = cache.Stats().tree.demoted_blocks;
  while (!reqs.empty()) finish(reqs.size() - 1);
  cache.Flush();
  run_step();
  const CacheStats s = cache.Stats();
  EXPECT_EQ(s.blocks.free, c.device_blocks);
  EXPECT_EQ(s.host_blocks.free, c.host_blocks);
  EXPECT_TRUE(cache.CheckInvariants().ok());
  std::printf(
      "%s: %lld ops, %lld hit blocks, %lld promoted, %lld demoted, %lld host-evicted, "
      "%lld dropped\n",
      c.name, static_cast<long long>(ops), static_cast<long long>(hits),
      static_cast<long long>(promoted), static_cast<long long>(demoted_seen),
      static_cast<long long>(s.tree.host_evicted_blocks),
      static_cast<long long>(s.tree.dropped_blocks));
  if (ops >= 3000) {
    EXPECT_GT(promoted, 0);
    EXPECT_GT(demoted_seen, 0);
    if (c.grow_chunk == 0) {
      EXPECT_GT(s.tree.host_evicted_blocks, 0);
    }
  }
}

const Case kCases[] = {
    {"Block4", 4, 24, 16, 3, false, 0, 0},
    {"Block1", 1, 32, 24, 3, false, 0, 0},
    {"Block4SmallHost", 4, 16, 3, 2, false, 0, 0},
    {"Block4BigHost", 4, 16, 64, 3, false, 0, 0},
    {"Block4AllCollide", 4, 24, 16, 3, true, 0, 0},
    {"Block2Growing", 2, 24, 32, 2, false, 3, 32},
    {"Block4GrowthFails", 4, 24, 32, 3, false, 2, 5},
};

INSTANTIATE_TEST_SUITE_P(Cases, HostTierRandomTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace prefixd
