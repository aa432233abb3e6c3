// Fuzzes config.json parsing: a config either validates (and then everything the engine
// derives from it is well defined) or is refused with a Status.
#include <cmath>
#include <cstdint>
#include <string_view>

#include "base/check.h"
#include "engine/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  auto config = prefixd::ParseModelConfig(json, "config.json");
  if (!config.ok()) return 0;
  PREFIXD_CHECK(config->num_heads % config->num_kv_heads == 0, "heads");
  PREFIXD_CHECK(config->head_dim % 2 == 0 && config->head_dim > 0, "head_dim");
  PREFIXD_CHECK(config->max_context_len() > 0, "context");
  // Derived values a valid config promises: finite frequencies and a parameter count.
  if (config->head_dim <= 4096) {
    for (float f : config->RopeInvFreq()) PREFIXD_CHECK(std::isfinite(f) && f > 0, "inv_freq");
  }
  PREFIXD_CHECK(config->NumParameters() > 0, "parameters");
  (void)config->Summary();
  return 0;
}
