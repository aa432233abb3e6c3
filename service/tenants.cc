#include "service/tenants.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace prefixd {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr int kMaxWeight = 1000;

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string SharedNamespaceKey(std::string_view name) {
  return absl::StrCat("shared:", std::string(name));
}

TenantDirectory TenantDirectory::Open() {
  TenantDirectory dir;
  // Two faces of one tenant (one namespace): callers on this machine are admins.
  for (const bool admin : {true, false}) {
    auto t = std::make_unique<Tenant>();
    t->name = "default";
    t->admin = admin;
    dir.tenants_.push_back(std::move(t));
  }
  return dir;
}

absl::StatusOr<TenantDirectory> TenantDirectory::FromJson(std::string_view json,
                                                          std::string_view path_view) {
  const std::string path(path_view);
  auto fail = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parts...));
  };
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail("not valid JSON");
  if (!doc.is_object() || !doc.contains("tenants") || !doc["tenants"].is_array()) {
    return fail("expected an object with a \"tenants\" array");
  }
  TenantDirectory dir;
  absl::flat_hash_set<std::string> names;
  const nlohmann::json& list = doc["tenants"];
  if (list.empty()) return fail("\"tenants\" is empty: no call could authenticate");
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& e = list[i];
    const std::string where = absl::StrCat("tenants[", i, "]");
    if (!e.is_object()) return fail(where, " is not an object");
    for (auto it = e.begin(); it != e.end(); ++it) {
      if (it.key() != "name" && it.key() != "tokens" && it.key() != "shared_namespaces" &&
          it.key() != "client_common_names" && it.key() != "admin" &&
          it.key() != "max_pinned_tokens" && it.key() != "max_requests" && it.key() != "weight" &&
          it.key() != "kv_share") {
        return fail(where, " has an unknown field \"", it.key(), "\"");
      }
    }
    auto t = std::make_unique<Tenant>();
    if (!e.contains("name") || !e["name"].is_string()) return fail(where, ".name is missing");
    t->name = e["name"].get<std::string>();
    if (!ValidName(t->name)) {
      return fail(where, ".name \"", t->name, "\" must be 1-64 of [A-Za-z0-9._-]");
    }
    if (!names.insert(t->name).second) return fail("tenant \"", t->name, "\" appears twice");
    if (e.contains("tokens") && !e["tokens"].is_array()) {
      return fail("tenant \"", t->name, "\": tokens must be an array of strings");
    }
    if (e.contains("client_common_names")) {
      if (!e["client_common_names"].is_array()) {
        return fail("tenant \"", t->name, "\": client_common_names must be an array");
      }
      for (const nlohmann::json& cn : e["client_common_names"]) {
        if (!cn.is_string() || cn.get<std::string>().empty()) {
          return fail("tenant \"", t->name, "\": client_common_names must be non-empty strings");
        }
        t->client_common_names.push_back(cn.get<std::string>());
        if (!dir.by_common_name_.emplace(cn.get<std::string>(), t.get()).second) {
          return fail("tenant \"", t->name, "\" reuses the client common name \"",
                      cn.get<std::string>(), "\" of another tenant");
        }
      }
    }
    const bool has_tokens = e.contains("tokens") && !e["tokens"].empty();
    if (!has_tokens && t->client_common_names.empty()) {
      return fail("tenant \"", t->name,
                  "\" has neither \"tokens\" nor \"client_common_names\": nothing could "
                  "authenticate as it");
    }
    for (const nlohmann::json& tok : e.value("tokens", nlohmann::json::array())) {
      if (!tok.is_string())
        return fail("tenant \"", t->name, "\" has a token that is not a string");
      const std::string token = tok.get<std::string>();
      if (token.size() < kMinTokenLength) {
        return fail("tenant \"", t->name, "\" has a token shorter than ", kMinTokenLength,
                    " characters");
      }
      if (!dir.by_token_.emplace(token, t.get()).second) {
        return fail("tenant \"", t->name, "\" reuses a token of another tenant");
      }
    }
    if (e.contains("shared_namespaces")) {
      if (!e["shared_namespaces"].is_array()) {
        return fail("tenant \"", t->name, "\": shared_namespaces must be an array");
      }
      for (const nlohmann::json& ns : e["shared_namespaces"]) {
        if (!ns.is_string() || !ValidName(ns.get<std::string>())) {
          return fail("tenant \"", t->name,
                      "\": shared namespace names must be 1-64 of [A-Za-z0-9._-]");
        }
        t->shared_namespaces.push_back(ns.get<std::string>());
      }
    }
    if (e.contains("admin")) {
      if (!e["admin"].is_boolean())
        return fail("tenant \"", t->name, "\": admin must be a boolean");
      t->admin = e["admin"].get<bool>();
    }
    if (e.contains("max_pinned_tokens")) {
      const nlohmann::json& v = e["max_pinned_tokens"];
      if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        return fail("tenant \"", t->name,
                    "\": max_pinned_tokens must be an integer >= 0 (0: no pins)");
      }
      t->max_pinned_tokens = v.get<int64_t>();
    }
    if (e.contains("max_requests")) {
      const nlohmann::json& v = e["max_requests"];
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > (1 << 30)) {
        return fail("tenant \"", t->name, "\": max_requests must be an integer >= 1");
      }
      t->max_requests = static_cast<int>(v.get<int64_t>());
    }
    if (e.contains("weight")) {
      const nlohmann::json& v = e["weight"];
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxWeight) {
        return fail("tenant \"", t->name, "\": weight must be an integer in [1, ", kMaxWeight, "]");
      }
      t->weight = static_cast<int>(v.get<int64_t>());
    }
    if (e.contains("kv_share")) {
      const nlohmann::json& v = e["kv_share"];
      if (!v.is_number() || !(v.get<double>() >= 0 && v.get<double>() <= 1)) {
        return fail("tenant \"", t->name,
                    "\": kv_share must be a number in [0, 1] (a fraction of the KV cache)");
      }
      t->kv_share = v.get<double>();
    }
    dir.tenants_.push_back(std::move(t));
  }
  // Tenants that give no kv_share split what the others leave, evenly.
  double given = 0;
  int unset = 0;
  for (const auto& t : dir.tenants_) {
    if (t->kv_share >= 0) {
      given += t->kv_share;
    } else {
      ++unset;
    }
  }
  if (given > 1 + 1e-9) {
    return fail("the tenants' kv_share add up to ", given, ", more than the whole KV cache (1)");
  }
  for (auto& t : dir.tenants_) {
    if (t->kv_share < 0) t->kv_share = std::max(0.0, 1 - given) / unset;
  }
  return dir;
}

absl::flat_hash_map<std::string, TenantPolicy> TenantDirectory::Policies() const {
  absl::flat_hash_map<std::string, TenantPolicy> policies;
  if (!requires_identity()) return policies;  // one namespace: nothing to share out
  for (const auto& t : tenants_) {
    policies[t->name] = TenantPolicy{.weight = t->weight, .kv_share = t->kv_share};
  }
  return policies;
}

absl::StatusOr<TenantDirectory> TenantDirectory::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokens file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return FromJson(text.str(), path);
}

absl::StatusOr<const Tenant*> TenantDirectory::Authenticate(
    std::optional<std::string_view> authorization,
    std::optional<std::string_view> client_common_name, std::string_view peer) const {
  if (!requires_identity()) {
    return IsLoopbackPeer(peer) ? tenants_.front().get() : tenants_.back().get();
  }
  const Tenant* by_certificate = nullptr;
  if (client_common_name) {
    auto it = by_common_name_.find(std::string(*client_common_name));
    if (it != by_common_name_.end()) by_certificate = it->second;
  }
  const Tenant* by_token = nullptr;
  if (authorization) {
    constexpr std::string_view kBearer = "Bearer ";
    if (authorization->size() <= kBearer.size() ||
        authorization->substr(0, kBearer.size()) != kBearer) {
      return absl::UnauthenticatedError("authorization metadata must be 'Bearer <token>'");
    }
    auto it = by_token_.find(std::string(authorization->substr(kBearer.size())));
    if (it == by_token_.end()) return absl::UnauthenticatedError("unknown bearer token");
    by_token = it->second;
  }
  if (by_token != nullptr && by_certificate != nullptr && by_token != by_certificate) {
    return absl::PermissionDeniedError(
        "the bearer token and the client certificate belong to different tenants");
  }
  if (by_token != nullptr) return by_token;
  if (by_certificate != nullptr) return by_certificate;
  return absl::UnauthenticatedError(
      "missing 'authorization: Bearer <token>' metadata (or a client certificate whose common "
      "name a tenant lists)");
}

absl::StatusOr<std::string> TenantDirectory::NamespaceFor(const Tenant& tenant,
                                                          std::string_view shared_namespace) {
  if (shared_namespace.empty()) return tenant.name;
  for (const std::string& granted : tenant.shared_namespaces) {
    if (granted == shared_namespace) return SharedNamespaceKey(shared_namespace);
  }
  return absl::PermissionDeniedError(absl::StrCat("tenant \"", tenant.name,
                                                  "\" is not granted the shared namespace \"",
                                                  std::string(shared_namespace), "\""));
}

namespace {

// The address part of "HOST:PORT", "[IPv6]:PORT", or a bare address, without brackets.
std::string_view AddressOf(std::string_view host_port) {
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    return close == std::string_view::npos ? host_port : host_port.substr(1, close - 1);
  }
  const size_t colon = host_port.rfind(':');
  // More than one colon without brackets: a bare IPv6 address.
  if (colon != std::string_view::npos && host_port.find(':') == colon) {
    return host_port.substr(0, colon);
  }
  return host_port;
}

bool IsLoopbackAddress(std::string_view address) {
  const std::string a(address);
  in_addr v4{};
  if (inet_pton(AF_INET, a.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, a.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

}  // namespace

bool IsLoopbackPeer(std::string_view peer) {
  if (peer.starts_with("unix:") || peer.starts_with("unix-abstract:")) return true;
  if (peer.starts_with("ipv4:")) peer.remove_prefix(5);
  if (peer.starts_with("ipv6:")) peer.remove_prefix(5);
  return IsLoopbackAddress(AddressOf(peer));
}

bool IsLoopbackListenAddress(std::string_view listen) {
  if (listen.starts_with("unix:")) return true;
  const std::string_view host = AddressOf(listen);
  return host == "localhost" || IsLoopbackAddress(host);
}

}  // namespace prefixd
