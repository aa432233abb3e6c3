// engine/llama_model.h — the Llama-family decoder over a paged KV cache.
//
// One Forward() runs one scheduler step: the new tokens of every sequence in the batch,
// concatenated — prefill chunks and decode tokens alike. Each token's K/V is written into
// its slot of the KV cache, and attention reads each sequence's earlier positions through
// its block table, so a sequence whose prefix was computed by another request (a cache
// hit) attends to those blocks exactly as if it had computed them itself.
#ifndef PREFIXD_ENGINE_LLAMA_MODEL_H_
#define PREFIXD_ENGINE_LLAMA_MODEL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/llama_weights.h"
#include "engine/model_config.h"
#include "kernels/kernels.h"

namespace prefixd {

// One step, described on the host. S sequences, T tokens.
struct StepBatch {
  std::vector<int32_t> tokens;        // [T]
  std::vector<int32_t> positions;     // [T]
  std::vector<int32_t> slots;         // [T]: block * block_size + offset of each token's K/V
  std::vector<int32_t> query_start;   // [S + 1]: rows of sequence s
  std::vector<int32_t> context_lens;  // [S]: positions of sequence s after this step
  std::vector<int32_t> block_tables;  // [S * max_blocks_per_seq], unused entries 0
  int max_blocks_per_seq = 0;
  std::vector<int32_t> logit_rows;  // rows whose next-token logits are wanted
  // Shared-prefix groups of decode sequences: (first, end, shared blocks) per group, as
  // AttentionMetadata's (kernels.h).
  std::vector<int32_t> groups;  // [G * 3]

  int num_tokens() const { return static_cast<int>(tokens.size()); }
  int num_seqs() const { return static_cast<int>(context_lens.size()); }
  int num_groups() const { return static_cast<int>(groups.size() / 3); }
  void Clear();
  // Appends sequence tokens[first, first + n) whose blocks are `block_table`.
  void AddSequence(absl::Span<const int32_t> new_tokens, int first_position,
                   absl::Span<const int32_t> block_table, int block_size, bool want_logits);
  // Finds the groups: runs of consecutive decode sequences (one new token each) whose block
  // tables begin with the same blocks (as the prefix cache hands them out), at least
  // `min_shared_blocks` of them, two sequences or more. A run takes the next sequence only
  // while that costs the group at most half of its shared blocks. Call after the last
  // AddSequence; sequences that share a prefix must have been added next to each other.
  void FindSharedPrefixGroups(int block_size, int min_shared_blocks);
};

struct ModelLimits {
  int max_tokens = 0;          // tokens per step
  int max_seqs = 0;            // sequences per step
  int max_blocks_per_seq = 0;  // ceil(max context / block_size)
  // Decode steps as recorded graphs (below); only where the backend records them.
  bool decode_graphs = false;
};

// Decode graphs. A decode step (one new token per sequence, every sequence wanting its
// logits) is padded to a bucket of sequences and run with the bucket's context length as
// its attention hint, so that the ops of every step in the bucket have the same shapes and
// pointers: the first such step runs its ops plainly (growing any scratch), the second
// records them as a graph (Backend::Capture), and later ones only upload their metadata in
// place and replay it. Batch buckets: 1, 2, 4, 8, then multiples of 8 to 64, then of 32,
// capped at the limits; context buckets: powers of two from 512, capped at the limit.
struct DecodeGraphShape {
  int batch = 0;    // sequences, padding included
  int context = 0;  // the attention hint: no sequence is longer; a multiple of block_size

  bool operator<(const DecodeGraphShape& o) const {
    return batch != o.batch ? batch < o.batch : context < o.context;
  }
};

// The graph shape of `batch`, or nullopt when it is no decode step or is over the limits.
std::optional<DecodeGraphShape> DecodeGraphShapeFor(const StepBatch& batch,
                                                    const ModelLimits& limits, int block_size);

// `batch` padded to `shape`, into `padded` (reused from step to step): its sequences, then
// one-token sequences at position 0 whose K/V goes to `pad_block` (token 0, context 1, every block
// table entry pad_block); block tables shape.context / block_size wide; a logit row per sequence,
// padding included.
void PadDecodeBatch(const StepBatch& batch, const DecodeGraphShape& shape, int block_size,
                    int32_t pad_block, StepBatch& padded);

// What the decode graphs have done since the model was made.
struct DecodeGraphStats {
  int64_t plain_runs = 0;  // steps in a graph's shape run without one (first of a shape)
  int64_t captures = 0;    // graphs recorded (again, after their scratch moved)
  int64_t replays = 0;     // steps run by replaying a graph
};

class LlamaModel {
 public:
  // `backend` and `kv` must outlive the model.
  LlamaModel(const ModelConfig& config, LlamaWeights weights, Backend& backend, KvCache& kv,
             ModelLimits limits);
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  // Runs the step and returns the logits of batch.logit_rows: [rows, V] f32 in backend
  // memory, valid until the next Forward(). The batch must respect the limits. A decode
  // step runs as a graph where limits.decode_graphs says so.
  Tensor Forward(const StepBatch& batch);
  const DecodeGraphStats& decode_graph_stats() const { return graph_stats_; }

  const ModelConfig& config() const { return config_; }
  const ModelLimits& limits() const { return limits_; }
  const LlamaWeights& weights() const { return weights_; }
  Backend& backend() { return backend_; }

 private:
  // The step's metadata on the device: views into step_meta_.
  struct StepTensors {
    Tensor ids, positions, slots, logit_rows;
    AttentionMetadata attention;
  };
  // Uploads the step's metadata in one copy: its arrays packed one after the other into
  // step_meta_, so the same sizes give the same addresses (what a graph replays). The
  // attention hints are the batch's own, or `context_hint` when given (a graph's shape).
  StepTensors Upload(const StepBatch& batch, int context_hint);
  // Queues every op of a step; the same tensors for the same sizes, so a graph can record
  // them.
  void RunOps(const StepTensors& step);
  Tensor ForwardDecodeGraph(const StepBatch& batch, const DecodeGraphShape& shape);

  const ModelConfig config_;
  LlamaWeights weights_;
  Backend& backend_;
  KvCache& kv_;
  const ModelLimits limits_;
  const AttentionShape shape_;

  DeviceTensor inv_freq_;  // [d/2] f32
  // A step's int32 metadata, packed (Upload), on the host and the device; sized for limits_.
  std::vector<int32_t> step_meta_host_;
  DeviceTensor step_meta_;
  // Scratch, sized for limits_ once; each step uses the leading rows.
  DeviceTensor residual_, hidden_, qkv_, attn_, proj_, gate_up_, act_, last_hidden_, logits_;

  struct DecodeGraph {
    int64_t plain_runs = 0;
    std::unique_ptr<OpGraph> graph;
  };
  std::map<DecodeGraphShape, DecodeGraph> decode_graphs_;
  StepBatch padded_;  // the decode step padded to its graph's shape
  DecodeGraphStats graph_stats_;
};

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_LLAMA_MODEL_H_
