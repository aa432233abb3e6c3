// kernels/cuda/launch.h — the launchers of kernels/cuda/*.cu, called by the backend (host
// code) after it has checked shapes and dtypes.
//
// Each launcher enqueues its kernel(s) on `stream` and returns the launch status
// (cudaGetLastError()); none synchronises, allocates or copies to the host, so every one can
// be captured in a CUDA graph. Pointers are device pointers unless a comment says otherwise.
// Sizes are in elements.
#ifndef PREFIXD_KERNELS_CUDA_LAUNCH_H_
#define PREFIXD_KERNELS_CUDA_LAUNCH_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace prefixd::cuda {

using bf16 = __nv_bfloat16;

// ---- fill.cu: initialisation ----

// cudaSuccess when this build has machine code (or PTX) for the current device; else the
// reason (e.g. cudaErrorNoKernelImageForDevice: CMAKE_CUDA_ARCHITECTURES misses the device).
cudaError_t CheckKernelImage();

// out[i] = RandomValue(seed, i, scale) (kernels.h), rounded to nearest even for bf16.
cudaError_t LaunchFillRandom(float* out, int64_t n, uint64_t seed, float scale,
                             cudaStream_t stream);
cudaError_t LaunchFillRandom(bf16* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream);
cudaError_t LaunchFill(float* out, int64_t n, float value, cudaStream_t stream);
cudaError_t LaunchFill(bf16* out, int64_t n, float value, cudaStream_t stream);

// ---- convert.cu: out[i] = bf16(in[i]), round to nearest even ----

cudaError_t LaunchConvertToBf16(const float* in, int64_t n, bf16* out, cudaStream_t stream);
cudaError_t LaunchConvertToBf16(const __half* in, int64_t n, bf16* out, cudaStream_t stream);

// ---- gather_rows.cu: Embedding and GatherRows ----

// out[b, :] = x[rows[b], :] for b < num_gathered; rows are `row_bytes` wide. A row index
// outside [0, num_rows) traps (PREFIXD_DEVICE_CHECK).
cudaError_t LaunchGatherRows(const void* x, int64_t num_rows, int64_t row_bytes,
                             const int32_t* rows, int64_t num_gathered, void* out,
                             cudaStream_t stream);

// ---- rmsnorm.cu ----

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight.  x, out: [rows, dim].
cudaError_t LaunchRmsNorm(const bf16* x, const bf16* weight, float eps, int64_t rows, int64_t dim,
                          bf16* out, cudaStream_t stream);
// residual = bf16(residual + x), then out = RmsNorm(residual) of the rounded residual.
cudaError_t LaunchAddRmsNorm(bf16* residual, const bf16* x, const bf16* weight, float eps,
                             int64_t rows, int64_t dim, bf16* out, cudaStream_t stream);

// ---- silu_mul.cu: out = silu(gate_up[:, :inter]) * gate_up[:, inter:] ----

cudaError_t LaunchSiluMul(const bf16* gate_up, int64_t rows, int64_t inter, bf16* out,
                          cudaStream_t stream);

// ---- bias_add.cu: out[r, :] += bias (the Gemm bias where cuBLASLt's epilogue is not used) ----

cudaError_t LaunchAddBias(const bf16* bias, int64_t rows, int64_t cols, float* out,
                          cudaStream_t stream);
cudaError_t LaunchAddBias(const bf16* bias, int64_t rows, int64_t cols, bf16* out,
                          cudaStream_t stream);

// ---- rope_store_kv.cu ----

struct RopeStoreKvParams {
  bf16* qkv = nullptr;                 // [num_tokens, (Hq + 2 Hkv) d], q and k rotated in place
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* inv_freq = nullptr;     // [d / 2]
  const int32_t* slots = nullptr;      // [num_tokens], each in [0, num_blocks * block_size)
  bf16* k_cache = nullptr;             // [num_blocks, Hkv, block_size, d]
  bf16* v_cache = nullptr;             // [num_blocks, Hkv, block_size, d]
  int64_t num_tokens = 0;
  int64_t num_blocks = 0;
  int block_size = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // even
};
cudaError_t LaunchRopeAndStoreKv(const RopeStoreKvParams& p, cudaStream_t stream);

// ---- decode_attention.cu and prefill_attention.cu: PagedAttention ----

// Head dims the attention kernels are compiled for.
inline bool IsSupportedAttentionHeadDim(int head_dim) {
  return head_dim == 32 || head_dim == 64 || head_dim == 128;
}

struct PagedAttentionParams {
  const bf16* qkv = nullptr;              // [num_tokens, (Hq + 2 Hkv) d]; q heads are read
  const bf16* k_cache = nullptr;          // [num_blocks, Hkv, block_size, d]
  const bf16* v_cache = nullptr;          // [num_blocks, Hkv, block_size, d]
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  bf16* out = nullptr;                    // [num_tokens, Hq d]
  int num_seqs = 0;
  int num_tokens = 0;
  int64_t num_blocks = 0;
  int block_size = 0;
  int max_blocks_per_seq = 0;
  // Host-side launch hints: upper bounds of every sequence's query_len and context_len
  // (checked on the device; a sequence over them traps).
  int max_query_len = 0;
  int max_context_len = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.0f;
  // Shared-prefix groups (kernels.h, AttentionMetadata::groups): [num_groups, 3] rows of
  // (first, end, shared_blocks), decode sequences only; num_groups 0: none. Host-side hint:
  // max_group_seqs bounds every group's end - first (0: num_seqs does).
  const int32_t* groups = nullptr;
  int num_groups = 0;
  int max_group_seqs = 0;
};

// How the decode kernels split the work; a pure function of the params' shapes and hints.
struct DecodeAttentionPlan {
  int partition_size = 0;  // keys per split (per CTA)
  int num_partitions = 0;  // grid.x: splits of the longest context (max_context_len)
  int heads_per_cta = 0;   // query heads of one KV head that one CTA serves: 1, 2, 4 or 8
  int head_chunks = 0;     // CTAs per KV head: ceil(group / heads_per_cta)
  // Cascade (num_groups > 0): a group's shared blocks are attended once for all its members
  // (cascade_attention.cu), each member's partitions cover only its private keys, and the
  // reduction merges the two by log-sum-exp; the reduction then always runs.
  bool cascade = false;
  // Device scratch (0 when num_partitions == 1 and no cascade: the partition kernel then
  // writes the output itself and no reduction runs): the split partials, num_seqs * Hq *
  // num_partitions * (d + 2) floats; with cascade, then the shared partials, num_seqs * Hq *
  // (d + 2) floats, at shared_offset, and each sequence's first private key, num_seqs ints,
  // at key_begin_offset.
  size_t scratch_bytes = 0;
  size_t shared_offset = 0;
  size_t key_begin_offset = 0;
};
DecodeAttentionPlan PlanDecodeAttention(const PagedAttentionParams& p, int num_sms);

// Rows of sequences with query_len == 1. Other sequences are left alone (the prefill kernel's).
// With groups (plan.cascade), also the shared-prefix pass (cascade_attention.cu).
cudaError_t LaunchDecodeAttention(const PagedAttentionParams& p, const DecodeAttentionPlan& plan,
                                  void* scratch, cudaStream_t stream);

// cascade_attention.cu, called by LaunchDecodeAttention. Partials of one (sequence, query
// head) each: max (natural-log units, the scaled score's), sum of exp(score - max), and the
// unnormalised accumulator [d]; row (seq * Hq + q_head).
struct SharedPartials {
  float* max;
  float* sum;
  float* acc;
};
// key_begin[s] = the group's shared_blocks * block_size for a member of a group, else 0;
// traps on a group that breaks kernels.h's rules (not decode rows, out of range, shared
// blocks not before each member's last block).
cudaError_t LaunchGroupKeyBegins(const PagedAttentionParams& p, int32_t* key_begin,
                                 cudaStream_t stream);
// For every group, its members' queries against its shared blocks in one pass (tensor
// cores): each shared K/V tile is read once per 64 query rows (members x query heads of a
// KV head) instead of once per member.
cudaError_t LaunchSharedPrefixAttention(const PagedAttentionParams& p, SharedPartials shared,
                                        cudaStream_t stream);

// Rows of sequences with query_len > 1 (chunked or whole prefill). Other sequences are left
// alone (the decode kernels').
cudaError_t LaunchPrefillAttention(const PagedAttentionParams& p, cudaStream_t stream);

// ---- sampling.cu and segmented_sort.cu: Sample ----

inline constexpr int kMaxTopLogprobs = 20;

// One row's sampling parameters, prepared on the host (validated, uniform drawn there).
struct SampleRowParams {
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float uniform = 0.0f;  // SamplingUniform(seed, step), computed on the host
  int greedy = 0;        // temperature 0 or top_k 1
  int num_top_logprobs = 0;
  int needs_sort = 0;  // !greedy || num_top_logprobs > 0
  int unused = 0;
};

struct SampleRowResult {
  int32_t token;
  float logprob;
  int32_t top_ids[kMaxTopLogprobs];
  float top_logprobs[kMaxTopLogprobs];
};

// Device scratch Sample needs for `rows` rows of `vocab` logits (sort buffers, segment
// offsets, row statistics and the sort's own temporary storage): about 16 * rows * vocab
// bytes.
size_t SampleScratchBytes(int rows, int vocab);

// Draws one token per row: logits [rows, vocab] f32, params and results [rows], all on the
// device; `scratch` holds SampleScratchBytes(rows, vocab) bytes; rows * vocab < 2^31.
// any_needs_sort: some row has needs_sort set (else the sort is skipped).
cudaError_t LaunchSample(const float* logits, int rows, int vocab, const SampleRowParams* params,
                         bool any_needs_sort, void* scratch, size_t scratch_bytes,
                         SampleRowResult* results, cudaStream_t stream);

// segmented_sort.cu: sorts each row [begin[r], end[r]) of (keys, ids) by key descending,
// stably (equal keys keep their order); rows with end <= begin + 1 are skipped.
// `temp == nullptr` only sets *temp_bytes.
cudaError_t SortRowsDescending(void* temp, size_t* temp_bytes, const float* keys_in,
                               float* keys_out, const int32_t* ids_in, int32_t* ids_out,
                               int num_items, int rows, const int32_t* begin, const int32_t* end,
                               cudaStream_t stream);

}  // namespace prefixd::cuda

#endif  // PREFIXD_KERNELS_CUDA_LAUNCH_H_
