#include "engine/kv_cache.h"

namespace prefixd {

KvCache::KvCache(Backend& backend, const ModelConfig& config, int32_t num_blocks, int block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  const DType dtype = backend.compute_dtype();
  storage_.reserve(2 * config.num_layers);  // references below must stay valid
  for (int i = 0; i < config.num_layers; ++i) {
    DeviceTensor& k = storage_.emplace_back(
        backend.Allocate(dtype, {num_blocks, config.num_kv_heads, block_size, config.head_dim}));
    DeviceTensor& v = storage_.emplace_back(
        backend.Allocate(dtype, {num_blocks, config.num_kv_heads, block_size, config.head_dim}));
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

}  // namespace prefixd
