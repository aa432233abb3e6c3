#include "prefix_tree/block_pool.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace prefixd {

BlockPool::BlockPool(int32_t capacity) : is_free_(capacity, true) {
  PREFIXD_CHECK(capacity > 0, "a block pool needs at least one block, got ", capacity);
  free_.reserve(capacity);
  // Lowest ids on top of the stack: a fresh pool hands out 0, 1, 2, ...
  for (BlockId b = capacity - 1; b >= 0; --b) free_.push_back(b);
}

absl::StatusOr<std::vector<BlockId>> BlockPool::Allocate(int n) {
  PREFIXD_CHECK(n >= 0, "negative allocation");
  if (n > num_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV pool: ", n, " blocks wanted, ", num_free(), " free"));
  }
  std::vector<BlockId> out(free_.end() - n, free_.end());
  free_.resize(free_.size() - n);
  for (BlockId b : out) is_free_[b] = false;
  return out;
}

void BlockPool::Free(absl::Span<const BlockId> blocks) {
  for (BlockId b : blocks) {
    PREFIXD_CHECK(b >= 0 && b < capacity(), "block id ", b, " is outside the pool [0, ", capacity(),
                  ")");
    PREFIXD_CHECK(!is_free_[b], "block ", b, " freed twice");
    is_free_[b] = true;
    free_.push_back(b);
  }
}

}  // namespace prefixd
