// engine/kv_cache.h — device memory of the paged KV cache.
//
// Per layer, K and V are [num_blocks, Hkv, block_size, d] in the backend's compute dtype.
// BlockIds handed out by the PrefixCache index the first dimension of every layer at once.
#ifndef PREFIXD_ENGINE_KV_CACHE_H_
#define PREFIXD_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "engine/model_config.h"
#include "kernels/kernels.h"

namespace prefixd {

class KvCache {
 public:
  // Allocates num_blocks blocks on `backend`, which must outlive the cache.
  KvCache(Backend& backend, const ModelConfig& config, int32_t num_blocks, int block_size);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Device bytes one block takes across all layers, K and V.
  static int64_t BytesPerBlock(const ModelConfig& config, int block_size, DType dtype);

  int32_t num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  KvCacheLayer& layer(int i) { return layers_[i]; }
  int64_t bytes() const { return bytes_; }

 private:
  int32_t num_blocks_;
  int block_size_;
  int64_t bytes_ = 0;
  std::vector<DeviceTensor> storage_;  // k and v of every layer
  std::vector<KvCacheLayer> layers_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_KV_CACHE_H_
