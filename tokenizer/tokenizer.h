// tokenizer/tokenizer.h — a Hugging Face tokenizer.json with a BPE model: text <-> token ids.
//
// Both BPE flavours of the Llama family load:
//   byte-level  (GPT-2, Llama 3, Qwen2): ByteLevel or Split(regex) + ByteLevel
//               pre-tokenizer, ByteLevel decoder; every byte sequence round-trips.
//   Metaspace   (Llama 2, Mistral): spaces become '▁' (a normalizer or the Metaspace
//               pre-tokenizer), byte_fallback to <0xXX> tokens, a Replace/ByteFallback/
//               Fuse/Strip or Metaspace decoder.
// Also: the NFC normalizer (Qwen2), the Digits pre-tokenizer, Split with any behaviour.
// Added tokens are matched in the text first; TemplateProcessing adds BOS and the like
// when add_special_tokens is set. A component or option outside this set is refused at
// load time with an error naming it, never silently ignored.
//
// Encode matches Hugging Face tokenizers (with the regex caveats in tokenizer_regex.h);
// tests/tokenizer/hf_parity checks both directions against the library itself on real
// vocabularies. Decode matches it wherever the result is valid UTF-8. Where it is not,
// Decode differs on purpose: it returns the bytes as they are, so that any byte string
// round-trips, and a caller that needs valid UTF-8 (a protobuf string field) must
// replace them itself. Hugging Face replaces them, and not always as a lossy UTF-8
// conversion of these bytes would:
//   ByteLevel decoder (Llama 3, Qwen): each maximal invalid sequence in the whole text
//     becomes one U+FFFD (Rust's from_utf8_lossy) — the same as a lossy conversion of
//     Decode's bytes.
//   ByteFallback decoder (<0xXX> tokens: Llama 2, Gemma): each run of consecutive <0xXX>
//     tokens (any other token, an added one too, ends a run) whose bytes are not valid
//     UTF-8 together becomes one U+FFFD per token, even for the characters the run does
//     spell: <0xE4><0xBD><0xA0><0xFF> is "你\xFF" here and four U+FFFD there; <0xFF><0x41>
//     is "\xFFA" here and two U+FFFD there.
#ifndef PREFIXD_TOKENIZER_TOKENIZER_H_
#define PREFIXD_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace prefixd {

using TokenId = int32_t;  // index into the model's vocabulary

class BpeModel;
class AddedTokenMatcher;
struct TokenizerSpec;
class StreamDecoder;

// Immutable after loading: Encode and Decode may run on many threads at once (a bounded,
// locked cache of encoded words is the only shared mutable state).
class Tokenizer {
 public:
  // Errors (InvalidArgument) start with `source_name` and say what is wrong and where:
  // invalid JSON, a missing "model", duplicate or out-of-range ids, a merge naming a token
  // outside the vocabulary, an unsupported component ("pre_tokenizer type 'Whitespace' is
  // not supported").
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json,
                                                             std::string_view source_name);
  // NotFound if the file cannot be opened; otherwise as FromJson, named by `path`.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Any bytes are accepted; invalid UTF-8 is tokenized as bytes (byte-level, or
  // byte_fallback) or as the unknown token. With add_special_tokens the post-processor's
  // template ids (e.g. BOS) surround the result.
  std::vector<TokenId> Encode(std::string_view text, bool add_special_tokens) const;

  // The text of `ids`. Ids with no token (outside [0, vocab_size()) or in a gap of the
  // vocabulary) are skipped, as Hugging Face does; so are special added tokens when
  // skip_special_tokens.
  std::string Decode(absl::Span<const TokenId> ids, bool skip_special_tokens) const;

  int vocab_size() const { return vocab_size_; }  // max id + 1, vocab and added tokens
  std::optional<TokenId> TokenToId(std::string_view token) const;
  // The token's string as the vocabulary spells it ("Ġthe", "▁the", "<s>"); empty if no
  // token has this id.
  std::string_view IdToToken(TokenId id) const;
  // An added token marked "special" (BOS, EOS, chat markers).
  bool IsSpecial(TokenId id) const;

  // The first id the post-processor puts before the text (Llama: <s>, Llama 3:
  // <|begin_of_text|>), if its template adds one.
  std::optional<TokenId> bos_token_id() const;
  // What Encode(text, true) adds around Encode(text, false).
  const std::vector<TokenId>& template_prefix() const { return template_prefix_; }
  const std::vector<TokenId>& template_suffix() const { return template_suffix_; }

 private:
  friend class StreamDecoder;
  Tokenizer();

  // The string a token contributes to Decode at position `index` among the tokens
  // decoded (skipped ones do not count), before the leading strip. False if `id` is
  // skipped: unknown, or special with skip_special_tokens.
  bool AppendDecodedToken(TokenId id, bool skip_special_tokens, int64_t index,
                          std::string& out) const;
  // Runs pre-tokenizer steps [step, end) on normalized text, then BPE on each piece.
  // `at_start`: the text begins the input (Metaspace's prepend_scheme "first").
  void PreTokenizeAndEncode(size_t step, std::string_view text, bool at_start,
                            std::vector<TokenId>& ids) const;

  std::unique_ptr<const TokenizerSpec> spec_;
  std::unique_ptr<const BpeModel> model_;
  // Added tokens by id (index into spec_->added_tokens, -1 for none); over vocab_size_.
  std::vector<int32_t> added_index_by_id_;
  std::unique_ptr<const AddedTokenMatcher> raw_matcher_;         // normalized == false
  std::unique_ptr<const AddedTokenMatcher> normalized_matcher_;  // normalized == true
  std::vector<TokenId> template_prefix_;
  std::vector<TokenId> template_suffix_;
  int vocab_size_ = 0;
};

// Turns generated ids into text as they come, for streaming. The deltas returned by Push
// and Finish, concatenated, equal tokenizer.Decode(ids) (ids: all pushed so far), and no
// delta ends inside a UTF-8 character: bytes that more tokens could complete into a
// character are held back (at most 3). Bytes that can never become valid UTF-8 are
// passed on as Decode passes them. Each Push costs O(size of the token).
//
// Borrows the tokenizer, which must outlive it. One per stream; not thread-safe.
class StreamDecoder {
 public:
  // `context`: ids already in the sequence whose text is not wanted (the prompt). The
  // deltas then add up to Decode(context ++ pushed ids) without its first
  // Decode(context).size() bytes: they read as a continuation (Metaspace drops the space
  // before the first token only, and the first token is in the context).
  StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens,
                absl::Span<const TokenId> context = {});

  // The text that `id` completes; may be empty.
  std::string Push(TokenId id);
  // Whatever is held back, at the end of the stream.
  std::string Finish();
  // Whether bytes are held back: the deltas so far end before the last token's end.
  bool holds_back() const { return !pending_.empty(); }

 private:
  friend class Tokenizer;
  void PushTo(TokenId id, std::string& out);
  void FinishTo(std::string& out);
  // Moves what can be emitted from pending_ to `out`.
  void Drain(bool at_end, std::string& out);

  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  int64_t index_ = 0;        // tokens decoded so far (not counting skipped ones)
  int strip_remaining_ = 0;  // leading characters the decoder may still strip
  std::string pending_;      // decoded bytes not yet emitted
};

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_TOKENIZER_H_
