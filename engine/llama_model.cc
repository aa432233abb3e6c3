#include "engine/llama_model.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#include "base/check.h"

namespace prefixd {

void StepBatch::Clear() {
  tokens.clear();
  positions.clear();
  slots.clear();
  query_start.assign(1, 0);
  context_lens.clear();
  block_tables.clear();
  max_blocks_per_seq = 0;
  logit_rows.clear();
  groups.clear();
}

void StepBatch::AddSequence(absl::Span<const int32_t> new_tokens, int first_position,
                            absl::Span<const int32_t> block_table, int block_size,
                            bool want_logits) {
  if (query_start.empty()) query_start.push_back(0);
  PREFIXD_CHECK(!new_tokens.empty(), "a sequence in a step needs at least one token");
  const int end = first_position + static_cast<int>(new_tokens.size());
  PREFIXD_CHECK(static_cast<int>(block_table.size()) * block_size >= end, "block table of ",
                block_table.size(), " blocks is too short for ", end, " positions");
  for (size_t i = 0; i < new_tokens.size(); ++i) {
    const int pos = first_position + static_cast<int>(i);
    tokens.push_back(new_tokens[i]);
    positions.push_back(pos);
    slots.push_back(block_table[pos / block_size] * block_size + pos % block_size);
  }
  query_start.push_back(static_cast<int32_t>(tokens.size()));
  context_lens.push_back(end);
  if (want_logits) logit_rows.push_back(static_cast<int32_t>(tokens.size()) - 1);
  // Block tables are rectangular: widen every row when this one is longer.
  const int needed = (end + block_size - 1) / block_size;
  const int width = std::max(max_blocks_per_seq, needed);
  if (width != max_blocks_per_seq && max_blocks_per_seq > 0) {
    std::vector<int32_t> wider(static_cast<size_t>(num_seqs() - 1) * width, 0);
    for (int s = 0; s < num_seqs() - 1; ++s) {
      std::copy_n(block_tables.begin() + s * max_blocks_per_seq, max_blocks_per_seq,
                  wider.begin() + s * width);
    }
    block_tables = std::move(wider);
  }
  max_blocks_per_seq = width;
  const size_t row = block_tables.size();
  block_tables.resize(row + width, 0);
  std::copy_n(block_table.begin(), needed, block_tables.begin() + row);
}

void StepBatch::FindSharedPrefixGroups(int block_size, int min_shared_blocks) {
  groups.clear();
  const int n = num_seqs();
  auto is_decode = [&](int s) { return query_start[s + 1] - query_start[s] == 1; };
  // Blocks that sequences a and b share, up to the block before each one's last (the last
  // block holds the new token and is private).
  auto shared = [&](int a, int b) {
    const int limit =
        std::min((context_lens[a] - 1) / block_size, (context_lens[b] - 1) / block_size);
    const int32_t* ta = block_tables.data() + static_cast<size_t>(a) * max_blocks_per_seq;
    const int32_t* tb = block_tables.data() + static_cast<size_t>(b) * max_blocks_per_seq;
    int k = 0;
    while (k < limit && ta[k] == tb[k]) ++k;
    return k;
  };
  for (int s = 0; s < n;) {
    if (!is_decode(s)) {
      ++s;
      continue;
    }
    int end = s + 1, blocks = 0;
    while (end < n && is_decode(end)) {
      const int with = end == s + 1 ? shared(s, end) : std::min(blocks, shared(s, end));
      if (with < min_shared_blocks || 2 * with < blocks) break;
      blocks = with;
      ++end;
    }
    if (end - s >= 2) groups.insert(groups.end(), {s, end, blocks});
    s = end;
  }
}

LlamaModel::LlamaModel(const ModelConfig& config, LlamaWeights weights, Backend& backend,
                       KvCache& kv, ModelLimits limits)
    : config_(config),
      weights_(std::move(weights)),
      backend_(backend),
      kv_(kv),
      limits_(limits),
      shape_{config.num_heads, config.num_kv_heads, config.head_dim} {
  const int64_t t = limits.max_tokens, d = config.hidden_size,
                qkv_dim = int64_t{config.num_heads + 2 * config.num_kv_heads} * config.head_dim,
                q_dim = int64_t{config.num_heads} * config.head_dim,
                inter = config.intermediate_size;
  const DType act = backend.compute_dtype();
  const std::vector<float> inv_freq = config.RopeInvFreq();
  inv_freq_ = backend.Allocate(DType::kF32, {static_cast<int64_t>(inv_freq.size())});
  backend.CopyFromHost(inv_freq.data(), inv_freq_.view());

  // tokens, positions, slots; logit rows, query starts, context lengths, groups; tables.
  const int64_t s = limits.max_seqs;
  const int64_t meta_ints = 3 * t + s + (s + 1) + s + 3 * s + s * limits.max_blocks_per_seq;
  step_meta_host_.resize(meta_ints);
  step_meta_ = backend.Allocate(DType::kI32, {meta_ints});

  residual_ = backend.Allocate(act, {t, d});
  hidden_ = backend.Allocate(act, {t, d});
  qkv_ = backend.Allocate(act, {t, qkv_dim});
  attn_ = backend.Allocate(act, {t, q_dim});
  proj_ = backend.Allocate(act, {t, d});
  gate_up_ = backend.Allocate(act, {t, 2 * inter});
  act_ = backend.Allocate(act, {t, inter});
  last_hidden_ = backend.Allocate(act, {limits.max_seqs, d});
  logits_ = backend.Allocate(DType::kF32, {limits.max_seqs, config.vocab_size});
}

std::optional<DecodeGraphShape> DecodeGraphShapeFor(const StepBatch& batch,
                                                    const ModelLimits& limits, int block_size) {
  const int n = batch.num_seqs();
  if (n == 0 || batch.num_tokens() != n || batch.num_groups() > 0 ||
      static_cast<int>(batch.logit_rows.size()) != n) {
    return std::nullopt;
  }
  for (int s = 0; s < n; ++s) {
    if (batch.logit_rows[s] != s) return std::nullopt;
  }
  const int max_batch = std::min(limits.max_seqs, limits.max_tokens);
  if (n > max_batch) return std::nullopt;
  DecodeGraphShape shape;
  shape.batch = n <= 8    ? static_cast<int>(std::bit_ceil(static_cast<unsigned>(n)))
                : n <= 64 ? (n + 7) / 8 * 8
                          : (n + 31) / 32 * 32;
  shape.batch = std::min(shape.batch, max_batch);
  const int max_context = limits.max_blocks_per_seq * block_size;
  const int longest = *std::max_element(batch.context_lens.begin(), batch.context_lens.end());
  if (longest > max_context || batch.max_blocks_per_seq > limits.max_blocks_per_seq) {
    return std::nullopt;
  }
  const int bucket = static_cast<int>(std::bit_ceil(static_cast<unsigned>(std::max(longest, 512))));
  shape.context = std::min((bucket + block_size - 1) / block_size * block_size, max_context);
  return shape;
}

void PadDecodeBatch(const StepBatch& batch, const DecodeGraphShape& shape, int block_size,
                    int32_t pad_block, StepBatch& p) {
  const int n = batch.num_seqs(), width = shape.context / block_size;
  PREFIXD_CHECK(
      n <= shape.batch && batch.max_blocks_per_seq <= width && shape.context % block_size == 0,
      "a decode step of ", n, " sequences and ", batch.max_blocks_per_seq,
      " blocks each does not fit the graph of ", shape.batch, " x ", shape.context);
  // Assignments, not new vectors: `p` is reused step after step and keeps its capacity.
  p.tokens = batch.tokens;
  p.positions = batch.positions;
  p.slots = batch.slots;
  p.query_start = batch.query_start;
  p.context_lens = batch.context_lens;
  p.groups.clear();
  p.tokens.resize(shape.batch, 0);
  p.positions.resize(shape.batch, 0);
  p.slots.resize(shape.batch, pad_block * block_size);
  p.context_lens.resize(shape.batch, 1);
  for (int s = n; s < shape.batch; ++s) p.query_start.push_back(s + 1);
  p.max_blocks_per_seq = width;
  p.block_tables.assign(static_cast<size_t>(shape.batch) * width, pad_block);
  for (int s = 0; s < n; ++s) {  // each sequence's own blocks; the pad block after them
    const int own =
        std::min(batch.max_blocks_per_seq, (batch.context_lens[s] + block_size - 1) / block_size);
    std::copy_n(batch.block_tables.begin() + static_cast<size_t>(s) * batch.max_blocks_per_seq, own,
                p.block_tables.begin() + static_cast<size_t>(s) * width);
  }
  p.logit_rows.resize(shape.batch);
  std::iota(p.logit_rows.begin(), p.logit_rows.end(), 0);
}

LlamaModel::StepTensors LlamaModel::Upload(const StepBatch& batch, int context_hint) {
  int64_t used = 0;
  auto pack = [&](const std::vector<int32_t>& host) {
    PREFIXD_CHECK(
        used + static_cast<int64_t>(host.size()) <= static_cast<int64_t>(step_meta_host_.size()),
        "step metadata over its buffer");
    std::copy(host.begin(), host.end(), step_meta_host_.begin() + used);
    Tensor view(static_cast<int32_t*>(step_meta_.view().data) + used, DType::kI32,
                {static_cast<int64_t>(host.size())});
    used += static_cast<int64_t>(host.size());
    return view;
  };
  const int num_seqs = batch.num_seqs();
  StepTensors t;
  t.ids = pack(batch.tokens);
  t.positions = pack(batch.positions);
  t.slots = pack(batch.slots);
  t.logit_rows = pack(batch.logit_rows);
  AttentionMetadata& meta = t.attention;
  meta.num_seqs = num_seqs;
  meta.num_tokens = batch.num_tokens();
  meta.block_size = kv_.block_size();
  meta.max_blocks_per_seq = batch.max_blocks_per_seq;
  meta.query_start = pack(batch.query_start);
  meta.context_lens = pack(batch.context_lens);
  if (batch.num_groups() > 0) {
    meta.num_groups = batch.num_groups();
    meta.groups = pack(batch.groups).Reshaped({meta.num_groups, 3});
    for (int g = 0; g < meta.num_groups; ++g) {
      meta.max_group_seqs =
          std::max(meta.max_group_seqs, batch.groups[3 * g + 1] - batch.groups[3 * g]);
    }
  }
  meta.block_tables = pack(batch.block_tables).Reshaped({num_seqs, batch.max_blocks_per_seq});
  // One copy of everything packed.
  Tensor all(step_meta_.view().data, DType::kI32, {used});
  backend_.CopyFromHost(step_meta_host_.data(), all);
  for (int s = 0; s < num_seqs; ++s) {
    meta.max_query_len =
        std::max(meta.max_query_len, batch.query_start[s + 1] - batch.query_start[s]);
    meta.max_context_len = std::max(meta.max_context_len, batch.context_lens[s]);
  }
  if (context_hint > 0) {
    PREFIXD_CHECK(context_hint >= meta.max_context_len, "context hint ", context_hint,
                  " under the step's longest sequence, ", meta.max_context_len);
    meta.max_context_len = context_hint;
  }
  return t;
}

void LlamaModel::RunOps(const StepTensors& step) {
  const AttentionMetadata& meta = step.attention;
  const int num_tokens = meta.num_tokens;
  const int num_rows = static_cast<int>(step.logit_rows.dim(0));
  const Tensor& ids = step.ids;
  const Tensor& positions = step.positions;
  const Tensor& slots = step.slots;
  Tensor residual = residual_.view().Rows(0, num_tokens);
  Tensor hidden = hidden_.view().Rows(0, num_tokens);
  Tensor qkv = qkv_.view().Rows(0, num_tokens);
  Tensor attn = attn_.view().Rows(0, num_tokens);
  Tensor proj = proj_.view().Rows(0, num_tokens);
  Tensor gate_up = gate_up_.view().Rows(0, num_tokens);
  Tensor act = act_.view().Rows(0, num_tokens);
  const float eps = config_.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));

  // The residual stream starts as the token embeddings; each sub-block adds to it and the
  // next norm reads it (AddRmsNorm fuses the two).
  backend_.Embedding(weights_.embed.view(), ids, residual);
  backend_.RmsNorm(residual, weights_.layers[0].input_norm.view(), eps, hidden);
  for (int i = 0; i < config_.num_layers; ++i) {
    const LlamaLayerWeights& w = weights_.layers[i];
    KvCacheLayer& kv = kv_.layer(i);
    backend_.Gemm(hidden, w.qkv.view(), w.qkv_bias.empty() ? nullptr : &w.qkv_bias.view(), qkv);
    backend_.RopeAndStoreKv(qkv, positions, inv_freq_.view(), slots, shape_, kv);
    backend_.PagedAttention(qkv, meta, shape_, kv, scale, attn);
    backend_.Gemm(attn, w.o.view(), w.o_bias.empty() ? nullptr : &w.o_bias.view(), proj);
    backend_.AddRmsNorm(residual, proj, w.post_attn_norm.view(), eps, hidden);
    backend_.Gemm(hidden, w.gate_up.view(), nullptr, gate_up);
    backend_.SiluMul(gate_up, act);
    backend_.Gemm(act, w.down.view(), nullptr, proj);
    const Tensor& next_norm = i + 1 < config_.num_layers ? weights_.layers[i + 1].input_norm.view()
                                                         : weights_.final_norm.view();
    backend_.AddRmsNorm(residual, proj, next_norm, eps, hidden);
  }
  if (num_rows == 0) return;
  const Tensor& rows = step.logit_rows;
  Tensor last = last_hidden_.view().Rows(0, num_rows);
  Tensor logits = logits_.view().Rows(0, num_rows);
  backend_.GatherRows(hidden, rows, last);
  backend_.Gemm(last, weights_.output_projection(), nullptr, logits);
}

Tensor LlamaModel::ForwardDecodeGraph(const StepBatch& batch, const DecodeGraphShape& shape) {
  PadDecodeBatch(batch, shape, kv_.block_size(), kv_.pad_block(), padded_);
  const StepTensors step = Upload(padded_, shape.context);
  auto run = [&] { RunOps(step); };
  DecodeGraph& g = decode_graphs_[shape];
  if (g.graph != nullptr && backend_.Replay(*g.graph)) {
    ++graph_stats_.replays;
  } else if (g.graph == nullptr && g.plain_runs > 0) {
    g.graph = backend_.Capture(run);
    PREFIXD_CHECK(g.graph != nullptr && backend_.Replay(*g.graph),
                  "a decode graph recorded just now cannot be replayed");
    ++graph_stats_.captures;
    ++graph_stats_.replays;
  } else {
    // The shape's first step, or its graph read scratch memory that has moved since: run the
    // ops plainly (scratch grows now if it must, never while recording) and record next time.
    g.graph.reset();
    run();
    ++g.plain_runs;
    ++graph_stats_.plain_runs;
  }
  return logits_.view().Rows(0, batch.num_seqs());
}

Tensor LlamaModel::Forward(const StepBatch& batch) {
  const int num_tokens = batch.num_tokens(), num_seqs = batch.num_seqs();
  const int num_rows = static_cast<int>(batch.logit_rows.size());
  PREFIXD_CHECK(num_tokens > 0 && num_tokens <= limits_.max_tokens, "step of ", num_tokens,
                " tokens (limit ", limits_.max_tokens, ")");
  PREFIXD_CHECK(num_seqs > 0 && num_seqs <= limits_.max_seqs, "step of ", num_seqs,
                " sequences (limit ", limits_.max_seqs, ")");
  PREFIXD_CHECK(batch.max_blocks_per_seq <= limits_.max_blocks_per_seq, "block table width ",
                batch.max_blocks_per_seq, " over ", limits_.max_blocks_per_seq);
  if (limits_.decode_graphs) {
    if (std::optional<DecodeGraphShape> shape =
            DecodeGraphShapeFor(batch, limits_, kv_.block_size())) {
      return ForwardDecodeGraph(batch, *shape);
    }
  }
  RunOps(Upload(batch, /*context_hint=*/0));
  return logits_.view().Rows(0, num_rows);
}

}  // namespace prefixd
