#include "engine/llama_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

  ids_ = backend.Allocate(DType::kI32, {t});
  positions_ = backend.Allocate(DType::kI32, {t});
  slots_ = backend.Allocate(DType::kI32, {t});
  query_start_ = backend.Allocate(DType::kI32, {limits.max_seqs + 1});
  context_lens_ = backend.Allocate(DType::kI32, {limits.max_seqs});
  block_tables_ =
      backend.Allocate(DType::kI32, {int64_t{limits.max_seqs} * limits.max_blocks_per_seq});
  logit_rows_ = backend.Allocate(DType::kI32, {limits.max_seqs});
  groups_ = backend.Allocate(DType::kI32, {int64_t{limits.max_seqs} * 3});

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

Tensor LlamaModel::Forward(const StepBatch& batch) {
  const int num_tokens = batch.num_tokens(), num_seqs = batch.num_seqs();
  const int num_rows = static_cast<int>(batch.logit_rows.size());
  PREFIXD_CHECK(num_tokens > 0 && num_tokens <= limits_.max_tokens, "step of ", num_tokens,
                " tokens (limit ", limits_.max_tokens, ")");
  PREFIXD_CHECK(num_seqs > 0 && num_seqs <= limits_.max_seqs, "step of ", num_seqs,
                " sequences (limit ", limits_.max_seqs, ")");
  PREFIXD_CHECK(batch.max_blocks_per_seq <= limits_.max_blocks_per_seq, "block table width ",
                batch.max_blocks_per_seq, " over ", limits_.max_blocks_per_seq);

  // Upload the step's metadata.
  auto upload = [&](const std::vector<int32_t>& host, DeviceTensor& dev) {
    Tensor view(dev.view().data, DType::kI32, {static_cast<int64_t>(host.size())});
    if (!host.empty()) backend_.CopyFromHost(host.data(), view);
    return view;
  };
  const Tensor ids = upload(batch.tokens, ids_);
  const Tensor positions = upload(batch.positions, positions_);
  const Tensor slots = upload(batch.slots, slots_);
  AttentionMetadata meta;
  meta.num_seqs = num_seqs;
  meta.num_tokens = num_tokens;
  meta.block_size = kv_.block_size();
  meta.max_blocks_per_seq = batch.max_blocks_per_seq;
  meta.query_start = upload(batch.query_start, query_start_);
  meta.context_lens = upload(batch.context_lens, context_lens_);
  meta.block_tables =
      upload(batch.block_tables, block_tables_).Reshaped({num_seqs, batch.max_blocks_per_seq});
  if (batch.num_groups() > 0) {
    meta.num_groups = batch.num_groups();
    meta.groups = upload(batch.groups, groups_).Reshaped({meta.num_groups, 3});
  }
  for (int s = 0; s < num_seqs; ++s) {
    meta.max_query_len =
        std::max(meta.max_query_len, batch.query_start[s + 1] - batch.query_start[s]);
    meta.max_context_len = std::max(meta.max_context_len, batch.context_lens[s]);
  }

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

  Tensor logits = logits_.view().Rows(0, num_rows);
  if (num_rows == 0) return logits;
  const Tensor rows = upload(batch.logit_rows, logit_rows_);
  Tensor last = last_hidden_.view().Rows(0, num_rows);
  backend_.GatherRows(hidden, rows, last);
  backend_.Gemm(last, weights_.output_projection(), nullptr, logits);
  return logits;
}

}  // namespace prefixd
