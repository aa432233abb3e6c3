// prefix_tree/block_hash.h — keys of token blocks: chained XXH3-128.
//
//   key(first block)  = H(seed, namespace_key ‖ tokens of the block)
//   key(block i > 0)  = H(seed, key(block i-1) ‖ tokens of block i)
//   namespace_key     = XXH3-128(seed, tenant ‖ model ‖ adapter)   (length-prefixed)
//
// A key is an index into the tree, never a proof: every hit is confirmed by comparing
// token ids, so a collision (accidental or crafted) cannot hand one prompt another's KV.
#ifndef PREFIXD_PREFIX_TREE_BLOCK_HASH_H_
#define PREFIXD_PREFIX_TREE_BLOCK_HASH_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/types/span.h"

namespace prefixd {

using TokenId = int32_t;  // index into the model's vocabulary
using BlockId = int32_t;  // index into the KV pool

struct BlockKey {
  uint64_t lo = 0;
  uint64_t hi = 0;

  friend bool operator==(const BlockKey& a, const BlockKey& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
  friend bool operator!=(const BlockKey& a, const BlockKey& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const BlockKey& k) {
    return H::combine(std::move(h), k.lo, k.hi);
  }
  // 16 bytes, big-endian (hi then lo): the wire form in CacheEvent.
  std::string ToBytes() const;
  std::string ToHex() const;
};

// The cache namespace: blocks are shared only between requests of one namespace.
// `tenant` is the caller's tenant or a shared namespace the server granted it.
struct CacheNamespace {
  std::string tenant;
  std::string model;
  std::string adapter;  // empty: the base model

  friend bool operator==(const CacheNamespace& a, const CacheNamespace& b) {
    return a.tenant == b.tenant && a.model == b.model && a.adapter == b.adapter;
  }
  template <typename H>
  friend H AbslHashValue(H h, const CacheNamespace& ns) {
    return H::combine(std::move(h), ns.tenant, ns.model, ns.adapter);
  }
  // "tenant", or "tenant/adapter" when an adapter is set; for stats and events.
  std::string DisplayName() const;
};

// Hash of one block given its parent's key. Injectable so tests can force collisions.
using BlockHashFn = BlockKey (*)(uint64_t seed, const BlockKey& parent,
                                 absl::Span<const TokenId> tokens);

// XXH3-128 over (parent ‖ tokens). Blocks of up to kMaxBlockSize tokens.
BlockKey Xxh3BlockHash(uint64_t seed, const BlockKey& parent, absl::Span<const TokenId> tokens);

BlockKey NamespaceKey(uint64_t seed, const CacheNamespace& ns);

// A fresh random seed, for one process.
uint64_t RandomHashSeed();

inline constexpr int kMaxBlockSize = 256;

}  // namespace prefixd

#endif  // PREFIXD_PREFIX_TREE_BLOCK_HASH_H_
