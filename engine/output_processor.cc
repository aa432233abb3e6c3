#include "engine/output_processor.h"

#include <algorithm>
#include <cstdint>

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

OutputProcessor::Emitted OutputProcessor::Push(SampledToken sampled, FinishReason& finish) {
  ++num_generated_;
  finish = FinishReason::kNone;
  const TokenId token = sampled.token;
  const bool stop_token = std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end();
  // Special tokens (EOS, chat markers) carry no text for the client; a stop token's text is
  // not emitted either.
  const int64_t start = static_cast<int64_t>(pending_.size());
  if (decoder_ != nullptr && !stop_token && !tokenizer_->IsSpecial(token)) {
    pending_ += decoder_->Push(token);
  }
  held_.push_back({std::move(sampled), start, static_cast<int64_t>(pending_.size())});
  if (!stop_strings_.empty()) {
    size_t first = std::string::npos;
    for (const std::string& stop : stop_strings_) first = std::min(first, pending_.find(stop));
    if (first != std::string::npos) {
      finish = FinishReason::kStop;
      // The text before the stop string, and the tokens that spelled any of it; the ones
      // that only spelled the stop string (or came after it) are dropped.
      Emitted out;
      out.text = pending_.substr(0, first);
      const int64_t cut = static_cast<int64_t>(first);
      for (Held& h : held_) {
        if (h.start < cut || h.end <= cut) out.tokens.push_back(std::move(h.token));
      }
      num_emitted_ += static_cast<int>(out.tokens.size());
      held_.clear();
      pending_.clear();
      return out;
    }
  }
  if (stop_token || num_generated_ >= max_new_tokens_) {
    finish = stop_token ? FinishReason::kStop : FinishReason::kLength;
    Emitted out = Release(pending_.size());
    if (decoder_ != nullptr) out.text += decoder_->Finish();
    return out;
  }
  return Release(pending_.size() - Hold());
}

OutputProcessor::Emitted OutputProcessor::Release(size_t n) {
  Emitted out;
  out.text = pending_.substr(0, n);
  pending_.erase(0, n);
  const int64_t released = static_cast<int64_t>(n);
  while (!held_.empty() && held_.front().end <= released) {
    out.tokens.push_back(std::move(held_.front().token));
    held_.pop_front();
  }
  for (Held& h : held_) {
    h.start -= released;
    h.end -= released;
  }
  num_emitted_ += static_cast<int>(out.tokens.size());
  return out;
}

size_t OutputProcessor::Hold() const {
  // The longest suffix of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stop_strings_) {
    for (size_t n = std::min(stop.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, stop, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

}  // namespace prefixd
