// service/tenants.h — who is calling, and which cache namespace their requests use.
//
// Without a tokens file every call is in one namespace ("default"): a single-team setup.
// There, only callers on this machine (loopback or a Unix socket) are admins; the server
// refuses to listen on other addresses in that mode unless told to
// (--allow_unauthenticated).
// With one, each call must carry `authorization: Bearer <token>`; the token's tenant is the
// cache namespace. A tenant may also use the shared namespaces the file grants it (e.g. a
// public system prompt several teams share). The namespace never comes from the request
// body: a request may only *pick* one of the shared namespaces its tenant is granted.
//
// With mutual TLS, a client certificate whose common name a tenant lists identifies that
// tenant too (a bearer token may then be left out; if both are given they must agree).
//
// Tokens file (JSON):
//   {"tenants": [
//     {"name": "acme", "tokens": ["<secret>", ...], "client_common_names": ["acme-svc"],
//      "shared_namespaces": ["public"], "admin": false, "max_pinned_tokens": 65536,
//      "max_requests": 64, "weight": 1, "kv_share": 0.25}
//   ]}
// Names: 1-64 of [A-Za-z0-9._-]. Tokens: at least 16 characters, unique across tenants.
// Every tenant needs a token or a client common name. Admins may see every namespace's
// stats, flush the cache and watch cache events.
#ifndef PREFIXD_SERVICE_TENANTS_H_
#define PREFIXD_SERVICE_TENANTS_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/request.h"

namespace prefixd {

struct Tenant {
  std::string name;
  std::vector<std::string> shared_namespaces;
  std::vector<std::string> client_common_names;
  bool admin = false;
  // Tokens this tenant may keep pinned at once, over all its namespaces; -1: the server's
  // default (an eighth of the KV cache).
  int64_t max_pinned_tokens = -1;
  // Generate calls (and completions) this tenant may have queued or running at once; more
  // get RESOURCE_EXHAUSTED, and no one else notices. -1: only the server's queue limit.
  int max_requests = -1;
  // Its turns when requests queue: tenants are served in weighted round robin.
  int weight = 1;
  // Its guaranteed share of the KV cache (a fraction): eviction does not take its own
  // namespace's cached blocks below it while another holds more than its share. Tenants
  // that give none split what the others leave evenly.
  double kv_share = -1;
};

class TenantDirectory {
 public:
  // Every call is the tenant "default": an admin when it comes from this machine.
  static TenantDirectory Open();
  static absl::StatusOr<TenantDirectory> FromJson(std::string_view json, std::string_view path);
  static absl::StatusOr<TenantDirectory> FromFile(const std::string& path);

  // False without a tokens file: every call is the one default tenant.
  bool requires_identity() const { return !by_token_.empty() || !by_common_name_.empty(); }
  int num_tenants() const { return static_cast<int>(tenants_.size()); }

  // The tenant of a call given its `authorization` metadata value, the common name of its
  // verified client certificate (nullopt: absent) and its peer (gRPC's "ipv4:1.2.3.4:5",
  // "ipv6:[::1]:5", "unix:...", or "HOST:PORT"; only used without a tokens file).
  // UNAUTHENTICATED when neither names a tenant (or the token is malformed or unknown);
  // PERMISSION_DENIED when they name two.
  absl::StatusOr<const Tenant*> Authenticate(
      std::optional<std::string_view> authorization,
      std::optional<std::string_view> client_common_name = std::nullopt,
      std::string_view peer = "") const;

  // Each tenant's weight and KV share, by the name its requests and own namespace carry;
  // empty without a tokens file.
  absl::flat_hash_map<std::string, TenantPolicy> Policies() const;

  // The cache namespace (the `tenant` field of CacheNamespace) for a request of `tenant`
  // that asks for `shared_namespace` (empty: its own). PERMISSION_DENIED if not granted.
  static absl::StatusOr<std::string> NamespaceFor(const Tenant& tenant,
                                                  std::string_view shared_namespace);

 private:
  std::vector<std::unique_ptr<Tenant>> tenants_;
  absl::flat_hash_map<std::string, const Tenant*> by_token_;
  absl::flat_hash_map<std::string, const Tenant*> by_common_name_;
};

// Shared namespaces live apart from tenants' own: "shared:<name>" (tenant names have no ':').
std::string SharedNamespaceKey(std::string_view name);

// Whether a peer (as for Authenticate) is on this machine: 127.0.0.0/8, ::1, IPv4-mapped
// loopback, or a Unix socket.
bool IsLoopbackPeer(std::string_view peer);
// Whether a listen address (HOST:PORT, [IPv6]:PORT) only accepts this machine's
// connections: localhost, 127.0.0.0/8 or [::1]. 0.0.0.0, [::] and other hosts do not.
bool IsLoopbackListenAddress(std::string_view listen);

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_TENANTS_H_
