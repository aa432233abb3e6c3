#include "service/service_context.h"

#include <chrono>
#include <optional>

#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/auth_context.h"

namespace prefixd {

absl::StatusOr<const Tenant*> ServiceContext::Authenticate(
    const grpc::CallbackServerContext& ctx) const {
  if (draining.load()) return absl::UnavailableError("the server is shutting down");
  std::optional<std::string_view> authorization;
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    authorization = std::string_view(it->second.data(), it->second.size());
  }
  // With mutual TLS, gRPC has verified the client's certificate; its common name may name
  // the tenant.
  std::optional<std::string> common_name;
  if (std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
      auth != nullptr && auth->IsPeerAuthenticated()) {
    const std::vector<grpc::string_ref> names =
        auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
    if (!names.empty()) common_name = std::string(names.front().data(), names.front().size());
  }
  return tenants->Authenticate(authorization, common_name, ctx.peer());
}

absl::StatusOr<CacheNamespace> ServiceContext::Namespace(
    const Tenant& tenant, const std::string& shared_namespace) const {
  absl::StatusOr<std::string> key = TenantDirectory::NamespaceFor(tenant, shared_namespace);
  if (!key.ok()) return key.status();
  return CacheNamespace{*std::move(key), engine->model_id(), ""};
}

absl::Time ServiceContext::Deadline(const grpc::CallbackServerContext& ctx) {
  const auto deadline = ctx.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

std::vector<std::string> ServiceContext::VisibleNamespaces(const Tenant& tenant) {
  std::vector<std::string> names = {tenant.name};
  for (const std::string& shared : tenant.shared_namespaces) {
    names.push_back(SharedNamespaceKey(shared));
  }
  return names;
}

}  // namespace prefixd
