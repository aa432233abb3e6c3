// RadixTree::HotPrefixes: the most reused cached prefixes, as the dashboard lists them.
#include <numeric>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prefix_tree/radix_tree.h"

namespace prefixd {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int kBlock = 4;
const CacheNamespace kAlice{"alice", "m", ""};
const CacheNamespace kBob{"bob", "m", "lora-1"};

std::vector<TokenId> Range(int first, int n) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

std::vector<TokenId> Concat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class HotPrefixesTest : public ::testing::Test {
 protected:
  HotPrefixesTest()
      : tree_(RadixTreeOptions{.block_size = kBlock, .seed = 7, .clock = [this] { return now_; }}) {
  }
  void TearDown() override { EXPECT_TRUE(tree_.CheckInvariants().ok()) << tree_.CheckInvariants(); }

  // A request: matches its prompt, caches the rest of its full blocks, releases.
  void Serve(const CacheNamespace& ns, const std::vector<TokenId>& prompt) {
    PrefixMatch m = tree_.Match(ns, prompt);
    std::vector<BlockId> blocks(m.blocks().begin(), m.blocks().end());
    while (blocks.size() < prompt.size() / kBlock) blocks.push_back(next_block_++);
    tree_.Insert(m, prompt, blocks);
    tree_.Release(m);
  }

  absl::Time now_ = absl::FromUnixSeconds(1000);
  BlockId next_block_ = 0;
  RadixTree tree_;
};

TEST_F(HotPrefixesTest, NothingIsHotBeforeAPrefixIsReused) {
  EXPECT_THAT(tree_.HotPrefixes(10), IsEmpty());
  Serve(kAlice, Range(0, 16));
  EXPECT_THAT(tree_.HotPrefixes(10), IsEmpty());
}

TEST_F(HotPrefixesTest, ASharedSystemPromptIsTheHottestPrefix) {
  const std::vector<TokenId> system = Range(100, 12);  // 3 blocks
  Serve(kAlice, Concat(system, Range(0, 8)));
  now_ += absl::Seconds(30);
  for (int i = 1; i <= 4; ++i) Serve(kAlice, Concat(system, Range(i * 50, 8)));

  const std::vector<HotPrefix> hot = tree_.HotPrefixes(10);
  ASSERT_THAT(hot, SizeIs(1));
  EXPECT_EQ(hot[0].ns, "alice");
  EXPECT_EQ(hot[0].tokens, 12);
  EXPECT_EQ(hot[0].hits, 4);
  // The system prompt was cached by the first request, before the split that made it an
  // edge of its own.
  EXPECT_EQ(hot[0].created, absl::FromUnixSeconds(1000));
  // Its age for the dashboard counts from its last hit, 30 s later.
  EXPECT_EQ(hot[0].last_hit, absl::FromUnixSeconds(1030));
  EXPECT_FALSE(hot[0].pinned);
}

TEST_F(HotPrefixesTest, RanksByHitsThenLengthAndKeepsTheTopK) {
  const std::vector<TokenId> a = Range(0, 8), b = Range(100, 8), c = Range(200, 8);
  Serve(kAlice, Concat(a, Range(1000, 4)));
  Serve(kAlice, Concat(b, Range(1000, 4)));
  Serve(kBob, Concat(c, Range(1000, 4)));
  for (int i = 0; i < 3; ++i) Serve(kAlice, Concat(a, Range(2000 + 10 * i, 4)));
  Serve(kAlice, Concat(b, Range(3000, 4)));
  for (int i = 0; i < 2; ++i) Serve(kBob, Concat(c, Range(4000 + 10 * i, 4)));
  // Deeper and as hot as its parent: a + one more shared block.
  const std::vector<TokenId> a2 = Concat(a, Range(5000, 4));
  Serve(kAlice, Concat(a2, Range(6000, 4)));
  Serve(kAlice, Concat(a2, Range(7000, 4)));

  std::vector<HotPrefix> hot = tree_.HotPrefixes(10);
  ASSERT_THAT(hot, SizeIs(4));
  EXPECT_EQ(hot[0].ns, "alice");
  EXPECT_EQ(hot[0].tokens, 8);
  EXPECT_EQ(hot[0].hits, 5);
  EXPECT_EQ(hot[1].ns, "bob/lora-1");
  EXPECT_EQ(hot[1].hits, 2);
  // Equal hits: the longer prefix first (a2, then b).
  EXPECT_EQ(hot[2].ns, "alice");
  EXPECT_EQ(hot[2].tokens, 12);
  EXPECT_EQ(hot[2].hits, 1);
  EXPECT_EQ(hot[3].ns, "alice");
  EXPECT_EQ(hot[3].tokens, 8);
  EXPECT_EQ(hot[3].hits, 1);
  hot = tree_.HotPrefixes(2);
  ASSERT_THAT(hot, SizeIs(2));
  EXPECT_EQ(hot[0].hits, 5);
  EXPECT_EQ(hot[1].hits, 2);
}

TEST_F(HotPrefixesTest, AReusedPrefixKeepsItsHitsWhenARequestExtendsIt) {
  const std::vector<TokenId> prompt = Range(0, 8);
  Serve(kAlice, prompt);
  // A second request with the same prompt uses all of it, then caches its own output.
  Serve(kAlice, Concat(prompt, Range(100, 8)));
  const std::vector<HotPrefix> hot = tree_.HotPrefixes(10);
  ASSERT_THAT(hot, SizeIs(1));
  EXPECT_EQ(hot[0].tokens, 8) << "the hits belong to the prompt, not to the longer sequence";
  EXPECT_EQ(hot[0].hits, 1);
}

TEST_F(HotPrefixesTest, PinnedPrefixesAreMarkedAndEvictedOnesAreGone) {
  const std::vector<TokenId> system = Range(0, 8);
  Serve(kAlice, Concat(system, Range(100, 4)));
  Serve(kAlice, Concat(system, Range(200, 4)));
  ASSERT_EQ(tree_.Pin(kAlice, system), 8);
  std::vector<HotPrefix> hot = tree_.HotPrefixes(10);
  ASSERT_THAT(hot, SizeIs(1));
  EXPECT_TRUE(hot[0].pinned);
  ASSERT_TRUE(tree_.Unpin(kAlice, system).ok());
  tree_.Flush();
  EXPECT_THAT(tree_.HotPrefixes(10), IsEmpty());
}

}  // namespace
}  // namespace prefixd
