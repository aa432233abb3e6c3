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
#include "tests/kernels/attention_problem.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::AttentionProblem;
using ::prefixd::testing::Download;
using ::prefixd::testing::ExpectAllClose;
using ::prefixd::testing::Groups;
using ::prefixd::testing::MakeProblem;
using ::prefixd::testing::MakeSharedPrefixBatch;
using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::SequenceSpec;
using ::prefixd::testing::SharedPrefixBatch;
using ::prefixd::testing::Upload;
using ::prefixd::testing::UploadI32;

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
