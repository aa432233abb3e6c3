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
#include "kernels/cuda/launch.h"
#include "kernels/kernels.h"
#include "tests/kernels/attention_problem.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace prefixd {
namespace {

using ::prefixd::testing::AttentionProblem;
using ::prefixd::testing::CudaTest;
using ::prefixd::testing::Download;
using ::prefixd::testing::DownloadBf16;
using ::prefixd::testing::ExpectAllClose;
using ::prefixd::testing::Groups;
using ::prefixd::testing::MakeProblem;
using ::prefixd::testing::MakeSharedPrefixBatch;
using ::prefixd::testing::RandomFloats;
using ::prefixd::testing::RoundToBf16;
using ::prefixd::testing::SequenceSpec;
using ::prefixd::testing::SharedPrefixBatch;
using ::prefixd::testing::ToDouble;
using ::prefixd::testing::Upload;
using ::prefixd::testing::UploadBf16;
using ::prefixd::testing::UploadI32;

constexpr double kAtol = 8e-3, kRtol = 8e-3;  // see the file comment

// The tests' random draws are bf16-exact, so that both backends see the same values.
std::vector<float> Bf16(std::vector<float> v) { return RoundToBf16(std::move(v)); }

// Runs PagedAttention on `backend` in its compute dtype; `slack` inflates the launch hints
// (they are upper bounds, not exact values).
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
        ExpectMatchesCpu(
            MakeProblem(shape, block_size, kMixedBatch, 100 + block_size + group, Bf16));
      }
    }
  }
}

TEST_F(CudaAttentionTest, HeadDim32AndBlockSize1) {
  ExpectMatchesCpu(MakeProblem({4, 2, 32}, 1, kMixedBatch, 5, Bf16));
}

// Llama-3-8B's attention shape; contexts from 1 to past several 512-key partitions, so the
// flash-decoding reduction combines up to 12 partials (and 1 for the short ones).
TEST_F(CudaAttentionTest, DecodeSplitsLongContexts) {
  const std::vector<SequenceSpec> decode = {{1, 1},   {1, 100},  {1, 511}, {1, 512},
                                            {1, 513}, {1, 3000}, {1, 6000}};
  ExpectMatchesCpu(MakeProblem({32, 8, 128}, 16, decode, 21, Bf16));
}

// One long sequence alone: few CTAs, so the planner shortens the partitions.
TEST_F(CudaAttentionTest, DecodeOfOneLongSequence) {
  ExpectMatchesCpu(MakeProblem({32, 8, 128}, 32, {{1, 4100}}, 22, Bf16));
}

// Groups that do not fill a CTA's heads (7: Qwen2-0.5B) or need two head chunks (16), and
// MHA (1).
TEST_F(CudaAttentionTest, DecodeForUnevenAndLargeGroups) {
  const std::vector<SequenceSpec> decode = {{1, 20}, {1, 700}, {1, 1500}};
  ExpectMatchesCpu(MakeProblem({14, 2, 64}, 16, decode, 23, Bf16));
  ExpectMatchesCpu(MakeProblem({16, 1, 64}, 16, decode, 24, Bf16));
  ExpectMatchesCpu(MakeProblem({4, 4, 128}, 16, decode, 25, Bf16));
}

// Chunks of new tokens over long cached prefixes, next to decodes, as a scheduler step packs
// them.
TEST_F(CudaAttentionTest, ChunkedPrefillOverLongPrefixesBesideDecodes) {
  const std::vector<SequenceSpec> batch = {{100, 1500}, {1, 2000}, {256, 256}, {1, 9}, {65, 700}};
  ExpectMatchesCpu(MakeProblem({32, 8, 128}, 16, batch, 26, Bf16));
  ExpectMatchesCpu(MakeProblem({14, 2, 64}, 32, batch, 27, Bf16));
}

// Hints larger than any sequence (a CUDA graph captured for a bigger step): same output.
TEST_F(CudaAttentionTest, LooseHintsGiveTheSameOutput) {
  const AttentionProblem p = MakeProblem({8, 2, 64}, 16, kMixedBatch, 28, Bf16);
  const float scale = 0.125f;
  EXPECT_EQ(RunAttention(*cuda_, p, scale, /*slack=*/300), RunAttention(*cuda_, p, scale));
  const AttentionProblem decode = MakeProblem({8, 2, 64}, 16, {{1, 40}, {1, 700}}, 29, Bf16);
  ExpectMatchesCpu(decode, /*slack=*/2000);
}

// A chunk of a prefill gives the rows the whole prefill gives (same kernel, same keys).
TEST_F(CudaAttentionTest, ChunkedPrefillEqualsWholePrefill) {
  const AttentionShape shape{4, 2, 64};
  const float scale = 0.125f;
  const AttentionProblem whole = MakeProblem(shape, 16, {{200, 200}}, 30, Bf16);
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
  void ExpectCascadeMatchesPlain(const SharedPrefixBatch& g) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(g.problem.shape.head_dim));
    const std::vector<float> cascade = RunAttention(*cuda_, g.problem, scale, 0, g.groups);
    const std::vector<float> plain = RunAttention(*cuda_, g.problem, scale);
    const std::vector<float> want = RunAttention(*cpu_, g.problem, scale);
    ExpectAllClose(cascade, ToDouble(want), kAtol, kRtol);
    ExpectAllClose(cascade, ToDouble(plain), kAtol, kRtol);
  }
};

// Runs without a GPU: the decode plan's scratch layout (host code). Without groups and with
// one partition there is no scratch (the partition kernel writes the output); with groups
// the reduction always runs, so the split partials are there even for one partition, then
// the shared partials, then each sequence's first private key, none overlapping.
TEST(DecodePlanTest, CascadeScratchHoldsPartialsSharedPartialsAndKeyBegins) {
  cuda::PagedAttentionParams p;
  p.num_seqs = 64;
  p.num_tokens = 64;
  p.block_size = 16;
  p.max_query_len = 1;
  p.max_context_len = 300;
  p.num_q_heads = 32;
  p.num_kv_heads = 8;
  p.head_dim = 128;
  const cuda::DecodeAttentionPlan plain = cuda::PlanDecodeAttention(p, /*num_sms=*/1);
  ASSERT_EQ(plain.num_partitions, 1);  // 64 x 8 CTAs fill one SM twice over
  EXPECT_FALSE(plain.cascade);
  EXPECT_EQ(plain.scratch_bytes, 0u);

  p.num_groups = 3;
  const cuda::DecodeAttentionPlan cascade = cuda::PlanDecodeAttention(p, 1);
  EXPECT_TRUE(cascade.cascade);
  EXPECT_EQ(cascade.num_partitions, plain.num_partitions);
  const size_t rows = 64 * 32, floats = rows * (128 + 2);
  EXPECT_EQ(cascade.shared_offset, sizeof(float) * floats);
  EXPECT_EQ(cascade.key_begin_offset, cascade.shared_offset + sizeof(float) * floats);
  EXPECT_EQ(cascade.scratch_bytes, cascade.key_begin_offset + sizeof(int32_t) * 64);
  EXPECT_EQ(cascade.key_begin_offset % alignof(int32_t), 0u);

  // Longer contexts: several partitions, the shared partials after all of them.
  p.max_context_len = 8192;
  const cuda::DecodeAttentionPlan split = cuda::PlanDecodeAttention(p, 132);
  ASSERT_GT(split.num_partitions, 1);
  EXPECT_EQ(split.shared_offset, sizeof(float) * rows * split.num_partitions * (128 + 2));
  EXPECT_EQ(split.scratch_bytes,
            split.shared_offset + sizeof(float) * floats + sizeof(int32_t) * 64);
}

// Runs without a GPU: the CPU backend, which checks every group against the block tables,
// accepts the problems the cascade tests build and gives the plain computation's bits.
TEST(CascadeProblemTest, TheCpuAcceptsTheGroupsAndGivesThePlainBits) {
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  std::vector<int> many(40);
  for (int i = 0; i < 40; ++i) many[i] = 1 + (i * 13) % 700;
  for (const SharedPrefixBatch& g :
       {MakeSharedPrefixBatch({8, 2, 64}, 16, {100}, {std::vector<int>(7, 3)}, {}, 1, Bf16),
        MakeSharedPrefixBatch({32, 8, 128}, 16, {2048, 512, 16, 37},
                              {many, {1, 2, 3}, {5, 600}, {9}}, {{1, 300}, {64, 900}, {1, 1}}, 2,
                              Bf16),
        MakeSharedPrefixBatch({8, 2, 64}, 1, {96, 70}, {{1, 1, 1}, {1, 40}}, {}, 3, Bf16)}) {
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
        ExpectCascadeMatchesPlain(MakeSharedPrefixBatch({8, 8 / ratio, head_dim}, 16, {100}, {own},
                                                        {}, 40 + members + ratio, Bf16));
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
  const SharedPrefixBatch g =
      MakeSharedPrefixBatch({32, 8, 128}, 16, {2048, 512, 16, 37}, {many, {1, 2, 3}, {5, 600}, {9}},
                            {{1, 300}, {64, 900}, {1, 1}}, 50, Bf16);
  ExpectCascadeMatchesPlain(g);
}

// Block size 1 and 32, a group whose members' shared prefix is all but their new token.
TEST_F(CudaCascadeTest, BlockSizesAndMembersJustPastThePrefix) {
  for (const int block_size : {1, 32}) {
    SCOPED_TRACE(absl::StrCat("block_size ", block_size));
    ExpectCascadeMatchesPlain(MakeSharedPrefixBatch({8, 2, 64}, block_size, {96, 70},
                                                    {{1, 1, 1}, {1, 40}}, {}, 60, Bf16));
  }
}

}  // namespace
}  // namespace prefixd
