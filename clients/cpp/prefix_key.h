// clients/cpp/prefix_key.h — the `x-prefix-key` a client sends so that a proxy in front of
// several replicas (deploy/haproxy.cfg) sends requests that share a prefix to one replica.
//
// The key is a short stable hash of what the request will share with others, computed the
// same way by every prefixd client (C++, prefixctl, prefix-bench, Python); the rule, for
// any other client to follow, is in docs/scale-out.md:
//
//   key = 16 lowercase hex digits of XXH64(material, seed 0)
//   material = shared_namespace "\n" kind "\n" part, where by the prompt's kind:
//     chat:  the leading system/developer messages (role "\n" text "\n" each) and the tools
//            JSON; when there is none, the first message alone
//     text:  the first 1024 bytes of the text
//     ids:   the first 256 token ids, in decimal, each followed by ","
#ifndef PREFIXD_CLIENTS_CPP_PREFIX_KEY_H_
#define PREFIXD_CLIENTS_CPP_PREFIX_KEY_H_

#include <string>

#include "prefixd/v1/cache.pb.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd {

inline constexpr char kPrefixKeyHeader[] = "x-prefix-key";
inline constexpr size_t kPrefixKeyTextBytes = 1024;
inline constexpr int kPrefixKeyTokenIds = 256;

// The key for `request`'s prompt (empty when it has none). A Pin or Unpin of a prefix has
// the key of the requests that will share it (for a conversation: its system message).
std::string PrefixKey(const v1::GenerateRequest& request);
std::string PrefixKey(const v1::PinRequest& request);
std::string PrefixKey(const v1::UnpinRequest& request);

}  // namespace prefixd

#endif  // PREFIXD_CLIENTS_CPP_PREFIX_KEY_H_
