#include "service/reply_memory.h"

#include <utility>

#include "service/convert.h"

namespace prefixd {

std::string ReplyMemory::Key(const CacheNamespace& ns, std::string_view prompt_text) {
  std::string key;
  key.reserve(ns.tenant.size() + ns.model.size() + ns.adapter.size() + 3 + prompt_text.size());
  key.append(ns.tenant).push_back('\0');
  key.append(ns.model).push_back('\0');
  key.append(ns.adapter).push_back('\0');
  key.append(prompt_text);
  return key;
}

void ReplyMemory::Remember(const CacheNamespace& ns, std::string_view prompt_text, Turn turn) {
  if (max_bytes_ == 0 || turn.reply_ids.empty()) return;
  Entry entry;
  entry.key = Key(ns, prompt_text);
  entry.bytes = entry.key.size() + sizeof(Entry) +
                (turn.prompt_ids.size() + turn.reply_ids.size()) * sizeof(TokenId);
  if (entry.bytes > max_bytes_) return;
  entry.turn = std::make_shared<const Turn>(std::move(turn));
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(entry.key); it != index_.end()) {
    bytes_ -= it->second->bytes;
    auto old = it->second;
    index_.erase(it);
    lru_.erase(old);
  }
  bytes_ += entry.bytes;
  lru_.push_front(std::move(entry));
  index_.emplace(lru_.front().key, lru_.begin());
  while (bytes_ > max_bytes_) {
    const Entry& last = lru_.back();
    bytes_ -= last.bytes;
    index_.erase(last.key);
    lru_.pop_back();
  }
}

std::shared_ptr<const ReplyMemory::Turn> ReplyMemory::Find(const CacheNamespace& ns,
                                                           std::string_view prompt_text) {
  if (max_bytes_ == 0) return nullptr;
  const std::string key = Key(ns, prompt_text);
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);  // iterators stay valid
  return it->second->turn;
}

size_t ReplyMemory::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

size_t ReplyMemory::entries() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

std::optional<std::vector<TokenId>> AssembleWithReply(const Tokenizer& tokenizer,
                                                      const ReplyMemory::Turn& turn,
                                                      std::string_view previous_prompt_text,
                                                      std::string_view text) {
  if (!text.starts_with(previous_prompt_text)) return std::nullopt;
  const std::string_view rest = text.substr(previous_prompt_text.size());
  // The reply's text as the client received it: decoded in the prompt's context, special
  // tokens skipped, bytes that are not UTF-8 replaced by U+FFFD (a text field cannot carry
  // them; the decoder never splits a character, so replacing per delta is the same as per
  // message). A token counts only once all its bytes are out and they match `rest`.
  StreamDecoder decoder(tokenizer, /*skip_special_tokens=*/true, turn.prompt_ids);
  size_t matched_tokens = 0;
  size_t matched_bytes = 0;
  size_t emitted = 0;
  // Special tokens carry no text for the client: the model generated them, so they stay.
  size_t i = 0;
  for (; i < turn.reply_ids.size(); ++i) {
    const std::string delta = SanitizeUtf8(decoder.Push(turn.reply_ids[i]));
    if (rest.substr(emitted, delta.size()) != delta) break;
    emitted += delta.size();
    if (!decoder.holds_back()) {
      matched_tokens = i + 1;
      matched_bytes = emitted;
    }
  }
  if (i == turn.reply_ids.size() && decoder.holds_back()) {
    // The stream's end flushed what was held back.
    const std::string delta = SanitizeUtf8(decoder.Finish());
    if (rest.substr(emitted, delta.size()) == delta) {
      matched_tokens = i;
      matched_bytes = emitted + delta.size();
    }
  }
  if (matched_tokens == 0) return std::nullopt;
  std::vector<TokenId> ids = turn.prompt_ids;
  ids.insert(ids.end(), turn.reply_ids.begin(), turn.reply_ids.begin() + matched_tokens);
  const std::vector<TokenId> tail =
      tokenizer.Encode(rest.substr(matched_bytes), /*add_special_tokens=*/false);
  ids.insert(ids.end(), tail.begin(), tail.end());
  return ids;
}

}  // namespace prefixd
