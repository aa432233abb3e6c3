// engine/kv_cache.h — device memory of the paged KV cache.
//
// Per layer, K and V are [num_blocks + 1, Hkv, block_size, d] in the backend's compute
// dtype. BlockIds handed out by the PrefixCache (0 .. num_blocks - 1) index the first
// dimension of every layer at once; the last block, pad_block(), is never handed out: the
// padding sequences of a decode graph's step write and read there (engine/llama_model.h).
#ifndef PREFIXD_ENGINE_KV_CACHE_H_
#define PREFIXD_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/model_config.h"
#include "kernels/kernels.h"
#include "prefix_tree/radix_tree.h"

namespace prefixd {

class KvCache {
 public:
  // Allocates num_blocks blocks and the pad block on `backend`, which must outlive the cache.
  KvCache(Backend& backend, const ModelConfig& config, int32_t num_blocks, int block_size);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Device bytes one block takes across all layers, K and V.
  static int64_t BytesPerBlock(const ModelConfig& config, int block_size, DType dtype);

  int32_t num_blocks() const { return num_blocks_; }  // the blocks the PrefixCache hands out
  int32_t pad_block() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  KvCacheLayer& layer(int i) { return layers_[i]; }
  int64_t bytes() const { return bytes_; }

 private:
  int32_t num_blocks_;
  int block_size_;
  int64_t bytes_ = 0;
  std::vector<DeviceTensor> storage_;  // k and v of every layer
  std::vector<KvCacheLayer> layers_;
};

// Counters of the host tier's memory and copies, since start.
struct HostKvStats {
  int64_t bytes_allocated = 0;  // host memory taken so far (grows in slabs, never shrinks)
  int64_t bytes_to_host = 0;    // demotions
  int64_t bytes_to_device = 0;  // promotions
  int64_t allocation_failures = 0;
};

// The host tier's memory: slot s holds one block of every layer, K then V per layer, in
// host memory the backend copies to and from fast (Backend::AllocateHost). Memory is taken
// in slabs as the tier fills (RadixTreeOptions::grow_host), so a large --host_kv_cache_bytes
// costs nothing until blocks are evicted; a slab the system refuses stops the growth.
class HostKvCache {
 public:
  // At most `max_blocks` slots, in slabs of about `slab_bytes`. `backend` and `device` must
  // outlive it.
  HostKvCache(Backend& backend, KvCache& device, int32_t max_blocks,
              int64_t slab_bytes = int64_t{256} << 20);
  ~HostKvCache();
  HostKvCache(const HostKvCache&) = delete;
  HostKvCache& operator=(const HostKvCache&) = delete;

  int32_t max_blocks() const { return max_blocks_; }
  int64_t bytes_per_block() const { return slot_bytes_; }
  // Makes at least `n` more slots usable if it can (whole slabs); returns how many.
  int32_t Grow(int32_t n);
  // Carries out a batch of the cache's transfers (PrefixCache::TakeTransfers): the
  // demotions, then a wait so that the next ops (which may overwrite the demoted blocks)
  // come after them, then the promotions, which overlap those ops (the blocks they fill
  // are used from the next batch on, which waits for them).
  void Run(absl::Span<const BlockTransfer> transfers);
  const HostKvStats& stats() const { return stats_; }

 private:
  char* Slot(BlockId slot) const;
  void Queue(absl::Span<const BlockTransfer> transfers, BlockTransfer::Direction direction);

  Backend& backend_;
  KvCache& device_;
  const int32_t max_blocks_;
  const int64_t layer_block_bytes_;  // one block of one layer's K (or V)
  const int64_t slot_bytes_;         // 2 * layers * layer_block_bytes_
  int32_t slots_per_slab_ = 1;
  std::vector<void*> slabs_;
  int32_t usable_ = 0;
  std::vector<Backend::MemCopy> copies_;  // reused between batches
  HostKvStats stats_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_KV_CACHE_H_
