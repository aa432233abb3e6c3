// kernels/cpu/cpu_attention.cc — paged causal attention, one algorithm for decode, chunked
// prefill and whole prefill.
//
// Work is split into tiles: (sequence, kv head, up to kRowsPerTile query rows, a slice of
// the query heads that share that kv head). A tile walks its sequence's KV blocks once, in
// order; each block's keys and values ([block_size, d], contiguous in the cache layout
// [num_blocks, Hkv, block_size, d]) stay in L1 while every query vector of the tile
// (rows × heads) consumes them. Softmax is online (flash-attention style), with the running
// max rescaled once per block:
//   m' = max(m, max_j s_j),  l' = l e^(m - m') + Σ_j e^(s_j - m'),
//   acc' = acc e^(m - m') + Σ_j e^(s_j - m') v_j,  out = acc / l.
// Each query vector's arithmetic is the same whatever the tiling or thread count, so the
// output is deterministic.
//
// Shared-prefix groups (cascade attention): a tile may instead hold the decode rows of up to
// kSeqsPerGroupTile sequences of one group, one row each. It walks the blocks in the same
// order; the group's shared blocks are the same for every row, so each is read once for all
// of them, and past those each row reads its own. Every vector still sees the same keys in
// the same order, so the output is bit-identical to the plain tiling.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "base/check.h"
#include "kernels/cpu/check_shape.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/vec.h"

namespace prefixd {
namespace {

// Query rows per tile: enough to reuse each key block across rows in prefill, few enough
// that the tiles of one sequence still spread over the threads.
constexpr int kRowsPerTile = 16;
// Sequences of a shared-prefix group per tile: the shared blocks are read once per tile.
constexpr int kSeqsPerGroupTile = 16;

struct AttentionTile {
  int seq, seq_end;  // one sequence (seq_end = seq + 1), or a group's, one row each
  int kv_head;
  int row_begin, row_end;    // rows of qkv / out: of sequence `seq`, or one per sequence
  int head_begin, head_end;  // query heads, all in kv_head's group
  int64_t cost;              // ~ query vectors × keys, to schedule big tiles first
};

// Host views of the metadata of one PagedAttention call.
struct SequenceLayout {
  const int32_t* query_start;   // [num_seqs + 1]
  const int32_t* context_lens;  // [num_seqs]
  const int32_t* block_tables;  // [num_seqs, max_blocks_per_seq]
  int max_blocks_per_seq;
  int block_size;
};

// Per-thread working memory of one tile: the query vectors' running softmax state.
struct TileScratch {
  std::vector<float> acc;     // [vectors, d]
  std::vector<float> max;     // [vectors]
  std::vector<float> sum;     // [vectors]
  std::vector<float> scores;  // [block_size]
};

// The backend's hottest loop: cloned per ISA level (see vec.h).
PREFIXD_CPU_TARGET_CLONES
void AttendTile(const AttentionTile& tile, const SequenceLayout& layout,
                const AttentionShape& shape, const float* qkv, const float* k_cache,
                const float* v_cache, float scale, float* out, TileScratch& scratch) {
  const int d = shape.head_dim, hkv = shape.num_kv_heads, bs = layout.block_size;
  const int64_t qkv_width = static_cast<int64_t>(shape.num_q_heads + 2 * hkv) * d;
  const int64_t out_width = static_cast<int64_t>(shape.num_q_heads) * d;
  const int heads = tile.head_end - tile.head_begin;
  const int vectors = (tile.row_end - tile.row_begin) * heads;
  const bool grouped = tile.seq_end - tile.seq > 1;
  auto seq_of = [&](int row) { return grouped ? tile.seq + (row - tile.row_begin) : tile.seq; };
  // Row r of sequence s is the new token at position context_len - query_len + (r -
  // query_start); it attends to positions 0..its own.
  auto position = [&](int row) {
    const int s = seq_of(row);
    const int query_start = layout.query_start[s];
    const int query_len = layout.query_start[s + 1] - query_start;
    return layout.context_lens[s] - query_len + (row - query_start);
  };
  auto block_id = [&](int row, int block) {
    return layout
        .block_tables[static_cast<int64_t>(seq_of(row)) * layout.max_blocks_per_seq + block];
  };

  scratch.acc.assign(static_cast<size_t>(vectors) * d, 0.0f);
  scratch.max.assign(vectors, -std::numeric_limits<float>::infinity());
  scratch.sum.assign(vectors, 0.0f);
  scratch.scores.resize(bs);
  float* scores = scratch.scores.data();

  int last_position = 0;
  for (int row = tile.row_begin; row < tile.row_end; ++row) {
    last_position = std::max(last_position, position(row));
  }
  for (int block = 0; block * bs <= last_position; ++block) {
    const int first_key = block * bs;
    for (int row = tile.row_begin; row < tile.row_end; ++row) {
      // Causal: this row sees keys first_key..position(row) of the block.
      const int num_keys = std::min(bs, position(row) + 1 - first_key);
      if (num_keys <= 0) continue;
      const int64_t base =
          (static_cast<int64_t>(block_id(row, block)) * hkv + tile.kv_head) * bs * d;
      const float* keys = k_cache + base;  // [bs, d]
      const float* values = v_cache + base;
      for (int h = 0; h < heads; ++h) {
        const int vector = (row - tile.row_begin) * heads + h;
        const float* q = qkv + row * qkv_width + static_cast<int64_t>(tile.head_begin + h) * d;
        float block_max = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < num_keys; ++j) {
          scores[j] = scale * vec::Dot(q, keys + static_cast<int64_t>(j) * d, d);
          block_max = std::max(block_max, scores[j]);
        }
        float* acc = scratch.acc.data() + static_cast<int64_t>(vector) * d;
        float& running_max = scratch.max[vector];
        float& running_sum = scratch.sum[vector];
        if (block_max > running_max) {
          const float correction = std::exp(running_max - block_max);  // 0 on the first block
          running_sum *= correction;
          vec::Scale(correction, acc, d);
          running_max = block_max;
        }
        for (int j = 0; j < num_keys; ++j) {
          const float p = std::exp(scores[j] - running_max);
          running_sum += p;
          vec::Axpy(p, values + static_cast<int64_t>(j) * d, acc, d);
        }
      }
    }
  }

  for (int row = tile.row_begin; row < tile.row_end; ++row) {
    for (int h = 0; h < heads; ++h) {
      const int vector = (row - tile.row_begin) * heads + h;
      float* o = out + row * out_width + static_cast<int64_t>(tile.head_begin + h) * d;
      std::memcpy(o, scratch.acc.data() + static_cast<int64_t>(vector) * d, d * sizeof(float));
      // Every row sees at least its own key, so the sum is >= 1.
      vec::Scale(1.0f / scratch.sum[vector], o, d);
    }
  }
}

}  // namespace

void CpuBackend::PagedAttention(const Tensor& qkv, const AttentionMetadata& meta,
                                const AttentionShape& shape, const KvCacheLayer& kv, float scale,
                                Tensor& out) {
  const int hq = shape.num_q_heads, hkv = shape.num_kv_heads, d = shape.head_dim;
  PREFIXD_CHECK(hq > 0 && hkv > 0 && d > 0 && hq % hkv == 0,
                "PagedAttention: bad attention shape Hq=", hq, " Hkv=", hkv, " d=", d);
  const int64_t tokens = meta.num_tokens;
  CheckShape("PagedAttention", "qkv", qkv, DType::kF32,
             {tokens, static_cast<int64_t>(hq + 2 * hkv) * d});
  CheckShape("PagedAttention", "out", out, DType::kF32, {tokens, static_cast<int64_t>(hq) * d});
  CheckShape("PagedAttention", "kv.k", kv.k, DType::kF32, {kAnySize, hkv, meta.block_size, d});
  const int64_t num_blocks = kv.k.dim(0);
  CheckShape("PagedAttention", "kv.v", kv.v, DType::kF32, {num_blocks, hkv, meta.block_size, d});
  const int num_seqs = meta.num_seqs;
  CheckShape("PagedAttention", "query_start", meta.query_start, DType::kI32, {num_seqs + 1});
  CheckShape("PagedAttention", "context_lens", meta.context_lens, DType::kI32, {num_seqs});
  CheckShape("PagedAttention", "block_tables", meta.block_tables, DType::kI32,
             {num_seqs, meta.max_blocks_per_seq});

  const SequenceLayout layout{meta.query_start.as<int32_t>(), meta.context_lens.as<int32_t>(),
                              meta.block_tables.as<int32_t>(), meta.max_blocks_per_seq,
                              meta.block_size};
  // The metadata comes from the scheduler: anything inconsistent is a bug there.
  PREFIXD_CHECK(layout.query_start[0] == 0 && layout.query_start[num_seqs] == tokens,
                "PagedAttention: query_start must run from 0 to num_tokens ", tokens);
  const int group = hq / hkv;
  std::vector<AttentionTile> tiles;
  for (int s = 0; s < num_seqs; ++s) {
    const int query_len = layout.query_start[s + 1] - layout.query_start[s];
    const int context_len = layout.context_lens[s];
    PREFIXD_CHECK(0 <= query_len && query_len <= meta.max_query_len && query_len <= context_len &&
                      context_len <= meta.max_context_len,
                  "PagedAttention: sequence ", s, " has query_len ", query_len, " and context_len ",
                  context_len, " (max_query_len ", meta.max_query_len, ", max_context_len ",
                  meta.max_context_len, ")");
    const int used_blocks = (context_len + meta.block_size - 1) / meta.block_size;
    PREFIXD_CHECK(used_blocks <= meta.max_blocks_per_seq, "PagedAttention: sequence ", s, " needs ",
                  used_blocks, " blocks, max_blocks_per_seq is ", meta.max_blocks_per_seq);
    for (int b = 0; b < used_blocks; ++b) {
      const int32_t block = layout.block_tables[s * meta.max_blocks_per_seq + b];
      PREFIXD_CHECK(0 <= block && block < num_blocks, "PagedAttention: block_tables[", s, "][", b,
                    "] = ", block, " is outside the cache ", kv.k.ShapeString());
    }
  }
  // Shared-prefix groups, checked: the scheduler builds them, so a bad one is its bug.
  std::vector<int> group_end(num_seqs, -1);  // at a group's first sequence: one past its last
  if (meta.num_groups > 0) {
    CheckShape("PagedAttention", "groups", meta.groups, DType::kI32, {meta.num_groups, 3});
    const int32_t* groups = meta.groups.as<int32_t>();
    int previous_end = 0;
    for (int g = 0; g < meta.num_groups; ++g) {
      const int first = groups[3 * g], end = groups[3 * g + 1], shared = groups[3 * g + 2];
      PREFIXD_CHECK(previous_end <= first && first < end && end <= num_seqs && shared >= 1,
                    "PagedAttention: group ", g, " is sequences [", first, ", ", end, ") sharing ",
                    shared, " blocks");
      for (int s = first; s < end; ++s) {
        PREFIXD_CHECK(layout.query_start[s + 1] - layout.query_start[s] == 1 &&
                          shared * meta.block_size < layout.context_lens[s],
                      "PagedAttention: sequence ", s, " of group ", g,
                      " is not one decode token past the group's ", shared, " shared blocks");
        for (int b = 0; b < shared; ++b) {
          PREFIXD_CHECK(layout.block_tables[s * meta.max_blocks_per_seq + b] ==
                            layout.block_tables[first * meta.max_blocks_per_seq + b],
                        "PagedAttention: sequence ", s, " of group ", g, " does not share block ",
                        b);
        }
      }
      group_end[first] = end;
      previous_end = end;
    }
  }
  for (int s = 0; s < num_seqs;) {
    if (group_end[s] > 0) {
      // A group: tiles of up to kSeqsPerGroupTile sequences, one row each.
      for (int a = s; a < group_end[s]; a += kSeqsPerGroupTile) {
        const int b = std::min(a + kSeqsPerGroupTile, group_end[s]);
        int64_t keys = 0;
        for (int t = a; t < b; ++t) keys += layout.context_lens[t];
        for (int kvh = 0; kvh < hkv; ++kvh) {
          tiles.push_back({a, b, kvh, layout.query_start[a], layout.query_start[b], kvh * group,
                           (kvh + 1) * group, group * keys});
        }
      }
      s = group_end[s];
      continue;
    }
    const int query_len = layout.query_start[s + 1] - layout.query_start[s];
    const int context_len = layout.context_lens[s];
    for (int r = 0; r < query_len; r += kRowsPerTile) {
      const int row_begin = layout.query_start[s] + r;
      const int row_end = row_begin + std::min(kRowsPerTile, query_len - r);
      // Keys seen by the tile's last row, which sees the most.
      const int64_t keys = context_len - query_len + std::min(r + kRowsPerTile, query_len);
      for (int kvh = 0; kvh < hkv; ++kvh) {
        tiles.push_back({s, s + 1, kvh, row_begin, row_end, kvh * group, (kvh + 1) * group,
                         (row_end - row_begin) * group * keys});
      }
    }
    ++s;
  }

  // With few tiles (decode of a small batch), split each group's query heads across tiles
  // too, so every thread has work; each slice then reads the keys once more.
  const int wanted_tiles = 2 * pool_.num_threads();
  if (group > 1 && static_cast<int>(tiles.size()) < wanted_tiles) {
    const int slices = std::min<int>(group, (wanted_tiles + tiles.size() - 1) / tiles.size());
    const int heads_per_slice = (group + slices - 1) / slices;
    std::vector<AttentionTile> sliced;
    for (const AttentionTile& tile : tiles) {
      for (int h = tile.head_begin; h < tile.head_end; h += heads_per_slice) {
        AttentionTile slice = tile;
        slice.head_begin = h;
        slice.head_end = std::min(h + heads_per_slice, tile.head_end);
        slice.cost = tile.cost / group * (slice.head_end - slice.head_begin);
        sliced.push_back(slice);
      }
    }
    tiles = std::move(sliced);
  }
  // Biggest first, so the long tail of a causal prefill does not finish last on one thread.
  std::stable_sort(tiles.begin(), tiles.end(),
                   [](const AttentionTile& a, const AttentionTile& b) { return a.cost > b.cost; });

  const float* q = qkv.as<float>();
  const float* k_cache = kv.k.as<float>();
  const float* v_cache = kv.v.as<float>();
  float* dst = out.as<float>();
  ParallelFor(static_cast<int64_t>(tiles.size()), 1, [&](int64_t begin, int64_t end) {
    TileScratch scratch;
    for (int64_t i = begin; i < end; ++i) {
      AttendTile(tiles[i], layout, shape, q, k_cache, v_cache, scale, dst, scratch);
    }
  });
}

}  // namespace prefixd
