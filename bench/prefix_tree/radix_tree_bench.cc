// bench/prefix_tree/radix_tree_bench.cc — microbenchmarks of prefix_tree/ at realistic sizes.
//
// The populated tree: 1,000 distinct prefixes of 100 blocks each (block size 16), i.e. 100k
// cached blocks and 1.6 M tokens in one namespace. Every benchmark reports the median of
// its repetitions; see docs/benchmarks.md for the commands and the figures measured.
//
//   build/bench/prefix_tree/radix_tree_bench
//   build/bench/prefix_tree/radix_tree_bench --benchmark_format=json --benchmark_out=out.json
#include <malloc.h>

#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "prefix_tree/block_hash.h"
#include "prefix_tree/radix_tree.h"

namespace prefixd {
namespace {

constexpr int kBlockSize = 16;
constexpr int kPromptTokens = 2048;  // 128 blocks
constexpr int kPromptBlocks = kPromptTokens / kBlockSize;
constexpr int kPrefixes = 1000;
constexpr int kPrefixBlocks = 100;
constexpr int kVocab = 128256;  // Llama 3's
// Ten repetitions of at least 0.2 s each; the median is what docs/benchmarks.md reports.
constexpr int kRepetitions = 10;
constexpr double kMinTime = 0.2;
const CacheNamespace kTenant{"bench", "llama-3-8b", ""};

std::vector<TokenId> RandomTokens(std::mt19937& gen, int n) {
  std::uniform_int_distribution<TokenId> token(0, kVocab - 1);
  std::vector<TokenId> tokens(n);
  for (TokenId& t : tokens) t = token(gen);
  return tokens;
}

std::vector<BlockId> BlockRange(BlockId first, int n) {
  std::vector<BlockId> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = first + i;
  return ids;
}

// A tree holding kPrefixes random prefixes of kPrefixBlocks blocks; prefix p is cached in
// blocks [p * kPrefixBlocks, (p + 1) * kPrefixBlocks). Random first tokens make them
// distinct from the first block on: the namespace root has 1,000 children.
// With `owners` > 1, prefix p belongs to owner p % owners (a tenant of its own), and the
// options give the owners' guaranteed shares.
struct PopulatedTree {
  explicit PopulatedTree(int owners = 1,
                         RadixTreeOptions options = {.block_size = kBlockSize, .seed = 7})
      : tree(std::move(options)), gen(42) {
    for (int o = 0; o < owners; ++o) {
      namespaces.push_back(
          owners == 1 ? kTenant : CacheNamespace{absl::StrCat("owner", o), kTenant.model, ""});
    }
    prefixes.reserve(kPrefixes);
    for (int p = 0; p < kPrefixes; ++p) {
      prefixes.push_back(RandomTokens(gen, kPrefixBlocks * kBlockSize));
      InsertPrefix(p);
    }
  }

  void InsertPrefix(int p) {
    tree.Insert(namespaces[p % namespaces.size()], prefixes[p],
                BlockRange(p * kPrefixBlocks, kPrefixBlocks));
  }

  std::vector<CacheNamespace> namespaces;
  RadixTree tree;
  std::mt19937 gen;
  std::vector<std::vector<TokenId>> prefixes;
};

// Chained keys of a 2048-token prompt, as Match computes them block by block.
void BM_HashBlocks(benchmark::State& state) {
  const int block_size = static_cast<int>(state.range(0));
  std::mt19937 gen(1);
  const std::vector<TokenId> prompt = RandomTokens(gen, kPromptTokens);
  const uint64_t seed = 7;
  const BlockKey ns_key = NamespaceKey(seed, kTenant);
  const auto tokens = absl::MakeConstSpan(prompt);
  for (auto _ : state) {
    BlockKey key = ns_key;
    for (int b = 0; b < kPromptTokens / block_size; ++b) {
      key = Xxh3BlockHash(seed, key, tokens.subspan(b * block_size, block_size));
    }
    benchmark::DoNotOptimize(key);
  }
  state.SetItemsProcessed(state.iterations() * kPromptTokens);  // items/s = tokens/s
}
BENCHMARK(BM_HashBlocks)
    ->ArgName("block_size")
    ->Arg(16)
    ->Arg(4)
    ->Arg(64)
    ->MinTime(kMinTime)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

// Match + Release of a fully cached 2048-token prompt: the admission cost of a request
// whose prompt is all cached. The prompt continues one of the cached prefixes (a shared
// 1600-token system prompt) with 448 tokens of its own, as do two other conversations, so
// its path is two edges: the system prompt, then its own.
void BM_MatchRelease2048(benchmark::State& state) {
  PopulatedTree t;
  const int shared = kPrefixes / 2;
  BlockId next_block = kPrefixes * kPrefixBlocks;
  std::vector<TokenId> prompt;
  for (int conversation = 0; conversation < 3; ++conversation) {
    prompt = t.prefixes[shared];
    const std::vector<TokenId> own =
        RandomTokens(t.gen, kPromptTokens - static_cast<int>(prompt.size()));
    prompt.insert(prompt.end(), own.begin(), own.end());
    std::vector<BlockId> table = BlockRange(shared * kPrefixBlocks, kPrefixBlocks);
    const std::vector<BlockId> own_blocks = BlockRange(next_block, kPromptBlocks - kPrefixBlocks);
    next_block += kPromptBlocks - kPrefixBlocks;
    table.insert(table.end(), own_blocks.begin(), own_blocks.end());
    t.tree.Insert(kTenant, prompt, table);
  }
  {
    PrefixMatch m = t.tree.Match(kTenant, prompt);
    if (m.num_blocks() != kPromptBlocks) state.SkipWithError("the prompt is not fully cached");
    t.tree.Release(m);
  }
  for (auto _ : state) {
    PrefixMatch m = t.tree.Match(kTenant, prompt);
    benchmark::DoNotOptimize(m.blocks().data());
    t.tree.Release(m);
  }
  state.SetItemsProcessed(state.iterations() * kPromptTokens);
}
BENCHMARK(BM_MatchRelease2048)
    ->MinTime(kMinTime)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

// Insert of an uncached 2048-token prompt (128 new blocks, one call) into the populated
// tree. The 100k blocks are pinned, so the inserted prompts are the only evictable blocks:
// every kBatch inserts, with the clock stopped, they are evicted again.
void BM_Insert2048(benchmark::State& state) {
  constexpr int kBatch = 256;
  PopulatedTree t;
  for (const std::vector<TokenId>& prefix : t.prefixes) t.tree.Pin(kTenant, prefix);
  std::vector<std::vector<TokenId>> prompts;
  std::vector<std::vector<BlockId>> tables;
  for (int i = 0; i < kBatch; ++i) {
    prompts.push_back(RandomTokens(t.gen, kPromptTokens));
    tables.push_back(BlockRange(kPrefixes * kPrefixBlocks + i * kPromptBlocks, kPromptBlocks));
  }
  int i = 0;
  for (auto _ : state) {
    InsertResult r = t.tree.Insert(kTenant, prompts[i], tables[i]);
    benchmark::DoNotOptimize(r.new_blocks);
    if (++i == kBatch) {
      state.PauseTiming();
      if (t.tree.Evict(int64_t{kBatch} * kPromptBlocks).size() !=
          static_cast<size_t>(kBatch) * kPromptBlocks) {
        state.SkipWithError("evicted the wrong number of blocks");
      }
      i = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations() * kPromptTokens);
}
BENCHMARK(BM_Insert2048)->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);

// The same prompt inserted one block at a time through a held match, as a request does
// while its prefill chunks complete: 128 Insert calls, each extending the same edge.
void BM_InsertPerBlock2048(benchmark::State& state) {
  constexpr int kBatch = 64;
  PopulatedTree t;
  for (const std::vector<TokenId>& prefix : t.prefixes) t.tree.Pin(kTenant, prefix);
  std::vector<std::vector<TokenId>> prompts;
  std::vector<std::vector<BlockId>> tables;
  for (int i = 0; i < kBatch; ++i) {
    prompts.push_back(RandomTokens(t.gen, kPromptTokens));
    tables.push_back(BlockRange(kPrefixes * kPrefixBlocks + i * kPromptBlocks, kPromptBlocks));
  }
  int i = 0;
  for (auto _ : state) {
    const auto tokens = absl::MakeConstSpan(prompts[i]);
    const auto table = absl::MakeConstSpan(tables[i]);
    PrefixMatch m = t.tree.Match(kTenant, tokens);
    for (int b = 1; b <= kPromptBlocks; ++b) {
      t.tree.Insert(m, tokens.first(b * kBlockSize), table.first(b));
    }
    t.tree.Release(m);
    if (++i == kBatch) {
      state.PauseTiming();
      t.tree.Evict(int64_t{kBatch} * kPromptBlocks);
      i = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations() * kPromptTokens);
}
BENCHMARK(BM_InsertPerBlock2048)
    ->MinTime(kMinTime)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

// Evict(1000), `refill_after` times, then the evicted prefixes are inserted again with the
// clock stopped.
void Evict1000(benchmark::State& state, PopulatedTree& t, int refill_after) {
  constexpr int64_t kEvict = 1000;
  std::vector<std::vector<BlockId>> batches;  // evicted since the last refill
  batches.reserve(refill_after);
  for (auto _ : state) {
    batches.push_back(t.tree.Evict(kEvict));
    // A host tier's queued copies, taken as the engine takes them every step.
    if (t.tree.has_host_tier()) benchmark::DoNotOptimize(t.tree.TakeTransfers());
    if (static_cast<int>(batches.size()) == refill_after) {
      state.PauseTiming();
      for (const std::vector<BlockId>& evicted : batches) {
        if (evicted.size() != kEvict) state.SkipWithError("evicted the wrong number of blocks");
        // Every prefix is one 100-block edge, evicted whole (tail first): its first block
        // names it.
        for (BlockId b : evicted) {
          if (b % kPrefixBlocks == 0) t.InsertPrefix(b / kPrefixBlocks);
        }
      }
      batches.clear();
      (void)t.tree.TakeTransfers();  // the refill's (none: adopting needs no copy)
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations() * kEvict);  // items/s = blocks/s
}

// Evict(1000) from the populated tree: ten least recently used 100-block prefixes. With
// the clock stopped, the evicted prefixes are inserted again whenever half the tree is gone.
void BM_Evict1000(benchmark::State& state) {
  PopulatedTree t;
  Evict1000(state, t, /*refill_after=*/kPrefixes / 2 / 10);
}
BENCHMARK(BM_Evict1000)->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);

// The same with fair eviction at work: the prefixes belong to `owners` tenants; the even
// ones are guaranteed everything they hold, the odd ones nothing, so every block comes from
// the over-share list (the evicted are inserted again when half the odd owners' are gone).
// Against BM_Evict1000, the cost of guaranteed shares per evicted block.
void BM_EvictFair(benchmark::State& state) {
  const int owners = static_cast<int>(state.range(0));
  RadixTreeOptions options{.block_size = kBlockSize, .seed = 7};
  for (int o = 0; o < owners; o += 2) {
    options.guaranteed_blocks[absl::StrCat("owner", o)] =
        int64_t{kPrefixes / owners + 1} * kPrefixBlocks;
  }
  PopulatedTree t(owners, std::move(options));
  Evict1000(state, t, /*refill_after=*/kPrefixes / 4 / 10);
}
BENCHMARK(BM_EvictFair)
    ->ArgName("owners")
    ->Arg(2)
    ->Arg(20)
    ->Arg(200)
    ->MinTime(kMinTime)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

// The same with a host tier a quarter the size of the tree: every evicted block is demoted
// (a host slot and a queued transfer), and once the tier is full each demotion first drops
// the host tier's least recently used block. Against BM_Evict1000, the cost per evicted
// block of keeping it in host memory.
void BM_EvictToHost(benchmark::State& state) {
  PopulatedTree t(
      1, RadixTreeOptions{
             .block_size = kBlockSize, .seed = 7, .host_blocks = kPrefixes * kPrefixBlocks / 4});
  Evict1000(state, t, /*refill_after=*/kPrefixes / 2 / 10);
}
BENCHMARK(BM_EvictToHost)->MinTime(kMinTime)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);

}  // namespace
}  // namespace prefixd

int main(int argc, char** argv) {
  // The Insert and Evict benchmarks reset their trees in batches with the clock stopped,
  // freeing megabytes at once; glibc would hand that back to the kernel and the timed
  // inserts would then page-fault it in again. A server's heap, under steady load, keeps
  // its memory: so do these benchmarks.
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
