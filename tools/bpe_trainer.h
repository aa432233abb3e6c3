// tools/bpe_trainer.h — trains a byte-level BPE tokenizer and writes it as tokenizer.json.
//
// For the tiny test model of tools/make-test-model: a real tokenizer, in the format and
// pipeline of Llama 3, learned from a small corpus so that it is deterministic and
// needs nothing from outside. The file it writes:
//   ids 0..255          the 256 bytes, as GPT-2's printable characters in GPT-2's order
//   ids 256..           one token per learned merge, in the order learned
//   last ids            the special tokens, as added_tokens (special: true)
//   pre_tokenizer       Split with the Llama 3 regex, then ByteLevel (no prefix space)
//   post_processor      ByteLevel + TemplateProcessing: the first special token as BOS
//   decoder             ByteLevel
// Unlike Llama 3's file, model.ignore_merges is false: encoding is exactly the learned
// segmentation.
#ifndef PREFIXD_TOOLS_BPE_TRAINER_H_
#define PREFIXD_TOOLS_BPE_TRAINER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace prefixd {

// The pattern Llama 3 (and this trainer) splits text with before BPE.
inline constexpr std::string_view kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Classic BPE: the corpus is split into pre-tokens with kLlama3SplitPattern; then, until
// the vocabulary holds vocab_size - special_tokens.size() tokens, the most frequent
// adjacent pair of tokens within pre-tokens is merged everywhere. Of equally frequent
// pairs the one whose (left, right) strings sort first (bytewise) wins, so the result
// depends only on the arguments: the same input gives the same bytes.
//
// InvalidArgument if vocab_size leaves no room for the 256 byte tokens and the special
// tokens, if a special token is empty or repeated, or if the corpus runs out of pairs
// to merge before the vocabulary is full.
absl::StatusOr<std::string> TrainByteLevelBpeTokenizerJson(
    std::string_view corpus, int vocab_size, const std::vector<std::string>& special_tokens);

}  // namespace prefixd

#endif  // PREFIXD_TOOLS_BPE_TRAINER_H_
