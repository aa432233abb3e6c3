// tests/kernels/attention_problem.h — the batches the attention tests run (CPU and CUDA):
// per-sequence keys and values scattered into a paged cache through shuffled block tables,
// and decode batches whose groups share prefix blocks as the prefix cache lays them out.
#ifndef PREFIXD_TESTS_KERNELS_ATTENTION_PROBLEM_H_
#define PREFIXD_TESTS_KERNELS_ATTENTION_PROBLEM_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd::testing {

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct SequenceSpec {
  int query_len;
  int context_len;
};

// One batch: dense per-sequence keys/values, scattered into a paged cache through shuffled
// block tables. Everything attention must not read is NaN: unused blocks, slots past a
// sequence's context, and the k/v heads of qkv (attention reads keys from the cache).
struct AttentionProblem {
  AttentionShape shape;
  int block_size = 0;
  std::vector<SequenceSpec> seqs;
  int num_tokens = 0;
  int max_blocks_per_seq = 0;
  int num_blocks = 0;
  std::vector<int32_t> query_start, context_lens, block_tables;
  std::vector<float> qkv;                // [T, (Hq + 2 Hkv) d]
  std::vector<std::vector<float>> keys;  // per sequence: [context_len, Hkv, d]
  std::vector<std::vector<float>> values;
  std::vector<float> k_cache, v_cache;  // [num_blocks, Hkv, block_size, d]
};

// What random draws go through: nothing (the CPU's fp32), or rounding to bf16 (the CUDA
// tests, so that both backends see the same exact values).
using Rounding = std::vector<float> (*)(std::vector<float>);
inline std::vector<float> Exact(std::vector<float> v) { return v; }

// Fills p.qkv (random queries; NaN k/v heads) and scatters p.keys / p.values into a NaN
// paged cache through p.block_tables. Needs everything else of p set.
inline void LayOutCache(AttentionProblem& p, uint32_t seed, Rounding round = Exact) {
  const int hq = p.shape.num_q_heads, hkv = p.shape.num_kv_heads, d = p.shape.head_dim;
  const int width = (hq + 2 * hkv) * d, block_size = p.block_size;
  p.qkv = round(RandomFloats(p.num_tokens * width, seed));
  for (int t = 0; t < p.num_tokens; ++t) {
    std::fill_n(p.qkv.begin() + t * width + hq * d, 2 * hkv * d, kNaN);
  }
  p.k_cache.assign(p.num_blocks * hkv * block_size * d, kNaN);
  p.v_cache = p.k_cache;
  for (size_t s = 0; s < p.seqs.size(); ++s) {
    for (int pos = 0; pos < p.seqs[s].context_len; ++pos) {
      const int block = p.block_tables[s * p.max_blocks_per_seq + pos / block_size];
      for (int h = 0; h < hkv; ++h) {
        const int at = ((block * hkv + h) * block_size + pos % block_size) * d;
        for (int j = 0; j < d; ++j) {
          p.k_cache[at + j] = p.keys[s][(pos * hkv + h) * d + j];
          p.v_cache[at + j] = p.values[s][(pos * hkv + h) * d + j];
        }
      }
    }
  }
}

inline AttentionProblem MakeProblem(AttentionShape shape, int block_size,
                                    std::vector<SequenceSpec> seqs, uint32_t seed,
                                    Rounding round = Exact) {
  AttentionProblem p;
  p.shape = shape;
  p.block_size = block_size;
  p.seqs = std::move(seqs);
  const int hkv = shape.num_kv_heads, d = shape.head_dim;
  p.query_start.push_back(0);
  int total_blocks = 0;
  for (const SequenceSpec& s : p.seqs) {
    p.num_tokens += s.query_len;
    p.query_start.push_back(p.num_tokens);
    p.context_lens.push_back(s.context_len);
    const int blocks = (s.context_len + block_size - 1) / block_size;
    p.max_blocks_per_seq = std::max(p.max_blocks_per_seq, blocks + 1);  // +1: a padded entry
    total_blocks += blocks;
  }
  p.num_blocks = total_blocks + 3;  // some blocks belong to nobody
  std::vector<int32_t> block_ids(p.num_blocks);
  std::iota(block_ids.begin(), block_ids.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(block_ids.begin(), block_ids.end(), rng);

  p.block_tables.assign(p.seqs.size() * p.max_blocks_per_seq, -1);
  int next_block = 0;
  for (size_t s = 0; s < p.seqs.size(); ++s) {
    const int context_len = p.seqs[s].context_len;
    // Scale keys up so the softmax is peaked in places, and not uniform.
    p.keys.push_back(round(RandomFloats(context_len * hkv * d, seed + 2 + 2 * s, -2.0f, 2.0f)));
    p.values.push_back(round(RandomFloats(context_len * hkv * d, seed + 3 + 2 * s)));
    const int blocks = (context_len + block_size - 1) / block_size;
    for (int b = 0; b < blocks; ++b)
      p.block_tables[s * p.max_blocks_per_seq + b] = block_ids[next_block++];
  }
  LayOutCache(p, seed + 1, round);
  return p;
}

// Shared-prefix groups for PagedAttention: (first, end, shared_blocks) per group.
using Groups = std::vector<int32_t>;

// A decode batch in which groups of sequences share a prefix, as the prefix cache lays them
// out: the prefix's full blocks are the same blocks in every member's table; its tokens past
// the last full block (a prefix ending mid-block) are equal in content but live in each
// member's private blocks. Group g has shared_tokens[g] shared tokens and own[g][i] more
// tokens for member i (the last being its new decode token). Sequences of `loners` stand
// alone after the groups, with a prefill among them.
struct SharedPrefixBatch {
  AttentionProblem problem;
  Groups groups;
};

inline SharedPrefixBatch MakeSharedPrefixBatch(AttentionShape shape, int block_size,
                                               const std::vector<int>& shared_tokens,
                                               const std::vector<std::vector<int>>& own,
                                               const std::vector<SequenceSpec>& loners,
                                               uint32_t seed, Rounding round = Exact) {
  SharedPrefixBatch out;
  AttentionProblem& p = out.problem;
  p.shape = shape;
  p.block_size = block_size;
  const int hkv = shape.num_kv_heads, d = shape.head_dim;
  const int row = hkv * d;  // one position's keys
  std::mt19937 rng(seed);
  int next_block = 0;
  std::vector<std::vector<int32_t>> tables;
  for (size_t g = 0; g < shared_tokens.size(); ++g) {
    const std::vector<float> prefix_k =
        round(RandomFloats(shared_tokens[g] * row, seed + 100 + g, -2.0f, 2.0f));
    const std::vector<float> prefix_v = round(RandomFloats(shared_tokens[g] * row, seed + 200 + g));
    const int full = shared_tokens[g] / block_size;
    std::vector<int32_t> shared_ids;
    for (int b = 0; b < full; ++b) shared_ids.push_back(next_block++);
    for (size_t i = 0; i < own[g].size(); ++i) {
      const int context_len = shared_tokens[g] + own[g][i];
      p.seqs.push_back({1, context_len});
      std::vector<float> k = prefix_k, v = prefix_v;
      const std::vector<float> more_k =
          round(RandomFloats(own[g][i] * row, seed + 300 + 7 * g + i, -2.0f, 2.0f));
      const std::vector<float> more_v =
          round(RandomFloats(own[g][i] * row, seed + 400 + 7 * g + i));
      k.insert(k.end(), more_k.begin(), more_k.end());
      v.insert(v.end(), more_v.begin(), more_v.end());
      p.keys.push_back(std::move(k));
      p.values.push_back(std::move(v));
      std::vector<int32_t> table = shared_ids;
      while (static_cast<int>(table.size()) * block_size < context_len) {
        table.push_back(next_block++);
      }
      tables.push_back(std::move(table));
    }
    const int end = static_cast<int>(p.seqs.size());
    out.groups.insert(out.groups.end(), {end - static_cast<int>(own[g].size()), end, full});
  }
  for (const SequenceSpec& s : loners) {
    p.seqs.push_back(s);
    p.keys.push_back(
        round(RandomFloats(s.context_len * row, seed + 500 + p.seqs.size(), -2.0f, 2.0f)));
    p.values.push_back(round(RandomFloats(s.context_len * row, seed + 600 + p.seqs.size())));
    std::vector<int32_t> table;
    while (static_cast<int>(table.size()) * block_size < s.context_len) {
      table.push_back(next_block++);
    }
    tables.push_back(std::move(table));
  }
  // Shuffle the physical blocks, then lay the cache out.
  p.num_blocks = next_block + 2;
  std::vector<int32_t> physical(p.num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  p.query_start.push_back(0);
  for (const SequenceSpec& s : p.seqs) {
    p.num_tokens += s.query_len;
    p.query_start.push_back(p.num_tokens);
    p.context_lens.push_back(s.context_len);
    p.max_blocks_per_seq =
        std::max(p.max_blocks_per_seq, (s.context_len + block_size - 1) / block_size);
  }
  p.block_tables.assign(p.seqs.size() * p.max_blocks_per_seq, -1);
  for (size_t s = 0; s < p.seqs.size(); ++s) {
    for (size_t b = 0; b < tables[s].size(); ++b) {
      p.block_tables[s * p.max_blocks_per_seq + b] = physical[tables[s][b]];
    }
  }
  LayOutCache(p, seed + 1, round);
  return out;
}

}  // namespace prefixd::testing

#endif  // PREFIXD_TESTS_KERNELS_ATTENTION_PROBLEM_H_
