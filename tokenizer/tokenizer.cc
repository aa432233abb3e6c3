#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_spec.h"
#include "tokenizer/tokenizer_utf8.h"
#include "tokenizer/unicode_nfc.h"

namespace prefixd {
namespace {

// A tokenizer.json larger than this is not one (Llama 3's is 9 MB).
constexpr int64_t kMaxTokenizerFileBytes = int64_t{512} << 20;

struct Range {
  size_t begin;
  size_t end;
  bool match;
};

// Hugging Face's NormalizedString::split: the matches of `pattern` and the text between
// them, combined as `behavior` says; empty ranges are dropped.
std::vector<Range> SplitRanges(std::string_view text, const TextPattern& pattern,
                               SplitBehavior behavior, bool invert) {
  std::vector<Range> parts;
  size_t prev = 0;
  pattern.ForEachMatch(text, [&](size_t begin, size_t end) {
    if (begin > prev) parts.push_back({prev, begin, invert});
    parts.push_back({begin, end, !invert});
    prev = end;
  });
  if (prev < text.size()) parts.push_back({prev, text.size(), invert});

  std::vector<Range> out;
  out.reserve(parts.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return parts;
    case SplitBehavior::kRemoved:
      for (const Range& r : parts) {
        if (!r.match) out.push_back(r);
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Range& r : parts) {
        if (r.match && !previous_match && !out.empty()) {
          out.back().end = r.end;
        } else {
          out.push_back(r);
        }
        previous_match = r.match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      return out;
    case SplitBehavior::kContiguous:
      for (const Range& r : parts) {
        if (r.match == previous_match && !out.empty()) {
          out.back().end = r.end;
        } else {
          out.push_back(r);
        }
        previous_match = r.match;
      }
      return out;
  }
  return parts;
}

// Calls on_part(begin, end) for each part of SplitRanges, in order.
void ForEachSplit(std::string_view text, const TextPattern& pattern, SplitBehavior behavior,
                  bool invert, absl::FunctionRef<void(size_t, size_t)> on_part) {
  if (behavior == SplitBehavior::kIsolated) {
    // The common case (every byte-level tokenizer), without a list of ranges.
    size_t prev = 0;
    pattern.ForEachMatch(text, [&](size_t begin, size_t end) {
      if (begin > prev) on_part(prev, begin);
      on_part(begin, end);
      prev = end;
    });
    if (prev < text.size()) on_part(prev, text.size());
    return;
  }
  for (const Range& r : SplitRanges(text, pattern, behavior, invert)) on_part(r.begin, r.end);
}

std::string Normalize(const std::vector<NormalizerStep>& normalizer, std::string_view text) {
  std::string s(text);
  for (const NormalizerStep& step : normalizer) {
    switch (step.kind) {
      case NormalizerStep::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.text);
        break;
      case NormalizerStep::Kind::kReplace:
        s = step.pattern.ReplaceAll(s, step.text);
        break;
      case NormalizerStep::Kind::kNfc:
        s = NfcNormalize(s);
        break;
    }
  }
  return s;
}

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int HexValue(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

// One decoder step on one token's string; `index` is the token's position in the output.
void ApplyDecoderStep(const DecoderStep& step, int64_t index, std::string& s) {
  switch (step.kind) {
    case DecoderStep::Kind::kByteLevel: {
      std::string bytes;
      // A token that is not byte-level text (an added token like "<|eot_id|>" is, but
      // one with a space is not) keeps its own bytes, as in Hugging Face.
      if (AppendBytesOfByteLevel(s, bytes)) s = std::move(bytes);
      return;
    }
    case DecoderStep::Kind::kByteFallback:
      if (s.size() == 6 && absl::StartsWith(s, "<0x") && s[5] == '>' && IsHexDigit(s[3]) &&
          IsHexDigit(s[4])) {
        s = std::string(1, static_cast<char>(HexValue(s[3]) * 16 + HexValue(s[4])));
      }
      return;
    case DecoderStep::Kind::kReplace:
      s = step.pattern.ReplaceAll(s, step.content);
      return;
    case DecoderStep::Kind::kMetaspace: {
      // Every replacement character of the first token goes (not only a leading one).
      const bool first = index == 0 && step.prepend_scheme != PrependScheme::kNever;
      absl::StrReplaceAll({{step.replacement, first ? "" : " "}}, &s);
      return;
    }
    case DecoderStep::Kind::kStrip: {
      const std::string_view c = step.content;
      size_t begin = 0;
      for (int i = 0; i < step.strip_start && s.compare(begin, c.size(), c) == 0; ++i) {
        begin += c.size();
      }
      size_t end = s.size();
      for (int i = 0; i < step.strip_stop && end >= begin + c.size() &&
                      s.compare(end - c.size(), c.size(), c) == 0;
           ++i) {
        end -= c.size();
      }
      s = s.substr(begin, end - begin);
      return;
    }
  }
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) {
    return absl::NotFoundError(StrCatStd("cannot open ", path, ": ", std::strerror(errno)));
  }
  const std::streamoff size = file.tellg();
  if (size < 0) return absl::InvalidArgumentError(StrCatStd(path, ": cannot be read as a file"));
  if (size > kMaxTokenizerFileBytes) {
    return absl::InvalidArgumentError(StrCatStd(path, ": ", size, " bytes is more than the ",
                                                kMaxTokenizerFileBytes >> 20,
                                                " MiB a tokenizer.json may have"));
  }
  std::string json(static_cast<size_t>(size), '\0');
  file.seekg(0);
  if (!file.read(json.data(), size)) {
    return absl::DataLossError(StrCatStd(path, ": read failed"));
  }
  return FromJson(json, path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json,
                                                               std::string_view source_name) {
  absl::StatusOr<TokenizerSpec> spec = ParseTokenizerJson(json, source_name);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::unique_ptr<BpeModel>> model = BpeModel::Create(spec->model, source_name);
  if (!model.ok()) return model.status();
  // The vocabulary is not needed after this; the model holds it.
  spec->model.vocab.clear();
  spec->model.vocab.shrink_to_fit();
  spec->model.merges.clear();
  spec->model.merges.shrink_to_fit();

  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->vocab_size_ = (*model)->vocab_size();
  for (const AddedTokenSpec& added : spec->added_tokens) {
    t->vocab_size_ = std::max(t->vocab_size_, added.id + 1);
  }
  t->added_index_by_id_.assign(t->vocab_size_, -1);
  std::vector<AddedTokenSpec> raw, normalized;
  absl::flat_hash_map<std::string, size_t> index_by_content;
  for (size_t i = 0; i < spec->added_tokens.size(); ++i) {
    const AddedTokenSpec& added = spec->added_tokens[i];
    const int32_t other = t->added_index_by_id_[added.id];
    if (other >= 0) {
      return absl::InvalidArgumentError(
          StrCatStd(source_name, ": added_tokens[", i, "]: id ", added.id, " of ",
                    QuoteForMessage(added.content), " is also the id of ",
                    QuoteForMessage(spec->added_tokens[other].content)));
    }
    auto [it, inserted] = index_by_content.try_emplace(added.content, i);
    if (!inserted) {
      return absl::InvalidArgumentError(StrCatStd(source_name, ": added_tokens[", i,
                                                  "]: ", QuoteForMessage(added.content),
                                                  " is already added_tokens[", it->second, "]"));
    }
    t->added_index_by_id_[added.id] = static_cast<int32_t>(i);
    // Without a normalizer, matching in normalized text is matching in the input.
    (added.normalized && !spec->normalizer.empty() ? normalized : raw).push_back(added);
  }
  // Tokens matched in normalized text are looked for, and decoded, in their normalized
  // form (as in Hugging Face: with Llama 2's Prepend("▁") normalizer, "ab" matches only
  // "▁ab" and decodes as " ab").
  for (AddedTokenSpec& added : normalized) {
    added.content = Normalize(spec->normalizer, added.content);
  }
  // One that normalizes to nothing can never match.
  std::erase_if(normalized, [](const AddedTokenSpec& added) { return added.content.empty(); });
  for (AddedTokenSpec& added : spec->added_tokens) {
    added.token_string =
        added.normalized ? Normalize(spec->normalizer, added.content) : added.content;
  }
  t->model_ = *std::move(model);
  t->spec_ = std::make_unique<const TokenizerSpec>(*std::move(spec));
  t->raw_matcher_ = std::make_unique<AddedTokenMatcher>(std::move(raw));
  t->normalized_matcher_ = std::make_unique<AddedTokenMatcher>(std::move(normalized));
  for (auto [pairs, ids] : {std::pair{&t->spec_->template_prefix, &t->template_prefix_},
                            std::pair{&t->spec_->template_suffix, &t->template_suffix_}}) {
    for (const auto& [name, id] : *pairs) {
      if (t->IdToToken(id).empty()) {
        return absl::InvalidArgumentError(StrCatStd(source_name, ": post_processor: special token ",
                                                    QuoteForMessage(name), " has id ", id,
                                                    ", which is not in the vocabulary"));
      }
      ids->push_back(id);
    }
  }
  return t;
}

std::optional<TokenId> Tokenizer::TokenToId(std::string_view token) const {
  for (const AddedTokenSpec& added : spec_->added_tokens) {
    if (added.content == token) return added.id;
  }
  return model_->TokenToId(token);
}

std::string_view Tokenizer::IdToToken(TokenId id) const {
  if (id < 0 || id >= vocab_size_) return {};
  const int32_t added = added_index_by_id_[id];
  if (added >= 0) return spec_->added_tokens[added].token_string;
  return model_->IdToToken(id);
}

bool Tokenizer::IsSpecial(TokenId id) const {
  if (id < 0 || id >= vocab_size_) return false;
  const int32_t added = added_index_by_id_[id];
  return added >= 0 && spec_->added_tokens[added].special;
}

std::optional<TokenId> Tokenizer::bos_token_id() const {
  if (template_prefix_.empty()) return std::nullopt;
  return template_prefix_.front();
}

void Tokenizer::PreTokenizeAndEncode(size_t step, std::string_view text, bool at_start,
                                     std::vector<TokenId>& ids) const {
  if (text.empty()) return;
  if (step == spec_->pre_tokenizer.size()) {
    model_->EncodeWord(text, ids);
    return;
  }
  // Each piece goes through the remaining steps as soon as it is cut: no list of all the
  // pieces of a long text is ever built.
  const PreTokenizerStep& s = spec_->pre_tokenizer[step];
  auto next = [&](std::string_view piece, bool piece_at_start) {
    PreTokenizeAndEncode(step + 1, piece, piece_at_start, ids);
  };
  switch (s.kind) {
    case PreTokenizerStep::Kind::kByteLevel: {
      std::string spaced;
      if (s.add_prefix_space && text.front() != ' ') {
        spaced = StrCatStd(" ", text);
        text = spaced;
      }
      auto map_bytes = [&](std::string_view piece, bool piece_at_start) {
        std::string mapped;
        AppendByteLevel(piece, mapped);
        next(mapped, piece_at_start);
      };
      if (s.use_regex) {
        ForEachSplit(text, s.pattern, SplitBehavior::kIsolated, false, [&](size_t b, size_t e) {
          map_bytes(text.substr(b, e - b), at_start && b == 0);
        });
      } else {
        map_bytes(text, at_start);
      }
      return;
    }
    case PreTokenizerStep::Kind::kSplit:
      ForEachSplit(text, s.pattern, s.behavior, s.invert,
                   [&](size_t b, size_t e) { next(text.substr(b, e - b), at_start && b == 0); });
      return;
    case PreTokenizerStep::Kind::kMetaspace: {
      std::string replaced = absl::StrReplaceAll(AbslView(text), {{" ", s.replacement}});
      const bool prepend = !absl::StartsWith(replaced, s.replacement) &&
                           (s.prepend_scheme == PrependScheme::kAlways ||
                            (s.prepend_scheme == PrependScheme::kFirst && at_start));
      if (prepend) replaced.insert(0, s.replacement);
      if (s.split) {
        const std::string_view whole = replaced;
        ForEachSplit(whole, s.pattern, SplitBehavior::kMergedWithNext, false,
                     [&](size_t b, size_t e) { next(whole.substr(b, e - b), at_start && b == 0); });
      } else {
        next(replaced, at_start);
      }
      return;
    }
  }
}

std::vector<TokenId> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + template_prefix_.size() + template_suffix_.size());
  if (add_special_tokens) ids.insert(ids.end(), template_prefix_.begin(), template_prefix_.end());
  // Added tokens are found in the input first (and, for those marked "normalized", in
  // each stretch between them once normalized); the rest goes through the pipeline.
  raw_matcher_->Split(
      text, [&](std::string_view stretch, size_t offset, std::optional<TokenId> token) {
        if (token.has_value()) {
          ids.push_back(*token);
          return;
        }
        if (spec_->normalizer.empty()) {
          PreTokenizeAndEncode(0, stretch, offset == 0, ids);
          return;
        }
        const std::string normalized = Normalize(spec_->normalizer, stretch);
        normalized_matcher_->Split(normalized, [&](std::string_view sub, size_t sub_offset,
                                                   std::optional<TokenId> sub_token) {
          if (sub_token.has_value()) {
            ids.push_back(*sub_token);
          } else {
            PreTokenizeAndEncode(0, sub, offset == 0 && sub_offset == 0, ids);
          }
        });
      });
  if (add_special_tokens) ids.insert(ids.end(), template_suffix_.begin(), template_suffix_.end());
  return ids;
}

bool Tokenizer::AppendDecodedToken(TokenId id, bool skip_special_tokens, int64_t index,
                                   std::string& out) const {
  const std::string_view token = IdToToken(id);
  if (token.empty()) return false;
  if (skip_special_tokens && IsSpecial(id)) return false;
  const DecoderSpec& decoder = spec_->decoder;
  if (decoder.join_with_space && index > 0) out += ' ';
  if (decoder.per_token.empty()) {
    out.append(token);
    return true;
  }
  std::string s(token);
  for (const DecoderStep& step : decoder.per_token) ApplyDecoderStep(step, index, s);
  out += s;
  return true;
}

std::string Tokenizer::Decode(absl::Span<const TokenId> ids, bool skip_special_tokens) const {
  // One-shot decoding is streaming decoding in one go: the two cannot disagree.
  StreamDecoder stream(*this, skip_special_tokens);
  std::string out;
  for (TokenId id : ids) stream.PushTo(id, out);
  stream.FinishTo(out);
  return out;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens,
                             absl::Span<const TokenId> context)
    : tokenizer_(&tokenizer),
      skip_special_tokens_(skip_special_tokens),
      strip_remaining_(tokenizer.spec_->decoder.leading_strip_count) {
  std::string discarded;
  for (TokenId id : context) PushTo(id, discarded);
  // Held-back bytes belong to the context's text too; a character they start and the
  // next token completes comes out as the completing bytes only.
  pending_.clear();
}

std::string StreamDecoder::Push(TokenId id) {
  std::string out;
  PushTo(id, out);
  return out;
}

std::string StreamDecoder::Finish() {
  std::string out;
  FinishTo(out);
  return out;
}

void StreamDecoder::PushTo(TokenId id, std::string& out) {
  if (!tokenizer_->AppendDecodedToken(id, skip_special_tokens_, index_, pending_)) return;
  ++index_;
  Drain(/*at_end=*/false, out);
}

void StreamDecoder::FinishTo(std::string& out) { Drain(/*at_end=*/true, out); }

void StreamDecoder::Drain(bool at_end, std::string& out) {
  const std::string& strip = tokenizer_->spec_->decoder.leading_strip;
  while (strip_remaining_ > 0 && !pending_.empty()) {
    if (absl::StartsWith(pending_, strip)) {
      pending_.erase(0, strip.size());
      --strip_remaining_;
    } else if (!at_end && absl::StartsWith(strip, pending_)) {
      return;  // byte tokens may yet complete the character to strip
    } else {
      strip_remaining_ = 0;
    }
  }
  const size_t n = at_end ? pending_.size() : CompleteUtf8PrefixLength(pending_);
  out.append(pending_, 0, n);
  pending_.erase(0, n);
}

}  // namespace prefixd
