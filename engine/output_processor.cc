#include "engine/output_processor.h"

#include <algorithm>

namespace prefixd {

OutputProcessor::OutputProcessor(const Tokenizer* tokenizer, const SamplingParams& params,
                                 absl::Span<const TokenId> prompt,
                                 absl::Span<const TokenId> eos_token_ids, int max_new_tokens)
    : tokenizer_(tokenizer),
      stop_strings_(params.stop),
      stop_ids_(params.stop_token_ids),
      max_new_tokens_(max_new_tokens) {
  if (tokenizer_ != nullptr) {
    decoder_ = std::make_unique<StreamDecoder>(*tokenizer_, /*skip_special_tokens=*/true, prompt);
  }
  if (!params.ignore_eos)
    stop_ids_.insert(stop_ids_.end(), eos_token_ids.begin(), eos_token_ids.end());
}

std::string OutputProcessor::Push(TokenId token, FinishReason& finish) {
  ++num_generated_;
  finish = FinishReason::kNone;
  const bool stop_token = std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end();
  // Special tokens (EOS, chat markers) carry no text for the client; a stop token's text is
  // not emitted either.
  if (decoder_ != nullptr && !stop_token && !tokenizer_->IsSpecial(token)) {
    pending_ += decoder_->Push(token);
  }
  if (!stop_strings_.empty()) {
    size_t first = std::string::npos;
    for (const std::string& stop : stop_strings_) first = std::min(first, pending_.find(stop));
    if (first != std::string::npos) {
      finish = FinishReason::kStop;
      std::string text = pending_.substr(0, first);
      pending_.clear();
      return text;
    }
  }
  if (stop_token || num_generated_ >= max_new_tokens_) {
    finish = stop_token ? FinishReason::kStop : FinishReason::kLength;
    std::string text = std::move(pending_);
    pending_.clear();
    if (decoder_ != nullptr) text += decoder_->Finish();
    return text;
  }
  return TakeSafeText();
}

std::string OutputProcessor::TakeSafeText() {
  // Hold back the longest suffix of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stop_strings_) {
    for (size_t n = std::min(stop.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, stop, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return text;
}

}  // namespace prefixd
