#include "prefix_tree/block_hash.h"

#include <cstring>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "base/check.h"
#include "xxhash.h"

namespace prefixd {

std::string BlockKey::ToBytes() const {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(hi >> (56 - 8 * i));
    out[8 + i] = static_cast<char>(lo >> (56 - 8 * i));
  }
  return out;
}

std::string BlockKey::ToHex() const { return absl::BytesToHexString(ToBytes()); }

std::string CacheNamespace::DisplayName() const {
  return adapter.empty() ? tenant : tenant + "/" + adapter;
}

BlockKey Xxh3BlockHash(uint64_t seed, const BlockKey& parent, absl::Span<const TokenId> tokens) {
  PREFIXD_CHECK(tokens.size() <= static_cast<size_t>(kMaxBlockSize), "block of ", tokens.size(),
                " tokens");
  // One contiguous buffer: XXH3's one-shot path is about twice as fast as streaming for
  // inputs this small (80 bytes at the default block size).
  alignas(16) unsigned char buf[sizeof(BlockKey) + kMaxBlockSize * sizeof(TokenId)];
  std::memcpy(buf, &parent.lo, 8);
  std::memcpy(buf + 8, &parent.hi, 8);
  const size_t n = tokens.size() * sizeof(TokenId);
  std::memcpy(buf + sizeof(BlockKey), tokens.data(), n);
  const XXH128_hash_t h = XXH3_128bits_withSeed(buf, sizeof(BlockKey) + n, seed);
  return BlockKey{h.low64, h.high64};
}

BlockKey NamespaceKey(uint64_t seed, const CacheNamespace& ns) {
  // Length-prefixed fields, so ("ab", "c") and ("a", "bc") differ.
  std::string buf;
  for (const std::string* field : {&ns.tenant, &ns.model, &ns.adapter}) {
    const uint64_t len = field->size();
    buf.append(reinterpret_cast<const char*>(&len), sizeof(len));
    buf.append(*field);
  }
  const XXH128_hash_t h = XXH3_128bits_withSeed(buf.data(), buf.size(), seed);
  return BlockKey{h.low64, h.high64};
}

uint64_t RandomHashSeed() {
  absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

}  // namespace prefixd
