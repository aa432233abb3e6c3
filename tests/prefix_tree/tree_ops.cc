#include "tests/prefix_tree/tree_ops.h"

#include <algorithm>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/check.h"

namespace prefixd::tree_ops {
namespace {

// Two tenants, and one of them again with an adapter: the same tokens in each must never
// share a block.
const CacheNamespace kNamespaces[] = {
    {"alice", "m", ""}, {"bob", "m", ""}, {"alice", "m", "lora1"}};
constexpr int kNumNamespaces = 3;
constexpr int kMaxRequests = 8;
constexpr int kMaxPins = 6;
constexpr size_t kRecentSequences = 16;
constexpr size_t kHistory = 12;

BlockKey AllCollide(uint64_t, const BlockKey&, absl::Span<const TokenId>) {
  return BlockKey{42, 42};
}

BlockKey TwoKeys(uint64_t, const BlockKey&, absl::Span<const TokenId> tokens) {
  uint64_t sum = 0;
  for (TokenId t : tokens) sum += static_cast<uint64_t>(t);
  return BlockKey{sum & 1, 7};
}

BlockHashFn HashFor(HashMode mode) {
  switch (mode) {
    case HashMode::kXxh3:
      return &Xxh3BlockHash;
    case HashMode::kAllCollide:
      return &AllCollide;
    case HashMode::kTwoKeys:
      return &TwoKeys;
  }
  return &Xxh3BlockHash;
}

const char* HashName(HashMode mode) {
  switch (mode) {
    case HashMode::kXxh3:
      return "xxh3";
    case HashMode::kAllCollide:
      return "all-collide";
    case HashMode::kTwoKeys:
      return "two-keys";
  }
  return "?";
}

std::string Show(absl::Span<const TokenId> tokens) {
  constexpr size_t kShown = 20;
  std::string out =
      absl::StrCat("[", absl::StrJoin(tokens.first(std::min(tokens.size(), kShown)), " "));
  if (tokens.size() > kShown) absl::StrAppend(&out, " ...");
  absl::StrAppend(&out, "] (", tokens.size(), " tokens)");
  return out;
}

std::string Name(int ns) { return absl::StrCat("'", kNamespaces[ns].DisplayName(), "'"); }

// The namespace index of a display name in an event; -1 if none.
int NamespaceIndex(const std::string& name) {
  for (int ns = 0; ns < kNumNamespaces; ++ns) {
    if (kNamespaces[ns].DisplayName() == name) return ns;
  }
  return -1;
}

template <typename... Parts>
absl::Status Mismatch(const Parts&... parts) {
  return absl::InternalError(absl::StrCat(parts...));
}

}  // namespace

uint32_t ByteChoices::Below(uint32_t bound) {
  const int width = bound <= (1u << 8) ? 1 : bound <= (1u << 16) ? 2 : 4;
  uint32_t value = 0;
  for (int i = 0; i < width; ++i) {
    const uint32_t byte = pos_ < bytes_.size() ? bytes_[pos_] : 0;
    value |= byte << (8 * i);
    ++pos_;
  }
  return value % bound;
}

std::string TreeOpsConfig::ToString() const {
  return absl::StrCat("block_size=", block_size, " num_blocks=", num_blocks, " vocab=", vocab,
                      " max_prompt_blocks=", max_prompt_blocks, " hash=", HashName(hash),
                      " enabled=", enabled ? "true" : "false", " hash_seed=", hash_seed);
}

TreeOpsConfig ConfigFromChoices(ChoiceSource& choices) {
  static constexpr int kBlockSizes[] = {1, 2, 4, 16};
  static constexpr HashMode kHashes[] = {HashMode::kXxh3, HashMode::kAllCollide,
                                         HashMode::kTwoKeys};
  TreeOpsConfig c;
  c.block_size = kBlockSizes[choices.Below(4)];
  c.max_prompt_blocks = 1 + static_cast<int>(choices.Below(c.block_size == 1 ? 24 : 10));
  c.num_blocks = 4 + static_cast<int32_t>(choices.Below(124));
  c.vocab = 2 + static_cast<int>(choices.Below(7));
  c.hash = kHashes[choices.Below(3)];
  c.enabled = choices.Below(8) != 0;
  c.hash_seed = choices.Below(1u << 16);
  return c;
}

TreeOpsHarness::TreeOpsHarness(const TreeOpsConfig& config, ChoiceSource& choices)
    : config_(config),
      bs_(config.block_size),
      choices_(choices),
      cache_(PrefixCacheOptions{.num_blocks = config.num_blocks,
                                .tree = RadixTreeOptions{.block_size = config.block_size,
                                                         .seed = config.hash_seed,
                                                         .hash = HashFor(config.hash)},
                                .enabled = config.enabled}),
      counters_(kNumNamespaces) {
  cache_.SetEventSink([this](const CacheEvent& event) { OnEvent(event); });
}

void TreeOpsHarness::OnEvent(const CacheEvent& event) {
  if (!event_error_.empty()) return;
  if (event.sequence <= last_sequence_) {
    event_error_ = absl::StrCat("event sequence ", event.sequence, " after ", last_sequence_);
    return;
  }
  last_sequence_ = event.sequence;
  if (event.keys.empty()) {
    event_error_ = absl::StrCat("event ", event.sequence, " has no keys");
    return;
  }
  const int ns = NamespaceIndex(event.ns);
  if (ns < 0) {
    event_error_ = absl::StrCat("event ", event.sequence, " names namespace '", event.ns, "'");
    return;
  }
  if (event.kind == CacheEvent::Kind::kStored) {
    // The parent is the namespace or a block the router already knows.
    if (!replica_.contains({ns, event.parent}) &&
        NamespaceKey(config_.hash_seed, kNamespaces[ns]) != event.parent) {
      event_error_ = absl::StrCat("stored event ", event.sequence, " in '", event.ns,
                                  "' names an unknown parent ", event.parent.ToHex());
      return;
    }
    for (const BlockKey& key : event.keys) ++replica_[{ns, key}];
  } else {
    for (const BlockKey& key : event.keys) {
      auto it = replica_.find({ns, key});
      if (it == replica_.end()) {
        event_error_ = absl::StrCat("removed event ", event.sequence, " names key ", key.ToHex(),
                                    ", which is not stored in '", event.ns, "'");
        return;
      }
      if (--it->second == 0) replica_.erase(it);
    }
  }
}

std::string TreeOpsHarness::History() const { return absl::StrJoin(history_, "\n"); }

void TreeOpsHarness::Remember(const std::vector<TokenId>& tokens) {
  recent_.push_back(tokens);
  if (recent_.size() > kRecentSequences) recent_.pop_front();
}

void TreeOpsHarness::Note(std::string op) {
  history_.push_back(absl::StrCat("#", steps_, " ", op));
  if (history_.size() > kHistory) history_.pop_front();
}

absl::Status TreeOpsHarness::Step() {
  ++steps_;
  absl::Status s;
  const uint32_t roll = choices_.Below(100);
  if (requests_.empty() && roll < 64) {
    s = StartRequest();
  } else if (roll < 16) {
    s = StartRequest();
  } else if (roll < 36) {
    s = InsertStep(requests_[choices_.Below(static_cast<uint32_t>(requests_.size()))],
                   /*all=*/false);
  } else if (roll < 44) {
    s = Decode(requests_[choices_.Below(static_cast<uint32_t>(requests_.size()))]);
  } else if (roll < 54) {
    s = FinishRequest(choices_.Below(static_cast<uint32_t>(requests_.size())));
  } else if (roll < 64) {
    s = MatchAndRelease();
  } else if (roll < 72) {
    s = InsertUnheld();
  } else if (roll < 77) {
    s = Pin();
  } else if (roll < 82) {
    s = Unpin();
  } else if (roll < 88) {
    s = Evict();
  } else if (roll < 89) {
    s = Flush();
  } else if (roll < 95) {
    s = AllocateLoose();
  } else {
    s = FreeLoose();
  }
  if (s.ok()) s = CheckState(/*snapshot=*/steps_ % 16 == 0);
  return s;
}

// ---- operations ----

absl::Status TreeOpsHarness::StartRequest() {
  if (requests_.size() >= kMaxRequests) return FinishRequest(0);
  Request r;
  r.id = next_request_id_++;
  r.ns = static_cast<int>(choices_.Below(kNumNamespaces));
  r.tokens = NewSequence();
  Remember(r.tokens);
  Note(absl::StrCat("start request ", r.id, " in ", Name(r.ns), ": ", Show(r.tokens)));
  if (absl::Status s = CheckedMatch(r, r.tokens); !s.ok()) return s;
  const int needed = static_cast<int>((r.tokens.size() + bs_ - 1) / bs_) - r.held;
  std::optional<std::vector<BlockId>> blocks;
  if (absl::Status s = CheckedAllocate(needed, blocks); !s.ok()) return s;
  if (!blocks.has_value()) return CheckedFinish(r);  // no room: the request waits
  r.table.assign(r.match.blocks().begin(), r.match.blocks().end());
  r.table.insert(r.table.end(), blocks->begin(), blocks->end());
  requests_.push_back(std::move(r));
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::InsertStep(Request& r, bool all) {
  const int full = static_cast<int>(r.tokens.size()) / bs_;
  // Usually one to three more blocks, as a prefill chunk completes; sometimes none (an
  // insert that stores nothing).
  const int upto = all || choices_.Below(4) == 0
                       ? full
                       : std::min(full, r.held + static_cast<int>(choices_.Below(4)));
  // Which argument limits the insert: the tokens (maybe with a partial block after them)
  // or the block table.
  int num_tokens = upto * bs_;
  int num_table = upto;
  switch (choices_.Below(3)) {
    case 0:
      num_tokens = std::min(static_cast<int>(r.tokens.size()),
                            upto * bs_ + static_cast<int>(choices_.Below(bs_)));
      break;
    case 1:
      num_table = static_cast<int>(r.table.size());
      break;
    default:
      break;
  }
  Note(absl::StrCat("insert request ", r.id, " (holds ", r.held, " blocks) up to ", num_tokens,
                    " tokens / ", num_table, " blocks"));
  return CheckedInsert(r, num_tokens, num_table);
}

absl::Status TreeOpsHarness::Decode(Request& r) {
  const size_t max_tokens = static_cast<size_t>(config_.max_prompt_blocks + 4) * bs_;
  const int extra = 1 + static_cast<int>(choices_.Below(2 * bs_));
  if (r.tokens.size() + extra > max_tokens) return InsertStep(r, /*all=*/true);
  const size_t new_size = r.tokens.size() + extra;
  const int needed = static_cast<int>((new_size + bs_ - 1) / bs_ - r.table.size());
  Note(absl::StrCat("decode ", extra, " tokens in request ", r.id, " (", needed, " new blocks)"));
  std::optional<std::vector<BlockId>> blocks;
  if (absl::Status s = CheckedAllocate(needed, blocks); !s.ok()) return s;
  if (!blocks.has_value()) return absl::OkStatus();  // no room: the request would be preempted
  for (int i = 0; i < extra; ++i) {
    r.tokens.push_back(static_cast<TokenId>(choices_.Below(config_.vocab)));
  }
  r.table.insert(r.table.end(), blocks->begin(), blocks->end());
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::FinishRequest(size_t index) {
  Request& r = requests_[index];
  // Finishing inserts the output blocks; a cancelled request just goes.
  if (choices_.Below(2) == 0) {
    if (absl::Status s = InsertStep(r, /*all=*/true); !s.ok()) return s;
  }
  Note(absl::StrCat("finish request ", r.id));
  if (absl::Status s = CheckedFinish(r); !s.ok()) return s;
  Remember(r.tokens);
  requests_.erase(requests_.begin() + static_cast<std::ptrdiff_t>(index));
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::MatchAndRelease() {
  Request probe;
  probe.ns = static_cast<int>(choices_.Below(kNumNamespaces));
  probe.tokens = NewSequence();
  Note(absl::StrCat("match and release in ", Name(probe.ns), ": ", Show(probe.tokens)));
  if (absl::Status s = CheckedMatch(probe, probe.tokens); !s.ok()) return s;
  return CheckedFinish(probe);
}

absl::Status TreeOpsHarness::InsertUnheld() {
  // Blocks computed without a prior match (an empty one), then inserted whole.
  Request r;
  r.ns = static_cast<int>(choices_.Below(kNumNamespaces));
  r.tokens = NewSequence();
  Remember(r.tokens);
  const int n = static_cast<int>((r.tokens.size() + bs_ - 1) / bs_);
  Note(absl::StrCat("insert without a hold in ", Name(r.ns), ": ", Show(r.tokens)));
  std::optional<std::vector<BlockId>> blocks;
  if (absl::Status s = CheckedAllocate(n, blocks); !s.ok()) return s;
  if (!blocks.has_value()) return absl::OkStatus();
  r.table = std::move(*blocks);
  if (absl::Status s = CheckedMatch(r, {}); !s.ok()) return s;
  if (absl::Status s = CheckedInsert(r, static_cast<int>(r.tokens.size()), n); !s.ok()) return s;
  return CheckedFinish(r);
}

absl::Status TreeOpsHarness::Pin() {
  int total_pins = 0;
  for (const auto& [key, stack] : pins_) total_pins += static_cast<int>(stack.size());
  if (total_pins >= kMaxPins) return Unpin();
  int ns;
  std::vector<TokenId> tokens;
  const uint32_t pick = choices_.Below(4);
  if (pick == 0 && !pins_.empty()) {
    // Pins nest; the same tokens may have more blocks cached now than at the last Pin.
    auto it = pins_.begin();
    std::advance(it, choices_.Below(static_cast<uint32_t>(pins_.size())));
    ns = it->first.first;
    tokens = it->first.second;
  } else if (pick <= 2 && !requests_.empty()) {
    // Something surely cached: a prefix of a running request.
    const Request& r = requests_[choices_.Below(static_cast<uint32_t>(requests_.size()))];
    ns = r.ns;
    tokens.assign(r.tokens.begin(),
                  r.tokens.begin() + choices_.Below(static_cast<uint32_t>(r.tokens.size() + 1)));
  } else {
    ns = static_cast<int>(choices_.Below(kNumNamespaces));
    tokens = NewSequence();
  }
  Note(absl::StrCat("pin in ", Name(ns), ": ", Show(tokens)));
  const absl::StatusOr<int> got = cache_.Pin(kNamespaces[ns], tokens);
  if (!config_.enabled) {
    if (got.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Mismatch("Pin on a disabled cache returned ", got.status().ToString(),
                      ", not FAILED_PRECONDITION");
    }
    return absl::OkStatus();
  }
  counters_[ns].created = true;
  const int expected = Longest(ns, tokens);
  if (!got.ok() || *got != expected * bs_) {
    return Mismatch("Pin returned ", got.ok() ? absl::StrCat(*got) : got.status().ToString(),
                    "; the model caches ", expected * bs_, " tokens of it");
  }
  if (expected == 0) return absl::OkStatus();
  pins_[PrefixOf(ns, tokens, static_cast<int>(tokens.size()) / bs_)].push_back(expected);
  ++coverage_.pins;
  AddHolds(ns, tokens, expected, 0, +1);
  Touch(ns, tokens, expected);
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::Unpin() {
  int ns;
  std::vector<TokenId> tokens;
  if (!pins_.empty() && choices_.Below(4) != 0) {
    auto it = pins_.begin();
    std::advance(it, choices_.Below(static_cast<uint32_t>(pins_.size())));
    ns = it->first.first;
    tokens = it->first.second;
    // A partial block after the pinned tokens does not change which pin it names.
    const int partial = static_cast<int>(choices_.Below(bs_));
    for (int i = 0; i < partial; ++i) {
      tokens.push_back(static_cast<TokenId>(choices_.Below(config_.vocab)));
    }
  } else {
    ns = static_cast<int>(choices_.Below(kNumNamespaces));
    tokens = NewSequence();
  }
  Note(absl::StrCat("unpin in ", Name(ns), ": ", Show(tokens)));
  return CheckedUnpin(ns, tokens);
}

absl::Status TreeOpsHarness::Evict() {
  // The scheduler evicts by allocating more than is free; the blocks go straight back.
  // A few blocks (often more than one leaf has), or a good part of the cache, so that
  // interior blocks become leaves and compete with other leaves by age.
  const int64_t evictable = ModelEvictable();
  int n = 1 + static_cast<int>(choices_.Below(choices_.Below(4) == 0 ? 64 : 12));
  if (choices_.Below(2) == 0) n = static_cast<int>(std::min<int64_t>(n, evictable));
  const int free = cache_.Stats().blocks.free;
  Note(absl::StrCat("evict ", n, " blocks (allocate ", free + n, " and free them)"));
  std::optional<std::vector<BlockId>> blocks;
  if (absl::Status s = CheckedAllocate(free + n, blocks); !s.ok()) return s;
  if (blocks.has_value()) cache_.Free(*blocks);
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::Flush() {
  Note("flush");
  return CheckedFlush();
}

absl::Status TreeOpsHarness::AllocateLoose() {
  const int n = static_cast<int>(choices_.Below(6));
  Note(absl::StrCat("allocate ", n, " loose blocks"));
  std::optional<std::vector<BlockId>> blocks;
  if (absl::Status s = CheckedAllocate(n, blocks); !s.ok()) return s;
  if (blocks.has_value()) loose_.insert(loose_.end(), blocks->begin(), blocks->end());
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::FreeLoose() {
  if (loose_.empty()) return AllocateLoose();
  const int n = 1 + static_cast<int>(choices_.Below(static_cast<uint32_t>(loose_.size())));
  std::vector<BlockId> freed;
  for (int i = 0; i < n; ++i) {
    std::swap(loose_[choices_.Below(static_cast<uint32_t>(loose_.size()))], loose_.back());
    freed.push_back(loose_.back());
    loose_.pop_back();
  }
  Note(absl::StrCat("free loose blocks ", absl::StrJoin(freed, " ")));
  cache_.Free(freed);
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::Drain() {
  Note("drain");
  while (!requests_.empty()) {
    if (absl::Status s = CheckedFinish(requests_.back()); !s.ok()) return s;
    requests_.pop_back();
  }
  cache_.Free(loose_);
  loose_.clear();
  while (!pins_.empty()) {
    const Prefix key = pins_.begin()->first;
    if (absl::Status s = CheckedUnpin(key.first, key.second); !s.ok()) return s;
  }
  if (absl::Status s = CheckedFlush(); !s.ok()) return s;
  if (absl::Status s = CheckState(/*snapshot=*/true); !s.ok()) return s;
  const CacheStats stats = cache_.Stats();
  if (stats.blocks.free != stats.blocks.total || stats.tree.cached_blocks != 0) {
    return Mismatch("after draining, ", stats.blocks.free, " of ", stats.blocks.total,
                    " blocks are free and ", stats.tree.cached_blocks, " cached");
  }
  return absl::OkStatus();
}

// ---- the cache's calls, compared with the model ----

absl::Status TreeOpsHarness::CheckedMatch(Request& r, absl::Span<const TokenId> tokens) {
  r.match = cache_.Match(kNamespaces[r.ns], tokens);
  NamespaceCounters& c = counters_[r.ns];
  c.created = true;
  // A disabled cache is asked about no tokens at all.
  const int expected = config_.enabled ? Longest(r.ns, tokens) : 0;
  if (config_.enabled) c.query_tokens += static_cast<int64_t>(tokens.size());
  c.hit_tokens += int64_t{expected} * bs_;
  if (!r.match.active()) return Mismatch("Match returned an inactive match");
  if (r.match.num_tokens() != expected * bs_) {
    return Mismatch("Match covers ", r.match.num_tokens(), " tokens; the model caches ",
                    expected * bs_);
  }
  if (absl::Status s = CheckBlocks("Match", r.ns, tokens, r.match.blocks(), expected); !s.ok()) {
    return s;
  }
  r.held = expected;
  coverage_.hit_blocks += expected;
  AddHolds(r.ns, tokens, expected, +1, 0);
  Touch(r.ns, tokens, expected);
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::CheckedInsert(Request& r, int num_tokens, int num_table) {
  const auto tokens = absl::MakeConstSpan(r.tokens).first(num_tokens);
  const auto table = absl::MakeConstSpan(r.table).first(num_table);
  const InsertResult got = cache_.Insert(r.match, tokens, table);

  InsertResult want;
  int held = r.held;
  const int num_full = std::min(num_tokens / bs_, num_table);
  if (config_.enabled && num_full > r.held) {
    const auto full = tokens.first(static_cast<size_t>(num_full) * bs_);
    const int cached = Longest(r.ns, full);
    if (cached < r.held) return Mismatch("model: request ", r.id, " holds uncached blocks");
    // Blocks another request stored since this one matched: the caller's copies are
    // duplicates (unless they are the very blocks cached).
    for (int i = r.held; i < cached; ++i) {
      if (At(ViewOf(r.ns, full, i + 1)).id != table[i]) {
        want.duplicate_indices.push_back(i);
      }
    }
    held = cached;
    if (cached < num_full) {
      // The rest is stored unless a cached block right after the same prefix has the key of
      // the first new block: then the tree cannot index it, and all of it stays private.
      const BlockKey key = HashFor(config_.hash)(config_.hash_seed, KeyOf(r.ns, full, cached),
                                                 full.subspan(cached * bs_, bs_));
      const PrefixView parent = ViewOf(r.ns, full, cached);
      bool collides = false;
      for (auto it = cached_.lower_bound(parent);
           it != cached_.end() && it->first.first == r.ns &&
           it->first.second.size() >= parent.tokens.size() &&
           std::equal(parent.tokens.begin(), parent.tokens.end(), it->first.second.begin());
           ++it) {
        if (it->first.second.size() == parent.tokens.size() + bs_ && it->second.key == key) {
          collides = true;
        }
      }
      if (collides) {
        want.rejected_blocks = num_full - cached;
        ++collisions_;
      } else {
        for (int i = cached; i < num_full; ++i) Add(r.ns, full, i, table[i]);
        want.new_blocks = num_full - cached;
        inserted_ += want.new_blocks;
        held = num_full;
      }
    }
    AddHolds(r.ns, full, held, +1, 0);
    AddHolds(r.ns, r.tokens, r.held, -1, 0);
    Touch(r.ns, full, held);
  }

  if (got.new_blocks != want.new_blocks || got.rejected_blocks != want.rejected_blocks ||
      got.duplicate_indices != want.duplicate_indices) {
    return Mismatch("Insert reported ", got.new_blocks, " new, ", got.rejected_blocks,
                    " rejected, duplicates [", absl::StrJoin(got.duplicate_indices, " "),
                    "]; the model expects ", want.new_blocks, " new, ", want.rejected_blocks,
                    " rejected, duplicates [", absl::StrJoin(want.duplicate_indices, " "), "]");
  }
  if (absl::Status s = CheckBlocks("Insert's match", r.ns, r.tokens, r.match.blocks(), held);
      !s.ok()) {
    return s;
  }
  coverage_.inserted_blocks += want.new_blocks;
  coverage_.duplicate_blocks += static_cast<int64_t>(want.duplicate_indices.size());
  coverage_.rejected_blocks += want.rejected_blocks;
  // The caller's side: a duplicate's private copy goes back to the pool and the table
  // takes the cached block.
  for (int i : want.duplicate_indices) {
    cache_.Free({r.table[i]});
    r.table[i] = r.match.blocks()[i];
  }
  r.held = held;
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::CheckedFinish(Request& r) {
  cache_.Release(r.match);
  if (r.match.active()) return Mismatch("a released match is still active");
  AddHolds(r.ns, r.tokens, r.held, -1, 0);
  Touch(r.ns, r.tokens, r.held);
  if (static_cast<size_t>(r.held) < r.table.size()) {
    cache_.Free(absl::MakeConstSpan(r.table).subspan(r.held));
  }
  r.table.clear();
  r.held = 0;
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::CheckedAllocate(int n, std::optional<std::vector<BlockId>>& out) {
  out.reset();
  const int64_t free = cache_.Stats().blocks.free;  // equal to the model's: CheckState
  const int64_t evictable = ModelEvictable();
  absl::StatusOr<std::vector<BlockId>> got = cache_.Allocate(n);
  if (n > free + evictable) {
    if (got.ok()) {
      return Mismatch("Allocate(", n, ") succeeded with ", free, " free and ", evictable,
                      " evictable blocks");
    }
    if (got.status().code() != absl::StatusCode::kResourceExhausted ||
        !absl::StrContains(got.status().message(), "KV cache full")) {
      return Mismatch("Allocate(", n, ") with ", free, " free and ", evictable,
                      " evictable blocks returned ", got.status().ToString());
    }
    ++coverage_.exhausted;
    return absl::OkStatus();  // that nothing was taken, CheckState sees
  }
  if (!got.ok()) {
    return Mismatch("Allocate(", n, ") failed with ", free, " free and ", evictable,
                    " evictable blocks: ", got.status().ToString());
  }
  if (got->size() != static_cast<size_t>(n)) {
    return Mismatch("Allocate(", n, ") returned ", got->size(), " blocks");
  }
  if (n > free) {
    if (absl::Status s = TakeEvicted(n - free); !s.ok()) return s;
  }
  out = std::move(*got);
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::CheckedUnpin(int ns, absl::Span<const TokenId> tokens) {
  const absl::StatusOr<int> got = cache_.Unpin(kNamespaces[ns], tokens);
  if (!config_.enabled) {
    if (got.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Mismatch("Unpin on a disabled cache returned ", got.status().ToString(),
                      ", not FAILED_PRECONDITION");
    }
    return absl::OkStatus();
  }
  auto it = pins_.find(PrefixOf(ns, tokens, static_cast<int>(tokens.size()) / bs_));
  if (it == pins_.end()) {
    if (got.status().code() != absl::StatusCode::kNotFound) {
      return Mismatch("Unpin of tokens never pinned returned ",
                      got.ok() ? absl::StrCat(*got) : got.status().ToString(), ", not NOT_FOUND");
    }
    return absl::OkStatus();
  }
  const int blocks = it->second.back();
  it->second.pop_back();
  if (it->second.empty()) pins_.erase(it);
  if (!got.ok() || *got != blocks * bs_) {
    return Mismatch("Unpin returned ", got.ok() ? absl::StrCat(*got) : got.status().ToString(),
                    "; the last Pin of these tokens pinned ", blocks * bs_);
  }
  ++coverage_.unpins;
  AddHolds(ns, tokens, blocks, 0, -1);
  Touch(ns, tokens, blocks);
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::CheckedFlush() {
  const int64_t want = ModelEvictable();
  const int64_t got = cache_.Flush();
  if (got != want) {
    return Mismatch("Flush freed ", got, " blocks; the model has ", want, " evictable");
  }
  return TakeEvicted(want, /*flush=*/true);
}

absl::Status TreeOpsHarness::TakeEvicted(int64_t expected, bool flush) {
  const std::vector<BlockId> in_tree_list = cache_.tree().CachedBlockIds();
  const absl::flat_hash_set<BlockId> in_tree(in_tree_list.begin(), in_tree_list.end());
  absl::flat_hash_set<BlockId> gone;
  for (const auto& [prefix, e] : cached_) {
    if (!in_tree.contains(e.id)) gone.insert(e.id);
  }
  if (static_cast<int64_t>(gone.size()) != expected ||
      in_tree.size() + gone.size() != cached_.size()) {
    return Mismatch("eviction took ", gone.size(), " blocks, the model expected ", expected,
                    " (the tree caches ", in_tree.size(), " blocks, the model ", cached_.size(),
                    ")");
  }
  (flush ? flushed_ : evicted_) += expected;
  coverage_.evicted_blocks += expected;
  // Replay the evictions: each must take an evictable leaf (unheld, unpinned, nothing
  // cached after it) used no later than every other evictable leaf.
  while (!gone.empty()) {
    uint64_t oldest = std::numeric_limits<uint64_t>::max();
    for (const auto& [prefix, e] : cached_) {
      if (e.refs == 0 && e.pins == 0 && e.children == 0) oldest = std::min(oldest, e.last_use);
    }
    const Prefix* next = nullptr;
    for (const auto& [prefix, e] : cached_) {
      if (e.refs == 0 && e.pins == 0 && e.children == 0 && e.last_use == oldest &&
          gone.contains(e.id)) {
        next = &prefix;
        break;
      }
    }
    if (next == nullptr) {
      for (const auto& [prefix, e] : cached_) {
        if (!gone.contains(e.id)) continue;
        return Mismatch("block ", e.id, " caching ", Show(prefix.second), " in ",
                        Name(prefix.first), " was evicted, but ",
                        e.refs > 0   ? absl::StrCat("a request holds it")
                        : e.pins > 0 ? absl::StrCat("it is pinned")
                        : e.children
                            ? absl::StrCat("blocks after it stay cached")
                            : absl::StrCat("it was used at ", e.last_use,
                                           " and an evictable block at ", oldest, " stays"));
      }
    }
    gone.erase(cached_.at(*next).id);
    Remove(Prefix(*next));
  }
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::CheckBlocks(const char* what, int ns, absl::Span<const TokenId> tokens,
                                         absl::Span<const BlockId> blocks, int expected) const {
  if (blocks.size() != static_cast<size_t>(expected)) {
    return Mismatch(what, " holds ", blocks.size(), " blocks of ", Show(tokens), " in ", Name(ns),
                    "; the model caches ", expected);
  }
  for (int i = 0; i < expected; ++i) {
    auto it = owner_.find(blocks[i]);
    if (it == owner_.end()) {
      return Mismatch(what, " returned block ", blocks[i], " at index ", i,
                      ", which the model does not cache");
    }
    // The safety property: a block is only ever handed to the very tokens it caches.
    const Prefix& p = it->second;
    if (p.first != ns || p.second.size() != static_cast<size_t>(i + 1) * bs_ ||
        !std::equal(p.second.begin(), p.second.end(), tokens.begin())) {
      return Mismatch(what, " returned block ", blocks[i], " at index ", i, " for ", Show(tokens),
                      " in ", Name(ns), ", but it caches ", Show(p.second), " in ", Name(p.first));
    }
  }
  return absl::OkStatus();
}

absl::Status TreeOpsHarness::CheckState(bool snapshot) const {
  const std::vector<BlockId> private_blocks = PrivateBlocks();
  if (absl::Status s = cache_.CheckInvariants(private_blocks); !s.ok()) {
    return Mismatch("CheckInvariants: ", s.message());
  }
  int64_t held = 0, pinned = 0;
  std::vector<int64_t> per_ns(kNumNamespaces);
  for (const auto& [prefix, e] : cached_) {
    if (e.refs > 0 || e.pins > 0) ++held;
    if (e.pins > 0) ++pinned;
    ++per_ns[prefix.first];
  }
  const int64_t cached = static_cast<int64_t>(cached_.size());

  // Events: the replica and a fresh snapshot both know exactly the cached keys.
  if (!event_error_.empty()) return Mismatch("events: ", event_error_);
  if (replica_ != model_keys_) {
    return Mismatch("events: a router replaying them knows ", replica_.size(),
                    " distinct keys, the model caches ", model_keys_.size());
  }
  const uint64_t last = cache_.tree().last_sequence();
  if (last != last_sequence_) {
    return Mismatch("events: last_sequence is ", last, ", the last event had ", last_sequence_);
  }
  KeyCounts snapshot_keys;
  for (const CacheEvent& e : snapshot ? cache_.tree().Snapshot() : std::vector<CacheEvent>()) {
    if (e.kind != CacheEvent::Kind::kStored || e.sequence != last) {
      return Mismatch("events: a snapshot event is not kStored at sequence ", last);
    }
    const int ns = NamespaceIndex(e.ns);
    for (const BlockKey& key : e.keys) ++snapshot_keys[{ns, key}];
  }
  if (snapshot && snapshot_keys != model_keys_) {
    return Mismatch("events: the snapshot holds ", snapshot_keys.size(),
                    " distinct keys, the model caches ", model_keys_.size());
  }
  const int64_t num_private = static_cast<int64_t>(private_blocks.size());
  const CacheStats s = cache_.Stats();
  const auto expect = [](const char* what, int64_t got, int64_t want) {
    return got == want ? absl::OkStatus()
                       : Mismatch("stats: ", what, " is ", got, ", the model says ", want);
  };
  int64_t query = 0, hit = 0;
  for (const NamespaceCounters& c : counters_) {
    query += c.query_tokens;
    hit += c.hit_tokens;
  }
  for (absl::Status st : {
           expect("free blocks", s.blocks.free, config_.num_blocks - num_private - cached),
           expect("evictable blocks", s.blocks.evictable, cached - held),
           expect("blocks in use", s.blocks.in_use, num_private + held),
           expect("pinned blocks", s.blocks.pinned, pinned),
           expect("cached blocks", s.tree.cached_blocks, cached),
           expect("held blocks", s.tree.held_blocks, held),
           expect("inserted blocks", s.tree.inserted_blocks, inserted_),
           expect("evicted blocks", s.tree.evicted_blocks, evicted_),
           expect("flushed blocks", s.tree.flushed_blocks, flushed_),
           expect("hash collisions", s.tree.hash_collisions, collisions_),
           expect("query tokens", s.tree.query_tokens, query),
           expect("hit tokens", s.tree.hit_tokens, hit),
       }) {
    if (!st.ok()) return st;
  }
  size_t created = 0;
  for (int ns = 0; ns < kNumNamespaces; ++ns) {
    if (!counters_[ns].created) continue;
    ++created;
    const std::string name = kNamespaces[ns].DisplayName();
    auto it = std::find_if(s.tree.namespaces.begin(), s.tree.namespaces.end(),
                           [&](const NamespaceStats& n) { return n.name == name; });
    if (it == s.tree.namespaces.end()) {
      return Mismatch("stats: namespace ", Name(ns), " is missing");
    }
    for (absl::Status st :
         {expect("namespace query tokens", it->query_tokens, counters_[ns].query_tokens),
          expect("namespace hit tokens", it->hit_tokens, counters_[ns].hit_tokens),
          expect("namespace cached blocks", it->cached_blocks, per_ns[ns])}) {
      if (!st.ok()) return Mismatch(Name(ns), " ", st.message());
    }
  }
  if (s.tree.namespaces.size() != created) {
    return Mismatch("stats list ", s.tree.namespaces.size(), " namespaces, the model ", created);
  }
  return absl::OkStatus();
}

// ---- the model ----

TreeOpsHarness::Prefix TreeOpsHarness::PrefixOf(int ns, absl::Span<const TokenId> tokens,
                                                int blocks) const {
  const auto t = tokens.first(static_cast<size_t>(blocks) * bs_);
  return Prefix(ns, std::vector<TokenId>(t.begin(), t.end()));
}

TreeOpsHarness::PrefixView TreeOpsHarness::ViewOf(int ns, absl::Span<const TokenId> tokens,
                                                  int blocks) const {
  return PrefixView{ns, tokens.first(static_cast<size_t>(blocks) * bs_)};
}

TreeOpsHarness::Entry& TreeOpsHarness::At(const PrefixView& prefix) {
  auto it = cached_.find(prefix);
  PREFIXD_CHECK(it != cached_.end(), "model: prefix of ", prefix.tokens.size(),
                " tokens is not cached");
  return it->second;
}

const TreeOpsHarness::Entry& TreeOpsHarness::At(const PrefixView& prefix) const {
  auto it = cached_.find(prefix);
  PREFIXD_CHECK(it != cached_.end(), "model: prefix of ", prefix.tokens.size(),
                " tokens is not cached");
  return it->second;
}

int TreeOpsHarness::Longest(int ns, absl::Span<const TokenId> tokens) const {
  int n = 0;
  while (static_cast<size_t>(n + 1) * bs_ <= tokens.size() &&
         cached_.contains(ViewOf(ns, tokens, n + 1))) {
    ++n;
  }
  return n;
}

BlockKey TreeOpsHarness::KeyOf(int ns, absl::Span<const TokenId> tokens, int blocks) const {
  if (blocks == 0) return NamespaceKey(config_.hash_seed, kNamespaces[ns]);
  return At(ViewOf(ns, tokens, blocks)).key;
}

void TreeOpsHarness::Add(int ns, absl::Span<const TokenId> tokens, int index, BlockId id) {
  Entry e;
  e.id = id;
  e.key = HashFor(config_.hash)(config_.hash_seed, KeyOf(ns, tokens, index),
                                tokens.subspan(static_cast<size_t>(index) * bs_, bs_));
  e.last_use = clock_;
  if (index > 0) ++At(ViewOf(ns, tokens, index)).children;
  ++model_keys_[{ns, e.key}];
  Prefix prefix = PrefixOf(ns, tokens, index + 1);
  owner_[id] = prefix;
  cached_.emplace(std::move(prefix), e);
}

void TreeOpsHarness::Remove(const Prefix& prefix) {
  auto it = cached_.find(prefix);
  owner_.erase(it->second.id);
  auto key = model_keys_.find({prefix.first, it->second.key});
  if (--key->second == 0) model_keys_.erase(key);
  const int blocks = static_cast<int>(prefix.second.size()) / bs_;
  if (blocks > 1) --At(ViewOf(prefix.first, prefix.second, blocks - 1)).children;
  cached_.erase(it);
}

void TreeOpsHarness::AddHolds(int ns, absl::Span<const TokenId> tokens, int blocks, int refs,
                              int pins) {
  for (int i = 1; i <= blocks; ++i) {
    Entry& e = At(ViewOf(ns, tokens, i));
    e.refs += refs;
    e.pins += pins;
  }
}

void TreeOpsHarness::Touch(int ns, absl::Span<const TokenId> tokens, int blocks) {
  ++clock_;
  for (int i = 1; i <= blocks; ++i) At(ViewOf(ns, tokens, i)).last_use = clock_;
}

int64_t TreeOpsHarness::ModelEvictable() const {
  int64_t n = 0;
  for (const auto& [prefix, e] : cached_) n += e.refs == 0 && e.pins == 0;
  return n;
}

std::vector<BlockId> TreeOpsHarness::PrivateBlocks() const {
  std::vector<BlockId> blocks = loose_;
  for (const Request& r : requests_) {
    blocks.insert(blocks.end(), r.table.begin() + r.held, r.table.end());
  }
  return blocks;
}

// ---- choices ----

std::vector<TokenId> TreeOpsHarness::NewSequence() {
  const size_t max_len = static_cast<size_t>(config_.max_prompt_blocks) * bs_ + bs_ - 1;
  std::vector<TokenId> tokens;
  if (!recent_.empty() && choices_.Below(4) != 0) {
    // A prefix of a recent sequence, more often long than short, cut at a block boundary
    // or anywhere.
    const std::vector<TokenId>& base =
        recent_[choices_.Below(static_cast<uint32_t>(recent_.size()))];
    const uint32_t longest = static_cast<uint32_t>(std::min(base.size(), max_len) + 1);
    const size_t a = choices_.Below(longest);
    const size_t b = choices_.Below(longest);
    size_t cut = std::max(a, b);
    if (choices_.Below(2) == 0) cut -= cut % bs_;
    tokens.assign(base.begin(), base.begin() + cut);
  }
  const size_t tail = choices_.Below(static_cast<uint32_t>(max_len - tokens.size() + 1));
  for (size_t i = 0; i < tail; ++i) {
    tokens.push_back(static_cast<TokenId>(choices_.Below(config_.vocab)));
  }
  if (tokens.empty()) tokens.push_back(static_cast<TokenId>(choices_.Below(config_.vocab)));
  return tokens;
}

}  // namespace prefixd::tree_ops
