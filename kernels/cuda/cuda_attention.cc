// kernels/cuda/cuda_attention.cc — CudaBackend::PagedAttention: shape checks and the choice
// of kernels (decode_attention.cu, prefill_attention.cu).
//
// Shared-prefix groups (meta.groups): the decode kernels run the cascade
// (cascade_attention.cu) when the step has groups. The engine hands the CUDA backend groups
// only when PREFIXD_CUDA_CASCADE=1 (UsesSharedPrefixGroups) until a GPU session has tested
// and timed the kernel.
#include <cstdint>

#include "base/check.h"
#include "kernels/cpu/check_shape.h"
#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.h"

namespace prefixd {
namespace {

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

void CudaBackend::PagedAttention(const Tensor& qkv, const AttentionMetadata& meta,
                                 const AttentionShape& shape, const KvCacheLayer& kv, float scale,
                                 Tensor& out) {
  const int hq = shape.num_q_heads, hkv = shape.num_kv_heads, d = shape.head_dim;
  PREFIXD_CHECK(hq > 0 && hkv > 0 && d > 0 && hq % hkv == 0,
                "PagedAttention: bad attention shape Hq=", hq, " Hkv=", hkv, " d=", d);
  PREFIXD_CHECK(cuda::IsSupportedAttentionHeadDim(d), "PagedAttention: head_dim ", d,
                " is not supported by the CUDA backend (32, 64 or 128)");
  const int64_t tokens = meta.num_tokens;
  CheckShape("PagedAttention", "qkv", qkv, DType::kBF16,
             {tokens, static_cast<int64_t>(hq + 2 * hkv) * d});
  CheckShape("PagedAttention", "out", out, DType::kBF16, {tokens, static_cast<int64_t>(hq) * d});
  CheckShape("PagedAttention", "kv.k", kv.k, DType::kBF16, {kAnySize, hkv, meta.block_size, d});
  const int64_t num_blocks = kv.k.dim(0);
  CheckShape("PagedAttention", "kv.v", kv.v, DType::kBF16, {num_blocks, hkv, meta.block_size, d});
  const int num_seqs = meta.num_seqs;
  CheckShape("PagedAttention", "query_start", meta.query_start, DType::kI32, {num_seqs + 1});
  CheckShape("PagedAttention", "context_lens", meta.context_lens, DType::kI32, {num_seqs});
  CheckShape("PagedAttention", "block_tables", meta.block_tables, DType::kI32,
             {num_seqs, meta.max_blocks_per_seq});
  // The kernels read 16-byte vectors of q, k and v and write bf16 pairs of out.
  PREFIXD_CHECK(
      Aligned16(qkv.data) && Aligned16(kv.k.data) && Aligned16(kv.v.data) && Aligned16(out.data),
      "PagedAttention: qkv, kv and out must be 16-byte aligned");
  PREFIXD_CHECK(num_seqs <= 65535, "PagedAttention: ", num_seqs,
                " sequences is over the grid limit of 65535");
  PREFIXD_CHECK(
      meta.block_size > 0 && meta.max_query_len >= 0 &&
          meta.max_context_len >= meta.max_query_len &&
          static_cast<int64_t>(meta.max_blocks_per_seq) * meta.block_size >= meta.max_context_len,
      "PagedAttention: inconsistent hints block_size ", meta.block_size, " max_query_len ",
      meta.max_query_len, " max_context_len ", meta.max_context_len, " max_blocks_per_seq ",
      meta.max_blocks_per_seq);
  if (tokens == 0 || num_seqs == 0 || meta.max_query_len == 0) return;

  cuda::PagedAttentionParams p;
  p.qkv = static_cast<const cuda::bf16*>(qkv.data);
  p.k_cache = static_cast<const cuda::bf16*>(kv.k.data);
  p.v_cache = static_cast<const cuda::bf16*>(kv.v.data);
  p.query_start = meta.query_start.as<int32_t>();
  p.context_lens = meta.context_lens.as<int32_t>();
  p.block_tables = meta.block_tables.as<int32_t>();
  p.out = static_cast<cuda::bf16*>(out.data);
  p.num_seqs = num_seqs;
  p.num_tokens = meta.num_tokens;
  p.num_blocks = num_blocks;
  p.block_size = meta.block_size;
  p.max_blocks_per_seq = meta.max_blocks_per_seq;
  p.max_query_len = meta.max_query_len;
  p.max_context_len = meta.max_context_len;
  p.num_q_heads = hq;
  p.num_kv_heads = hkv;
  p.head_dim = d;
  p.scale = scale;
  if (meta.num_groups > 0) {
    CheckShape("PagedAttention", "groups", meta.groups, DType::kI32, {meta.num_groups, 3});
    p.groups = meta.groups.as<int32_t>();
    p.num_groups = meta.num_groups;
    p.max_group_seqs = meta.max_group_seqs;
  }
  MakeCurrent();

  // Sequences with query_len > 1: the tensor-core kernel. Those with query_len == 1 (all of
  // them when max_query_len is 1): the flash-decoding kernels. Each skips the other's.
  if (meta.max_query_len > 1) PREFIXD_CUDA_CHECK(cuda::LaunchPrefillAttention(p, stream_));
  const cuda::DecodeAttentionPlan plan = cuda::PlanDecodeAttention(p, num_sms_);
  void* scratch = plan.scratch_bytes == 0
                      ? nullptr
                      : attention_scratch_.Get(plan.scratch_bytes, stream_, "decode attention");
  PREFIXD_CUDA_CHECK(cuda::LaunchDecodeAttention(p, plan, scratch, stream_));
}

}  // namespace prefixd
