#include "prefix_tree/radix_tree.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/check.h"

namespace prefixd {

// Everything cached under one CacheNamespace::tenant (a tenant's own namespaces, or one
// shared namespace), with its guaranteed share: the unit of fair eviction.
struct RadixOwner {
  int64_t guaranteed_blocks = 0;
  int64_t cached_blocks = 0;
  absl::btree_set<RadixTree::LruEntry> lru;  // its unheld leaves, oldest access first
  // lru's first entry while cached_blocks > guaranteed_blocks, as entered in the tree's
  // over-share list; nullopt while not there.
  std::optional<RadixTree::LruEntry> listed;
};

// One namespace: its root and its counters. Nodes point back to it.
struct RadixNamespace {
  RadixOwner* owner = nullptr;
  CacheNamespace ns;
  std::string name;  // ns.DisplayName()
  std::unique_ptr<RadixNode> root;
  int64_t query_tokens = 0;
  int64_t hit_tokens = 0;
  int64_t host_hit_tokens = 0;
  int64_t cached_blocks = 0;  // on the device
  int64_t host_cached_blocks = 0;
};

struct RadixTree::NamespaceState : RadixNamespace {};

// An edge: a run of full blocks. A root has no blocks; its parent_key is the namespace key.
struct RadixNode {
  RadixNamespace* ns = nullptr;
  RadixNode* parent = nullptr;  // nullptr for a namespace root
  BlockKey parent_key;          // key of the block just before keys[0]
  std::vector<BlockKey> keys;   // keys[i]: chained key of block i
  // blocks[i]: where block i is: its device block for i < device_blocks, else its host slot.
  std::vector<BlockId> blocks;
  std::vector<TokenId> tokens;  // blocks.size() * block_size token ids
  // Blocks [0, device_blocks) are on the device, the rest in host memory.
  int32_t device_blocks = 0;
  int32_t device_children = 0;  // children with device blocks
  // Children by the key of their first block.
  absl::flat_hash_map<BlockKey, std::unique_ptr<RadixNode>> children;
  int32_t ref_count = 0;  // PrefixMatches whose path includes this node
  int32_t pin_count = 0;  // Pins whose path includes this node
  uint64_t last_access = 0;
  uint64_t id = 0;           // creation order: breaks LRU ties deterministically
  bool in_lru = false;       // in the device eviction order
  bool in_host_lru = false;  // in the host tier's
  int64_t hits = 0;          // Matches that used every block of this edge (and so its whole path)
  absl::Time created;        // when the edge's first block was cached
  absl::Time last_hit = absl::InfinitePast();  // the latest of those Matches

  int num_blocks() const { return static_cast<int>(blocks.size()); }
  int num_host_blocks() const { return num_blocks() - device_blocks; }
  bool held() const { return ref_count > 0 || pin_count > 0; }
};

// ---- PrefixMatch ----

PrefixMatch::PrefixMatch(PrefixMatch&& other) noexcept
    : node_(other.node_),
      blocks_(std::move(other.blocks_)),
      host_(std::move(other.host_)),
      promoted_(other.promoted_),
      block_size_(other.block_size_),
      state_(other.state_) {
  other.node_ = nullptr;
  other.blocks_.clear();
  other.host_.clear();
  other.promoted_ = 0;
  other.state_ = State::kEmpty;
}

PrefixMatch& PrefixMatch::operator=(PrefixMatch&& other) noexcept {
  if (this != &other) {
    PREFIXD_CHECK(state_ != State::kActive, "assigning over a PrefixMatch that was not released");
    node_ = other.node_;
    blocks_ = std::move(other.blocks_);
    host_ = std::move(other.host_);
    promoted_ = other.promoted_;
    block_size_ = other.block_size_;
    state_ = other.state_;
    other.node_ = nullptr;
    other.blocks_.clear();
    other.host_.clear();
    other.promoted_ = 0;
    other.state_ = State::kEmpty;
  }
  return *this;
}

// ---- RadixTree ----

RadixTree::RadixTree(RadixTreeOptions options)
    : block_size_(options.block_size),
      seed_(options.seed),
      hash_(options.hash),
      clock_fn_(options.clock ? std::move(options.clock) : [] { return absl::Now(); }),
      guaranteed_blocks_(std::move(options.guaranteed_blocks)),
      host_capacity_(std::max<int32_t>(options.host_blocks, 0)),
      grow_host_(std::move(options.grow_host)) {
  if (host_capacity_ > 0 && !grow_host_) {
    host_usable_ = host_capacity_;
    for (BlockId slot = host_capacity_ - 1; slot >= 0; --slot) host_free_.push_back(slot);
  }
  PREFIXD_CHECK(
      block_size_ >= 1 && block_size_ <= kMaxBlockSize && (block_size_ & (block_size_ - 1)) == 0,
      "block size must be a power of two in [1, ", kMaxBlockSize, "], got ", block_size_);
  PREFIXD_CHECK(hash_ != nullptr, "no hash function");
}

RadixTree::~RadixTree() {
  // Free deep chains iteratively: a recursive unique_ptr teardown could overflow the stack.
  std::vector<std::unique_ptr<Node>> stack;
  for (auto& [ns, state] : namespaces_) stack.push_back(std::move(state->root));
  while (!stack.empty()) {
    std::unique_ptr<Node> node = std::move(stack.back());
    stack.pop_back();
    for (auto& [key, child] : node->children) stack.push_back(std::move(child));
  }
}

RadixTree::NamespaceState& RadixTree::GetOrCreateNamespace(const CacheNamespace& ns) {
  auto it = namespaces_.find(ns);
  if (it != namespaces_.end()) return *it->second;
  auto state = std::make_unique<NamespaceState>();
  state->owner = &GetOrCreateOwner(ns.tenant);
  state->ns = ns;
  state->name = ns.DisplayName();
  state->root = std::make_unique<Node>();
  state->root->ns = state.get();
  state->root->parent_key = NamespaceKey(seed_, ns);
  state->root->id = next_node_id_++;
  NamespaceState& ref = *state;
  namespaces_.emplace(ns, std::move(state));
  return ref;
}

RadixOwner& RadixTree::GetOrCreateOwner(const std::string& tenant) {
  std::unique_ptr<RadixOwner>& owner = owners_[tenant];
  if (owner == nullptr) {
    owner = std::make_unique<RadixOwner>();
    if (auto it = guaranteed_blocks_.find(tenant); it != guaranteed_blocks_.end()) {
      owner->guaranteed_blocks = it->second;
    }
  }
  return *owner;
}

void RadixTree::RelistOwner(RadixOwner& owner) {
  std::optional<LruEntry> want;
  if (owner.cached_blocks > owner.guaranteed_blocks && !owner.lru.empty()) {
    want = *owner.lru.begin();
  }
  if (want == owner.listed) return;
  if (owner.listed) over_share_.erase(*owner.listed);
  if (want) over_share_.insert(*want);
  owner.listed = want;
}

BlockKey RadixTree::LastKey(const Node* node) const {
  return node->keys.empty() ? node->parent_key : node->keys.back();
}

void RadixTree::Account(const Node* node, int sign) {
  const int64_t n = int64_t{sign} * node->device_blocks;
  const int64_t h = int64_t{sign} * node->num_host_blocks();
  cached_blocks_ += n;
  node->ns->cached_blocks += n;
  node->ns->owner->cached_blocks += n;
  RelistOwner(*node->ns->owner);
  host_cached_blocks_ += h;
  node->ns->host_cached_blocks += h;
  if (node->held()) {
    held_blocks_ += n;
    host_held_blocks_ += h;
  }
  if (node->pin_count > 0) pinned_blocks_ += n;
}

void RadixTree::RemoveFromLru(Node* node) {
  if (!node->in_lru) return;
  const LruEntry entry{node->last_access, node->id, node};
  lru_.erase(entry);
  RadixOwner& owner = *node->ns->owner;
  owner.lru.erase(entry);
  RelistOwner(owner);
  node->in_lru = false;
}

void RadixTree::UpdateLru(Node* node) {
  const bool evictable_leaf = node->parent != nullptr && !node->held() && node->device_blocks > 0 &&
                              node->device_children == 0;
  if (evictable_leaf && !node->in_lru) {
    const LruEntry entry{node->last_access, node->id, node};
    lru_.insert(entry);
    RadixOwner& owner = *node->ns->owner;
    owner.lru.insert(entry);
    RelistOwner(owner);
    node->in_lru = true;
  } else if (!evictable_leaf && node->in_lru) {
    RemoveFromLru(node);
  }
}

void RadixTree::UpdateHostLru(Node* node) {
  const bool evictable = node->parent != nullptr && !node->held() && node->children.empty() &&
                         node->num_host_blocks() > 0;
  const LruEntry entry{node->last_access, node->id, node};
  if (evictable && !node->in_host_lru) {
    host_lru_.insert(entry);
    node->in_host_lru = true;
  } else if (!evictable && node->in_host_lru) {
    host_lru_.erase(entry);
    node->in_host_lru = false;
  }
}

void RadixTree::Relist(Node* node) {
  UpdateLru(node);
  UpdateHostLru(node);
}

void RadixTree::Unlist(Node* node) {
  RemoveFromLru(node);
  if (node->in_host_lru) {
    host_lru_.erase(LruEntry{node->last_access, node->id, node});
    node->in_host_lru = false;
  }
}

void RadixTree::ChildDeviceChanged(Node* parent, int delta) {
  parent->device_children += delta;
  PREFIXD_CHECK(parent->device_children >= 0, "negative device child count on node ", parent->id);
  UpdateLru(parent);
}

void RadixTree::AddHold(Node* node, int delta_ref, int delta_pin) {
  for (Node* n = node; n != nullptr; n = n->parent) {
    Unlist(n);
    Account(n, -1);
    n->ref_count += delta_ref;
    n->pin_count += delta_pin;
    PREFIXD_CHECK(n->ref_count >= 0 && n->pin_count >= 0, "negative hold count on node ", n->id);
    n->last_access = clock_;
    Account(n, +1);
    Relist(n);
  }
}

RadixTree::Node* RadixTree::Split(Node* node, int keep_blocks) {
  PREFIXD_CHECK(keep_blocks > 0 && keep_blocks < node->num_blocks(), "bad split");
  // The new node `head` takes the first keep_blocks blocks and `node` keeps the rest, so a
  // PrefixMatch or pin that ends at `node` still ends at the same block.
  Node* parent = node->parent;
  auto it = parent->children.find(node->keys[0]);
  PREFIXD_CHECK(it != parent->children.end() && it->second.get() == node, "broken child link");
  std::unique_ptr<Node> owned = std::move(it->second);
  Unlist(node);

  auto head = std::make_unique<Node>();
  head->ns = node->ns;
  head->parent = parent;
  head->parent_key = node->parent_key;
  head->keys.assign(node->keys.begin(), node->keys.begin() + keep_blocks);
  head->blocks.assign(node->blocks.begin(), node->blocks.begin() + keep_blocks);
  head->device_blocks = std::min(node->device_blocks, keep_blocks);
  head->tokens.assign(node->tokens.begin(), node->tokens.begin() + keep_blocks * block_size_);
  head->ref_count = node->ref_count;
  head->pin_count = node->pin_count;
  head->last_access = node->last_access;
  head->id = next_node_id_++;
  head->hits = node->hits;  // every match that used all of `node` used its head
  head->created = node->created;
  head->last_hit = node->last_hit;

  Account(node, -1);
  node->keys.erase(node->keys.begin(), node->keys.begin() + keep_blocks);
  node->blocks.erase(node->blocks.begin(), node->blocks.begin() + keep_blocks);
  node->device_blocks = std::max(node->device_blocks - keep_blocks, 0);
  head->device_children = node->device_blocks > 0 ? 1 : 0;  // the parent's count is unchanged
  node->tokens.erase(node->tokens.begin(), node->tokens.begin() + keep_blocks * block_size_);
  node->parent = head.get();
  node->parent_key = head->keys.back();
  Account(node, +1);
  Account(head.get(), +1);

  Node* raw = head.get();
  head->children.emplace(node->keys[0], std::move(owned));
  it->second = std::move(head);  // same key: head's first block is node's old first block
  Relist(node);
  Relist(raw);
  return raw;
}

RadixTree::Node* RadixTree::Walk(Node* node, absl::Span<const TokenId> tokens, int first_block,
                                 std::vector<BlockId>& blocks, std::vector<BlockId>& host) {
  const int num_full = static_cast<int>(tokens.size() / block_size_);
  int b = first_block;
  while (b < num_full) {
    const BlockKey key = hash_(seed_, LastKey(node), tokens.subspan(b * block_size_, block_size_));
    auto it = node->children.find(key);
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    const int len = child->num_blocks();
    int j = 0;
    while (j < len && b + j < num_full &&
           std::equal(child->tokens.begin() + j * block_size_,
                      child->tokens.begin() + (j + 1) * block_size_,
                      tokens.begin() + (b + j) * block_size_)) {
      ++j;
    }
    if (j == 0) break;  // same key, other tokens: a collision, never a hit
    if (j < len) child = Split(child, j);
    blocks.insert(blocks.end(), child->blocks.begin(),
                  child->blocks.begin() + child->device_blocks);
    host.insert(host.end(), child->blocks.begin() + child->device_blocks, child->blocks.end());
    b += j;
    node = child;
    if (j < len) break;
  }
  return node;
}

PrefixMatch RadixTree::Match(const CacheNamespace& ns, absl::Span<const TokenId> tokens,
                             bool count) {
  NamespaceState& state = GetOrCreateNamespace(ns);
  ++clock_;
  PrefixMatch match;
  match.block_size_ = block_size_;
  Node* end = Walk(state.root.get(), tokens, 0, match.blocks_, match.host_);
  AddHold(end, +1, 0);
  match.node_ = end;
  match.state_ = PrefixMatch::State::kActive;
  if (count) CountLookup(ns, match, static_cast<int64_t>(tokens.size()));
  return match;
}

void RadixTree::CountLookup(const CacheNamespace& ns, const PrefixMatch& match,
                            int64_t query_tokens) {
  NamespaceState& state = GetOrCreateNamespace(ns);
  const absl::Time now = clock_fn_();
  for (Node* n = match.node_; n != nullptr && n->parent != nullptr; n = n->parent) {
    ++n->hits;
    n->last_hit = now;
  }
  state.query_tokens += query_tokens;
  state.hit_tokens += int64_t{match.num_blocks() + match.num_host_blocks()} * block_size_;
  state.host_hit_tokens += int64_t{match.promoted_blocks() + match.num_host_blocks()} * block_size_;
}

int RadixTree::Promote(PrefixMatch& match, absl::Span<const BlockId> device_blocks) {
  PREFIXD_CHECK(match.active(), "Promote through a PrefixMatch that is not active");
  PREFIXD_CHECK(device_blocks.size() == match.host_.size(), "Promote of ", match.host_.size(),
                " host blocks into ", device_blocks.size(), " device blocks");
  if (device_blocks.empty()) return 0;
  ++clock_;
  ToDevice(match.node_, device_blocks, /*copy=*/true);
  match.blocks_.insert(match.blocks_.end(), device_blocks.begin(), device_blocks.end());
  match.host_.clear();
  match.promoted_ += static_cast<int>(device_blocks.size());
  return static_cast<int>(device_blocks.size());
}

void RadixTree::ToDevice(Node* end, absl::Span<const BlockId> device_blocks, bool copy) {
  // The host blocks are the path's last ones: collect their nodes, then convert from the
  // top, so the device part grows down the path.
  std::vector<Node*> nodes;
  int left = static_cast<int>(device_blocks.size());
  for (Node* n = end; left > 0; n = n->parent) {
    PREFIXD_CHECK(n->parent != nullptr, "fewer host blocks on the path than to convert");
    if (n->num_host_blocks() > 0) nodes.push_back(n);
    left -= n->num_host_blocks();
  }
  PREFIXD_CHECK(left == 0, "host blocks to convert do not end at a node boundary");
  size_t next = 0;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    Node* n = *it;
    const int first = n->device_blocks, count = n->num_host_blocks();
    Emit(CacheEvent::Kind::kRemoved, CacheEvent::Medium::kHost, n, first, count);
    Unlist(n);
    Account(n, -1);
    for (int i = first; i < n->num_blocks(); ++i) {
      const BlockId device = device_blocks[next++];
      if (copy) {
        transfers_.push_back({BlockTransfer::Direction::kToDevice, device, n->blocks[i]});
        host_released_.push_back(n->blocks[i]);  // read by the promotion: reused after it
      } else {
        host_free_.push_back(n->blocks[i]);
      }
      n->blocks[i] = device;
    }
    n->device_blocks = n->num_blocks();
    Account(n, +1);
    Relist(n);
    if (first == 0) ChildDeviceChanged(n->parent, +1);
    if (copy) promoted_blocks_ += count;
    Emit(CacheEvent::Kind::kStored, CacheEvent::Medium::kDevice, n, first, count);
  }
}

std::vector<BlockTransfer> RadixTree::TakeTransfers() {
  host_free_.insert(host_free_.end(), host_released_.begin(), host_released_.end());
  host_released_.clear();
  return std::exchange(transfers_, {});
}

InsertResult RadixTree::Insert(PrefixMatch& match, absl::Span<const TokenId> tokens,
                               absl::Span<const BlockId> blocks) {
  PREFIXD_CHECK(match.active(), "Insert through a PrefixMatch that is not active");
  PREFIXD_CHECK(match.host_.empty(),
                "Insert through a PrefixMatch with host blocks (Promote them)");
  ++clock_;
  InsertResult result;
  const int num_full =
      static_cast<int>(std::min<size_t>(tokens.size() / block_size_, blocks.size()));
  if (num_full <= match.num_blocks()) return result;
  tokens = tokens.first(static_cast<size_t>(num_full) * block_size_);

  // Blocks that are cached already (by another request since `match` was taken).
  Node* const start = match.node_;
  const int before = match.num_blocks();
  std::vector<BlockId> host;
  Node* end = Walk(start, tokens, before, match.blocks_, host);
  for (int i = before; i < match.num_blocks(); ++i) {
    if (match.blocks_[i] != blocks[i]) result.duplicate_indices.push_back(i);
  }
  if (!host.empty()) {
    // Cached in host memory: the caller's blocks hold the same tokens' KV on the device
    // already, so the tree takes them and lets the host copies go.
    const auto adopted = blocks.subspan(match.blocks_.size(), host.size());
    ToDevice(end, adopted, /*copy=*/false);
    match.blocks_.insert(match.blocks_.end(), adopted.begin(), adopted.end());
  }

  int b = match.num_blocks();
  if (b < num_full) {
    const BlockKey first_key =
        hash_(seed_, LastKey(end), tokens.subspan(b * block_size_, block_size_));
    if (end->children.contains(first_key)) {
      // Walk stopped although a child has this key: its tokens differ. Keep ours private.
      result.rejected_blocks = num_full - b;
      ++hash_collisions_;
    } else {
      // Append blocks b..num_full. Extend `end` in place when nothing but this match can see
      // it (a leaf, not pinned, held only by us) and no match has used it as a prefix yet
      // (its hits count that prefix, not a longer one); otherwise hang a new child under it.
      const bool extend = end->parent != nullptr && end->children.empty() && end->pin_count == 0 &&
                          end->ref_count == (end == start ? 1 : 0) && end->hits == 0 &&
                          end->num_host_blocks() == 0;
      Node* target = end;
      std::unique_ptr<Node> child;
      if (extend) {
        Unlist(end);
        Account(end, -1);
      } else {
        child = std::make_unique<Node>();
        child->ns = end->ns;
        child->parent = end;
        child->parent_key = LastKey(end);
        child->last_access = clock_;
        child->id = next_node_id_++;
        child->created = clock_fn_();
        // Sized once: a whole prompt inserted in one call must not regrow its edge's
        // vectors block by block.
        child->keys.reserve(num_full - b);
        child->blocks.reserve(num_full - b);
        child->tokens.reserve(static_cast<size_t>(num_full - b) * block_size_);
        target = child.get();
      }
      const int first_new = target->num_blocks();
      BlockKey prev = LastKey(end);
      for (int i = b; i < num_full; ++i) {
        const auto block_tokens = tokens.subspan(i * block_size_, block_size_);
        const BlockKey key = i == b ? first_key : hash_(seed_, prev, block_tokens);
        target->keys.push_back(key);
        target->blocks.push_back(blocks[i]);
        target->tokens.insert(target->tokens.end(), block_tokens.begin(), block_tokens.end());
        match.blocks_.push_back(blocks[i]);
        prev = key;
      }
      target->device_blocks = target->num_blocks();
      if (child != nullptr) {
        end->children.emplace(first_key, std::move(child));
        ChildDeviceChanged(end, +1);
        UpdateHostLru(end);
      }
      Account(target, +1);
      result.new_blocks = num_full - b;
      inserted_blocks_ += result.new_blocks;
      Emit(CacheEvent::Kind::kStored, CacheEvent::Medium::kDevice, target, first_new,
           result.new_blocks);
      end = target;
    }
  }

  // Move the hold to the new end: add first, so no node drops to zero in between.
  AddHold(end, +1, 0);
  AddHold(start, -1, 0);
  match.node_ = end;
  return result;
}

InsertResult RadixTree::Insert(const CacheNamespace& ns, absl::Span<const TokenId> tokens,
                               absl::Span<const BlockId> blocks) {
  NamespaceState& state = GetOrCreateNamespace(ns);
  ++clock_;
  PrefixMatch match;
  match.block_size_ = block_size_;
  match.node_ = state.root.get();
  match.state_ = PrefixMatch::State::kActive;
  AddHold(match.node_, +1, 0);
  InsertResult result = Insert(match, tokens, blocks);
  Release(match);
  return result;
}

void RadixTree::Release(PrefixMatch& match) {
  PREFIXD_CHECK(match.state_ != PrefixMatch::State::kReleased, "PrefixMatch released twice");
  PREFIXD_CHECK(match.state_ == PrefixMatch::State::kActive,
                "Release of a PrefixMatch that holds nothing (default-constructed or moved from)");
  ++clock_;
  AddHold(match.node_, -1, 0);
  match.node_ = nullptr;
  match.blocks_.clear();
  match.host_.clear();
  match.state_ = PrefixMatch::State::kReleased;
}

int RadixTree::Pin(const CacheNamespace& ns, absl::Span<const TokenId> tokens) {
  NamespaceState& state = GetOrCreateNamespace(ns);
  ++clock_;
  std::vector<BlockId> blocks, host;
  Node* end = Walk(state.root.get(), tokens, 0, blocks, host);
  if (blocks.empty()) return 0;
  if (!host.empty()) {
    // Pins stay on the device: the pin ends with the path's last device block.
    while (end->device_blocks == 0) end = end->parent;
    if (end->num_host_blocks() > 0) end = Split(end, end->device_blocks);
  }
  AddHold(end, 0, +1);
  const size_t full = tokens.size() / block_size_ * block_size_;
  pins_[{ns, std::vector<TokenId>(tokens.begin(), tokens.begin() + full)}].push_back(end);
  return static_cast<int>(blocks.size()) * block_size_;
}

absl::StatusOr<int> RadixTree::Unpin(const CacheNamespace& ns, absl::Span<const TokenId> tokens) {
  const size_t full = tokens.size() / block_size_ * block_size_;
  auto it = pins_.find(std::pair(ns, std::vector<TokenId>(tokens.begin(), tokens.begin() + full)));
  if (it == pins_.end()) {
    return absl::NotFoundError(absl::StrCat("no pinned prefix of these ", tokens.size(),
                                            " tokens in namespace '", ns.DisplayName(), "'"));
  }
  Node* end = it->second.back();
  it->second.pop_back();
  if (it->second.empty()) pins_.erase(it);
  ++clock_;
  AddHold(end, 0, -1);
  int blocks = 0;
  for (const Node* n = end; n != nullptr; n = n->parent) blocks += n->num_blocks();
  return blocks * block_size_;
}

std::vector<BlockId> RadixTree::Evict(int64_t num_blocks) {
  return Remove(num_blocks, evicted_blocks_, /*fair=*/true, /*demote=*/true);
}

std::vector<BlockId> RadixTree::Remove(int64_t num_blocks, int64_t& counter, bool fair,
                                       bool demote) {
  std::vector<BlockId> evicted;
  while (static_cast<int64_t>(evicted.size()) < num_blocks && !lru_.empty()) {
    // Fair: the least recently used leaf of the owners over their guaranteed share, and no
    // more of it than their excess; when no owner over its share has an unheld leaf, the
    // least recently used leaf of all.
    Node* leaf = std::get<2>(*lru_.begin());
    int64_t limit = std::numeric_limits<int64_t>::max();
    if (fair && !over_share_.empty()) {
      leaf = std::get<2>(*over_share_.begin());
      const RadixOwner& owner = *leaf->ns->owner;
      limit = owner.cached_blocks - owner.guaranteed_blocks;
    }
    int take = static_cast<int>(std::min<int64_t>(
        {num_blocks - static_cast<int64_t>(evicted.size()), leaf->device_blocks, limit}));
    // Host slots for them first: making room there never touches a device block, so `leaf`
    // stays what it is (its own host tail may go).
    const int slots = demote && has_host_tier() ? ReserveHostSlots(take) : 0;
    if (slots > 0) take = slots;
    const int keep = leaf->device_blocks - take;
    Unlist(leaf);
    if (slots > 0) {
      // Demote blocks [keep, keep + take) to the host tier.
      Emit(CacheEvent::Kind::kRemoved, CacheEvent::Medium::kDevice, leaf, keep, take);
      Account(leaf, -1);
      for (int i = keep + take - 1; i >= keep; --i) {
        const BlockId slot = host_free_.back();
        host_free_.pop_back();
        transfers_.push_back({BlockTransfer::Direction::kToHost, leaf->blocks[i], slot});
        evicted.push_back(leaf->blocks[i]);
        leaf->blocks[i] = slot;
      }
      leaf->device_blocks = keep;
      Account(leaf, +1);
      counter += take;
      demoted_blocks_ += take;
      Emit(CacheEvent::Kind::kStored, CacheEvent::Medium::kHost, leaf, keep, take);
      if (keep == 0) ChildDeviceChanged(leaf->parent, -1);
      Relist(leaf);
      continue;
    }
    // Dropped, with the host blocks after them (nothing could reach those any more).
    Account(leaf, -1);
    DropHostSuffix(leaf, demote ? dropped_blocks_ : flushed_blocks_);
    if (demote && has_host_tier()) dropped_blocks_ += take;
    Emit(CacheEvent::Kind::kRemoved, CacheEvent::Medium::kDevice, leaf, keep, take);
    evicted.insert(evicted.end(), leaf->blocks.rbegin(), leaf->blocks.rend() - keep);
    counter += take;
    if (keep == 0) {
      Node* parent = leaf->parent;
      parent->children.erase(leaf->keys[0]);  // destroys leaf
      ChildDeviceChanged(parent, -1);
      Relist(parent);
    } else {
      leaf->keys.resize(keep);
      leaf->blocks.resize(keep);
      leaf->tokens.resize(static_cast<size_t>(keep) * block_size_);
      leaf->device_blocks = keep;
      Account(leaf, +1);
      Relist(leaf);
    }
  }
  return evicted;
}

int RadixTree::ReserveHostSlots(int want) {
  while (static_cast<int>(host_free_.size()) < want) {
    if (host_usable_ < host_capacity_ && !host_grow_failed_) {
      const int32_t asked = std::min<int32_t>(host_capacity_ - host_usable_,
                                              want - static_cast<int>(host_free_.size()));
      const int32_t got = std::clamp<int32_t>(grow_host_(asked), 0, host_capacity_ - host_usable_);
      if (got > 0) {
        for (BlockId slot = host_usable_ + got - 1; slot >= host_usable_; --slot) {
          host_free_.push_back(slot);
        }
        host_usable_ += got;
        continue;
      }
      ++host_grow_failures_;
      host_grow_failed_ = true;
    }
    if (host_lru_.empty()) break;
    EvictHostLeaf(want - static_cast<int64_t>(host_free_.size()), host_evicted_blocks_);
  }
  return std::min(want, static_cast<int>(host_free_.size()));
}

void RadixTree::EvictHostLeaf(int64_t max_blocks, int64_t& counter) {
  Node* leaf = std::get<2>(*host_lru_.begin());
  const int take = static_cast<int>(std::min<int64_t>(max_blocks, leaf->num_host_blocks()));
  const int keep = leaf->num_blocks() - take;
  Unlist(leaf);
  Account(leaf, -1);
  Emit(CacheEvent::Kind::kRemoved, CacheEvent::Medium::kHost, leaf, keep, take);
  for (int i = leaf->num_blocks() - 1; i >= keep; --i) host_free_.push_back(leaf->blocks[i]);
  counter += take;
  if (keep == 0) {
    Node* parent = leaf->parent;            // leaf had no device block: the parent's count stays
    parent->children.erase(leaf->keys[0]);  // destroys leaf
    Relist(parent);
  } else {
    leaf->keys.resize(keep);
    leaf->blocks.resize(keep);
    leaf->tokens.resize(static_cast<size_t>(keep) * block_size_);
    Account(leaf, +1);
    Relist(leaf);
  }
}

void RadixTree::DropHostSuffix(Node* node, int64_t& counter) {
  PREFIXD_CHECK(node->device_children == 0, "dropping the host blocks below device blocks");
  std::vector<std::unique_ptr<Node>> stack;
  for (auto& [key, child] : node->children) stack.push_back(std::move(child));
  node->children.clear();
  while (!stack.empty()) {
    std::unique_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    Unlist(n.get());
    Account(n.get(), -1);
    Emit(CacheEvent::Kind::kRemoved, CacheEvent::Medium::kHost, n.get(), 0, n->num_blocks());
    for (BlockId slot : n->blocks) host_free_.push_back(slot);  // all host slots
    counter += n->num_blocks();
    for (auto& [key, child] : n->children) stack.push_back(std::move(child));
  }
  const int host = node->num_host_blocks();
  if (host == 0) return;
  Emit(CacheEvent::Kind::kRemoved, CacheEvent::Medium::kHost, node, node->device_blocks, host);
  for (int i = node->device_blocks; i < node->num_blocks(); ++i) {
    host_free_.push_back(node->blocks[i]);
  }
  counter += host;
  node->keys.resize(node->device_blocks);
  node->blocks.resize(node->device_blocks);
  node->tokens.resize(static_cast<size_t>(node->device_blocks) * block_size_);
}

std::vector<BlockId> RadixTree::Flush() {
  while (!host_lru_.empty()) {
    EvictHostLeaf(std::numeric_limits<int64_t>::max(), flushed_blocks_);
  }
  return Remove(std::numeric_limits<int64_t>::max(), flushed_blocks_, /*fair=*/false,
                /*demote=*/false);
}

CacheEvent RadixTree::MakeEvent(CacheEvent::Kind kind, CacheEvent::Medium medium, const Node* node,
                                int first, int count, uint64_t sequence) const {
  CacheEvent event;
  event.sequence = sequence;
  event.kind = kind;
  event.medium = medium;
  event.ns = node->ns->name;
  event.parent = first == 0 ? node->parent_key : node->keys[first - 1];
  event.keys.assign(node->keys.begin() + first, node->keys.begin() + first + count);
  if (kind == CacheEvent::Kind::kStored) {
    event.parent_is_root = first == 0 && node->parent->parent == nullptr;
    event.tokens.assign(node->tokens.begin() + first * block_size_,
                        node->tokens.begin() + (first + count) * block_size_);
  }
  return event;
}

void RadixTree::Emit(CacheEvent::Kind kind, CacheEvent::Medium medium, const Node* node, int first,
                     int count) {
  if (count == 0) return;
  ++sequence_;
  if (sink_) sink_(MakeEvent(kind, medium, node, first, count, sequence_));
}

TreeStats RadixTree::Stats() const {
  TreeStats s;
  s.cached_blocks = cached_blocks_;
  s.held_blocks = held_blocks_;
  s.pinned_blocks = pinned_blocks_;
  s.evictable_blocks = cached_blocks_ - held_blocks_;
  s.inserted_blocks = inserted_blocks_;
  s.evicted_blocks = evicted_blocks_;
  s.flushed_blocks = flushed_blocks_;
  s.hash_collisions = hash_collisions_;
  s.host_capacity_blocks = host_capacity_;
  s.host_usable_blocks = host_usable_;
  s.host_cached_blocks = host_cached_blocks_;
  s.host_held_blocks = host_held_blocks_;
  s.demoted_blocks = demoted_blocks_;
  s.promoted_blocks = promoted_blocks_;
  s.host_evicted_blocks = host_evicted_blocks_;
  s.dropped_blocks = dropped_blocks_;
  s.host_grow_failures = host_grow_failures_;
  for (const auto& [ns, state] : namespaces_) {
    s.query_tokens += state->query_tokens;
    s.hit_tokens += state->hit_tokens;
    s.host_hit_tokens += state->host_hit_tokens;
    s.namespaces.push_back({state->name, state->query_tokens, state->hit_tokens,
                            state->cached_blocks, state->host_hit_tokens,
                            state->host_cached_blocks});
  }
  std::sort(s.namespaces.begin(), s.namespaces.end(),
            [](const NamespaceStats& a, const NamespaceStats& b) { return a.name < b.name; });
  return s;
}

std::vector<HotPrefix> RadixTree::HotPrefixes(int k) const {
  if (k <= 0) return {};
  struct Ranked {
    int64_t hits;
    int64_t tokens;
    const Node* node;
  };
  // "Better" ranks first: more hits, then longer, then older.
  auto better = [](const Ranked& a, const Ranked& b) {
    if (a.hits != b.hits) return a.hits > b.hits;
    if (a.tokens != b.tokens) return a.tokens > b.tokens;
    return a.node->id < b.node->id;
  };
  // A heap of the best k so far whose top is the worst of them.
  std::priority_queue<Ranked, std::vector<Ranked>, decltype(better)> best(better);
  std::vector<std::pair<const Node*, int64_t /*tokens before the node*/>> stack;
  for (const auto& [ns, state] : namespaces_) stack.emplace_back(state->root.get(), 0);
  while (!stack.empty()) {
    const auto [node, before] = stack.back();
    stack.pop_back();
    const int64_t tokens = before + int64_t{node->num_blocks()} * block_size_;
    // A node's hits never exceed its parent's: a subtree under a node that cannot enter the
    // heap holds nothing that can.
    const Ranked r{node->hits, tokens, node};
    if (node->parent != nullptr) {
      if (node->hits == 0) continue;
      if (static_cast<int>(best.size()) == k && node->hits < best.top().hits) continue;
      best.push(r);
      if (static_cast<int>(best.size()) > k) best.pop();
    }
    for (const auto& [key, child] : node->children) stack.emplace_back(child.get(), tokens);
  }
  std::vector<HotPrefix> out;
  while (!best.empty()) {
    const Ranked r = best.top();
    best.pop();
    out.push_back({r.node->ns->name, r.tokens, r.hits, r.node->created, r.node->last_hit,
                   r.node->pin_count > 0});
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<CacheEvent> RadixTree::Snapshot() const {
  std::vector<const NamespaceState*> states;
  for (const auto& [ns, state] : namespaces_) states.push_back(state.get());
  std::sort(states.begin(), states.end(),
            [](const NamespaceState* a, const NamespaceState* b) { return a->name < b->name; });
  std::vector<CacheEvent> events;
  std::vector<const Node*> stack;
  for (const NamespaceState* state : states) {
    stack.push_back(state->root.get());
    while (!stack.empty()) {
      const Node* node = stack.back();
      stack.pop_back();
      if (node->device_blocks > 0) {
        events.push_back(MakeEvent(CacheEvent::Kind::kStored, CacheEvent::Medium::kDevice, node, 0,
                                   node->device_blocks, sequence_));
      }
      if (node->num_host_blocks() > 0) {
        events.push_back(MakeEvent(CacheEvent::Kind::kStored, CacheEvent::Medium::kHost, node,
                                   node->device_blocks, node->num_host_blocks(), sequence_));
      }
      for (const auto& [key, child] : node->children) stack.push_back(child.get());
    }
  }
  return events;
}

std::vector<BlockId> RadixTree::TierBlockIds(bool host) const {
  std::vector<BlockId> ids;
  std::vector<const Node*> stack;
  for (const auto& [ns, state] : namespaces_) stack.push_back(state->root.get());
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    const auto boundary = node->blocks.begin() + node->device_blocks;
    if (host) {
      ids.insert(ids.end(), boundary, node->blocks.end());
    } else {
      ids.insert(ids.end(), node->blocks.begin(), boundary);
    }
    for (const auto& [key, child] : node->children) stack.push_back(child.get());
  }
  return ids;
}

struct RadixTree::CheckCounts {
  absl::flat_hash_map<BlockId, int> seen;       // device blocks
  absl::flat_hash_map<BlockId, int> seen_host;  // host slots
  int64_t cached = 0, held = 0, pinned = 0;
  int64_t host_cached = 0, host_held = 0;
};

absl::Status RadixTree::CheckNode(const Node* node, CheckCounts& counts) const {
  const std::string where = absl::StrCat("node ", node->id, " in '", node->ns->name, "': ");
  auto fail = [&](auto&&... parts) { return absl::InternalError(absl::StrCat(where, parts...)); };
  if (node->ref_count < 0 || node->pin_count < 0) return fail("negative hold count");
  if (node->keys.size() != node->blocks.size() ||
      node->tokens.size() != node->blocks.size() * static_cast<size_t>(block_size_)) {
    return fail("keys, blocks and tokens disagree in length");
  }
  if (node->device_blocks < 0 || node->device_blocks > node->num_blocks()) {
    return fail("device block count ", node->device_blocks, " of ", node->num_blocks());
  }
  for (int i = 0; i < node->num_blocks(); ++i) {
    if (node->blocks[i] < 0) return fail("block ", i, " has no place (", node->blocks[i], ")");
    if (i >= node->device_blocks && node->blocks[i] >= host_usable_) {
      return fail("host slot ", node->blocks[i], " is outside the usable ", host_usable_);
    }
  }
  if (node->num_host_blocks() > 0 && node->pin_count > 0) return fail("pinned host blocks");
  if (node->parent != nullptr) {
    if (node->num_blocks() == 0) return fail("empty edge");
    if (node->parent_key != LastKey(node->parent)) return fail("parent key is stale");
    BlockKey prev = node->parent_key;
    for (int i = 0; i < node->num_blocks(); ++i) {
      const BlockKey key = hash_(
          seed_, prev, absl::MakeConstSpan(node->tokens).subspan(i * block_size_, block_size_));
      if (key != node->keys[i]) return fail("key of block ", i, " does not match its tokens");
      prev = key;
    }
  }
  const bool should_be_in_lru = node->parent != nullptr && !node->held() &&
                                node->device_blocks > 0 && node->device_children == 0;
  const LruEntry entry{node->last_access, node->id, const_cast<Node*>(node)};
  if (node->in_lru != should_be_in_lru || (node->in_lru && !lru_.contains(entry))) {
    return fail("eviction-list membership is wrong");
  }
  const bool should_be_in_host_lru = node->parent != nullptr && !node->held() &&
                                     node->children.empty() && node->num_host_blocks() > 0;
  if (node->in_host_lru != should_be_in_host_lru ||
      (node->in_host_lru && !host_lru_.contains(entry))) {
    return fail("host eviction-list membership is wrong");
  }
  for (int i = 0; i < node->num_blocks(); ++i) {
    if (i < node->device_blocks) {
      if (++counts.seen[node->blocks[i]] > 1)
        return fail("block ", node->blocks[i], " is cached twice");
    } else if (++counts.seen_host[node->blocks[i]] > 1) {
      return fail("host slot ", node->blocks[i], " holds two blocks");
    }
  }
  counts.cached += node->device_blocks;
  counts.host_cached += node->num_host_blocks();
  if (node->held()) {
    counts.held += node->device_blocks;
    counts.host_held += node->num_host_blocks();
  }
  if (node->pin_count > 0) counts.pinned += node->device_blocks;

  int64_t child_refs = 0, child_pins = 0;
  int device_children = 0;
  for (const auto& [key, child] : node->children) {
    if (child->parent != node) return fail("child ", child->id, " has another parent");
    if (node->parent != nullptr && child->hits > node->hits) {
      return fail("child ", child->id, " has more hits than its parent");
    }
    if (child->ns != node->ns) return fail("child ", child->id, " is in another namespace");
    if (child->keys.empty() || child->keys[0] != key) return fail("child indexed by wrong key");
    if (child->device_blocks > 0) {
      ++device_children;
      if (node->num_host_blocks() > 0 || (node->parent != nullptr && node->device_blocks == 0)) {
        return fail("child ", child->id, " has device blocks below host blocks");
      }
    }
    child_refs += child->ref_count;
    child_pins += child->pin_count;
    if (absl::Status s = CheckNode(child.get(), counts); !s.ok()) return s;
  }
  if (device_children != node->device_children) {
    return fail("counts ", node->device_children, " children with device blocks, has ",
                device_children);
  }
  if (child_refs > node->ref_count || child_pins > node->pin_count) {
    return fail("children hold more than their parent");
  }
  return absl::OkStatus();
}

absl::Status RadixTree::CheckInvariants() const {
  CheckCounts counts;
  absl::flat_hash_map<std::string, int64_t> per_ns;
  for (const auto& [ns, state] : namespaces_) {
    const Node* root = state->root.get();
    if (root->parent != nullptr || root->num_blocks() != 0 ||
        root->parent_key != NamespaceKey(seed_, ns)) {
      return absl::InternalError(absl::StrCat("root of '", state->name, "' is malformed"));
    }
    const int64_t before = counts.cached, host_before = counts.host_cached;
    if (absl::Status s = CheckNode(root, counts); !s.ok()) return s;
    if (counts.cached - before != state->cached_blocks ||
        counts.host_cached - host_before != state->host_cached_blocks) {
      return absl::InternalError(
          absl::StrCat("namespace '", state->name, "' counts ", state->cached_blocks, " + ",
                       state->host_cached_blocks, " host blocks but holds ", counts.cached - before,
                       " + ", counts.host_cached - host_before));
    }
  }
  const int64_t cached = counts.cached, held = counts.held, pinned = counts.pinned;
  if (counts.host_cached != host_cached_blocks_ || counts.host_held != host_held_blocks_) {
    return absl::InternalError(absl::StrCat(
        "host counters (cached ", host_cached_blocks_, ", held ", host_held_blocks_,
        ") disagree with the tree (", counts.host_cached, ", ", counts.host_held, ")"));
  }
  // Host slots: each usable one is cached, free, or read by a queued promotion.
  absl::flat_hash_map<BlockId, int> slots = counts.seen_host;
  for (BlockId slot : host_free_) ++slots[slot];
  for (BlockId slot : host_released_) ++slots[slot];
  for (const auto& [slot, n] : slots) {
    if (n > 1 || slot < 0 || slot >= host_usable_) {
      return absl::InternalError(
          absl::StrCat("host slot ", slot, " is in ", n, " places (cached, free, released)"));
    }
  }
  if (static_cast<int64_t>(slots.size()) != host_usable_ || host_usable_ > host_capacity_) {
    return absl::InternalError(absl::StrCat("host slots: ", slots.size(), " accounted for of ",
                                            host_usable_, " usable (capacity ", host_capacity_,
                                            ")"));
  }
  for (const auto& entry : host_lru_) {
    if (!std::get<2>(entry)->in_host_lru) {
      return absl::InternalError("stale host eviction-list entry");
    }
  }
  if (cached != cached_blocks_ || held != held_blocks_ || pinned != pinned_blocks_) {
    return absl::InternalError(absl::StrCat(
        "block counters (cached ", cached_blocks_, ", held ", held_blocks_, ", pinned ",
        pinned_blocks_, ") disagree with the tree (", cached, ", ", held, ", ", pinned, ")"));
  }
  for (const auto& entry : lru_) {
    if (!std::get<2>(entry)->in_lru) return absl::InternalError("stale eviction-list entry");
  }
  // Owners: their block counts, their eviction lists and the over-share list.
  absl::flat_hash_map<const RadixOwner*, int64_t> owner_blocks;
  for (const auto& [ns, state] : namespaces_) owner_blocks[state->owner] += state->cached_blocks;
  size_t owner_lru_entries = 0, listed = 0;
  for (const auto& [tenant, owner] : owners_) {
    if (owner_blocks[owner.get()] != owner->cached_blocks) {
      return absl::InternalError(absl::StrCat("owner '", tenant, "' counts ", owner->cached_blocks,
                                              " blocks but holds ", owner_blocks[owner.get()]));
    }
    for (const auto& entry : owner->lru) {
      if (!lru_.contains(entry) || std::get<2>(entry)->ns->owner != owner.get()) {
        return absl::InternalError(absl::StrCat("owner '", tenant, "' lists a foreign leaf"));
      }
    }
    owner_lru_entries += owner->lru.size();
    const bool over = owner->cached_blocks > owner->guaranteed_blocks && !owner->lru.empty();
    if (over != owner->listed.has_value() || (over && (*owner->listed != *owner->lru.begin() ||
                                                       !over_share_.contains(*owner->listed)))) {
      return absl::InternalError(
          absl::StrCat("owner '", tenant, "' is misplaced in the over-share list"));
    }
    listed += over ? 1 : 0;
  }
  if (owner_lru_entries != lru_.size() || listed != over_share_.size()) {
    return absl::InternalError("the owners' eviction lists disagree with the tree's");
  }
  return absl::OkStatus();
}

}  // namespace prefixd
