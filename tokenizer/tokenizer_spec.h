// tokenizer/tokenizer_spec.h — a tokenizer.json, read and checked; the Tokenizer runs it.
//
// Only what prefixd supports has a representation here; ParseTokenizerJson refuses any
// other component or option with an error naming it. The pipeline, as in Hugging Face
// tokenizers:
//
//   text ─▶ split on added tokens ─▶ normalizer ─▶ pre-tokenizer (pieces) ─▶ BPE per piece
//        ─▶ post-processor (template ids around the sequence)
//   ids ─▶ token strings ─▶ decoder steps per token ─▶ concatenation ─▶ leading strip
#ifndef PREFIXD_TOKENIZER_TOKENIZER_SPEC_H_
#define PREFIXD_TOKENIZER_TOKENIZER_SPEC_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_regex.h"

namespace prefixd {

// A Split/Replace pattern: {"String": s} (matched literally) or {"Regex": r}.
struct TextPattern {
  std::string literal;                 // when regex is null; never empty
  std::shared_ptr<const Regex> regex;  // shared by copies of a spec

  // Calls on_match(begin, end) for each non-overlapping match, left to right.
  void ForEachMatch(std::string_view text,
                    absl::FunctionRef<void(size_t begin, size_t end)> on_match) const;
  // `text` with every match replaced by `content`.
  std::string ReplaceAll(std::string_view text, std::string_view content) const;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Metaspace: where the replacement character is put in front of a piece.
enum class PrependScheme { kFirst, kAlways, kNever };

struct NormalizerStep {
  enum class Kind { kPrepend, kReplace, kNfc };
  Kind kind;
  std::string text;     // kPrepend: the prefix; kReplace: the content
  TextPattern pattern;  // kReplace
};

struct PreTokenizerStep {
  enum class Kind { kByteLevel, kSplit, kMetaspace };
  Kind kind;
  // kByteLevel: a space in front of pieces that do not start with one; splitting with
  // GPT-2's pattern when use_regex.
  bool add_prefix_space = false;
  bool use_regex = false;
  // kSplit, and the cut points of kByteLevel (use_regex) and kMetaspace (split)
  TextPattern pattern;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  // kMetaspace: spaces become `replacement` (one character); with `split`, the text is
  // cut before each one (`pattern` holds it).
  std::string replacement;
  PrependScheme prepend_scheme = PrependScheme::kAlways;
  bool split = true;
};

// A decoder step that maps each token's string on its own (everything before "Fuse").
struct DecoderStep {
  enum class Kind { kByteLevel, kByteFallback, kReplace, kMetaspace, kStrip };
  Kind kind;
  TextPattern pattern;      // kReplace
  std::string content;      // kReplace: the replacement; kStrip: the character stripped
  std::string replacement;  // kMetaspace
  PrependScheme prepend_scheme = PrependScheme::kAlways;  // kMetaspace
  int strip_start = 0;  // kStrip: at most this many `content` characters at the start
  int strip_stop = 0;   // kStrip: ... and at the end
};

struct DecoderSpec {
  std::vector<DecoderStep> per_token;
  bool join_with_space = false;  // no decoder at all: tokens are joined with " "
  // A Strip after Fuse: up to `leading_strip_count` `leading_strip` characters are
  // removed from the start of the whole text.
  std::string leading_strip;
  int leading_strip_count = 0;
};

struct AddedTokenSpec {
  TokenId id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;       // the match takes the whitespace before it
  bool rstrip = false;       // ... and after it
  bool single_word = false;  // matches only between non-word characters
  bool normalized = false;   // matched in normalized text rather than the raw input
  // The token's string for IdToToken and the decoder: `content`, normalized if
  // `normalized` (as in Hugging Face). Set by the Tokenizer.
  std::string token_string;
};

struct TokenizerSpec {
  BpeModelSpec model;
  std::vector<AddedTokenSpec> added_tokens;
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  // The post-processor with add_special_tokens: prefix ++ ids ++ suffix. Each id comes
  // with the name the template gave it, for error messages.
  std::vector<std::pair<std::string, TokenId>> template_prefix;
  std::vector<std::pair<std::string, TokenId>> template_suffix;
  DecoderSpec decoder;
};

// GPT-2's pre-tokenization pattern, which ByteLevel applies when use_regex is true.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Reads a tokenizer.json. Errors start with `source_name` and name the field and the
// problem: invalid JSON, a missing or mistyped field, an unsupported component or option.
// Checks that need the vocabulary (ids, merges) are BpeModel's and Tokenizer's.
absl::StatusOr<TokenizerSpec> ParseTokenizerJson(std::string_view json,
                                                 std::string_view source_name);

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_TOKENIZER_SPEC_H_
