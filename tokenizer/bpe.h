// tokenizer/bpe.h — the BPE model of a tokenizer.json: vocabulary, merges, word encoding.
//
// A word (one pre-token) starts as its characters' ids; then the adjacent pair with the
// lowest merge rank is merged, again and again, until no pair has a merge. This is the
// algorithm of Hugging Face tokenizers (model/bpe/word.rs), with its tie rule: of equal
// ranks, the leftmost pair first. A character missing from the vocabulary becomes its
// <0xXX> byte tokens (byte_fallback) or the unknown token (consecutive ones fused if
// fuse_unk), or is dropped when the model has neither.
#ifndef PREFIXD_TOKENIZER_BPE_H_
#define PREFIXD_TOKENIZER_BPE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace prefixd {

using TokenId = int32_t;  // index into the model's vocabulary

// Ids above this are refused: a tokenizer.json cannot make us allocate gigabytes.
inline constexpr TokenId kMaxTokenId = (1 << 24) - 1;

// The "model" object of a tokenizer.json, as read from the file.
struct BpeModelSpec {
  std::vector<std::pair<std::string, TokenId>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::optional<std::string> unk_token;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a word that is itself in the vocabulary is not split
};

// Immutable after Create() but for a bounded word cache; EncodeWord is thread-safe.
class BpeModel {
 public:
  // Errors name `source_name`: ids that are negative, too large or used twice, merges
  // naming tokens outside the vocabulary, an unknown token missing from it.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const BpeModelSpec& spec,
                                                          std::string_view source_name);

  // Appends the ids of `word`.
  void EncodeWord(std::string_view word, std::vector<TokenId>& out) const;

  std::optional<TokenId> TokenToId(std::string_view token) const;
  // The token with this id; empty if there is none.
  std::string_view IdToToken(TokenId id) const;
  bool HasId(TokenId id) const { return id >= 0 && id < vocab_size() && has_id_[id]; }
  int vocab_size() const { return static_cast<int>(has_id_.size()); }  // max id + 1

 private:
  struct Merge {
    int32_t rank;
    TokenId merged;
  };
  static uint64_t PairKey(TokenId a, TokenId b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  BpeModel() = default;
  void EncodeUncached(std::string_view word, std::vector<TokenId>& out) const;

  absl::flat_hash_map<std::string, TokenId> vocab_;
  // Token id's string is token_bytes_[token_offsets_[id], token_offsets_[id + 1]): 4 bytes
  // per id, so that a sparse vocabulary with a large id costs little.
  std::string token_bytes_;
  std::vector<uint32_t> token_offsets_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::array<TokenId, 256> byte_ids_;  // <0xXX> tokens; -1 where absent or !byte_fallback
  TokenId unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  // Words seen before, sharded so that concurrent encodes rarely wait on each other.
  // A full shard is cleared: memory stays bounded whatever the input.
  struct CacheShard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, std::vector<TokenId>> words ABSL_GUARDED_BY(mu);
  };
  static constexpr int kCacheShards = 16;
  static constexpr size_t kCacheEntriesPerShard = 4096;
  static constexpr size_t kMaxCachedWordBytes = 64;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_BPE_H_
