#include "prefix_tree/radix_tree.h"

#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

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

std::vector<TokenId> Concat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<BlockId> Ids(int first, int n) { return Range(first, n); }

BlockKey CollideAlways(uint64_t, const BlockKey&, absl::Span<const TokenId>) {
  return BlockKey{42, 42};
}

class RadixTreeTest : public ::testing::Test {
 protected:
  explicit RadixTreeTest(BlockHashFn hash = &Xxh3BlockHash)
      : tree_(RadixTreeOptions{.block_size = kBlock, .seed = 1234, .hash = hash}) {
    tree_.SetEventSink([this](const CacheEvent& e) { events_.push_back(e); });
  }
  void TearDown() override { EXPECT_TRUE(tree_.CheckInvariants().ok()) << tree_.CheckInvariants(); }

  std::vector<BlockId> MatchBlocks(const CacheNamespace& ns, const std::vector<TokenId>& t) {
    PrefixMatch m = tree_.Match(ns, t);
    std::vector<BlockId> blocks(m.blocks().begin(), m.blocks().end());
    tree_.Release(m);
    return blocks;
  }

  RadixTree tree_;
  std::vector<CacheEvent> events_;
};

TEST_F(RadixTreeTest, EmptyTreeMatchesNothing) {
  PrefixMatch m = tree_.Match(kAlice, Range(0, 12));
  EXPECT_TRUE(m.active());
  EXPECT_EQ(m.num_tokens(), 0);
  EXPECT_THAT(m.blocks(), IsEmpty());
  tree_.Release(m);
  EXPECT_FALSE(m.active());
  TreeStats s = tree_.Stats();
  EXPECT_EQ(s.query_tokens, 12);
  EXPECT_EQ(s.hit_tokens, 0);
}

TEST_F(RadixTreeTest, PromptShorterThanABlockIsNeverCached) {
  InsertResult r = tree_.Insert(kAlice, Range(0, kBlock - 1), Ids(0, 1));
  EXPECT_EQ(r.new_blocks, 0);
  EXPECT_EQ(tree_.cached_blocks(), 0);
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, kBlock - 1)), IsEmpty());
}

TEST_F(RadixTreeTest, OnlyFullBlocksAreInsertedAndMatched) {
  // 10 tokens: two full blocks and a partial one that stays private.
  InsertResult r = tree_.Insert(kAlice, Range(0, 10), Ids(100, 3));
  EXPECT_EQ(r.new_blocks, 2);
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, 10)), ElementsAre(100, 101));
  // Exact block boundary: 8 tokens match both blocks.
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, 8)), ElementsAre(100, 101));
  // One token short of the boundary: only the first block.
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, 7)), ElementsAre(100));
  EXPECT_EQ(tree_.Stats().hit_tokens, 8 + 8 + 4);
}

TEST_F(RadixTreeTest, MatchInsideAnEdgeSplitsItAndKeepsBothHalves) {
  tree_.Insert(kAlice, Range(0, 16), Ids(0, 4));  // one edge of 4 blocks
  // Diverges in the third block.
  std::vector<TokenId> other = Concat(Range(0, 8), Range(500, 8));
  PrefixMatch m = tree_.Match(kAlice, other);
  EXPECT_THAT(m.blocks(), ElementsAre(0, 1));
  ASSERT_TRUE(tree_.CheckInvariants().ok()) << tree_.CheckInvariants();
  // The tail of the split edge is still cached.
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, 16)), ElementsAre(0, 1, 2, 3));
  // Insert the divergent branch through the match.
  InsertResult r = tree_.Insert(m, other, {0, 1, 7, 8});
  EXPECT_EQ(r.new_blocks, 2);
  EXPECT_THAT(r.duplicate_indices, IsEmpty());
  EXPECT_THAT(m.blocks(), ElementsAre(0, 1, 7, 8));
  tree_.Release(m);
  EXPECT_THAT(MatchBlocks(kAlice, other), ElementsAre(0, 1, 7, 8));
  EXPECT_EQ(tree_.cached_blocks(), 6);
}

TEST_F(RadixTreeTest, NamespacesNeverShare) {
  tree_.Insert(kAlice, Range(0, 8), Ids(0, 2));
  EXPECT_THAT(MatchBlocks(kBob, Range(0, 8)), IsEmpty());
  // Same tokens in bob's namespace are stored separately, under other keys.
  tree_.Insert(kBob, Range(0, 8), Ids(10, 2));
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, 8)), ElementsAre(0, 1));
  EXPECT_THAT(MatchBlocks(kBob, Range(0, 8)), ElementsAre(10, 11));
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_NE(events_[0].keys[0], events_[1].keys[0]);
  // Model and adapter are part of the namespace too.
  EXPECT_THAT(MatchBlocks({"alice", "m", "lora1"}, Range(0, 8)), IsEmpty());
  EXPECT_THAT(MatchBlocks({"alice", "other-model", ""}, Range(0, 8)), IsEmpty());
  TreeStats s = tree_.Stats();
  ASSERT_EQ(s.namespaces.size(), 4u);
  EXPECT_EQ(s.namespaces.back().name, "bob");
  EXPECT_EQ(s.namespaces.back().cached_blocks, 2);
}

TEST_F(RadixTreeTest, SameBlockUnderDifferentParentsHasDifferentKeys) {
  // Block [9 9 9 9] after [1 1 1 1] and after [2 2 2 2].
  std::vector<TokenId> a = {1, 1, 1, 1, 9, 9, 9, 9};
  std::vector<TokenId> b = {2, 2, 2, 2, 9, 9, 9, 9};
  tree_.Insert(kAlice, a, Ids(0, 2));
  tree_.Insert(kAlice, b, Ids(2, 2));
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_NE(events_[0].keys[1], events_[1].keys[1]);
  EXPECT_THAT(MatchBlocks(kAlice, b), ElementsAre(2, 3));
}

TEST_F(RadixTreeTest, InsertReportsBlocksThatWereAlreadyCached) {
  tree_.Insert(kAlice, Range(0, 8), Ids(0, 2));
  // A second request computed the same two blocks into 5, 6, then a third of its own.
  PrefixMatch m = tree_.Match(kAlice, {});
  InsertResult r = tree_.Insert(m, Range(0, 12), {5, 6, 7});
  EXPECT_THAT(r.duplicate_indices, ElementsAre(0, 1));
  EXPECT_EQ(r.new_blocks, 1);
  EXPECT_THAT(m.blocks(), ElementsAre(0, 1, 7));
  tree_.Release(m);
}

TEST_F(RadixTreeTest, IncrementalInsertExtendsOneEdge) {
  // A request inserting its blocks one at a time as they are computed.
  std::vector<TokenId> t = Range(0, 20);
  std::vector<BlockId> table = Ids(0, 5);
  PrefixMatch m = tree_.Match(kAlice, t);
  for (int n = 1; n <= 5; ++n) {
    InsertResult r =
        tree_.Insert(m, absl::MakeSpan(t).first(n * kBlock), absl::MakeSpan(table).first(n));
    EXPECT_EQ(r.new_blocks, 1);
    EXPECT_EQ(m.num_blocks(), n);
  }
  tree_.Release(m);
  // Five single-block insertions produced one edge: the snapshot has one stored event.
  EXPECT_EQ(tree_.Snapshot().size(), 1u);
  EXPECT_THAT(MatchBlocks(kAlice, t), ElementsAre(0, 1, 2, 3, 4));
}

TEST_F(RadixTreeTest, HeldBlocksAreNotEvictedAndEvictionIsLeastRecentlyUsedTailFirst) {
  tree_.Insert(kAlice, Range(0, 8), Ids(0, 2));    // older
  tree_.Insert(kAlice, Range(100, 8), Ids(2, 2));  // newer
  PrefixMatch held = tree_.Match(kAlice, Range(0, 8));
  EXPECT_EQ(tree_.evictable_blocks(), 2);
  // Only the unheld prefix can go, tail block first.
  EXPECT_THAT(tree_.Evict(1), ElementsAre(3));
  EXPECT_THAT(tree_.Evict(5), ElementsAre(2));
  EXPECT_THAT(tree_.Evict(5), IsEmpty());
  tree_.Release(held);
  EXPECT_EQ(tree_.evictable_blocks(), 2);
  EXPECT_THAT(tree_.Flush(), ElementsAre(1, 0));
  EXPECT_EQ(tree_.cached_blocks(), 0);
  EXPECT_EQ(tree_.Stats().evicted_blocks, 2);  // to make room
  EXPECT_EQ(tree_.Stats().flushed_blocks, 2);  // by Flush
}

TEST_F(RadixTreeTest, RecentUseProtectsFromEviction) {
  tree_.Insert(kAlice, Range(0, 4), Ids(0, 1));
  tree_.Insert(kAlice, Range(100, 4), Ids(1, 1));
  MatchBlocks(kAlice, Range(0, 4));  // touch the older one
  EXPECT_THAT(tree_.Evict(1), ElementsAre(1));
}

TEST_F(RadixTreeTest, InteriorBlocksGoOnlyAfterTheirChildren) {
  tree_.Insert(kAlice, Range(0, 8), Ids(0, 2));
  tree_.Insert(kAlice, Concat(Range(0, 8), Range(50, 4)), {0, 1, 2});
  tree_.Insert(kAlice, Concat(Range(0, 8), Range(60, 4)), {0, 1, 3});
  std::vector<BlockId> order = tree_.Flush();
  ASSERT_EQ(order.size(), 4u);
  EXPECT_THAT(std::vector<BlockId>(order.end() - 2, order.end()), ElementsAre(1, 0));
}

TEST_F(RadixTreeTest, PinnedPrefixSurvivesEvictionPressureUntilUnpinned) {
  tree_.Insert(kAlice, Range(0, 12), Ids(0, 3));
  EXPECT_EQ(tree_.Pin(kAlice, Range(0, 8)), 8);  // pins two of the three blocks
  EXPECT_EQ(tree_.Pin(kAlice, Range(0, 8)), 8);  // pins nest
  EXPECT_THAT(tree_.Flush(), ElementsAre(2));
  EXPECT_EQ(tree_.Stats().pinned_blocks, 2);
  EXPECT_EQ(*tree_.Unpin(kAlice, Range(0, 8)), 8);
  EXPECT_THAT(tree_.Flush(), IsEmpty());  // still pinned once
  EXPECT_EQ(*tree_.Unpin(kAlice, Range(0, 8)), 8);
  EXPECT_EQ(tree_.Unpin(kAlice, Range(0, 8)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tree_.Flush(), ElementsAre(1, 0));
}

TEST_F(RadixTreeTest, PinOfAnUncachedPrefixPinsNothing) {
  EXPECT_EQ(tree_.Pin(kAlice, Range(0, 8)), 0);
  EXPECT_EQ(tree_.Unpin(kAlice, Range(0, 8)).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RadixTreeTest, EventsCarryIncreasingSequenceNumbersAndSnapshotRebuildsTheCache) {
  tree_.Insert(kAlice, Range(0, 8), Ids(0, 2));
  tree_.Insert(kAlice, Concat(Range(0, 4), Range(70, 4)), {0, 5});
  tree_.Evict(1);
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[0].kind, CacheEvent::Kind::kStored);
  EXPECT_EQ(events_[2].kind, CacheEvent::Kind::kRemoved);
  for (size_t i = 1; i < events_.size(); ++i) {
    EXPECT_GT(events_[i].sequence, events_[i - 1].sequence);
  }
  // The second insert's parent is the first block of the first insert.
  EXPECT_EQ(events_[1].parent, events_[0].keys[0]);
  std::vector<CacheEvent> snap = tree_.Snapshot();
  int blocks = 0;
  for (const CacheEvent& e : snap) {
    EXPECT_EQ(e.sequence, tree_.last_sequence());
    blocks += static_cast<int>(e.keys.size());
  }
  EXPECT_EQ(blocks, tree_.cached_blocks());
}

TEST_F(RadixTreeTest, StatsCountBlocksByState) {
  tree_.Insert(kAlice, Range(0, 12), Ids(0, 3));
  PrefixMatch m = tree_.Match(kAlice, Range(0, 4));
  tree_.Pin(kAlice, Range(0, 8));
  TreeStats s = tree_.Stats();
  EXPECT_EQ(s.cached_blocks, 3);
  EXPECT_EQ(s.held_blocks, 2);
  EXPECT_EQ(s.pinned_blocks, 2);
  EXPECT_EQ(s.evictable_blocks, 1);
  tree_.Release(m);
}

using RadixTreeDeathTest = RadixTreeTest;

TEST_F(RadixTreeDeathTest, ReleasingTwiceIsACheckedError) {
  PrefixMatch m = tree_.Match(kAlice, Range(0, 4));
  tree_.Release(m);
  EXPECT_DEATH(tree_.Release(m), "released twice");
}

TEST_F(RadixTreeDeathTest, ReleasingAMovedFromMatchIsACheckedError) {
  PrefixMatch m = tree_.Match(kAlice, Range(0, 4));
  PrefixMatch moved = std::move(m);
  EXPECT_DEATH(tree_.Release(m), "holds nothing");
  tree_.Release(moved);
}

TEST(RadixTreeOptionsDeathTest, BlockSizeMustBeAPowerOfTwo) {
  EXPECT_DEATH(RadixTree(RadixTreeOptions{.block_size = 12}), "power of two");
}

// Every key collides: the tree must still never hand one prompt another's blocks.
class CollidingRadixTreeTest : public RadixTreeTest {
 protected:
  CollidingRadixTreeTest() : RadixTreeTest(&CollideAlways) {}
};

TEST_F(CollidingRadixTreeTest, ForcedCollisionsNeverShare) {
  tree_.Insert(kAlice, Range(0, 8), Ids(0, 2));
  // Different tokens, same key: no hit.
  EXPECT_THAT(MatchBlocks(kAlice, Range(100, 8)), IsEmpty());
  // Inserting them is refused (the blocks stay the caller's) and counted.
  PrefixMatch m = tree_.Match(kAlice, Range(100, 8));
  InsertResult r = tree_.Insert(m, Range(100, 8), Ids(10, 2));
  EXPECT_EQ(r.new_blocks, 0);
  EXPECT_EQ(r.rejected_blocks, 2);
  EXPECT_EQ(m.num_blocks(), 0);
  tree_.Release(m);
  EXPECT_EQ(tree_.Stats().hash_collisions, 1);
  // The same tokens still hit, and a divergence inside an edge still stops at the block.
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, 8)), ElementsAre(0, 1));
  EXPECT_THAT(MatchBlocks(kAlice, Concat(Range(0, 4), Range(200, 4))), ElementsAre(0));
  // A child after the split collides with the tail edge: refused too.
  InsertResult r2 = tree_.Insert(kAlice, Concat(Range(0, 4), Range(200, 4)), {0, 20});
  EXPECT_EQ(r2.rejected_blocks, 1);
  EXPECT_THAT(MatchBlocks(kAlice, Concat(Range(0, 4), Range(200, 4))), ElementsAre(0));
  EXPECT_THAT(MatchBlocks(kAlice, Range(0, 8)), ElementsAre(0, 1));
}

// Guaranteed shares: alice and bob 4 blocks each; carol, a namespace of alice's with an
// adapter, and anyone else nothing.
class FairEvictionTest : public ::testing::Test {
 protected:
  FairEvictionTest()
      : tree_(RadixTreeOptions{
            .block_size = kBlock, .seed = 5, .guaranteed_blocks = {{"alice", 4}, {"bob", 4}}}) {}
  void TearDown() override { EXPECT_TRUE(tree_.CheckInvariants().ok()) << tree_.CheckInvariants(); }

  // Inserts prompt `i` (two blocks) of `ns` with blocks 2i and 2i+1.
  void Prompt(const CacheNamespace& ns, int i) {
    tree_.Insert(ns, Range(1000 * i, 2 * kBlock), Ids(2 * i, 2));
  }
  int CachedTokens(const CacheNamespace& ns, int i) {
    PrefixMatch m = tree_.Match(ns, Range(1000 * i, 2 * kBlock), /*count=*/false);
    const int n = m.num_tokens();
    tree_.Release(m);
    return n;
  }

  RadixTree tree_;
};

const CacheNamespace kCarol{"carol", "m", ""};

TEST_F(FairEvictionTest, AFloodingOwnerLosesItsOwnBlocksBeforeAnotherOwnersOlderOnes) {
  Prompt(kBob, 0);  // bob's system prompt, the oldest blocks in the tree
  for (int i = 1; i <= 3; ++i) Prompt(kAlice, i);  // alice: 6 blocks, 2 over her share
  // Plain LRU would take bob's; alice's oldest prompt goes instead, tail first.
  EXPECT_THAT(tree_.Evict(2), ElementsAre(3, 2));
  // Nobody holds more than their share now: beyond guarantees, least recently used.
  EXPECT_THAT(tree_.Evict(1), ElementsAre(1));  // bob's tail: his blocks are the oldest
  EXPECT_EQ(tree_.Stats().evicted_blocks, 3);
}

TEST_F(FairEvictionTest, AnOwnerIsNeverTakenBelowItsShareWhileAnotherIsOver) {
  Prompt(kAlice, 0);
  for (int i = 1; i <= 4; ++i) Prompt(kCarol, i);  // carol: guaranteed nothing
  // bob within his share needs room again and again: only carol pays, however many
  // prompts bob sends, so alice's cached tokens say nothing about bob's traffic.
  for (int i = 5; i <= 6; ++i) {
    tree_.Evict(2);
    Prompt(kBob, i);
    EXPECT_EQ(CachedTokens(kAlice, 0), 2 * kBlock) << "after bob's prompt " << i;
  }
  EXPECT_EQ(CachedTokens(kCarol, 1), 0);
  EXPECT_EQ(CachedTokens(kCarol, 2), 0);
  EXPECT_EQ(CachedTokens(kCarol, 3), 2 * kBlock);
}

TEST_F(FairEvictionTest, AnOverShareOwnerWhoseBlocksAreAllHeldFallsBackToLeastRecentlyUsed) {
  Prompt(kBob, 0);
  for (int i = 1; i <= 3; ++i) Prompt(kAlice, i);
  std::vector<PrefixMatch> held;
  for (int i = 1; i <= 3; ++i) held.push_back(tree_.Match(kAlice, Range(1000 * i, 2 * kBlock)));
  EXPECT_THAT(tree_.Evict(1), ElementsAre(1));  // bob's: alice's are all in use
  for (PrefixMatch& m : held) tree_.Release(m);
}

TEST_F(FairEvictionTest, AnOwnersNamespacesShareOneGuarantee) {
  const CacheNamespace alice_adapter{"alice", "m", "lora-1"};
  Prompt(kBob, 0);
  Prompt(kAlice, 1);
  Prompt(alice_adapter, 2);  // alice: 4 blocks over two namespaces, within her share
  Prompt(alice_adapter, 3);  // 6 blocks: 2 over
  EXPECT_THAT(tree_.Evict(2), ElementsAre(3, 2));  // alice's oldest, not bob's
}

TEST_F(FairEvictionTest, FlushTakesEveryOwnersBlocks) {
  Prompt(kAlice, 0);
  Prompt(kBob, 1);
  EXPECT_EQ(tree_.Flush().size(), 4u);
  EXPECT_EQ(tree_.cached_blocks(), 0);
}

}  // namespace
}  // namespace prefixd
