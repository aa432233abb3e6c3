#include "prefix_tree/prefix_cache.h"

#include <numeric>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prefix_tree/block_pool.h"

namespace prefixd {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int kBlock = 4;
const CacheNamespace kAlice{"alice", "m", ""};

std::vector<TokenId> Range(int first, int n) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

bool AllDistinct(const std::vector<BlockId>& ids) {
  return absl::flat_hash_set<BlockId>(ids.begin(), ids.end()).size() == ids.size();
}

// ---- BlockPool ----

TEST(BlockPoolTest, AllocateHandsOutDistinctIdsInRange) {
  BlockPool pool(8);
  absl::StatusOr<std::vector<BlockId>> a = pool.Allocate(3);
  absl::StatusOr<std::vector<BlockId>> b = pool.Allocate(5);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<BlockId> all = *a;
  all.insert(all.end(), b->begin(), b->end());
  EXPECT_TRUE(AllDistinct(all));
  for (BlockId id : all) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 8);
    EXPECT_FALSE(pool.is_free(id));
  }
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_THAT(*pool.Allocate(0), IsEmpty());
}

TEST(BlockPoolTest, ShortPoolTakesNothing) {
  BlockPool pool(4);
  ASSERT_TRUE(pool.Allocate(1).ok());
  absl::StatusOr<std::vector<BlockId>> r = pool.Allocate(4);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), AllOf(HasSubstr("4 blocks wanted"), HasSubstr("3 free")));
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_THAT(*pool.Allocate(3), SizeIs(3));
}

TEST(BlockPoolTest, FreedBlocksCanBeAllocatedAgain) {
  BlockPool pool(2);
  std::vector<BlockId> blocks = *pool.Allocate(2);
  pool.Free({blocks[1]});
  EXPECT_TRUE(pool.is_free(blocks[1]));
  EXPECT_THAT(*pool.Allocate(1), ElementsAre(blocks[1]));
}

TEST(BlockPoolDeathTest, FreeingTwiceIsACheckedError) {
  BlockPool pool(4);
  std::vector<BlockId> blocks = *pool.Allocate(2);
  pool.Free({blocks[0]});
  EXPECT_DEATH(pool.Free({blocks[0]}), "freed twice");
  EXPECT_DEATH(pool.Free({blocks[1], blocks[1]}), "freed twice");
}

TEST(BlockPoolDeathTest, FreeingAnIdOutsideThePoolIsACheckedError) {
  BlockPool pool(4);
  EXPECT_DEATH(pool.Free({4}), "outside the pool");
  EXPECT_DEATH(pool.Free({-1}), "outside the pool");
}

// ---- PrefixCache ----

class PrefixCacheTest : public ::testing::Test {
 protected:
  static PrefixCacheOptions Options(int32_t num_blocks, bool enabled = true) {
    return PrefixCacheOptions{
        .num_blocks = num_blocks,
        .tree = RadixTreeOptions{.block_size = kBlock, .seed = 99},
        .enabled = enabled,
    };
  }

  // Caches `tokens` the way a finished request leaves them: match, allocate the rest,
  // insert, release, free what stayed private. Returns the blocks now cached.
  static std::vector<BlockId> Cache(PrefixCache& cache, const std::vector<TokenId>& tokens) {
    PrefixMatch m = cache.Match(kAlice, tokens);
    const int total = static_cast<int>(tokens.size()) / kBlock;
    std::vector<BlockId> table(m.blocks().begin(), m.blocks().end());
    absl::StatusOr<std::vector<BlockId>> fresh = cache.Allocate(total - m.num_blocks());
    EXPECT_TRUE(fresh.ok()) << fresh.status();
    table.insert(table.end(), fresh->begin(), fresh->end());
    InsertResult r = cache.Insert(m, tokens, table);
    EXPECT_THAT(r.duplicate_indices, IsEmpty());
    std::vector<BlockId> cached(m.blocks().begin(), m.blocks().end());
    cache.Release(m);
    return cached;
  }

  static std::vector<BlockId> Matched(PrefixCache& cache, const std::vector<TokenId>& tokens) {
    PrefixMatch m = cache.Match(kAlice, tokens);
    std::vector<BlockId> blocks(m.blocks().begin(), m.blocks().end());
    cache.Release(m);
    return blocks;
  }
};

TEST_F(PrefixCacheTest, AllocateEvictsLeastRecentlyUsedBlocksWhenTheFreeListIsShort) {
  PrefixCache cache(Options(6));
  const std::vector<BlockId> a = Cache(cache, Range(0, 8));    // 2 blocks
  const std::vector<BlockId> b = Cache(cache, Range(100, 8));  // 2 blocks, newer
  Matched(cache, Range(0, 8));                                 // now a is newer
  ASSERT_EQ(cache.Stats().blocks.free, 2);

  // One block more than is free: b's last block goes, a stays whole.
  absl::StatusOr<std::vector<BlockId>> got = cache.Allocate(3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, SizeIs(3));
  EXPECT_TRUE(AllDistinct(*got));
  EXPECT_THAT(*got, Contains(b[1]));  // the evicted block is handed out again
  EXPECT_THAT(Matched(cache, Range(100, 8)), ElementsAre(b[0]));
  EXPECT_THAT(Matched(cache, Range(0, 8)), ElementsAre(a[0], a[1]));
  EXPECT_EQ(cache.Stats().tree.evicted_blocks, 1);
  EXPECT_TRUE(cache.CheckInvariants(*got).ok()) << cache.CheckInvariants(*got);
}

TEST_F(PrefixCacheTest, AllocateFailsWhenFreePlusEvictableIsShortAndTakesNothing) {
  PrefixCache cache(Options(6));
  Cache(cache, Range(0, 8));                            // 2 evictable blocks
  PrefixMatch held = cache.Match(kAlice, Range(0, 8));  // ... now held
  Cache(cache, Range(100, 8));                          // 2 evictable blocks
  const CacheStats before = cache.Stats();
  ASSERT_EQ(before.blocks.free, 2);
  ASSERT_EQ(before.blocks.evictable, 2);
  ASSERT_EQ(cache.num_available(), 4);

  absl::StatusOr<std::vector<BlockId>> got = cache.Allocate(5);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(got.status().message(),
              AllOf(HasSubstr("KV cache full"), HasSubstr("5 blocks wanted"), HasSubstr("2 free"),
                    HasSubstr("2 evictable"), HasSubstr("of 6")));
  // Nothing was taken and nothing evicted.
  const CacheStats after = cache.Stats();
  EXPECT_EQ(after.blocks.free, 2);
  EXPECT_EQ(after.blocks.evictable, 2);
  EXPECT_EQ(after.tree.evicted_blocks, 0);
  EXPECT_THAT(Matched(cache, Range(100, 8)), SizeIs(2));
  // Exactly what is available still works, and evicts only the unheld blocks.
  got = cache.Allocate(4);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(held.blocks(), SizeIs(2));
  EXPECT_THAT(Matched(cache, Range(0, 8)), ElementsAre(held.blocks()[0], held.blocks()[1]));
  cache.Release(held);
  EXPECT_TRUE(cache.CheckInvariants(*got).ok()) << cache.CheckInvariants(*got);
}

TEST_F(PrefixCacheTest, ConcurrentRequestsForTheSamePromptShareAfterTheDuplicateIsFreed) {
  PrefixCache cache(Options(8));
  const std::vector<TokenId> prompt = Range(0, 8);
  // Both requests match nothing and compute the prompt into their own blocks.
  PrefixMatch m1 = cache.Match(kAlice, prompt);
  PrefixMatch m2 = cache.Match(kAlice, prompt);
  std::vector<BlockId> t1 = *cache.Allocate(2);
  std::vector<BlockId> t2 = *cache.Allocate(2);
  EXPECT_EQ(cache.Insert(m1, prompt, t1).new_blocks, 2);
  InsertResult r2 = cache.Insert(m2, prompt, t2);
  EXPECT_EQ(r2.new_blocks, 0);
  EXPECT_THAT(r2.duplicate_indices, ElementsAre(0, 1));
  EXPECT_THAT(m2.blocks(), ElementsAre(t1[0], t1[1]));
  // Before the duplicates go back, the accounting knows them as private blocks.
  EXPECT_TRUE(cache.CheckInvariants(t2).ok()) << cache.CheckInvariants(t2);
  cache.Free(t2);
  EXPECT_TRUE(cache.CheckInvariants({}).ok()) << cache.CheckInvariants({});
  EXPECT_EQ(cache.Stats().blocks.in_use, 2);  // two shared blocks, held by both
  cache.Release(m1);
  cache.Release(m2);
  EXPECT_EQ(cache.Stats().blocks.evictable, 2);
}

TEST_F(PrefixCacheTest, DisabledCacheNeverSharesAndRefusesPins) {
  PrefixCache cache(Options(8, /*enabled=*/false));
  EXPECT_FALSE(cache.enabled());
  const std::vector<TokenId> prompt = Range(0, 8);
  PrefixMatch m = cache.Match(kAlice, prompt);
  std::vector<BlockId> table = *cache.Allocate(2);
  InsertResult r = cache.Insert(m, prompt, table);
  EXPECT_EQ(r.new_blocks, 0);
  EXPECT_EQ(m.num_blocks(), 0);
  cache.Release(m);
  // The same prompt again: nothing cached, every token must be computed.
  EXPECT_THAT(Matched(cache, prompt), IsEmpty());
  EXPECT_EQ(cache.Stats().tree.cached_blocks, 0);
  EXPECT_EQ(cache.Stats().tree.hit_tokens, 0);
  EXPECT_FALSE(cache.Stats().enabled);

  absl::StatusOr<int> pin = cache.Pin(kAlice, prompt);
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(pin.status().message(), HasSubstr("disabled"));
  EXPECT_EQ(cache.Unpin(kAlice, prompt).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cache.Flush(), 0);
  // The request's blocks stayed private: it frees them all.
  EXPECT_TRUE(cache.CheckInvariants(table).ok()) << cache.CheckInvariants(table);
  cache.Free(table);
  EXPECT_EQ(cache.Stats().blocks.free, 8);
}

TEST_F(PrefixCacheTest, FlushFreesExactlyTheEvictableBlocks) {
  PrefixCache cache(Options(16));
  Cache(cache, Range(0, 12));                                  // 3 blocks
  Cache(cache, Range(100, 8));                                 // 2 blocks
  const std::vector<BlockId> c = Cache(cache, Range(200, 8));  // 2 blocks
  PrefixMatch held = cache.Match(kAlice, Range(0, 8));         // holds 2 of the first 3
  ASSERT_TRUE(cache.Pin(kAlice, Range(200, 8)).ok());          // pins c
  std::vector<BlockId> priv = *cache.Allocate(1);
  ASSERT_EQ(cache.Stats().blocks.evictable, 3);
  ASSERT_EQ(cache.Stats().blocks.free, 16 - 7 - 1);

  EXPECT_EQ(cache.Flush(), 3);
  const CacheStats s = cache.Stats();
  EXPECT_EQ(s.blocks.free, 16 - 4 - 1);
  EXPECT_EQ(s.blocks.evictable, 0);
  EXPECT_EQ(s.tree.cached_blocks, 4);
  EXPECT_THAT(Matched(cache, Range(0, 12)), ElementsAre(held.blocks()[0], held.blocks()[1]));
  EXPECT_THAT(Matched(cache, Range(100, 8)), IsEmpty());
  EXPECT_THAT(Matched(cache, Range(200, 8)), ElementsAre(c[0], c[1]));
  EXPECT_EQ(cache.Flush(), 0);  // nothing else is evictable
  EXPECT_TRUE(cache.CheckInvariants(priv).ok()) << cache.CheckInvariants(priv);
  cache.Release(held);
}

TEST_F(PrefixCacheTest, CheckInvariantsCatchesALeakedPrivateBlock) {
  PrefixCache cache(Options(8));
  std::vector<BlockId> a = *cache.Allocate(2);
  std::vector<BlockId> b = *cache.Allocate(1);
  std::vector<BlockId> all = {a[0], a[1], b[0]};
  EXPECT_TRUE(cache.CheckInvariants(all).ok()) << cache.CheckInvariants(all);
  // A request forgot b: the pool still has it taken.
  absl::Status s = cache.CheckInvariants(a);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("leak"));
  // Without the list, the counts alone still add up.
  EXPECT_TRUE(cache.CheckInvariants().ok());
}

TEST_F(PrefixCacheTest, CheckInvariantsCatchesABlockBothPrivateAndCached) {
  PrefixCache cache(Options(8));
  const std::vector<BlockId> cached = Cache(cache, Range(0, 8));
  ASSERT_THAT(cached, SizeIs(2));
  // A request that still lists an inserted block as its own would free the tree's block.
  absl::Status s = cache.CheckInvariants({cached[0]});
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("also cached"));
}

using PrefixCacheDeathTest = PrefixCacheTest;

TEST_F(PrefixCacheDeathTest, FreeingABlockTheCacheOwnsIsACheckedError) {
  PrefixCache cache(Options(8));
  const std::vector<BlockId> cached = Cache(cache, Range(0, 8));
  // The tree owns inserted blocks; freeing one would corrupt the pool, so it crashes at once.
  EXPECT_DEATH(cache.Free({cached[1]}), "belongs to the prefix cache");
  // Once evicted, a block is the pool's again and can be handed out and freed.
  EXPECT_EQ(cache.Flush(), 2);
  std::vector<BlockId> again = *cache.Allocate(8);
  cache.Free(again);
  EXPECT_TRUE(cache.CheckInvariants({}).ok());
}

TEST_F(PrefixCacheTest, CheckInvariantsCatchesAFreeOrTwiceListedPrivateBlock) {
  PrefixCache cache(Options(8));
  std::vector<BlockId> a = *cache.Allocate(2);
  EXPECT_THAT(cache.CheckInvariants({a[0], a[0]}).message(), HasSubstr("held twice"));
  cache.Free({a[1]});
  EXPECT_THAT(cache.CheckInvariants({a[0], a[1]}).message(), HasSubstr("also free"));
  EXPECT_THAT(cache.CheckInvariants({a[0], 8}).message(), HasSubstr("outside the pool"));
}

TEST_F(PrefixCacheTest, BlockStatesAddUp) {
  PrefixCache cache(Options(20));
  Cache(cache, Range(0, 16));                           // 4 cached
  Cache(cache, Range(100, 12));                         // 3 cached
  PrefixMatch held = cache.Match(kAlice, Range(0, 8));  // holds 2
  ASSERT_EQ(*cache.Pin(kAlice, Range(0, 12)), 12);      // pins 3, 2 of them also held
  std::vector<BlockId> priv = *cache.Allocate(5);       // 5 private

  const CacheStats s = cache.Stats();
  EXPECT_EQ(s.block_size, kBlock);
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.blocks.total, 20);
  EXPECT_EQ(s.blocks.free, 20 - 7 - 5);
  EXPECT_EQ(s.blocks.in_use, 5 + 3);
  EXPECT_EQ(s.blocks.pinned, 3);
  EXPECT_EQ(s.blocks.evictable, 7 - 3);
  EXPECT_EQ(s.blocks.free + s.blocks.evictable + s.blocks.in_use, s.blocks.total);
  EXPECT_EQ(s.tree.cached_blocks, 7);
  EXPECT_EQ(s.tree.held_blocks, 3);
  EXPECT_EQ(s.tree.pinned_blocks, 3);
  EXPECT_EQ(cache.num_available(), s.blocks.free + s.blocks.evictable);
  EXPECT_TRUE(cache.CheckInvariants(priv).ok()) << cache.CheckInvariants(priv);

  // Unpinned and released, the cached blocks are all evictable again.
  ASSERT_TRUE(cache.Unpin(kAlice, Range(0, 12)).ok());
  cache.Release(held);
  cache.Free(priv);
  const CacheStats t = cache.Stats();
  EXPECT_EQ(t.blocks.in_use, 0);
  EXPECT_EQ(t.blocks.pinned, 0);
  EXPECT_EQ(t.blocks.evictable, 7);
  EXPECT_EQ(t.blocks.free, 13);
}

TEST_F(PrefixCacheTest, EventSinkSeesStoredAndRemovedBlocks) {
  PrefixCache cache(Options(4));
  std::vector<CacheEvent> events;
  cache.SetEventSink([&](const CacheEvent& e) { events.push_back(e); });
  Cache(cache, Range(0, 8));
  ASSERT_TRUE(cache.Allocate(4).ok());  // evicts both, in one removal of the edge's tail
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].kind, CacheEvent::Kind::kStored);
  EXPECT_EQ(events[1].kind, CacheEvent::Kind::kRemoved);
  EXPECT_GT(events[1].sequence, events[0].sequence);
  EXPECT_THAT(events[1].keys, ElementsAre(events[0].keys[0], events[0].keys[1]));
}

}  // namespace
}  // namespace prefixd
