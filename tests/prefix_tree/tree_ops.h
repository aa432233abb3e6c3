// tests/prefix_tree/tree_ops.h — random operation sequences on a PrefixCache, each step
// checked against a deliberately simple reference model.
//
// Shared by radix_tree_differential_test.cc (choices from a seeded generator) and the
// libFuzzer target tests/fuzz/prefix_tree_fuzz.cc (choices read from the fuzzer's bytes).
//
// The operations are what the engine's scheduler does with the cache: a request matches
// its prompt, allocates blocks for the rest (evicting when the pool is short), inserts its
// full blocks as they are computed through its held match, decodes more tokens, and
// finishes (release, free private blocks); besides, one-shot probes, inserts without a
// prior match, pins and unpins, forced eviction, flushes, and loose allocations.
//
// The model knows nothing of edges, splits or keys as an index: it is a map from
// (namespace, token ids of whole blocks from the start) to the BlockId caching the last of
// those blocks, with hold counts, pin counts and a last-use time per entry. The longest
// cached prefix is found by looking up each block-aligned prefix in turn. After every
// operation the harness compares what the cache returned, its stats, the block accounting
// and PrefixCache::CheckInvariants(private blocks) with the model, and checks that a
// router replaying the cache's events (and one starting from Snapshot()) would see exactly
// the cached blocks' keys.
#ifndef PREFIXD_TESTS_PREFIX_TREE_TREE_OPS_H_
#define PREFIXD_TESTS_PREFIX_TREE_TREE_OPS_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "prefix_tree/prefix_cache.h"

namespace prefixd::tree_ops {

// Where the interpreter's choices come from.
class ChoiceSource {
 public:
  virtual ~ChoiceSource() = default;
  // A value in [0, bound); bound >= 1.
  virtual uint32_t Below(uint32_t bound) = 0;
  // True once the input is used up: the operation sequence ends there.
  virtual bool done() const = 0;
};

// Seeded and reproducible: std::mt19937_64 produces the same sequence everywhere.
class RandomChoices final : public ChoiceSource {
 public:
  explicit RandomChoices(uint64_t seed) : gen_(seed) {}
  uint32_t Below(uint32_t bound) override { return static_cast<uint32_t>(gen_() % bound); }
  bool done() const override { return false; }

 private:
  std::mt19937_64 gen_;
};

// Fuzz input: each choice reads 1, 2 or 4 little-endian bytes (as its bound needs) modulo
// the bound; past the end every choice is 0. Any byte string is a valid sequence.
class ByteChoices final : public ChoiceSource {
 public:
  explicit ByteChoices(absl::Span<const uint8_t> bytes) : bytes_(bytes) {}
  uint32_t Below(uint32_t bound) override;
  bool done() const override { return pos_ >= bytes_.size(); }

 private:
  absl::Span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

// Which block hash the tree uses. The colliding ones make the tree's token comparison the
// only thing between a prompt and another prompt's blocks.
enum class HashMode {
  kXxh3,        // the real one
  kAllCollide,  // every block has the same key
  kTwoKeys,     // the key is the parity of the block's token sum: two keys in all
};

struct TreeOpsConfig {
  int block_size = 4;
  int32_t num_blocks = 64;    // KV pool capacity
  int vocab = 4;              // token ids in [0, vocab): small, so blocks repeat
  int max_prompt_blocks = 8;  // longest new sequence in whole blocks (plus a partial one)
  HashMode hash = HashMode::kXxh3;
  bool enabled = true;  // PrefixCacheOptions::enabled
  uint64_t hash_seed = 1;

  std::string ToString() const;
};

// A configuration drawn from `choices` (the fuzzer's first bytes).
TreeOpsConfig ConfigFromChoices(ChoiceSource& choices);

// Drives one PrefixCache and its model. Not copyable; `choices` must outlive it.
class TreeOpsHarness {
 public:
  TreeOpsHarness(const TreeOpsConfig& config, ChoiceSource& choices);
  TreeOpsHarness(const TreeOpsHarness&) = delete;
  TreeOpsHarness& operator=(const TreeOpsHarness&) = delete;

  // Runs one operation chosen by `choices` and compares the cache with the model.
  // An error says what differed; the harness is unusable afterwards.
  absl::Status Step();
  // Finishes every request, frees every private block, unpins every pin and flushes, then
  // checks that the whole pool is free again: nothing leaked.
  absl::Status Drain();

  // What the sequence exercised so far, so a test can tell it reached the interesting cases.
  struct Coverage {
    int64_t hit_blocks = 0;        // blocks returned by Match
    int64_t inserted_blocks = 0;   // blocks Insert stored
    int64_t duplicate_blocks = 0;  // blocks Insert found cached under another BlockId
    int64_t rejected_blocks = 0;   // blocks Insert refused on a key collision
    int64_t evicted_blocks = 0;
    int64_t exhausted = 0;  // allocations refused with ResourceExhausted
    int64_t pins = 0;       // pins that pinned something
    int64_t unpins = 0;     // successful unpins
  };
  const Coverage& coverage() const { return coverage_; }
  int64_t steps() const { return steps_; }
  // The last operations run, oldest first, one a line: for failure messages.
  std::string History() const;

 private:
  // (namespace index, token ids of whole blocks from the start of a sequence).
  using Prefix = std::pair<int, std::vector<TokenId>>;
  // The same without a copy of the tokens, for lookups.
  struct PrefixView {
    int ns;
    absl::Span<const TokenId> tokens;
  };
  // Orders Prefix and PrefixView alike: by namespace, then lexicographically, so the
  // prefixes that extend a prefix follow it.
  struct PrefixLess {
    using is_transparent = void;
    static PrefixView View(const Prefix& p) { return {p.first, p.second}; }
    static PrefixView View(const PrefixView& v) { return v; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      const PrefixView x = View(a);
      const PrefixView y = View(b);
      if (x.ns != y.ns) return x.ns < y.ns;
      return std::lexicographical_compare(x.tokens.begin(), x.tokens.end(), y.tokens.begin(),
                                          y.tokens.end());
    }
  };

  // One cached block in the model.
  struct Entry {
    BlockId id = -1;
    BlockKey key;           // chained key, computed by the model with the same hash
    uint64_t last_use = 0;  // model clock of the last operation that held or released it
    int refs = 0;           // requests whose held prefix includes this block
    int pins = 0;           // pins whose pinned prefix includes this block
    int children = 0;       // cached blocks directly after this one
  };

  // A request as the scheduler keeps it: its sequence, its block table, its held match.
  // table[0, held) are the match's cached blocks; table[held, end) are private.
  struct Request {
    int id = 0;
    int ns = 0;
    std::vector<TokenId> tokens;
    std::vector<BlockId> table;
    PrefixMatch match;
    int held = 0;  // model: blocks the match should hold
  };

  // ---- operations ----
  absl::Status StartRequest();
  absl::Status InsertStep(Request& r, bool all);
  absl::Status Decode(Request& r);
  absl::Status FinishRequest(size_t index);
  absl::Status MatchAndRelease();
  absl::Status InsertUnheld();
  absl::Status Pin();
  absl::Status Unpin();
  absl::Status Evict();
  absl::Status Flush();
  absl::Status AllocateLoose();
  absl::Status FreeLoose();

  // ---- the cache's calls, each compared with the model ----
  absl::Status CheckedMatch(Request& r, absl::Span<const TokenId> tokens);
  absl::Status CheckedInsert(Request& r, int num_tokens, int num_table);
  // Releases the match and frees the request's private blocks.
  absl::Status CheckedFinish(Request& r);
  // On success `out` holds the blocks; when the pool is exhausted (as the model expects)
  // `out` is empty.
  absl::Status CheckedAllocate(int n, std::optional<std::vector<BlockId>>& out);
  absl::Status CheckedUnpin(int ns, absl::Span<const TokenId> tokens);
  absl::Status CheckedFlush();
  // The blocks the model caches but the tree no longer does: checks there are `expected`
  // of them and that each could be evicted in turn, then drops them from the model.
  // `flush`: counted as flushed, else as evicted.
  absl::Status TakeEvicted(int64_t expected, bool flush = false);
  // `blocks` must be exactly the model's blocks for the first `expected` whole blocks of
  // `tokens` in `ns`, so in particular never a block caching other tokens.
  absl::Status CheckBlocks(const char* what, int ns, absl::Span<const TokenId> tokens,
                           absl::Span<const BlockId> blocks, int expected) const;
  // `snapshot`: also compare a fresh Snapshot() (costly; every few steps).
  absl::Status CheckState(bool snapshot) const;
  // The event sink: replays stored/removed events into `replica_`.
  void OnEvent(const CacheEvent& event);

  // ---- the model ----
  Prefix PrefixOf(int ns, absl::Span<const TokenId> tokens, int blocks) const;
  PrefixView ViewOf(int ns, absl::Span<const TokenId> tokens, int blocks) const;
  // The entry of a cached prefix (a checked error if it is not cached).
  Entry& At(const PrefixView& prefix);
  const Entry& At(const PrefixView& prefix) const;
  // Whole blocks of `tokens` cached in `ns`, counted from the start.
  int Longest(int ns, absl::Span<const TokenId> tokens) const;
  BlockKey KeyOf(int ns, absl::Span<const TokenId> tokens, int blocks) const;
  void Add(int ns, absl::Span<const TokenId> tokens, int index, BlockId id);
  void Remove(const Prefix& prefix);
  void AddHolds(int ns, absl::Span<const TokenId> tokens, int blocks, int refs, int pins);
  void Touch(int ns, absl::Span<const TokenId> tokens, int blocks);
  int64_t ModelEvictable() const;
  std::vector<BlockId> PrivateBlocks() const;

  // ---- choices ----
  // A sequence sharing a prefix with a recent one (usually) and going on at random.
  std::vector<TokenId> NewSequence();
  // Makes `tokens` a base for new sequences: those a request computed, so likely cached.
  void Remember(const std::vector<TokenId>& tokens);
  void Note(std::string op);

  const TreeOpsConfig config_;
  const int bs_;
  ChoiceSource& choices_;
  PrefixCache cache_;

  std::vector<Request> requests_;
  std::vector<BlockId> loose_;                  // private blocks outside any request
  std::deque<std::vector<TokenId>> recent_;     // new sequences share prefixes with these
  std::map<Prefix, Entry, PrefixLess> cached_;  // the model's cache
  absl::flat_hash_map<BlockId, Prefix> owner_;  // cached block -> its prefix
  // Pin key (namespace, whole blocks of the pinned tokens) -> blocks each Pin held, in
  // order: Unpin undoes the last one.
  std::map<Prefix, std::vector<int>> pins_;
  struct NamespaceCounters {
    bool created = false;
    int64_t query_tokens = 0;
    int64_t hit_tokens = 0;
  };
  std::vector<NamespaceCounters> counters_;
  int64_t inserted_ = 0;
  int64_t evicted_ = 0;
  int64_t flushed_ = 0;
  int64_t collisions_ = 0;
  uint64_t clock_ = 0;

  Coverage coverage_;
  // What a router watching the events knows: (namespace index, key) -> blocks with that key.
  using KeyCounts = absl::flat_hash_map<std::pair<int, BlockKey>, int>;
  KeyCounts replica_;
  KeyCounts model_keys_;  // the same, from the model's entries
  uint64_t last_sequence_ = 0;
  std::string event_error_;  // the first inconsistent event, if any

  int64_t steps_ = 0;
  int next_request_id_ = 0;
  std::deque<std::string> history_;
};

}  // namespace prefixd::tree_ops

#endif  // PREFIXD_TESTS_PREFIX_TREE_TREE_OPS_H_
