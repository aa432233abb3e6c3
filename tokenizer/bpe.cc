#include "tokenizer/bpe.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {
namespace {

// One symbol of a word being merged; symbols form a doubly linked list in word order.
struct Symbol {
  TokenId id;  // -1 once merged into its left neighbour
  int prev;
  int next;
};

// A pair that may be merged: the pair (symbols[pos], its right neighbour) as it was when
// queued. It may be stale by the time it is popped; see EncodeUncached.
struct Candidate {
  int32_t rank;
  int pos;
  TokenId merged;
};

// Min-heap order: lowest rank first, then leftmost.
bool PopsLater(const Candidate& a, const Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const BpeModelSpec& spec,
                                                           std::string_view source_name) {
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(StrCatStd(source_name, ": ", parts...));
  };
  std::unique_ptr<BpeModel> model(new BpeModel());
  TokenId max_id = -1;
  for (const auto& [token, id] : spec.vocab) {
    if (id < 0 || id > kMaxTokenId) {
      return error("model.vocab: token ", QuoteForMessage(token), " has id ", id, ", outside [0, ",
                   kMaxTokenId, "]");
    }
    max_id = std::max(max_id, id);
  }
  std::vector<int32_t> entry_of_id(max_id + 1, -1);  // index into spec.vocab
  model->vocab_.reserve(spec.vocab.size());
  for (size_t i = 0; i < spec.vocab.size(); ++i) {
    const auto& [token, id] = spec.vocab[i];
    if (entry_of_id[id] >= 0) {
      return error("model.vocab: id ", id, " is given to both ",
                   QuoteForMessage(spec.vocab[entry_of_id[id]].first), " and ",
                   QuoteForMessage(token));
    }
    if (!model->vocab_.emplace(token, id).second) {
      return error("model.vocab: token ", QuoteForMessage(token), " is listed twice");
    }
    entry_of_id[id] = static_cast<int32_t>(i);
  }
  model->has_id_.assign(max_id + 1, false);
  model->token_offsets_.assign(max_id + 2, 0);
  for (TokenId id = 0; id <= max_id; ++id) {
    if (entry_of_id[id] >= 0) {
      model->token_bytes_ += spec.vocab[entry_of_id[id]].first;
      model->has_id_[id] = true;
    }
    if (model->token_bytes_.size() > UINT32_MAX) return error("model.vocab: too large");
    model->token_offsets_[id + 1] = static_cast<uint32_t>(model->token_bytes_.size());
  }

  model->merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    // Named references, not a structured binding: clang 14 (the fuzz build) cannot capture
    // those in a lambda.
    const std::string& left = spec.merges[rank].first;
    const std::string& right = spec.merges[rank].second;
    auto describe = [&] {
      return StrCatStd("model.merges[", rank, "] (", QuoteForMessage(left), " ",
                       QuoteForMessage(right), "): ");
    };
    const std::optional<TokenId> a = model->TokenToId(left);
    if (!a) return error(describe(), QuoteForMessage(left), " is not in the vocab");
    const std::optional<TokenId> b = model->TokenToId(right);
    if (!b) return error(describe(), QuoteForMessage(right), " is not in the vocab");
    const std::string merged = StrCatStd(left, right);
    const std::optional<TokenId> m = model->TokenToId(merged);
    if (!m) {
      return error(describe(), "the merged token ", QuoteForMessage(merged),
                   " is not in the vocab");
    }
    // A pair listed twice keeps its last rank, as in Hugging Face tokenizers.
    model->merges_[PairKey(*a, *b)] = Merge{static_cast<int32_t>(rank), *m};
  }

  if (spec.unk_token.has_value()) {
    const std::optional<TokenId> unk = model->TokenToId(*spec.unk_token);
    if (!unk) {
      return error("model.unk_token ", QuoteForMessage(*spec.unk_token), " is not in the vocab");
    }
    model->unk_id_ = *unk;
  }
  model->byte_ids_.fill(-1);
  if (spec.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      model->byte_ids_[b] = model->TokenToId(absl::StrFormat("<0x%02X>", b)).value_or(-1);
    }
  }
  model->fuse_unk_ = spec.fuse_unk;
  model->ignore_merges_ = spec.ignore_merges;
  return model;
}

std::optional<TokenId> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(AbslView(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::string_view BpeModel::IdToToken(TokenId id) const {
  if (!HasId(id)) return {};
  return std::string_view(token_bytes_)
      .substr(token_offsets_[id], token_offsets_[id + 1] - token_offsets_[id]);
}

void BpeModel::EncodeWord(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (word.size() > kMaxCachedWordBytes) {
    EncodeUncached(word, out);
    return;
  }
  CacheShard& shard = cache_[absl::Hash<absl::string_view>()(AbslView(word)) % kCacheShards];
  {
    absl::ReaderMutexLock lock(&shard.mu);
    auto it = shard.words.find(AbslView(word));
    if (it != shard.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  EncodeUncached(word, out);
  std::vector<TokenId> ids(out.begin() + first, out.end());
  absl::MutexLock lock(&shard.mu);
  if (shard.words.size() >= kCacheEntriesPerShard) shard.words.clear();
  shard.words.emplace(word, std::move(ids));
}

void BpeModel::EncodeUncached(std::string_view word, std::vector<TokenId>& out) const {
  if (ignore_merges_) {
    if (std::optional<TokenId> id = TokenToId(word)) {
      out.push_back(*id);
      return;
    }
  }

  // The word's characters as symbols.
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](TokenId id) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back(Symbol{id, index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
  };
  bool unk_pending = false;  // an unknown token not yet added (fuse_unk extends it)
  for (size_t pos = 0; pos < word.size();) {
    const int length = DecodeUtf8(word, pos).length;
    const std::string_view piece = word.substr(pos, length);
    pos += length;
    if (auto it = vocab_.find(AbslView(piece)); it != vocab_.end()) {
      if (unk_pending) add(unk_id_);
      unk_pending = false;
      add(it->second);
      continue;
    }
    const bool bytes_known = std::all_of(piece.begin(), piece.end(), [this](char c) {
      return byte_ids_[static_cast<uint8_t>(c)] >= 0;
    });
    if (bytes_known) {
      if (unk_pending) add(unk_id_);
      unk_pending = false;
      for (char c : piece) add(byte_ids_[static_cast<uint8_t>(c)]);
    } else if (unk_id_ >= 0) {
      if (unk_pending && !fuse_unk_) add(unk_id_);
      unk_pending = true;
    }
    // Neither byte tokens nor an unknown token: the character is dropped, as in HF.
  }
  if (unk_pending) add(unk_id_);
  if (symbols.empty()) return;

  auto find_merge = [this](TokenId a, TokenId b) -> const Merge* {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  std::vector<Candidate> queue;
  auto push = [&](int pos) {
    const Symbol& s = symbols[pos];
    if (const Merge* m = find_merge(s.id, symbols[s.next].id)) {
      queue.push_back(Candidate{m->rank, pos, m->merged});
      std::push_heap(queue.begin(), queue.end(), PopsLater);
    }
  };
  for (int pos = 0; pos + 1 < static_cast<int>(symbols.size()); ++pos) push(pos);

  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), PopsLater);
    const Candidate top = queue.back();
    queue.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale when either symbol has merged since it was queued. Like HF, the test is
    // whether the pair there now merges into the same token.
    const Merge* now = find_merge(left.id, right.id);
    if (now == nullptr || now->merged != top.merged) continue;
    left.id = top.merged;
    left.next = right.next;
    right.id = -1;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    if (left.next >= 0) push(top.pos);
  }
  // The first symbol is never merged away: merges keep the left one.
  for (int pos = 0; pos >= 0; pos = symbols[pos].next) out.push_back(symbols[pos].id);
}

}  // namespace prefixd
