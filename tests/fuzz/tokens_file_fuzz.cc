// Fuzzes the tenants' tokens file: it loads or is refused; a loaded one authenticates only
// with the exact bearer tokens it lists.
#include <cstdint>
#include <string_view>

#include "base/check.h"
#include "service/tenants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  auto dir = prefixd::TenantDirectory::FromJson(json, "tokens.json");
  if (!dir.ok()) return 0;
  PREFIXD_CHECK(dir->requires_identity(), "a loaded tokens file requires an identity");
  PREFIXD_CHECK(!dir->Authenticate(std::nullopt).ok(), "no token must not authenticate");
  PREFIXD_CHECK(!dir->Authenticate("Bearer ").ok(), "an empty token must not authenticate");
  PREFIXD_CHECK(!dir->Authenticate(json).ok() || json.substr(0, 7) == "Bearer ", "raw header");
  return 0;
}
