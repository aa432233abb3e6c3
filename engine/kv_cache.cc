#include "engine/kv_cache.h"

#include <algorithm>

#include "base/check.h"

namespace prefixd {

KvCache::KvCache(Backend& backend, const ModelConfig& config, int32_t num_blocks, int block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  const DType dtype = backend.compute_dtype();
  storage_.reserve(2 * config.num_layers);  // references below must stay valid
  for (int i = 0; i < config.num_layers; ++i) {
    const int64_t blocks = int64_t{num_blocks} + 1;  // and the pad block
    DeviceTensor& k = storage_.emplace_back(
        backend.Allocate(dtype, {blocks, config.num_kv_heads, block_size, config.head_dim}));
    DeviceTensor& v = storage_.emplace_back(
        backend.Allocate(dtype, {blocks, config.num_kv_heads, block_size, config.head_dim}));
    // Not initialised: attention reads only positions below a sequence's context length,
    // and RopeAndStoreKv has written each of those by then. Touching the whole pool here
    // would cost seconds of page faults at start-up for nothing (on the CPU, memory is
    // committed as blocks are first used).
    layers_.push_back(KvCacheLayer{k.view(), v.view()});
    bytes_ += static_cast<int64_t>(k.view().nbytes() + v.view().nbytes());
  }
}

int64_t KvCache::BytesPerBlock(const ModelConfig& config, int block_size, DType dtype) {
  return int64_t{2} * config.num_layers * config.num_kv_heads * block_size * config.head_dim *
         static_cast<int64_t>(DTypeSize(dtype));
}

HostKvCache::HostKvCache(Backend& backend, KvCache& device, int32_t max_blocks, int64_t slab_bytes)
    : backend_(backend),
      device_(device),
      max_blocks_(max_blocks),
      layer_block_bytes_(device.num_layers() == 0
                             ? 0
                             : static_cast<int64_t>(device.layer(0).k.nbytes()) /
                                   device.layer(0).k.dim(0)),  // the pad block included
      slot_bytes_(2 * device.num_layers() * layer_block_bytes_) {
  slots_per_slab_ = static_cast<int32_t>(
      std::clamp<int64_t>(slab_bytes / std::max<int64_t>(slot_bytes_, 1), 1, max_blocks_));
}

HostKvCache::~HostKvCache() {
  backend_.Synchronize();
  for (void* slab : slabs_) backend_.FreeHost(slab);
}

int32_t HostKvCache::Grow(int32_t n) {
  int32_t added = 0;
  while (added < n && usable_ < max_blocks_) {
    const int32_t slots = std::min(slots_per_slab_, max_blocks_ - usable_);
    void* slab = backend_.AllocateHost(static_cast<size_t>(slots) * slot_bytes_);
    if (slab == nullptr) {
      ++stats_.allocation_failures;
      break;
    }
    slabs_.push_back(slab);
    stats_.bytes_allocated += int64_t{slots} * slot_bytes_;
    usable_ += slots;
    added += slots;
  }
  return added;
}

char* HostKvCache::Slot(BlockId slot) const {
  PREFIXD_CHECK(slot >= 0 && slot < usable_, "host slot ", slot, " of ", usable_, " usable");
  return static_cast<char*>(slabs_[slot / slots_per_slab_]) +
         int64_t{slot % slots_per_slab_} * slot_bytes_;
}

void HostKvCache::Queue(absl::Span<const BlockTransfer> transfers,
                        BlockTransfer::Direction direction) {
  copies_.clear();
  const bool to_host = direction == BlockTransfer::Direction::kToHost;
  for (const BlockTransfer& t : transfers) {
    if (t.direction != direction) continue;
    PREFIXD_CHECK(t.device >= 0 && t.device < device_.num_blocks(), "device block ", t.device,
                  " out of the pool");
    char* host = Slot(t.host);
    for (int l = 0; l < device_.num_layers(); ++l) {
      const KvCacheLayer& layer = device_.layer(l);
      char* k = static_cast<char*>(layer.k.data) + int64_t{t.device} * layer_block_bytes_;
      char* v = static_cast<char*>(layer.v.data) + int64_t{t.device} * layer_block_bytes_;
      char* hk = host + int64_t{2 * l} * layer_block_bytes_;
      char* hv = hk + layer_block_bytes_;
      const size_t n = static_cast<size_t>(layer_block_bytes_);
      copies_.push_back(to_host ? Backend::MemCopy{hk, k, n} : Backend::MemCopy{k, hk, n});
      copies_.push_back(to_host ? Backend::MemCopy{hv, v, n} : Backend::MemCopy{v, hv, n});
    }
    (to_host ? stats_.bytes_to_host : stats_.bytes_to_device) += slot_bytes_;
  }
  backend_.CopyAsync(copies_,
                     to_host ? Backend::CopyDirection::kToHost : Backend::CopyDirection::kToDevice);
}

void HostKvCache::Run(absl::Span<const BlockTransfer> transfers) {
  Queue(transfers, BlockTransfer::Direction::kToHost);
  backend_.WaitForCopies();
  Queue(transfers, BlockTransfer::Direction::kToDevice);
}

}  // namespace prefixd
