// service/reply_memory.h — the token ids of recent chat replies, so that a chat's next turn
// runs the ids the model generated rather than a re-tokenization of their text.
//
// A chat's next turn repeats the previous prompt and the assistant's reply as text. Run
// through the tokenizer again, a reply does not always give back the ids the model
// generated (BPE prefers its own merges to the ones a model happens to sample), and from
// the first difference on, the cache cannot serve the blocks the reply filled. When the
// rendered prompt of the turn before the last assistant message is remembered here, in the
// same namespace, the prompt is assembled from that turn's ids, the generated ids as far as
// their text matches the message, and the tokenization of the rest.
//
// Keys are the full namespace and prompt text, compared exactly: a hash collision cannot
// hand one caller another's ids. Bounded by bytes; least recently used entries go first.
#ifndef PREFIXD_SERVICE_REPLY_MEMORY_H_
#define PREFIXD_SERVICE_REPLY_MEMORY_H_

#include <cstddef>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "prefix_tree/block_hash.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

// Thread-safe.
class ReplyMemory {
 public:
  struct Turn {
    std::vector<TokenId> prompt_ids;  // as the model ran them
    std::vector<TokenId> reply_ids;   // generated, without a final stop token
  };

  explicit ReplyMemory(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Remembers the turn whose rendered prompt was `prompt_text`.
  void Remember(const CacheNamespace& ns, std::string_view prompt_text, Turn turn);
  // The turn remembered for exactly this namespace and prompt text, or null.
  std::shared_ptr<const Turn> Find(const CacheNamespace& ns, std::string_view prompt_text);

  size_t bytes() const;
  size_t entries() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Turn> turn;
    size_t bytes = 0;
  };
  static std::string Key(const CacheNamespace& ns, std::string_view prompt_text);

  const size_t max_bytes_;
  mutable absl::Mutex mu_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
  absl::flat_hash_map<std::string_view, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// The ids of `text` (rendered by a chat template) when the turn remembered for
// `previous_prompt_text`, a prefix of `text`, is reused: that turn's prompt ids, then its
// reply ids as long as their decoded text (as the client received it: special tokens
// skipped, invalid UTF-8 as U+FFFD) matches `text` token for token, then the tokenization
// of the rest without special tokens.
// Returns nothing when not even one reply token matches.
std::optional<std::vector<TokenId>> AssembleWithReply(const Tokenizer& tokenizer,
                                                      const ReplyMemory::Turn& turn,
                                                      std::string_view previous_prompt_text,
                                                      std::string_view text);

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_REPLY_MEMORY_H_
