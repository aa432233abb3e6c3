// prefix_tree/prefix_cache.h — the radix tree and the block pool behind one interface.
//
// This is what the engine's scheduler uses. Every block of the pool is in exactly one
// state: free (in the pool), private (allocated to one request, not in the tree), or
// cached (owned by the tree: in use while a request holds it or it is pinned, evictable
// otherwise). Invariant: free + evictable + in_use == capacity, where in_use counts the
// private blocks and the held cached ones.
//
// With a host tier (RadixTreeOptions::host_blocks), evicted blocks move to host slots and
// stay cached there; a Match that reaches them must Promote() them into device blocks
// before use. The same invariant holds on that tier, over its capacity: free (including
// slots not yet backed by memory) + evictable + in_use (on a held path) == capacity.
#ifndef PREFIXD_PREFIX_TREE_PREFIX_CACHE_H_
#define PREFIXD_PREFIX_TREE_PREFIX_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "prefix_tree/block_pool.h"
#include "prefix_tree/radix_tree.h"

namespace prefixd {

struct PrefixCacheOptions {
  int32_t num_blocks = 0;
  RadixTreeOptions tree;
  // false: nothing is ever cached or shared; every request computes its whole prompt.
  // For comparisons (cache on vs off) and for debugging.
  bool enabled = true;
};

struct BlockCounts {
  int64_t total = 0;
  int64_t free = 0;
  int64_t evictable = 0;
  int64_t in_use = 0;  // private blocks + cached blocks held by requests or pins
  int64_t pinned = 0;  // cached and pinned (a subset of in_use)
};

struct CacheStats {
  int block_size = 0;
  bool enabled = true;
  BlockCounts blocks;
  BlockCounts host_blocks;  // the host tier (total 0 without one; pinned always 0)
  TreeStats tree;
};

// Not thread-safe: owned by the scheduler thread.
class PrefixCache {
 public:
  explicit PrefixCache(PrefixCacheOptions options);

  int block_size() const { return tree_.block_size(); }
  bool enabled() const { return enabled_; }
  int32_t capacity() const { return pool_.capacity(); }
  // Blocks an allocation can get: free now, or after evicting.
  int64_t num_available() const { return pool_.num_free() + tree_.evictable_blocks(); }

  // See RadixTree. With the cache disabled, Match holds nothing and Insert stores nothing.
  PrefixMatch Match(const CacheNamespace& ns, absl::Span<const TokenId> tokens, bool count = true);
  void CountLookup(const CacheNamespace& ns, const PrefixMatch& match, int64_t query_tokens) {
    tree_.CountLookup(ns, match, enabled_ ? query_tokens : 0);
  }
  InsertResult Insert(PrefixMatch& match, absl::Span<const TokenId> tokens,
                      absl::Span<const BlockId> blocks);
  void Release(PrefixMatch& match) { tree_.Release(match); }
  // Allocates device blocks for the host blocks of `match` (evicting as Allocate does) and
  // promotes them (RadixTree::Promote); ResourceExhausted, changing nothing, when the pool
  // cannot give that many.
  absl::Status Promote(PrefixMatch& match);
  // The copies between the tiers queued since the last call (RadixTree::TakeTransfers).
  std::vector<BlockTransfer> TakeTransfers() { return tree_.TakeTransfers(); }
  bool has_host_tier() const { return tree_.has_host_tier(); }

  // `n` private blocks; evicts least recently used cached blocks when the free list is
  // short. ResourceExhausted (and nothing taken) when free + evictable < n.
  absl::StatusOr<std::vector<BlockId>> Allocate(int n);
  // Returns private blocks to the free list. Freeing a block the tree owns crashes.
  void Free(absl::Span<const BlockId> blocks);

  // FailedPrecondition when the cache is disabled; see RadixTree for the rest.
  absl::StatusOr<int> Pin(const CacheNamespace& ns, absl::Span<const TokenId> tokens);
  absl::StatusOr<int> Unpin(const CacheNamespace& ns, absl::Span<const TokenId> tokens);
  // Drops every evictable block; returns how many were freed.
  int64_t Flush();

  CacheStats Stats() const;
  // See RadixTree::HotPrefixes: a walk of the whole tree.
  std::vector<HotPrefix> HotPrefixes(int k) const { return tree_.HotPrefixes(k); }
  const RadixTree& tree() const { return tree_; }
  void SetEventSink(CacheEventSink sink) { tree_.SetEventSink(std::move(sink)); }

  // Tree invariants, plus: every cached block is taken in the pool, and
  // free + evictable + in_use == capacity. When the caller knows every private block
  // (the union of its requests' block tables minus cached blocks), pass them: each must
  // be taken, not cached, listed once, and together they must be all the private blocks.
  absl::Status CheckInvariants() const;
  absl::Status CheckInvariants(absl::Span<const BlockId> private_blocks) const;

 private:
  absl::Status CheckAccounting(const std::vector<BlockId>* private_blocks) const;

  // Marks what the tree stores after an insert and what it gave back after an eviction.
  void TrackEvicted(absl::Span<const BlockId> blocks);

  RadixTree tree_;
  BlockPool pool_;
  const bool enabled_;
  std::vector<bool> cached_;  // cached_[b]: the tree owns block b
};

}  // namespace prefixd

#endif  // PREFIXD_PREFIX_TREE_PREFIX_CACHE_H_
