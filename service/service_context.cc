#include "service/service_context.h"

#include <optional>

namespace prefixd {

absl::StatusOr<const Tenant*> ServiceContext::Authenticate(
    const grpc::CallbackServerContext& ctx) const {
  if (draining.load()) return absl::UnavailableError("the server is shutting down");
  std::optional<std::string_view> authorization;
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = std::string_view(it->second.data(), it->second.size());
  }
  return tenants->Authenticate(authorization);
}

absl::StatusOr<CacheNamespace> ServiceContext::Namespace(
    const Tenant& tenant, const std::string& shared_namespace) const {
  absl::StatusOr<std::string> key = TenantDirectory::NamespaceFor(tenant, shared_namespace);
  if (!key.ok()) return key.status();
  return CacheNamespace{*std::move(key), engine->model_id(), ""};
}

std::vector<std::string> ServiceContext::VisibleNamespaces(const Tenant& tenant) {
  std::vector<std::string> names = {tenant.name};
  for (const std::string& shared : tenant.shared_namespaces) {
    names.push_back(SharedNamespaceKey(shared));
  }
  return names;
}

}  // namespace prefixd
