// engine/output_processor.h — from sampled tokens to the text a client sees, and when to stop.
//
// Text is decoded incrementally (never half a UTF-8 character). Text that could be the start
// of a stop string is held back until it is clear that it is not one, so a stop string is
// never emitted, not even partly.
#ifndef PREFIXD_ENGINE_OUTPUT_PROCESSOR_H_
#define PREFIXD_ENGINE_OUTPUT_PROCESSOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "engine/request.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

class OutputProcessor {
 public:
  // `tokenizer` may be null (no text is produced then); it must outlive the processor.
  // `prompt` is the context the completion continues (it decides, e.g., whether the first
  // token's leading space shows). `max_new_tokens` already accounts for the model's context.
  OutputProcessor(const Tokenizer* tokenizer, const SamplingParams& params,
                  absl::Span<const TokenId> prompt, absl::Span<const TokenId> eos_token_ids,
                  int max_new_tokens);

  // Accounts for one sampled token. Returns the text that is now safe to emit, and sets
  // `finish` (otherwise left kNone) when this token ends the request.
  std::string Push(TokenId token, FinishReason& finish);

  int num_generated() const { return num_generated_; }

 private:
  // Emits what cannot be the start of a stop string; keeps the rest in pending_.
  std::string TakeSafeText();

  const Tokenizer* tokenizer_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::vector<std::string> stop_strings_;
  std::vector<TokenId> stop_ids_;  // stop_token_ids, plus EOS unless ignore_eos
  const int max_new_tokens_;
  int num_generated_ = 0;
  std::string pending_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_OUTPUT_PROCESSOR_H_
