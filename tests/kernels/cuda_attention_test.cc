// tests/kernels/cuda_attention_test.cc — the CUDA PagedAttention (flash-decoding kernels for
// query_len 1, the tensor-core kernel for query_len > 1, the cascade over shared-prefix
// groups) against the CPU backend on the same bf16-rounded inputs: several sequences,
// shuffled block tables, block sizes 16 and 32 (and 1), GQA groups 1, 4, 7, 8 and 16,
// decode, chunked and whole prefill, mixed batches, contexts long enough to be split across
// many partitions, and groups of 1 to 256 decode sequences sharing a prefix.
//
// Tolerance atol 8e-3 + rtol 8e-3, with values in [-1, 1]: each output is a convex
// combination of values v_j. The decode kernels keep the weights in fp32, so only the final
// rounding to bf16 (2^-9 relative) differs from the CPU. The prefill kernel rounds the
// weights p_j to bf16 for the tensor cores while the sum l stays fp32: that perturbs the
// output by at most Σ_j p_j·2^-9·|v_j - out| / l <= 2^-9·2 ≈ 3.9e-3 absolute, plus the final
// rounding (2^-9 relative ≈ 2e-3 for |out| <= 1). 8e-3 + 8e-3·|ref| is about twice that worst
// case; a wrong key, a wrong mask or a bad fragment layout is off by orders of magnitude more.
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
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::CudaTest;
using ::prefixd::testing::Download;
using ::prefixd::testing::DownloadBf16;
using ::prefixd::testing::ExpectAllClose;
using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::RoundToBf16;
using ::prefixd::testing::ToDouble;
using ::prefixd::testing::Upload;
using ::prefixd::testing::UploadBf16;
using ::prefixd::testing::UploadI32;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kAtol = 8e-3, kRtol = 8e-3;  // see the file comment

struct SequenceSpec {
  int query_len;
  int context_len;
};

// One batch, as in cpu_attention_test.cc: per-sequence keys and values scattered into a paged
// cache through shuffled block tables. Everything attention must not read is NaN: unused
// blocks, slots past a sequence's context, and the k/v heads of qkv. Values are bf16-exact.
struct AttentionProblem {
  AttentionShape shape;
  int block_size = 0;
  std::vector<SequenceSpec> seqs;
  int num_tokens = 0;
  int max_blocks_per_seq = 0;
  int num_blocks = 0;
  std::vector<int32_t> query_start, context_lens, block_tables;
  std::vector<float> qkv;               // [T, (Hq + 2 Hkv) d]
  std::vector<float> k_cache, v_cache;  // [num_blocks, Hkv, block_size, d]
};

AttentionProblem MakeProblem(AttentionShape shape, int block_size, std::vector<SequenceSpec> seqs,
                             uint32_t seed) {
  AttentionProblem p;
  p.shape = shape;
  p.block_size = block_size;
  p.seqs = std::move(seqs);
  const int hq = shape.num_q_heads, hkv = shape.num_kv_heads, d = shape.head_dim;
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

  const int width = (hq + 2 * hkv) * d;
  p.qkv = RoundToBf16(RandomFloats(static_cast<size_t>(p.num_tokens) * width, seed + 1));
  for (int t = 0; t < p.num_tokens; ++t) {
    std::fill_n(p.qkv.begin() + static_cast<size_t>(t) * width + hq * d, 2 * hkv * d, kNaN);
  }
  const size_t cache_size = static_cast<size_t>(p.num_blocks) * hkv * block_size * d;
  p.k_cache.assign(cache_size, kNaN);
  p.v_cache.assign(cache_size, kNaN);
  p.block_tables.assign(p.seqs.size() * p.max_blocks_per_seq, -1);
  int next_block = 0;
  for (size_t s = 0; s < p.seqs.size(); ++s) {
    const int context_len = p.seqs[s].context_len;
    // Keys in [-2, 2], so that the softmax is peaked in places and not uniform.
    const std::vector<float> keys = RoundToBf16(
        RandomFloats(static_cast<size_t>(context_len) * hkv * d, seed + 2 + 2 * s, -2.0f, 2.0f));
    const std::vector<float> values =
        RoundToBf16(RandomFloats(static_cast<size_t>(context_len) * hkv * d, seed + 3 + 2 * s));
    const int blocks = (context_len + block_size - 1) / block_size;
    for (int b = 0; b < blocks; ++b) {
      p.block_tables[s * p.max_blocks_per_seq + b] = block_ids[next_block++];
    }
    for (int pos = 0; pos < context_len; ++pos) {
      const int block = p.block_tables[s * p.max_blocks_per_seq + pos / block_size];
      for (int h = 0; h < hkv; ++h) {
        const size_t at =
            ((static_cast<size_t>(block) * hkv + h) * block_size + pos % block_size) * d;
        const size_t from = (static_cast<size_t>(pos) * hkv + h) * d;
        std::copy_n(keys.begin() + from, d, p.k_cache.begin() + at);
        std::copy_n(values.begin() + from, d, p.v_cache.begin() + at);
      }
    }
  }
  return p;
}

// Runs PagedAttention on `backend` in its compute dtype; `slack` inflates the launch hints
// (they are upper bounds, not exact values).
// Shared-prefix groups for PagedAttention: (first, end, shared_blocks) per group.
using Groups = std::vector<int32_t>;

std::vector<float> RunAttention(Backend& backend, const AttentionProblem& p, float scale,
                                int slack = 0, const Groups& groups = {}) {
  const int hq = p.shape.num_q_heads, hkv = p.shape.num_kv_heads, d = p.shape.head_dim;
  const int num_seqs = static_cast<int>(p.seqs.size());
  const bool bf16 = backend.compute_dtype() == DType::kBF16;
  auto upload = [&](const std::vector<float>& data, std::initializer_list<int64_t> dims) {
    return bf16 ? UploadBf16(backend, data, dims) : Upload(backend, data, dims);
  };
  DeviceTensor qkv = upload(p.qkv, {p.num_tokens, (hq + 2 * hkv) * d});
  DeviceTensor k = upload(p.k_cache, {p.num_blocks, hkv, p.block_size, d});
  DeviceTensor v = upload(p.v_cache, {p.num_blocks, hkv, p.block_size, d});
  DeviceTensor query_start = UploadI32(backend, p.query_start, {num_seqs + 1});
  DeviceTensor context_lens = UploadI32(backend, p.context_lens, {num_seqs});
  DeviceTensor block_tables = UploadI32(backend, p.block_tables, {num_seqs, p.max_blocks_per_seq});
  DeviceTensor out = backend.Allocate(backend.compute_dtype(), {p.num_tokens, hq * d});

  AttentionMetadata meta;
  meta.num_seqs = num_seqs;
  meta.num_tokens = p.num_tokens;
  meta.block_size = p.block_size;
  meta.max_blocks_per_seq = p.max_blocks_per_seq;
  for (const SequenceSpec& s : p.seqs) {
    meta.max_query_len = std::max(meta.max_query_len, s.query_len);
    meta.max_context_len = std::max(meta.max_context_len, s.context_len);
  }
  if (slack > 0) {
    meta.max_context_len =
        std::min(meta.max_context_len + slack, meta.max_blocks_per_seq * meta.block_size);
    meta.max_query_len = std::min(meta.max_query_len + slack, meta.max_context_len);
  }
  meta.query_start = query_start.view();
  meta.context_lens = context_lens.view();
  meta.block_tables = block_tables.view();
  DeviceTensor group_rows;
  if (!groups.empty()) {
    meta.num_groups = static_cast<int>(groups.size() / 3);
    group_rows = UploadI32(backend, groups, {meta.num_groups, 3});
    meta.groups = group_rows.view();
    for (size_t g = 0; g < groups.size(); g += 3) {
      meta.max_group_seqs = std::max(meta.max_group_seqs, groups[g + 1] - groups[g]);
    }
  }
  const KvCacheLayer kv{k.view(), v.view()};
  backend.PagedAttention(qkv.view(), meta, p.shape, kv, scale, out.view());
  return bf16 ? DownloadBf16(backend, out.view()) : Download(backend, out.view());
}

// A decode batch in which groups of sequences share a prefix, as the prefix cache lays them
// out (as cpu_attention_test.cc's): the prefix's full blocks are the same blocks in every
// member's table; its tokens past the last full block (a prefix ending mid-block) are equal
// in content but live in each member's private blocks. Group g has shared_tokens[g] shared
// tokens and own[g][i] more for member i (the last its new decode token). `loners` follow
// the groups, in no group. Values bf16-exact, NaN wherever attention must not read.
struct GroupedProblem {
  AttentionProblem problem;
  Groups groups;
};

GroupedProblem MakeGroupedProblem(AttentionShape shape, int block_size,
                                  const std::vector<int>& shared_tokens,
                                  const std::vector<std::vector<int>>& own,
                                  const std::vector<SequenceSpec>& loners, uint32_t seed) {
  GroupedProblem out;
  AttentionProblem& p = out.problem;
  p.shape = shape;
  p.block_size = block_size;
  const int hq = shape.num_q_heads, hkv = shape.num_kv_heads, d = shape.head_dim;
  const size_t row = static_cast<size_t>(hkv) * d;  // one position's keys
  std::vector<std::vector<float>> keys, values;     // per sequence, [context_len, Hkv, d]
  std::vector<std::vector<int32_t>> tables;         // logical block ids
  int next_block = 0;
  auto random = [&](size_t n, uint32_t s, float lo) {
    return RoundToBf16(RandomFloats(n, s, lo, -lo));
  };
  for (size_t g = 0; g < shared_tokens.size(); ++g) {
    const std::vector<float> prefix_k = random(shared_tokens[g] * row, seed + 100 + g, -2.0f);
    const std::vector<float> prefix_v = random(shared_tokens[g] * row, seed + 200 + g, -1.0f);
    const int full = shared_tokens[g] / block_size;
    std::vector<int32_t> shared_ids;
    for (int b = 0; b < full; ++b) shared_ids.push_back(next_block++);
    for (size_t i = 0; i < own[g].size(); ++i) {
      const int context_len = shared_tokens[g] + own[g][i];
      p.seqs.push_back({1, context_len});
      std::vector<float> k = prefix_k, v = prefix_v;
      const uint32_t s = seed + 300 + static_cast<uint32_t>(1000 * g + i);
      const std::vector<float> more_k = random(own[g][i] * row, s, -2.0f);
      const std::vector<float> more_v = random(own[g][i] * row, s + 500000, -1.0f);
      k.insert(k.end(), more_k.begin(), more_k.end());
      v.insert(v.end(), more_v.begin(), more_v.end());
      keys.push_back(std::move(k));
      values.push_back(std::move(v));
      std::vector<int32_t> table = shared_ids;
      while (static_cast<int>(table.size()) * block_size < context_len) {
        table.push_back(next_block++);
      }
      tables.push_back(std::move(table));
    }
    const int end = static_cast<int>(p.seqs.size());
    out.groups.insert(out.groups.end(), {end - static_cast<int>(own[g].size()), end, full});
  }
  for (const SequenceSpec& spec : loners) {
    p.seqs.push_back(spec);
    const uint32_t s = seed + 900000 + static_cast<uint32_t>(p.seqs.size());
    keys.push_back(random(spec.context_len * row, s, -2.0f));
    values.push_back(random(spec.context_len * row, s + 1, -1.0f));
    std::vector<int32_t> table;
    while (static_cast<int>(table.size()) * block_size < spec.context_len) {
      table.push_back(next_block++);
    }
    tables.push_back(std::move(table));
  }
  // Shuffled physical blocks; the cache laid out through them.
  p.num_blocks = next_block + 2;
  std::vector<int32_t> physical(p.num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), std::mt19937(seed));
  p.query_start.push_back(0);
  for (const SequenceSpec& spec : p.seqs) {
    p.num_tokens += spec.query_len;
    p.query_start.push_back(p.num_tokens);
    p.context_lens.push_back(spec.context_len);
    p.max_blocks_per_seq =
        std::max(p.max_blocks_per_seq, (spec.context_len + block_size - 1) / block_size);
  }
  p.block_tables.assign(p.seqs.size() * p.max_blocks_per_seq, -1);
  for (size_t q = 0; q < p.seqs.size(); ++q) {
    for (size_t b = 0; b < tables[q].size(); ++b) {
      p.block_tables[q * p.max_blocks_per_seq + b] = physical[tables[q][b]];
    }
  }
  const int width = (hq + 2 * hkv) * d;
  p.qkv = RoundToBf16(RandomFloats(static_cast<size_t>(p.num_tokens) * width, seed + 1));
  for (int t = 0; t < p.num_tokens; ++t) {
    std::fill_n(p.qkv.begin() + static_cast<size_t>(t) * width + hq * d, 2 * hkv * d, kNaN);
  }
  const size_t cache_size = static_cast<size_t>(p.num_blocks) * hkv * block_size * d;
  p.k_cache.assign(cache_size, kNaN);
  p.v_cache.assign(cache_size, kNaN);
  for (size_t q = 0; q < p.seqs.size(); ++q) {
    for (int pos = 0; pos < p.seqs[q].context_len; ++pos) {
      const int block = p.block_tables[q * p.max_blocks_per_seq + pos / block_size];
      for (int h = 0; h < hkv; ++h) {
        const size_t at =
            ((static_cast<size_t>(block) * hkv + h) * block_size + pos % block_size) * d;
        const size_t from = (static_cast<size_t>(pos) * hkv + h) * d;
        std::copy_n(keys[q].begin() + from, d, p.k_cache.begin() + at);
        std::copy_n(values[q].begin() + from, d, p.v_cache.begin() + at);
      }
    }
  }
  return out;
}

class CudaAttentionTest : public CudaTest {
 protected:
  void ExpectMatchesCpu(const AttentionProblem& p, int slack = 0) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(p.shape.head_dim));
    const std::vector<float> got = RunAttention(*cuda_, p, scale, slack);
    const std::vector<float> want = RunAttention(*cpu_, p, scale);
    ExpectAllClose(got, ToDouble(want), kAtol, kRtol);
  }
};

// One of each kind: decode over a long cache, chunked prefill (more than one 64-row tile),
// whole prefill, decode ending on a block boundary, a sequence with no new tokens, a short
// prefill.
const std::vector<SequenceSpec> kMixedBatch = {
    {1, 37}, {70, 100}, {29, 29}, {1, 32}, {0, 9}, {3, 3},
};

TEST_F(CudaAttentionTest, MixedBatchForBlockSizesGroupsAndHeadDims) {
  for (int head_dim : {64, 128}) {
    for (int block_size : {16, 32}) {
      for (int group : {1, 4, 8}) {
        SCOPED_TRACE(absl::StrCat("d ", head_dim, " block_size ", block_size, " group ", group));
        const AttentionShape shape{8, 8 / group, head_dim};
        ExpectMatchesCpu(MakeProblem(shape, block_size, kMixedBatch, 100 + block_size + group));
      }
    }
  }
}

TEST_F(CudaAttentionTest, HeadDim32AndBlockSize1) {
  ExpectMatchesCpu(MakeProblem({4, 2, 32}, 1, kMixedBatch, 5));
}

// Llama-3-8B's attention shape; contexts from 1 to past several 512-key partitions, so the
// flash-decoding reduction combines up to 12 partials (and 1 for the short ones).
TEST_F(CudaAttentionTest, DecodeSplitsLongContexts) {
  const std::vector<SequenceSpec> decode = {{1, 1},   {1, 100},  {1, 511}, {1, 512},
                                            {1, 513}, {1, 3000}, {1, 6000}};
  ExpectMatchesCpu(MakeProblem({32, 8, 128}, 16, decode, 21));
}

// One long sequence alone: few CTAs, so the planner shortens the partitions.
TEST_F(CudaAttentionTest, DecodeOfOneLongSequence) {
  ExpectMatchesCpu(MakeProblem({32, 8, 128}, 32, {{1, 4100}}, 22));
}

// Groups that do not fill a CTA's heads (7: Qwen2-0.5B) or need two head chunks (16), and
// MHA (1).
TEST_F(CudaAttentionTest, DecodeForUnevenAndLargeGroups) {
  const std::vector<SequenceSpec> decode = {{1, 20}, {1, 700}, {1, 1500}};
  ExpectMatchesCpu(MakeProblem({14, 2, 64}, 16, decode, 23));
  ExpectMatchesCpu(MakeProblem({16, 1, 64}, 16, decode, 24));
  ExpectMatchesCpu(MakeProblem({4, 4, 128}, 16, decode, 25));
}

// Chunks of new tokens over long cached prefixes, next to decodes, as a scheduler step packs
// them.
TEST_F(CudaAttentionTest, ChunkedPrefillOverLongPrefixesBesideDecodes) {
  const std::vector<SequenceSpec> batch = {{100, 1500}, {1, 2000}, {256, 256}, {1, 9}, {65, 700}};
  ExpectMatchesCpu(MakeProblem({32, 8, 128}, 16, batch, 26));
  ExpectMatchesCpu(MakeProblem({14, 2, 64}, 32, batch, 27));
}

// Hints larger than any sequence (a CUDA graph captured for a bigger step): same output.
TEST_F(CudaAttentionTest, LooseHintsGiveTheSameOutput) {
  const AttentionProblem p = MakeProblem({8, 2, 64}, 16, kMixedBatch, 28);
  const float scale = 0.125f;
  EXPECT_EQ(RunAttention(*cuda_, p, scale, /*slack=*/300), RunAttention(*cuda_, p, scale));
  const AttentionProblem decode = MakeProblem({8, 2, 64}, 16, {{1, 40}, {1, 700}}, 29);
  ExpectMatchesCpu(decode, /*slack=*/2000);
}

// A chunk of a prefill gives the rows the whole prefill gives (same kernel, same keys).
TEST_F(CudaAttentionTest, ChunkedPrefillEqualsWholePrefill) {
  const AttentionShape shape{4, 2, 64};
  const float scale = 0.125f;
  const AttentionProblem whole = MakeProblem(shape, 16, {{200, 200}}, 30);
  const std::vector<float> whole_out = RunAttention(*cuda_, whole, scale);
  AttentionProblem chunk = whole;
  const int width = (4 + 2 * 2) * 64, out_width = 4 * 64;
  chunk.seqs = {{72, 200}};  // rows 128..199: a chunk starting on a tile boundary
  chunk.num_tokens = 72;
  chunk.query_start = {0, 72};
  chunk.qkv.assign(whole.qkv.begin() + 128 * width, whole.qkv.end());
  EXPECT_EQ(RunAttention(*cuda_, chunk, scale),
            std::vector<float>(whole_out.begin() + 128 * out_width, whole_out.end()));
}

// ---- Cascade (shared-prefix groups) ----

class CudaCascadeTest : public CudaAttentionTest {
 protected:
  // The cascade on the GPU against the plain computation on the CPU (which is the dense
  // reference, cpu_attention_test.cc) and against the plain kernels on the GPU.
  void ExpectCascadeMatchesPlain(const GroupedProblem& g) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(g.problem.shape.head_dim));
    const std::vector<float> cascade = RunAttention(*cuda_, g.problem, scale, 0, g.groups);
    const std::vector<float> plain = RunAttention(*cuda_, g.problem, scale);
    const std::vector<float> want = RunAttention(*cpu_, g.problem, scale);
    ExpectAllClose(cascade, ToDouble(want), kAtol, kRtol);
    ExpectAllClose(cascade, ToDouble(plain), kAtol, kRtol);
  }
};

// Runs without a GPU: the CPU backend, which checks every group against the block tables,
// accepts the problems the cascade tests build and gives the plain computation's bits.
TEST(CascadeProblemTest, TheCpuAcceptsTheGroupsAndGivesThePlainBits) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  std::vector<int> many(40);
  for (int i = 0; i < 40; ++i) many[i] = 1 + (i * 13) % 700;
  for (const GroupedProblem& g :
       {MakeGroupedProblem({8, 2, 64}, 16, {100}, {std::vector<int>(7, 3)}, {}, 1),
        MakeGroupedProblem({32, 8, 128}, 16, {2048, 512, 16, 37},
                           {many, {1, 2, 3}, {5, 600}, {9}}, {{1, 300}, {64, 900}, {1, 1}}, 2),
        MakeGroupedProblem({8, 2, 64}, 1, {96, 70}, {{1, 1, 1}, {1, 40}}, {}, 3)}) {
    EXPECT_EQ(RunAttention(*cpu, g.problem, 0.125f, 0, g.groups),
              RunAttention(*cpu, g.problem, 0.125f));
  }
}

// Groups of 1, 2, 7, 64 and 256 members, one size per batch, for GQA ratios 1, 4 and 8 and
// head dims 64 and 128; the prefix ends mid-block (100 = 6 blocks of 16 and 4 tokens).
TEST_F(CudaCascadeTest, GroupsOfEverySizeForGqaRatiosAndHeadDims) {
  for (const int members : {1, 2, 7, 64, 256}) {
    for (const int head_dim : {64, 128}) {
      for (const int ratio : {1, 4, 8}) {
        SCOPED_TRACE(absl::StrCat(members, " members, d ", head_dim, ", Hq/Hkv ", ratio));
        std::vector<int> own(members);
        for (int i = 0; i < members; ++i) own[i] = 1 + (i * 37) % 61;
        ExpectCascadeMatchesPlain(MakeGroupedProblem({8, 8 / ratio, head_dim}, 16, {100}, {own}, {},
                                                     40 + members + ratio));
      }
    }
  }
}

// Llama-3-8B's shape: several groups in one batch (a long prefix, one ending on a block
// boundary, one of a single block) beside sequences in no group (decodes, a prefill chunk),
// and members whose private keys span several partitions.
TEST_F(CudaCascadeTest, SeveralGroupsBesideUngroupedSequences) {
  std::vector<int> many(40);
  for (int i = 0; i < 40; ++i) many[i] = 1 + (i * 13) % 700;
  const GroupedProblem g =
      MakeGroupedProblem({32, 8, 128}, 16, {2048, 512, 16, 37}, {many, {1, 2, 3}, {5, 600}, {9}},
                         {{1, 300}, {64, 900}, {1, 1}}, 50);
  ExpectCascadeMatchesPlain(g);
}

// Block size 1 and 32, a group whose members' shared prefix is all but their new token.
TEST_F(CudaCascadeTest, BlockSizesAndMembersJustPastThePrefix) {
  for (const int block_size : {1, 32}) {
    SCOPED_TRACE(absl::StrCat("block_size ", block_size));
    ExpectCascadeMatchesPlain(
        MakeGroupedProblem({8, 2, 64}, block_size, {96, 70}, {{1, 1, 1}, {1, 40}}, {}, 60));
  }
}

}  // namespace
}  // namespace prefixd
