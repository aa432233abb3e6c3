// tests/kernels/cpu_attention_test.cc — PagedAttention against dense causal softmax
// attention computed here, over batches that mix decode, chunked prefill and whole prefill,
// with shuffled block tables, several block sizes and GQA group sizes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::Download;
using ::prefixd::testing::ExpectAllClose;
using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::Upload;
using ::prefixd::testing::UploadI32;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

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

// Fills p.qkv (random queries; NaN k/v heads) and scatters p.keys / p.values into a NaN
// paged cache through p.block_tables. Needs everything else of p set.
void LayOutCache(AttentionProblem& p, uint32_t seed) {
  const int hq = p.shape.num_q_heads, hkv = p.shape.num_kv_heads, d = p.shape.head_dim;
  const int width = (hq + 2 * hkv) * d, block_size = p.block_size;
  p.qkv = RandomFloats(p.num_tokens * width, seed);
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

AttentionProblem MakeProblem(AttentionShape shape, int block_size, std::vector<SequenceSpec> seqs,
                             uint32_t seed) {
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
    p.keys.push_back(RandomFloats(context_len * hkv * d, seed + 2 + 2 * s, -2.0f, 2.0f));
    p.values.push_back(RandomFloats(context_len * hkv * d, seed + 3 + 2 * s));
    const int blocks = (context_len + block_size - 1) / block_size;
    for (int b = 0; b < blocks; ++b)
      p.block_tables[s * p.max_blocks_per_seq + b] = block_ids[next_block++];
  }
  LayOutCache(p, seed + 1);
  return p;
}

// Dense causal softmax attention in double.
std::vector<double> ReferenceAttention(const AttentionProblem& p, float scale) {
  const int hq = p.shape.num_q_heads, hkv = p.shape.num_kv_heads, d = p.shape.head_dim;
  const int group = hq / hkv, width = (hq + 2 * hkv) * d;
  std::vector<double> out(p.num_tokens * hq * d);
  for (size_t s = 0; s < p.seqs.size(); ++s) {
    const auto [query_len, context_len] = p.seqs[s];
    for (int i = 0; i < query_len; ++i) {
      const int t = p.query_start[s] + i;
      const int position = context_len - query_len + i;
      for (int h = 0; h < hq; ++h) {
        const int kvh = h / group;
        std::vector<double> scores(position + 1);
        for (int j = 0; j <= position; ++j) {
          double dot = 0.0;
          for (int c = 0; c < d; ++c) {
            dot += double{p.qkv[t * width + h * d + c]} * p.keys[s][(j * hkv + kvh) * d + c];
          }
          scores[j] = scale * dot;
        }
        const double max = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (double& x : scores) sum += (x = std::exp(x - max));
        for (int c = 0; c < d; ++c) {
          double acc = 0.0;
          for (int j = 0; j <= position; ++j) {
            acc += scores[j] * p.values[s][(j * hkv + kvh) * d + c];
          }
          out[(t * hq + h) * d + c] = acc / sum;
        }
      }
    }
  }
  return out;
}

// Shared-prefix groups for PagedAttention: (first, end, shared_blocks) per group.
using Groups = std::vector<int32_t>;

std::vector<float> RunPagedAttention(Backend& backend, const AttentionProblem& p, float scale,
                                     const Groups& groups = {}) {
  const int hq = p.shape.num_q_heads, hkv = p.shape.num_kv_heads, d = p.shape.head_dim;
  const int num_seqs = static_cast<int>(p.seqs.size());
  DeviceTensor qkv = Upload(backend, p.qkv, {p.num_tokens, (hq + 2 * hkv) * d});
  DeviceTensor k = Upload(backend, p.k_cache, {p.num_blocks, hkv, p.block_size, d});
  DeviceTensor v = Upload(backend, p.v_cache, {p.num_blocks, hkv, p.block_size, d});
  DeviceTensor query_start = UploadI32(backend, p.query_start, {num_seqs + 1});
  DeviceTensor context_lens = UploadI32(backend, p.context_lens, {num_seqs});
  DeviceTensor block_tables = UploadI32(backend, p.block_tables, {num_seqs, p.max_blocks_per_seq});
  DeviceTensor out = backend.Allocate(DType::kF32, {p.num_tokens, hq * d});

  AttentionMetadata meta;
  meta.num_seqs = num_seqs;
  meta.num_tokens = p.num_tokens;
  meta.block_size = p.block_size;
  meta.max_blocks_per_seq = p.max_blocks_per_seq;
  for (const SequenceSpec& s : p.seqs) {
    meta.max_query_len = std::max(meta.max_query_len, s.query_len);
    meta.max_context_len = std::max(meta.max_context_len, s.context_len);
  }
  meta.query_start = query_start.view();
  meta.context_lens = context_lens.view();
  meta.block_tables = block_tables.view();
  DeviceTensor group_rows;
  if (!groups.empty()) {
    meta.num_groups = static_cast<int>(groups.size() / 3);
    group_rows = UploadI32(backend, groups, {meta.num_groups, 3});
    meta.groups = group_rows.view();
  }
  const KvCacheLayer kv{k.view(), v.view()};
  backend.PagedAttention(qkv.view(), meta, p.shape, kv, scale, out.view());
  return Download(backend, out.view());
}

// A batch with one of each kind: decode (one new token over a long cache), chunked prefill
// (new tokens after cached ones; more than one tile of rows), whole prefill, a decode whose
// context ends exactly on a block boundary, and a sequence with no new tokens this step.
const std::vector<SequenceSpec> kMixedBatch = {
    {1, 37}, {20, 50}, {29, 29}, {1, 32}, {0, 9}, {3, 3},
};

TEST(PagedAttentionTest, MatchesDenseCausalAttentionForBlockSizesAndGroups) {
  std::unique_ptr<Backend> backend = MakeCpuBackend(2);
  const float scale = 1.0f / std::sqrt(16.0f);
  for (int block_size : {1, 4, 16}) {
    for (int group : {1, 2, 4}) {
      SCOPED_TRACE(absl::StrCat("block_size ", block_size, " group ", group));
      const AttentionShape shape{4, 4 / group, 16};
      const AttentionProblem problem =
          MakeProblem(shape, block_size, kMixedBatch, 100 + block_size + group);
      ExpectAllClose(RunPagedAttention(*backend, problem, scale),
                     ReferenceAttention(problem, scale), 1e-5, 1e-4);
    }
  }
}

TEST(PagedAttentionTest, OddHeadDimAndGroupOfThree) {
  const AttentionShape shape{6, 2, 12};
  const AttentionProblem problem = MakeProblem(shape, 4, {{5, 18}, {1, 7}, {11, 11}}, 7);
  const float scale = 0.3f;
  std::unique_ptr<Backend> backend = MakeCpuBackend(2);
  ExpectAllClose(RunPagedAttention(*backend, problem, scale), ReferenceAttention(problem, scale),
                 1e-5, 1e-4);
}

TEST(PagedAttentionTest, DecodeOnlyBatch) {
  const AttentionShape shape{8, 2, 16};
  const AttentionProblem problem = MakeProblem(shape, 16, {{1, 1}, {1, 100}, {1, 17}, {1, 64}}, 8);
  const float scale = 0.25f;
  std::unique_ptr<Backend> backend = MakeCpuBackend(2);
  ExpectAllClose(RunPagedAttention(*backend, problem, scale), ReferenceAttention(problem, scale),
                 1e-5, 1e-4);
}

// A prefill split into chunks gives the same output rows as the whole prefill at once.
TEST(PagedAttentionTest, ChunkedPrefillEqualsWholePrefill) {
  const AttentionShape shape{4, 2, 16};
  const float scale = 0.25f;
  std::unique_ptr<Backend> backend = MakeCpuBackend(2);
  const AttentionProblem whole = MakeProblem(shape, 4, {{40, 40}}, 9);
  const std::vector<float> whole_out = RunPagedAttention(*backend, whole, scale);
  // Rows 25..39 as a chunk over the same cache.
  AttentionProblem chunk = whole;
  const int width = (4 + 2 * 2) * 16, out_width = 4 * 16;
  chunk.seqs = {{15, 40}};
  chunk.num_tokens = 15;
  chunk.query_start = {0, 15};
  chunk.qkv.assign(whole.qkv.begin() + 25 * width, whole.qkv.end());
  const std::vector<float> chunk_out = RunPagedAttention(*backend, chunk, scale);
  EXPECT_EQ(chunk_out, std::vector<float>(whole_out.begin() + 25 * out_width, whole_out.end()));
}

// Work splitting depends on the thread count; the numbers must not.
TEST(PagedAttentionTest, SameBitsForAnyThreadCount) {
  const AttentionShape shape{8, 2, 16};
  const float scale = 0.25f;
  for (const std::vector<SequenceSpec>& batch : {kMixedBatch, std::vector<SequenceSpec>{{1, 70}}}) {
    const AttentionProblem problem = MakeProblem(shape, 4, batch, 10);
    const std::vector<float> one = RunPagedAttention(*MakeCpuBackend(1), problem, scale);
    EXPECT_EQ(RunPagedAttention(*MakeCpuBackend(3), problem, scale), one);
    EXPECT_EQ(RunPagedAttention(*MakeCpuBackend(8), problem, scale), one);
  }
}

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

SharedPrefixBatch MakeSharedPrefixBatch(AttentionShape shape, int block_size,
                                        const std::vector<int>& shared_tokens,
                                        const std::vector<std::vector<int>>& own,
                                        const std::vector<SequenceSpec>& loners, uint32_t seed) {
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
        RandomFloats(shared_tokens[g] * row, seed + 100 + g, -2.0f, 2.0f);
    const std::vector<float> prefix_v = RandomFloats(shared_tokens[g] * row, seed + 200 + g);
    const int full = shared_tokens[g] / block_size;
    std::vector<int32_t> shared_ids;
    for (int b = 0; b < full; ++b) shared_ids.push_back(next_block++);
    for (size_t i = 0; i < own[g].size(); ++i) {
      const int context_len = shared_tokens[g] + own[g][i];
      p.seqs.push_back({1, context_len});
      std::vector<float> k = prefix_k, v = prefix_v;
      const std::vector<float> more_k =
          RandomFloats(own[g][i] * row, seed + 300 + 7 * g + i, -2.0f, 2.0f);
      const std::vector<float> more_v = RandomFloats(own[g][i] * row, seed + 400 + 7 * g + i);
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
    p.keys.push_back(RandomFloats(s.context_len * row, seed + 500 + p.seqs.size(), -2.0f, 2.0f));
    p.values.push_back(RandomFloats(s.context_len * row, seed + 600 + p.seqs.size()));
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
  LayOutCache(p, seed + 1);
  return out;
}

// Groups of every size (one request alone, two, many: more than one tile's worth), prefixes
// that end on and inside a block, next to sequences in no group: the cascade gives the plain
// computation's bits, and both match dense attention.
TEST(CascadeAttentionTest, SharedPrefixGroupsGiveThePlainBits) {
  for (const int block_size : {1, 4, 16}) {
    for (const AttentionShape shape : {AttentionShape{8, 2, 16}, AttentionShape{4, 4, 8}}) {
      SCOPED_TRACE(absl::StrCat("block_size ", block_size, " Hq ", shape.num_q_heads, " Hkv ",
                                shape.num_kv_heads));
      std::vector<int> shared = {37, 64, 20, 48};
      std::vector<std::vector<int>> own = {
          {1},                      // one request alone
          {1, 5, 17},               // context ending on a block boundary among them
          std::vector<int>(35, 3),  // more than two tiles of sequences
          {2, 9}};                  // shared prefix of whole blocks
      for (int i = 0; i < 35; ++i) own[2][i] = 1 + (i * 7) % 23;
      const SharedPrefixBatch batch =
          MakeSharedPrefixBatch(shape, block_size, shared, own, {{1, 30}, {12, 40}}, 21);
      const float scale = 0.3f;
      for (const int threads : {1, 3}) {
        std::unique_ptr<Backend> backend = MakeCpuBackend(threads);
        const std::vector<float> plain = RunPagedAttention(*backend, batch.problem, scale);
        const std::vector<float> cascade =
            RunPagedAttention(*backend, batch.problem, scale, batch.groups);
        EXPECT_EQ(cascade, plain);
        ExpectAllClose(plain, ReferenceAttention(batch.problem, scale), 1e-5, 1e-4);
      }
    }
  }
}

TEST(CascadeAttentionDeathTest, AGroupThatDoesNotShareItsBlocksIsABug) {
  SharedPrefixBatch batch =
      MakeSharedPrefixBatch(AttentionShape{4, 2, 8}, 4, {16}, {{1, 2}}, {}, 5);
  batch.groups[2] = 5;  // one block more than the members share
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  EXPECT_DEATH(RunPagedAttention(*backend, batch.problem, 0.3f, batch.groups),
               "is not one decode token past|does not share block");
}

}  // namespace
}  // namespace prefixd
