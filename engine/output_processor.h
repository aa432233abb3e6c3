// engine/output_processor.h — from sampled tokens to the text a client sees, and when to stop.
//
// Text is decoded incrementally (never half a UTF-8 character). Text that could be the start
// of a stop string is held back until it is clear that it is not one, so a stop string is
// never emitted, not even partly; a token is held with its text, so when a stop string
// cuts the text, the tokens that only spelled the stop string are dropped too, and the
// token ids a client receives (and completion_tokens) match the text it receives.
#ifndef PREFIXD_ENGINE_OUTPUT_PROCESSOR_H_
#define PREFIXD_ENGINE_OUTPUT_PROCESSOR_H_

#include <deque>
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

  // What may go to the client now: text, and the tokens whose text it completes (with
  // their logprobs), in order.
  struct Emitted {
    std::string text;
    std::vector<SampledToken> tokens;
  };

  // Accounts for one sampled token. Returns what is now safe to emit, and sets `finish`
  // (otherwise left kNone) when this token ends the request (then everything left is
  // emitted, or dropped after a stop string).
  Emitted Push(SampledToken token, FinishReason& finish);

  int num_generated() const { return num_generated_; }  // sampled, emitted or not
  int num_emitted() const { return num_emitted_; }      // tokens handed out by Push

 private:
  // A sampled token whose text is pending_[start, end) (start < 0: its first bytes were
  // emitted already).
  struct Held {
    SampledToken token;
    int64_t start;
    int64_t end;
  };

  // Emits pending_[0, n) and the held tokens whose text ends within it.
  Emitted Release(size_t n);
  // How much of pending_'s end could be the start of a stop string.
  size_t Hold() const;

  const Tokenizer* tokenizer_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::vector<std::string> stop_strings_;
  std::vector<TokenId> stop_ids_;  // stop_token_ids, plus EOS unless ignore_eos
  const int max_new_tokens_;
  int num_generated_ = 0;
  int num_emitted_ = 0;
  std::string pending_;
  std::deque<Held> held_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_OUTPUT_PROCESSOR_H_
