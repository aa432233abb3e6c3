// prefix_tree/block_pool.h — the free list of the KV pool's BlockIds.
#ifndef PREFIXD_PREFIX_TREE_BLOCK_POOL_H_
#define PREFIXD_PREFIX_TREE_BLOCK_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "prefix_tree/block_hash.h"

namespace prefixd {

// Hands out BlockIds in [0, capacity). Knows only free vs taken; who holds a taken block
// (a request, or the tree) is the PrefixCache's business. Not thread-safe.
class BlockPool {
 public:
  explicit BlockPool(int32_t capacity);

  int32_t capacity() const { return static_cast<int32_t>(is_free_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  bool is_free(BlockId block) const { return is_free_.at(block); }

  // Takes `n` blocks; ResourceExhausted (and takes none) when fewer are free.
  absl::StatusOr<std::vector<BlockId>> Allocate(int n);
  // Returns taken blocks. Freeing a free block or an id out of range crashes.
  void Free(absl::Span<const BlockId> blocks);

 private:
  std::vector<BlockId> free_;  // a stack: the most recently freed block is reused first
  std::vector<bool> is_free_;
};

}  // namespace prefixd

#endif  // PREFIXD_PREFIX_TREE_BLOCK_POOL_H_
