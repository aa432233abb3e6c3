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
    // Zeroed once: attention never reads a slot before writing it, but a clean pool makes
    // any such bug loud and deterministic.
    backend.Fill(k.view(), 0.0f);
    backend.Fill(v.view(), 0.0f);
    layers_.push_back(KvCacheLayer{k.view(), v.view()});
    bytes_ += static_cast<int64_t>(k.view().nbytes() + v.view().nbytes());
  }
}

int64_t KvCache::BytesPerBlock(const ModelConfig& config, int block_size, DType dtype) {
  return int64_t{2} * config.num_layers * config.num_kv_heads * block_size * config.head_dim *
         static_cast<int64_t>(DTypeSize(dtype));
}

}  // namespace prefixd
