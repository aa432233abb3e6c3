#include "prefix_tree/prefix_cache.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace prefixd {

PrefixCache::PrefixCache(PrefixCacheOptions options)
    : tree_(options.tree),
      pool_(options.num_blocks),
      enabled_(options.enabled),
      cached_(options.num_blocks, false) {}

void PrefixCache::Free(absl::Span<const BlockId> blocks) {
  for (BlockId b : blocks) {
    PREFIXD_CHECK(b < 0 || b >= capacity() || !cached_[b], "block ", b,
                  " belongs to the prefix cache and cannot be freed by a request");
  }
  pool_.Free(blocks);
}

void PrefixCache::TrackEvicted(absl::Span<const BlockId> blocks) {
  for (BlockId b : blocks) cached_[b] = false;
}

PrefixMatch PrefixCache::Match(const CacheNamespace& ns, absl::Span<const TokenId> tokens,
                               bool count) {
  return tree_.Match(ns, enabled_ ? tokens : absl::Span<const TokenId>(), count);
}

InsertResult PrefixCache::Insert(PrefixMatch& match, absl::Span<const TokenId> tokens,
                                 absl::Span<const BlockId> blocks) {
  if (!enabled_) return InsertResult{};
  const int before = match.num_blocks();
  InsertResult result = tree_.Insert(match, tokens, blocks);
  // Blocks the caller passed in that the tree now owns (duplicates stay the caller's).
  size_t dup = 0;
  for (int i = before; i < match.num_blocks(); ++i) {
    while (dup < result.duplicate_indices.size() && result.duplicate_indices[dup] < i) ++dup;
    if (dup < result.duplicate_indices.size() && result.duplicate_indices[dup] == i) continue;
    cached_[match.blocks()[i]] = true;
  }
  return result;
}

absl::StatusOr<std::vector<BlockId>> PrefixCache::Allocate(int n) {
  if (n > num_available()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache full: ", n, " blocks wanted, ", pool_.num_free(), " free and ",
                     tree_.evictable_blocks(), " evictable of ", capacity()));
  }
  if (n > pool_.num_free()) {
    const std::vector<BlockId> evicted = tree_.Evict(n - pool_.num_free());
    TrackEvicted(evicted);
    pool_.Free(evicted);
  }
  return pool_.Allocate(n);
}

absl::Status PrefixCache::Promote(PrefixMatch& match) {
  const int n = match.num_host_blocks();
  if (n == 0) return absl::OkStatus();
  absl::StatusOr<std::vector<BlockId>> blocks = Allocate(n);
  if (!blocks.ok()) return blocks.status();
  for (BlockId b : *blocks) cached_[b] = true;
  tree_.Promote(match, *blocks);
  return absl::OkStatus();
}

absl::StatusOr<int> PrefixCache::Pin(const CacheNamespace& ns, absl::Span<const TokenId> tokens) {
  if (!enabled_) {
    return absl::FailedPreconditionError("the prefix cache is disabled on this server");
  }
  return tree_.Pin(ns, tokens);
}

absl::StatusOr<int> PrefixCache::Unpin(const CacheNamespace& ns, absl::Span<const TokenId> tokens) {
  if (!enabled_) {
    return absl::FailedPreconditionError("the prefix cache is disabled on this server");
  }
  return tree_.Unpin(ns, tokens);
}

int64_t PrefixCache::Flush() {
  std::vector<BlockId> freed = tree_.Flush();
  TrackEvicted(freed);
  pool_.Free(freed);
  return static_cast<int64_t>(freed.size());
}

CacheStats PrefixCache::Stats() const {
  CacheStats s;
  s.block_size = block_size();
  s.enabled = enabled_;
  s.tree = tree_.Stats();
  s.blocks.total = capacity();
  s.blocks.free = pool_.num_free();
  s.blocks.evictable = s.tree.evictable_blocks;
  s.blocks.in_use = s.blocks.total - s.blocks.free - s.blocks.evictable;
  s.blocks.pinned = s.tree.pinned_blocks;
  s.host_blocks.total = s.tree.host_capacity_blocks;
  s.host_blocks.in_use = s.tree.host_held_blocks;
  s.host_blocks.evictable = s.tree.host_cached_blocks - s.tree.host_held_blocks;
  s.host_blocks.free = s.host_blocks.total - s.tree.host_cached_blocks;
  return s;
}

absl::Status PrefixCache::CheckInvariants() const { return CheckAccounting(nullptr); }

absl::Status PrefixCache::CheckInvariants(absl::Span<const BlockId> private_blocks) const {
  std::vector<BlockId> blocks(private_blocks.begin(), private_blocks.end());
  return CheckAccounting(&blocks);
}

absl::Status PrefixCache::CheckAccounting(const std::vector<BlockId>* private_blocks) const {
  if (absl::Status s = tree_.CheckInvariants(); !s.ok()) return s;
  const std::vector<BlockId> cached = tree_.CachedBlockIds();
  absl::flat_hash_set<BlockId> cached_set(cached.begin(), cached.end());
  for (BlockId b : cached) {
    if (b < 0 || b >= capacity()) {
      return absl::InternalError(absl::StrCat("cached block ", b, " is outside the pool"));
    }
    if (pool_.is_free(b)) {
      return absl::InternalError(absl::StrCat("block ", b, " is both cached and free"));
    }
  }
  const int64_t num_private =
      int64_t{capacity()} - pool_.num_free() - static_cast<int64_t>(cached.size());
  if (num_private < 0) {
    return absl::InternalError("more blocks are free or cached than the pool has");
  }
  const CacheStats stats = Stats();
  const BlockCounts& host = stats.host_blocks;
  if (host.free < 0 || host.evictable < 0 || host.in_use < 0 ||
      host.free + host.evictable + host.in_use != host.total) {
    return absl::InternalError(absl::StrCat("host tier states do not add up: free ", host.free,
                                            " + evictable ", host.evictable, " + in use ",
                                            host.in_use, " vs capacity ", host.total));
  }
  if (stats.blocks.free + stats.blocks.evictable + stats.blocks.in_use != stats.blocks.total ||
      stats.blocks.in_use != num_private + stats.tree.held_blocks) {
    return absl::InternalError(absl::StrCat(
        "block states do not add up: free ", stats.blocks.free, " + evictable ",
        stats.blocks.evictable, " + in use ", stats.blocks.in_use, " vs capacity ",
        stats.blocks.total, " (private ", num_private, ", held ", stats.tree.held_blocks, ")"));
  }
  if (private_blocks == nullptr) return absl::OkStatus();
  absl::flat_hash_set<BlockId> seen;
  for (BlockId b : *private_blocks) {
    if (b < 0 || b >= capacity()) {
      return absl::InternalError(absl::StrCat("private block ", b, " is outside the pool"));
    }
    if (!seen.insert(b).second) {
      return absl::InternalError(absl::StrCat("private block ", b, " is held twice"));
    }
    if (pool_.is_free(b)) {
      return absl::InternalError(absl::StrCat("private block ", b, " is also free"));
    }
    if (cached_set.contains(b)) {
      return absl::InternalError(absl::StrCat("private block ", b, " is also cached"));
    }
  }
  if (static_cast<int64_t>(seen.size()) != num_private) {
    return absl::InternalError(absl::StrCat(num_private, " blocks are private but only ",
                                            seen.size(), " are held by requests (a leak)"));
  }
  return absl::OkStatus();
}

}  // namespace prefixd
