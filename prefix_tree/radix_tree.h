// prefix_tree/radix_tree.h — maps hashed token blocks to reference-counted KV blocks.
//
// A compressed radix tree per cache namespace. Each edge (Node) holds a run of full blocks:
// their keys, BlockIds and token ids. Children are found by the key of their first block;
// a hit is confirmed by comparing token ids, never by the key alone.
//
// Ownership rule: a block inserted into the tree belongs to the tree. A request holds
// blocks through a PrefixMatch, which pins (ref count +1) every node on its path; the tree
// never evicts a held or pinned node. Blocks at ref count 0 stay cached as *evictable*
// until Evict() or Flush() hands their BlockIds back to the caller (the PrefixCache).
//
// Two tiers. With a host tier (RadixTreeOptions::host_blocks > 0), Evict() demotes a block
// to a host slot instead of dropping it: the block stays in the tree, in host memory, and a
// later Match still finds it (PrefixMatch::host_blocks); Promote() moves such blocks back
// into device blocks. Each block is in exactly one tier. Along every path from a root the
// device blocks come first: a block is on the device only if every block before it is, so
// an edge is some device blocks followed by some host blocks, and an edge with host blocks
// has only host blocks below it. The tree moves no data: it queues a BlockTransfer for each
// demotion and promotion, which the engine drains (TakeTransfers) and carries out, the
// demotions before the promotions. The host tier has its own least-recently-used order
// and never holds more than host_blocks blocks.
#ifndef PREFIXD_PREFIX_TREE_RADIX_TREE_H_
#define PREFIXD_PREFIX_TREE_RADIX_TREE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "prefix_tree/block_hash.h"

namespace prefixd {

class RadixTree;
struct RadixNode;   // an edge of the tree; defined in radix_tree.cc
struct RadixOwner;  // the blocks of one CacheNamespace::tenant; defined in radix_tree.cc

// A held path in the tree: the longest cached full-block prefix of some tokens.
// Move-only. Must be passed to RadixTree::Release() exactly once (releasing twice, or a
// moved-from match, is a checked error); the tree must outlive it.
class PrefixMatch {
 public:
  PrefixMatch() = default;
  PrefixMatch(PrefixMatch&& other) noexcept;
  PrefixMatch& operator=(PrefixMatch&& other) noexcept;
  PrefixMatch(const PrefixMatch&) = delete;
  PrefixMatch& operator=(const PrefixMatch&) = delete;

  // The device part of the match: num_blocks() blocks, num_tokens() tokens.
  int num_tokens() const { return num_blocks() * block_size_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  // The cached blocks on the device, in order: the first num_blocks() entries of a block table.
  absl::Span<const BlockId> blocks() const { return blocks_; }
  // The host slots of the cached blocks after those, in order: Promote() them before use.
  absl::Span<const BlockId> host_blocks() const { return host_; }
  int num_host_blocks() const { return static_cast<int>(host_.size()); }
  // Blocks of this match that Promote() brought back from the host tier.
  int promoted_blocks() const { return promoted_; }
  bool active() const { return state_ == State::kActive; }

 private:
  friend class RadixTree;
  enum class State { kEmpty, kActive, kReleased };
  RadixNode* node_ = nullptr;  // deepest node of the path; the match ends at its end
  std::vector<BlockId> blocks_;
  std::vector<BlockId> host_;
  int promoted_ = 0;
  int block_size_ = 0;
  State state_ = State::kEmpty;
};

// A BlockId that is not one (an unset BlockTransfer end).
inline constexpr BlockId kNoBlock = -1;

// One block's copy between the tiers, for the engine to carry out.
struct BlockTransfer {
  enum class Direction : uint8_t { kToHost, kToDevice };
  Direction direction = Direction::kToHost;
  BlockId device = kNoBlock;  // source of kToHost, destination of kToDevice
  BlockId host = kNoBlock;    // host slot: destination of kToHost, source of kToDevice
};

struct InsertResult {
  int new_blocks = 0;  // blocks of the caller now owned by the tree
  // Indices into the `blocks` argument whose tokens were already cached under another
  // BlockId: the caller should free its copy and use PrefixMatch::blocks()[index].
  std::vector<int> duplicate_indices;
  // Blocks not cached because a different block had the same key (a hash collision).
  // They, and every block after them, stay the caller's.
  int rejected_blocks = 0;
};

struct CacheEvent {
  enum class Kind { kStored, kRemoved };
  // Where the blocks are (vLLM's `medium`: "GPU" for the device, "CPU" for host memory). A
  // demotion is kRemoved on the device then kStored on the host; a promotion the reverse.
  enum class Medium { kDevice, kHost };
  uint64_t sequence = 0;  // strictly increasing per tree
  Kind kind = Kind::kStored;
  Medium medium = Medium::kDevice;
  std::string ns;               // CacheNamespace::DisplayName()
  BlockKey parent;              // kStored: key of the block before keys[0] (or the namespace key)
  bool parent_is_root = false;  // kStored: keys[0] is the first block of its sequence
  std::vector<BlockKey> keys;
  std::vector<TokenId> tokens;  // kStored: the blocks' token ids, keys.size() * block_size
};
using CacheEventSink = std::function<void(const CacheEvent&)>;

struct NamespaceStats {
  std::string name;
  int64_t query_tokens = 0;
  int64_t hit_tokens = 0;
  int64_t cached_blocks = 0;       // on the device
  int64_t host_hit_tokens = 0;     // of hit_tokens, promoted from the host tier
  int64_t host_cached_blocks = 0;  // in the host tier
};

struct TreeStats {
  int64_t cached_blocks = 0;     // blocks in the tree on the device
  int64_t held_blocks = 0;       // of those, used by a PrefixMatch or pinned
  int64_t pinned_blocks = 0;     // pinned (a subset of held)
  int64_t evictable_blocks = 0;  // cached_blocks - held_blocks
  int64_t query_tokens = 0;
  int64_t hit_tokens = 0;       // device and host hits
  int64_t host_hit_tokens = 0;  // of those, promoted from the host tier
  int64_t inserted_blocks = 0;
  int64_t evicted_blocks = 0;  // from the device to make room (LRU), demoted or dropped
  int64_t flushed_blocks = 0;  // by Flush, both tiers
  int64_t hash_collisions = 0;
  // The host tier (all 0 without one).
  int64_t host_capacity_blocks = 0;  // RadixTreeOptions::host_blocks
  int64_t host_usable_blocks = 0;    // slots with memory behind them (grow_host)
  int64_t host_cached_blocks = 0;    // blocks in the tree in host memory
  int64_t host_held_blocks = 0;      // of those, on a held path (waiting for a Promote)
  int64_t demoted_blocks = 0;        // device -> host
  int64_t promoted_blocks = 0;       // host -> device
  int64_t host_evicted_blocks = 0;   // dropped from the host tier to make room (its LRU)
  // Evicted from the device with no host slot to take them (the tier could not grow and
  // every host block was held), so dropped, with the host blocks below them.
  int64_t dropped_blocks = 0;
  int64_t host_grow_failures = 0;          // grow_host calls that gave nothing
  std::vector<NamespaceStats> namespaces;  // sorted by name
};

// A cached prefix as an operator sees it: where it lives, how long it is, how often it
// was used. Never its tokens: they belong to the tenant.
struct HotPrefix {
  std::string ns;       // CacheNamespace::DisplayName()
  int64_t tokens = 0;   // prefix length: every block from the start to the end of its edge
  int64_t hits = 0;     // Match() calls that used the whole prefix
  absl::Time created;   // when the first block of its last edge was cached
  absl::Time last_hit;  // the latest Match that used the whole prefix
  bool pinned = false;  // kept from eviction by a Pin
};

struct RadixTreeOptions {
  int block_size = 16;  // tokens per block; a power of two in [1, kMaxBlockSize]
  uint64_t seed = RandomHashSeed();
  BlockHashFn hash = &Xxh3BlockHash;
  std::function<absl::Time()> clock = nullptr;  // creation times of prefixes; null: absl::Now
  // Guaranteed shares, in blocks, by owner: the `tenant` of a CacheNamespace (a tenant's
  // own namespaces, or "shared:<name>"). Eviction takes an owner's unheld blocks below its
  // guarantee only when no owner holding more than its own guarantee has an unheld block.
  // Owners not listed are guaranteed nothing.
  absl::flat_hash_map<std::string, int64_t> guaranteed_blocks = {};
  // The host tier's capacity in blocks; 0: none (evicted blocks are dropped).
  int32_t host_blocks = 0;
  // Makes up to `n` more host slots usable (allocates their memory) and returns how many it
  // made, 0 when it cannot. Slots become usable in order: 0, 1, ... Null: all host_blocks
  // are usable from the start. After a call that gave nothing the tier stops growing.
  std::function<int32_t(int32_t n)> grow_host = nullptr;
};

// Not thread-safe: owned by the scheduler thread. Match() and Insert() may split an edge.
class RadixTree {
 public:
  explicit RadixTree(RadixTreeOptions options = {});
  ~RadixTree();
  RadixTree(const RadixTree&) = delete;
  RadixTree& operator=(const RadixTree&) = delete;

  int block_size() const { return block_size_; }
  uint64_t seed() const { return seed_; }

  // Longest cached full-block prefix of `tokens` in `ns`; holds every matched block.
  // Counts tokens.size() query tokens and the matched tokens as hits in the stats, unless
  // `count` is false (a lookup that may be retried: count it once, with CountLookup).
  PrefixMatch Match(const CacheNamespace& ns, absl::Span<const TokenId> tokens, bool count = true);
  // Counts an uncounted Match of `query_tokens` tokens whose hold is `match` (its hits,
  // and a hit on every edge it used).
  void CountLookup(const CacheNamespace& ns, const PrefixMatch& match, int64_t query_tokens);

  // Brings the host blocks of `match` (host_blocks()) back to the device, into
  // `device_blocks` (free blocks of the caller, one per host block, now the tree's): queues
  // their transfers and appends them to match.blocks(). Returns how many it moved.
  int Promote(PrefixMatch& match, absl::Span<const BlockId> device_blocks);
  // The transfers queued since the last call, in order. The caller must carry them out
  // before the device blocks involved are used: demotions (kToHost) before anything
  // overwrites their device blocks, promotions (kToDevice) before anything reads theirs.
  // Host slots that promotions read are reused only after this call, so the caller may run
  // all of a batch's demotions before its promotions.
  std::vector<BlockTransfer> TakeTransfers();

  // Extends `match` with the full blocks of `tokens` beyond it. `match` must have no host
  // blocks (Promote them first). Blocks of `tokens` the tree has in the host tier take the
  // caller's device blocks instead (the caller computed them: no copy). `tokens` is the whole
  // sequence whose prefix `match` holds, `blocks` its block table (blocks[i] holds tokens
  // [i*block_size, (i+1)*block_size)); only min(tokens.size() / block_size, blocks.size())
  // blocks are considered. Afterwards `match` holds every block that is cached.
  InsertResult Insert(PrefixMatch& match, absl::Span<const TokenId> tokens,
                      absl::Span<const BlockId> blocks);
  // Insert without a hold: the stored blocks are evictable at once. Not counted as a query.
  InsertResult Insert(const CacheNamespace& ns, absl::Span<const TokenId> tokens,
                      absl::Span<const BlockId> blocks);

  // Drops the hold of `match`. Releasing twice, or a moved-from match, crashes.
  void Release(PrefixMatch& match);

  // Keeps the cached full-block prefix of `tokens` from eviction until Unpin with the same
  // tokens. Pins nest. Returns the number of tokens pinned (0 if nothing is cached). Pins
  // stay on the device: only the part of the prefix there is pinned.
  int Pin(const CacheNamespace& ns, absl::Span<const TokenId> tokens);
  // Undoes one Pin of the same tokens. NotFound if they are not pinned.
  absl::StatusOr<int> Unpin(const CacheNamespace& ns, absl::Span<const TokenId> tokens);

  // Frees up to `num_blocks` device blocks of unheld leaves (leaves of the device part of
  // the tree) and returns their BlockIds. With a host tier each is demoted to a host slot
  // (its transfer queued), taking the host tier's least recently used blocks when it is
  // full; without one, or with no slot to be had, it is dropped. Counted as evicted. Fair: least
  // recently used first (an edge's tail first) among the owners that hold more than their
  // guaranteed share, taking none below it; only when no such owner has an unheld block, least
  // recently used first among all. Each block costs O(log owners + log leaves) (radix_tree_bench:
  // BM_EvictFair).
  std::vector<BlockId> Evict(int64_t num_blocks);
  // Removes every evictable block of both tiers, whoever owns it; returns the device
  // BlockIds. Counted as flushed, not evicted.
  std::vector<BlockId> Flush();

  TreeStats Stats() const;
  // The `k` most used cached prefixes with at least one hit: most hits first, then the
  // longer. Each edge end is one prefix; a Match counts a hit on every edge it used whole.
  // Walks the edges with hits (not blocks), skipping subtrees that cannot make the top k:
  // measured 0.04 ms for k = 10 over 100k blocks in 3.4k edges, every edge hit (one core of
  // a 2-core VM). For dashboards, not for every step.
  std::vector<HotPrefix> HotPrefixes(int k) const;
  int64_t evictable_blocks() const { return cached_blocks_ - held_blocks_; }
  int64_t cached_blocks() const { return cached_blocks_; }
  bool has_host_tier() const { return host_capacity_ > 0; }

  // Every stored event goes to `sink` (called synchronously, on the caller's thread).
  void SetEventSink(CacheEventSink sink) { sink_ = std::move(sink); }
  // The cache as kStored events (parents before children), all with the sequence number
  // of the last event emitted: a new watcher's starting point.
  std::vector<CacheEvent> Snapshot() const;
  uint64_t last_sequence() const { return sequence_; }

  // Every device BlockId the tree owns, for cross-checks with the pool.
  std::vector<BlockId> CachedBlockIds() const { return TierBlockIds(/*host=*/false); }
  // Every host slot the tree's blocks occupy.
  std::vector<BlockId> HostBlockIds() const { return TierBlockIds(/*host=*/true); }

  // Structural check for tests: keys recompute, token counts, parent links, ref counts,
  // the evictable set, the block counters (per owner too), the over-share list, and no
  // BlockId twice.
  absl::Status CheckInvariants() const;

  // An unheld leaf in an eviction order.
  using LruEntry = std::tuple<uint64_t /*last_access*/, uint64_t /*node id*/, RadixNode*>;

 private:
  struct NamespaceState;
  using Node = RadixNode;

  std::vector<BlockId> TierBlockIds(bool host) const;
  NamespaceState& GetOrCreateNamespace(const CacheNamespace& ns);
  RadixOwner& GetOrCreateOwner(const std::string& tenant);
  // Puts `owner` in over_share_ (by its oldest unheld leaf) when it holds more than its
  // guarantee and has an unheld leaf; takes it out otherwise.
  void RelistOwner(RadixOwner& owner);
  // Walks from `node` down along `tokens` starting at block `first_block`; splits the last
  // edge so the walk ends at a node boundary. Returns the deepest matched node and appends
  // the matched blocks' ids to `blocks` (device) and `host` (host slots; after them).
  Node* Walk(Node* node, absl::Span<const TokenId> tokens, int first_block,
             std::vector<BlockId>& blocks, std::vector<BlockId>& host);
  Node* Split(Node* node, int keep_blocks);
  // Adds `delta_ref` and `delta_pin` to every node from `node` up to its root.
  void AddHold(Node* node, int delta_ref, int delta_pin);
  // Block counters: call with -1 before changing a node, +1 after.
  void Account(const Node* node, int sign);
  // The device eviction order (unheld leaves of the device part) and the host tier's
  // (unheld leaves with host blocks): Relist puts a node where it belongs in both.
  void UpdateLru(Node* node);
  void RemoveFromLru(Node* node);
  void UpdateHostLru(Node* node);
  void Relist(Node* node);
  void Unlist(Node* node);
  // A child of `parent` got (+1) or lost (-1) its last device block.
  void ChildDeviceChanged(Node* parent, int delta);
  // Converts the host blocks at the end of the path to `end` (the last device_blocks.size()
  // blocks of it) into `device_blocks`; `copy`: queue their promotion, else the caller
  // already has their contents there.
  void ToDevice(Node* end, absl::Span<const BlockId> device_blocks, bool copy);
  // Makes at least `want` host slots free if it can (growing the tier, then evicting its
  // least recently used blocks); returns min(want, free slots).
  int ReserveHostSlots(int want);
  // Drops up to `max_blocks` host blocks from the tail of the host tier's least recently
  // used leaf; counts them into `counter`.
  void EvictHostLeaf(int64_t max_blocks, int64_t& counter);
  // Drops `node`'s host blocks and every node below it (all in host memory), counting them
  // into `counter`. `node` is unlisted and un-Accounted by the caller.
  void DropHostSuffix(Node* node, int64_t& counter);
  BlockKey LastKey(const Node* node) const;
  void Emit(CacheEvent::Kind kind, CacheEvent::Medium medium, const Node* node, int first,
            int count);
  CacheEvent MakeEvent(CacheEvent::Kind kind, CacheEvent::Medium medium, const Node* node,
                       int first, int count, uint64_t sequence) const;
  struct CheckCounts;
  absl::Status CheckNode(const Node* node, CheckCounts& counts) const;

  const int block_size_;
  const uint64_t seed_;
  const BlockHashFn hash_;
  const std::function<absl::Time()> clock_fn_;

  absl::flat_hash_map<CacheNamespace, std::unique_ptr<NamespaceState>> namespaces_;
  const absl::flat_hash_map<std::string, int64_t> guaranteed_blocks_;
  absl::flat_hash_map<std::string, std::unique_ptr<RadixOwner>> owners_;
  // Unheld leaves of the device part, oldest access first: the eviction order when no owner
  // is over its share, and Flush's.
  absl::btree_set<LruEntry> lru_;
  // Unheld leaves with host blocks, oldest access first: the host tier's eviction order.
  absl::btree_set<LruEntry> host_lru_;
  // The oldest unheld leaf of each owner over its guaranteed share: the fair eviction order.
  absl::btree_set<LruEntry> over_share_;
  // Pinned prefixes: (namespace, pinned tokens) -> the held path and its pin count.
  // Each Pin call pushes the node its pinned path ends at; Unpin pops the last one.
  absl::flat_hash_map<std::pair<CacheNamespace, std::vector<TokenId>>, std::vector<RadixNode*>>
      pins_;

  uint64_t clock_ = 0;  // logical time for LRU
  uint64_t next_node_id_ = 0;
  uint64_t sequence_ = 0;
  CacheEventSink sink_;

  int64_t cached_blocks_ = 0;
  int64_t held_blocks_ = 0;
  int64_t pinned_blocks_ = 0;
  int64_t inserted_blocks_ = 0;
  int64_t evicted_blocks_ = 0;
  int64_t flushed_blocks_ = 0;
  // Evict's and Flush's work on the device tier; counts into `counter`. `fair`: as Evict;
  // else plain LRU. `demote`: to the host tier when there is one; else dropped.
  std::vector<BlockId> Remove(int64_t num_blocks, int64_t& counter, bool fair, bool demote);
  int64_t hash_collisions_ = 0;

  // The host tier.
  const int32_t host_capacity_;
  const std::function<int32_t(int32_t)> grow_host_;
  int32_t host_usable_ = 0;
  bool host_grow_failed_ = false;
  std::vector<BlockId> host_free_;
  std::vector<BlockId> host_released_;  // read by queued promotions: free after TakeTransfers
  std::vector<BlockTransfer> transfers_;
  int64_t host_cached_blocks_ = 0;
  int64_t host_held_blocks_ = 0;
  int64_t demoted_blocks_ = 0;
  int64_t promoted_blocks_ = 0;
  int64_t host_evicted_blocks_ = 0;
  int64_t dropped_blocks_ = 0;
  int64_t host_grow_failures_ = 0;
};

}  // namespace prefixd

#endif  // PREFIXD_PREFIX_TREE_RADIX_TREE_H_
