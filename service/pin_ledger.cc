#include "service/pin_ledger.h"

#include <algorithm>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace prefixd {

absl::Status PinLedger::Reserve(const std::string& tenant, int64_t limit, const CacheNamespace& ns,
                                const std::vector<TokenId>& tokens) {
  const Key key{tenant, ns, tokens};
  const int64_t cost = static_cast<int64_t>(tokens.size());
  const int64_t quota = limit >= 0 ? limit : default_tenant_tokens_;
  absl::MutexLock lock(&mu_);
  int& in_flight = reserved_[key];
  // Pinned already, or being pinned: nesting costs nothing more.
  if (pins_.contains(key) || in_flight > 0) {
    ++in_flight;
    return absl::OkStatus();
  }
  int64_t& mine = tenant_tokens_[tenant];
  if (mine + cost > quota) {
    reserved_.erase(key);
    return absl::ResourceExhaustedError(
        absl::StrCat("pin quota: tenant \"", tenant, "\" pins ", mine, " tokens; ", cost,
                     " more would pass its ", quota,
                     " (max_pinned_tokens in the tokens file); unpin something first"));
  }
  if (total_tokens_ + cost > max_total_tokens_) {
    reserved_.erase(key);
    return absl::ResourceExhaustedError(
        absl::StrCat("pins hold ", total_tokens_, " tokens of the server's ", max_total_tokens_,
                     " for pins (half the KV cache); ", cost, " more do not fit"));
  }
  mine += cost;
  total_tokens_ += cost;
  ++in_flight;
  return absl::OkStatus();
}

uint64_t PinLedger::Commit(const std::string& tenant, const CacheNamespace& ns,
                           const std::vector<TokenId>& tokens) {
  Key key{tenant, ns, tokens};
  absl::MutexLock lock(&mu_);
  if (auto r = reserved_.find(key); r != reserved_.end() && --r->second <= 0) reserved_.erase(r);
  auto [it, inserted] = pins_.try_emplace(std::move(key));
  Pin& pin = it->second;
  if (inserted) {
    pin.id = next_id_++;
    pin.tenant = tenant;
    pin.ns = ns;
    pin.tokens = tokens;
    pin.created = absl::Now();
  }
  ++pin.count;
  return pin.id;
}

void PinLedger::Cancel(const std::string& tenant, const CacheNamespace& ns,
                       const std::vector<TokenId>& tokens) {
  const Key key{tenant, ns, tokens};
  absl::MutexLock lock(&mu_);
  auto r = reserved_.find(key);
  if (r == reserved_.end()) return;
  const bool last = --r->second <= 0;
  if (last) reserved_.erase(r);
  // The tokens were charged by the first reservation unless the prefix is pinned.
  if (last && !pins_.contains(key)) {
    const int64_t cost = static_cast<int64_t>(tokens.size());
    tenant_tokens_[tenant] -= cost;
    total_tokens_ -= cost;
  }
}

void PinLedger::Unaccount(const Pin& pin) {
  const int64_t cost = static_cast<int64_t>(pin.tokens.size());
  tenant_tokens_[pin.tenant] -= cost;
  total_tokens_ -= cost;
}

absl::StatusOr<PinLedger::Pin> PinLedger::Release(const std::string& tenant,
                                                  const CacheNamespace& ns,
                                                  const std::vector<TokenId>& tokens) {
  absl::MutexLock lock(&mu_);
  auto it = pins_.find(Key{tenant, ns, tokens});
  if (it == pins_.end()) {
    return absl::NotFoundError(absl::StrCat("tenant \"", tenant,
                                            "\" has no pin of this prefix in namespace \"",
                                            ns.DisplayName(), "\""));
  }
  Pin released = it->second;
  released.count = 1;
  if (--it->second.count == 0) {
    Unaccount(it->second);
    pins_.erase(it);
  }
  return released;
}

absl::StatusOr<PinLedger::Pin> PinLedger::ReleaseById(uint64_t id) {
  absl::MutexLock lock(&mu_);
  for (auto it = pins_.begin(); it != pins_.end(); ++it) {
    if (it->second.id != id) continue;
    Pin released = std::move(it->second);
    Unaccount(released);
    pins_.erase(it);
    return released;
  }
  return absl::NotFoundError(absl::StrCat("no pin has id ", id, " (ListPins shows them)"));
}

std::vector<PinLedger::Pin> PinLedger::List() const {
  std::vector<Pin> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, pin] : pins_) out.push_back(pin);
  }
  std::sort(out.begin(), out.end(), [](const Pin& a, const Pin& b) { return a.id < b.id; });
  return out;
}

std::vector<PinLedger::Pin> PinLedger::TakeAll() {
  std::vector<Pin> out;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, pin] : pins_) {
      Unaccount(pin);
      out.push_back(std::move(pin));
    }
    pins_.clear();
  }
  std::sort(out.begin(), out.end(), [](const Pin& a, const Pin& b) { return a.id < b.id; });
  return out;
}

int64_t PinLedger::tenant_tokens(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = tenant_tokens_.find(tenant);
  return it == tenant_tokens_.end() ? 0 : it->second;
}

int64_t PinLedger::total_tokens() const {
  absl::MutexLock lock(&mu_);
  return total_tokens_;
}

}  // namespace prefixd
