// tokenizer/added_tokens.h — finds a tokenizer's added tokens ("<|eot_id|>", "<s>") in text.
//
// As in Hugging Face tokenizers: literal matches, leftmost first and of those the longest,
// not overlapping; a single_word token matches only between non-word characters; lstrip /
// rstrip tokens take the whitespace beside them into the match.
#ifndef PREFIXD_TOKENIZER_ADDED_TOKENS_H_
#define PREFIXD_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "tokenizer/tokenizer_spec.h"

namespace prefixd {

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(std::vector<AddedTokenSpec> tokens);

  bool empty() const { return tokens_.empty(); }

  // Cuts `text` into non-empty stretches, in order, covering all of it: each is either an
  // added token's match (`token` is its id) or text between matches (`token` is nullopt).
  // `offset` is where the stretch starts in `text`.
  void Split(
      std::string_view text,
      absl::FunctionRef<void(std::string_view stretch, size_t offset, std::optional<TokenId> token)>
          on_stretch) const;

 private:
  // The longest token whose content starts at text[pos]: its index, or -1.
  int LongestMatchAt(std::string_view text, size_t pos, size_t& length) const;

  std::vector<AddedTokenSpec> tokens_;
  // A byte trie of the contents: node 0 is the root; edge (node << 8 | byte) -> child.
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> token_at_node_;    // index into tokens_ ending at the node, or -1
  std::array<bool, 256> starts_token_{};  // a content starts with this byte
};

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_ADDED_TOKENS_H_
