// service/pin_ledger.h — every pin the server holds, and whose it is.
//
// The prefix tree counts pins per block; it does not know tenants. The ledger does: a
// tenant's pins count against its quota (distinct prefixes, in tokens; pinning a prefix it
// already pinned again nests and costs nothing more), all pins together against a share of
// the KV cache, a tenant may unpin only its own pins, and admins list every pin (tenant,
// namespace, length, age) and unpin any by id. Thread-safe.
#ifndef PREFIXD_SERVICE_PIN_LEDGER_H_
#define PREFIXD_SERVICE_PIN_LEDGER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prefix_tree/block_hash.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

class PinLedger {
 public:
  struct Pin {
    uint64_t id = 0;
    std::string tenant;  // who pinned it
    CacheNamespace ns;
    std::vector<TokenId> tokens;  // the full blocks pinned
    int count = 0;                // nested pins of this prefix by this tenant
    absl::Time created;
  };

  // `max_total_tokens`: all pins together; `default_tenant_tokens`: a tenant's quota when
  // its entry in the tokens file sets none.
  PinLedger(int64_t max_total_tokens, int64_t default_tenant_tokens)
      : max_total_tokens_(max_total_tokens), default_tenant_tokens_(default_tenant_tokens) {}

  int64_t default_tenant_tokens() const { return default_tenant_tokens_; }

  // Before a Pin runs: reserves `tokens` (full blocks) of `tenant`'s quota `limit` (-1:
  // the default) and of the total, unless the tenant already pins this prefix.
  // RESOURCE_EXHAUSTED, naming the quota, when it does not fit. Every Reserve is followed
  // by Commit or Cancel with the same arguments.
  absl::Status Reserve(const std::string& tenant, int64_t limit, const CacheNamespace& ns,
                       const std::vector<TokenId>& tokens);
  // The Pin succeeded: the prefix is pinned once more by `tenant`. Returns its pin id.
  uint64_t Commit(const std::string& tenant, const CacheNamespace& ns,
                  const std::vector<TokenId>& tokens);
  // The Pin failed: the reservation is returned.
  void Cancel(const std::string& tenant, const CacheNamespace& ns,
              const std::vector<TokenId>& tokens);

  // Takes one nesting of `tenant`'s pin of this prefix; NOT_FOUND if it has none.
  absl::StatusOr<Pin> Release(const std::string& tenant, const CacheNamespace& ns,
                              const std::vector<TokenId>& tokens);
  // An admin's unpin: takes every nesting of pin `id`; NOT_FOUND if there is no such pin.
  absl::StatusOr<Pin> ReleaseById(uint64_t id);
  // Every pin, oldest first, and (TakeAll) the ledger emptied.
  std::vector<Pin> List() const;
  std::vector<Pin> TakeAll();

  int64_t tenant_tokens(const std::string& tenant) const;
  int64_t total_tokens() const;

 private:
  struct Key {
    std::string tenant;
    CacheNamespace ns;
    std::vector<TokenId> tokens;
    friend bool operator==(const Key& a, const Key& b) {
      return a.tenant == b.tenant && a.ns == b.ns && a.tokens == b.tokens;
    }
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.tenant, k.ns, k.tokens);
    }
  };
  void Unaccount(const Pin& pin) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t max_total_tokens_;
  const int64_t default_tenant_tokens_;
  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<Key, Pin> pins_ ABSL_GUARDED_BY(mu_);
  // Tokens pinned or reserved, per tenant and in all.
  absl::flat_hash_map<std::string, int64_t> tenant_tokens_ ABSL_GUARDED_BY(mu_);
  int64_t total_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  // Reservations in flight per key (a prefix being pinned by two calls at once costs once).
  absl::flat_hash_map<Key, int> reserved_ ABSL_GUARDED_BY(mu_);
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_PIN_LEDGER_H_
