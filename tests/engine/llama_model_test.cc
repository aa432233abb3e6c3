// The paged, batched forward pass against a plain dense Llama written here from the
// Hugging Face definition: one sequence at a time, full causal attention, no KV cache.
#include "engine/llama_model.h"

#include <cmath>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include "engine/llama_weights.h"
#include "engine/model_config.h"
#include "gtest/gtest.h"
#include "kernels/kernels.h"

namespace prefixd {
namespace {

using Matrix = std::vector<float>;  // row-major

class DenseLlama {
 public:
  DenseLlama(const ModelConfig& c, const LlamaWeights& w, Backend& backend) : c_(c) {
    auto get = [&](const std::string& name) {
      const Tensor t = LlamaWeightView(w, c, name);
      Matrix m(t.numel());
      backend.CopyToHost(t, m.data());
      return m;
    };
    embed_ = get("model.embed_tokens.weight");
    lm_head_ = get("lm_head.weight");
    final_norm_ = get("model.norm.weight");
    for (int i = 0; i < c.num_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer l;
      l.in_norm = get(p + "input_layernorm.weight");
      l.q = get(p + "self_attn.q_proj.weight");
      l.k = get(p + "self_attn.k_proj.weight");
      l.v = get(p + "self_attn.v_proj.weight");
      l.o = get(p + "self_attn.o_proj.weight");
      l.post_norm = get(p + "post_attention_layernorm.weight");
      l.gate = get(p + "mlp.gate_proj.weight");
      l.up = get(p + "mlp.up_proj.weight");
      l.down = get(p + "mlp.down_proj.weight");
      layers_.push_back(std::move(l));
    }
    inv_freq_ = c.RopeInvFreq();
  }

  // Logits [T, V] for every position of `tokens`.
  Matrix Logits(const std::vector<int32_t>& tokens) const {
    const int t_len = static_cast<int>(tokens.size()), d = c_.hidden_size;
    Matrix x(t_len * d);
    for (int t = 0; t < t_len; ++t) {
      std::copy_n(&embed_[tokens[t] * d], d, &x[t * d]);
    }
    for (const Layer& l : layers_) {
      Matrix h = Norm(x, l.in_norm, t_len);
      Matrix q = Linear(h, l.q, t_len, d, c_.q_size());
      Matrix k = Linear(h, l.k, t_len, d, c_.kv_size());
      Matrix v = Linear(h, l.v, t_len, d, c_.kv_size());
      Rope(q, t_len, c_.num_heads);
      Rope(k, t_len, c_.num_kv_heads);
      Matrix attn = Attention(q, k, v, t_len);
      Matrix o = Linear(attn, l.o, t_len, c_.q_size(), d);
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      h = Norm(x, l.post_norm, t_len);
      Matrix g = Linear(h, l.gate, t_len, d, c_.intermediate_size);
      Matrix u = Linear(h, l.up, t_len, d, c_.intermediate_size);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      Matrix down = Linear(g, l.down, t_len, c_.intermediate_size, d);
      for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
    }
    return Linear(Norm(x, final_norm_, t_len), lm_head_, t_len, d, c_.vocab_size);
  }

 private:
  struct Layer {
    Matrix in_norm, q, k, v, o, post_norm, gate, up, down;
  };

  Matrix Norm(const Matrix& x, const Matrix& w, int rows) const {
    const int d = c_.hidden_size;
    Matrix out(x.size());
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < d; ++i) ss += double{x[r * d + i]} * x[r * d + i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / d) + c_.rms_norm_eps);
      for (int i = 0; i < d; ++i) out[r * d + i] = x[r * d + i] * inv * w[i];
    }
    return out;
  }

  static Matrix Linear(const Matrix& x, const Matrix& w, int rows, int in, int out) {
    Matrix y(rows * out);
    for (int r = 0; r < rows; ++r) {
      for (int o = 0; o < out; ++o) {
        double acc = 0;
        for (int i = 0; i < in; ++i) acc += double{x[r * in + i]} * w[o * in + i];
        y[r * out + o] = static_cast<float>(acc);
      }
    }
    return y;
  }

  void Rope(Matrix& x, int rows, int heads) const {
    const int hd = c_.head_dim, half = hd / 2;
    for (int t = 0; t < rows; ++t) {
      for (int h = 0; h < heads; ++h) {
        float* v = &x[(t * heads + h) * hd];
        for (int j = 0; j < half; ++j) {
          const float angle = static_cast<float>(t) * inv_freq_[j];
          const float cs = std::cos(angle), sn = std::sin(angle);
          const float a = v[j], b = v[j + half];
          v[j] = a * cs - b * sn;
          v[j + half] = b * cs + a * sn;
        }
      }
    }
  }

  Matrix Attention(const Matrix& q, const Matrix& k, const Matrix& v, int rows) const {
    const int hq = c_.num_heads, hkv = c_.num_kv_heads, hd = c_.head_dim;
    const int group = hq / hkv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    Matrix out(rows * hq * hd, 0.0f);
    for (int t = 0; t < rows; ++t) {
      for (int h = 0; h < hq; ++h) {
        const int kh = h / group;
        std::vector<double> s(t + 1);
        double mx = -1e30;
        for (int j = 0; j <= t; ++j) {
          double dot = 0;
          for (int i = 0; i < hd; ++i)
            dot += double{q[(t * hq + h) * hd + i]} * k[(j * hkv + kh) * hd + i];
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int j = 0; j <= t; ++j) {
          for (int i = 0; i < hd; ++i) {
            out[(t * hq + h) * hd + i] +=
                static_cast<float>(s[j] / sum * v[(j * hkv + kh) * hd + i]);
          }
        }
      }
    }
    return out;
  }

  const ModelConfig c_;
  Matrix embed_, lm_head_, final_norm_;
  std::vector<Layer> layers_;
  std::vector<float> inv_freq_;
};

// Three sequences of different lengths, computed in chunks through a shuffled block table,
// mixed into shared steps; logits at each chunk's last token must equal the dense model's.
TEST(LlamaModelTest, PagedChunkedBatchedForwardEqualsDenseForward) {
  ModelConfig config = *RandomPresetConfig("tiny");
  config.num_layers = 2;  // the dense reference is slow
  std::unique_ptr<Backend> backend = MakeCpuBackend();
  LlamaWeights weights = RandomLlamaWeights(config, 7, *backend);
  DenseLlama dense(config, weights, *backend);

  constexpr int kBlockSize = 4, kBlocks = 64;
  KvCache kv(*backend, config, kBlocks, kBlockSize);
  LlamaModel model(config, std::move(weights), *backend, kv,
                   ModelLimits{.max_tokens = 64, .max_seqs = 4, .max_blocks_per_seq = 16});

  const std::vector<int> lengths = {23, 9, 30};
  const std::vector<std::vector<int>> chunks = {{7, 11, 5}, {9}, {1, 16, 13}};
  std::vector<std::vector<int32_t>> tokens(3), tables(3);
  int next_block = kBlocks - 1;  // hand out blocks backwards: tables are not contiguous
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < lengths[s]; ++i)
      tokens[s].push_back((s * 131 + i * 17) % config.vocab_size);
    for (int b = 0; b < (lengths[s] + kBlockSize - 1) / kBlockSize; ++b)
      tables[s].push_back(next_block--);
  }
  std::vector<int> done(3, 0);
  for (size_t step = 0; step < 3; ++step) {
    StepBatch batch;
    batch.Clear();
    std::vector<int> seqs;
    for (int s = 0; s < 3; ++s) {
      if (step >= chunks[s].size()) continue;
      const int n = chunks[s][step];
      batch.AddSequence(absl::MakeConstSpan(tokens[s]).subspan(done[s], n), done[s], tables[s],
                        kBlockSize, /*want_logits=*/true);
      seqs.push_back(s);
    }
    const Tensor logits = model.Forward(batch);
    std::vector<float> got(logits.numel());
    backend->CopyToHost(logits, got.data());
    for (size_t r = 0; r < seqs.size(); ++r) {
      const int s = seqs[r];
      done[s] += chunks[s][step];
      const std::vector<int32_t> prefix(tokens[s].begin(), tokens[s].begin() + done[s]);
      const Matrix want = dense.Logits(prefix);
      for (int v = 0; v < config.vocab_size; ++v) {
        const float w = want[(done[s] - 1) * config.vocab_size + v];
        ASSERT_NEAR(got[r * config.vocab_size + v], w, 1e-4 + 1e-4 * std::fabs(w))
            << "sequence " << s << " after " << done[s] << " tokens, vocab entry " << v;
      }
    }
  }
}

// Sequences added as the scheduler orders them: block tables as the prefix cache hands
// them out (shared blocks are the same ids).
TEST(StepBatchTest, FindsGroupsOfDecodesThatShareLeadingBlocks) {
  constexpr int kBs = 4;
  StepBatch batch;
  auto add = [&](int query_len, int context_len, std::vector<int32_t> table) {
    std::vector<int32_t> tokens(query_len, 7);
    batch.AddSequence(tokens, context_len - query_len, table, kBs, true);
  };
  add(5, 9, {40, 41, 42});    // 0: a prefill chunk: never grouped
  add(1, 14, {1, 2, 3, 10});  // 1: shares blocks 1 2 3 with 2 and 3
  add(1, 13, {1, 2, 3, 11});  // 2
  add(1, 16, {1, 2, 3, 12});  // 3: 16 positions: its last block (12) is its own
  add(1, 11, {1, 2, 13});     // 4: shares 1 2: the group keeps 2 of 3 blocks, not < half
  add(1, 30, {5, 6, 7, 8, 9, 14, 15, 16});  // 5: shares nothing with 4
  add(1, 9, {5, 17, 18});                   // 6: shares block 5 with 5
  add(1, 5, {20, 21});                      // 7: alone
  add(1, 8, {20, 22});                      // 8
  batch.FindSharedPrefixGroups(kBs, 1);
  // Sequence 7's table is {20, 21} with 5 positions: block 20 lies before its last block,
  // so 7 and 8 share one block.
  EXPECT_EQ(batch.groups, (std::vector<int32_t>{1, 5, 2, 5, 7, 1, 7, 9, 1}));

  // A member that would cut the group's shared blocks by more than half starts anew.
  StepBatch deep;
  auto add_deep = [&](int context_len, std::vector<int32_t> table) {
    deep.AddSequence(std::vector<int32_t>{7}, context_len - 1, table, kBs, true);
  };
  add_deep(21, {1, 2, 3, 4, 5, 30});
  add_deep(22, {1, 2, 3, 4, 5, 31});
  add_deep(13, {1, 2, 32, 33});  // shares 2 of 5: more than half lost
  add_deep(14, {1, 2, 34, 35});
  deep.FindSharedPrefixGroups(kBs, 1);
  EXPECT_EQ(deep.groups, (std::vector<int32_t>{0, 2, 5, 2, 4, 2}));

  // With a higher minimum, short shared prefixes make no group.
  deep.FindSharedPrefixGroups(kBs, 3);
  EXPECT_EQ(deep.groups, (std::vector<int32_t>{0, 2, 5}));
}

// A decode step: `n` sequences of one new token each, sequence s `context[s]` positions
// long, its blocks 100 * s + 0, 1, ... (block size 16).
StepBatch DecodeStep(const std::vector<int>& context) {
  StepBatch batch;
  batch.Clear();
  for (size_t s = 0; s < context.size(); ++s) {
    std::vector<int32_t> table((context[s] + 15) / 16);
    std::iota(table.begin(), table.end(), static_cast<int32_t>(100 * s));
    batch.AddSequence(std::vector<int32_t>{static_cast<int32_t>(s + 1)}, context[s] - 1, table, 16,
                      /*want_logits=*/true);
  }
  return batch;
}

TEST(DecodeGraphTest, ShapesAreBucketsOfBatchAndContext) {
  const ModelLimits limits{.max_tokens = 2048, .max_seqs = 256, .max_blocks_per_seq = 512};
  auto shape = [&](int n, int context) {
    const std::optional<DecodeGraphShape> s =
        DecodeGraphShapeFor(DecodeStep(std::vector<int>(n, context)), limits, 16);
    EXPECT_TRUE(s.has_value()) << n << " x " << context;
    return s.has_value() ? std::pair(s->batch, s->context) : std::pair(0, 0);
  };
  EXPECT_EQ(shape(1, 10), std::pair(1, 512));
  EXPECT_EQ(shape(3, 512), std::pair(4, 512));
  EXPECT_EQ(shape(5, 513), std::pair(8, 1024));
  EXPECT_EQ(shape(9, 2000), std::pair(16, 2048));
  EXPECT_EQ(shape(17, 100), std::pair(24, 512));
  EXPECT_EQ(shape(64, 4096), std::pair(64, 4096));
  EXPECT_EQ(shape(65, 4097), std::pair(96, 8192));  // 512 blocks of 16: the limit
  EXPECT_EQ(shape(256, 8192), std::pair(256, 8192));
  // The longest sequence sets the context bucket.
  EXPECT_EQ(DecodeGraphShapeFor(DecodeStep({10, 600, 30}), limits, 16)->context, 1024);

  // Capped by the limits: sequences (and tokens) per step, the context.
  const ModelLimits small{.max_tokens = 20, .max_seqs = 40, .max_blocks_per_seq = 44};
  EXPECT_EQ(DecodeGraphShapeFor(DecodeStep(std::vector<int>(17, 700)), small, 16)->batch, 20);
  EXPECT_EQ(DecodeGraphShapeFor(DecodeStep(std::vector<int>(17, 700)), small, 16)->context, 704);
  EXPECT_FALSE(DecodeGraphShapeFor(DecodeStep(std::vector<int>(21, 10)), small, 16).has_value());
}

TEST(DecodeGraphTest, OnlyDecodeStepsThatWantEveryLogitHaveAShape) {
  const ModelLimits limits{.max_tokens = 256, .max_seqs = 16, .max_blocks_per_seq = 64};
  StepBatch prefill = DecodeStep({40, 50});
  prefill.AddSequence(std::vector<int32_t>{1, 2, 3}, 0, std::vector<int32_t>{7}, 16, true);
  EXPECT_FALSE(DecodeGraphShapeFor(prefill, limits, 16).has_value());

  StepBatch quiet;  // a sequence whose logits nobody wants
  quiet.Clear();
  quiet.AddSequence(std::vector<int32_t>{1}, 3, std::vector<int32_t>{7}, 16, false);
  EXPECT_FALSE(DecodeGraphShapeFor(quiet, limits, 16).has_value());

  StepBatch grouped = DecodeStep({40, 50});
  grouped.groups = {0, 2, 2};
  EXPECT_FALSE(DecodeGraphShapeFor(grouped, limits, 16).has_value());

  EXPECT_FALSE(DecodeGraphShapeFor(StepBatch(), limits, 16).has_value());
}

TEST(DecodeGraphTest, PaddingAddsOneTokenSequencesOnThePadBlock) {
  const StepBatch batch = DecodeStep({20, 40, 3});
  StepBatch padded;
  PadDecodeBatch(batch, DecodeGraphShape{8, 512}, 16, /*pad_block=*/999, padded);
  EXPECT_EQ(padded.num_seqs(), 8);
  EXPECT_EQ(padded.num_tokens(), 8);
  EXPECT_EQ(padded.tokens, (std::vector<int32_t>{1, 2, 3, 0, 0, 0, 0, 0}));
  EXPECT_EQ(padded.positions, (std::vector<int32_t>{19, 39, 2, 0, 0, 0, 0, 0}));
  const int pad_slot = 999 * 16;
  EXPECT_EQ(padded.slots, (std::vector<int32_t>{1 * 16 + 3, 102 * 16 + 7, 200 * 16 + 2, pad_slot,
                                                pad_slot, pad_slot, pad_slot, pad_slot}));
  EXPECT_EQ(padded.query_start, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(padded.context_lens, (std::vector<int32_t>{20, 40, 3, 1, 1, 1, 1, 1}));
  EXPECT_EQ(padded.logit_rows, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  // Tables 512 / 16 = 32 blocks wide: each sequence's own blocks, the rest the pad block.
  ASSERT_EQ(padded.max_blocks_per_seq, 32);
  ASSERT_EQ(padded.block_tables.size(), 8u * 32);
  auto row = [&](int s) {
    return std::vector<int32_t>(padded.block_tables.begin() + s * 32,
                                padded.block_tables.begin() + s * 32 + 4);
  };
  EXPECT_EQ(row(0), (std::vector<int32_t>{0, 1, 999, 999}));
  EXPECT_EQ(row(1), (std::vector<int32_t>{100, 101, 102, 999}));
  EXPECT_EQ(row(2), (std::vector<int32_t>{200, 999, 999, 999}));
  EXPECT_EQ(row(7), (std::vector<int32_t>{999, 999, 999, 999}));
  EXPECT_EQ(padded.block_tables.back(), 999);

  // Reused for another step (as the model reuses its buffer), nothing of the first is left.
  const StepBatch other = DecodeStep({5});
  StepBatch fresh;
  PadDecodeBatch(other, DecodeGraphShape{2, 512}, 16, 7, fresh);
  PadDecodeBatch(other, DecodeGraphShape{2, 512}, 16, 7, padded);
  EXPECT_EQ(padded.tokens, fresh.tokens);
  EXPECT_EQ(padded.slots, fresh.slots);
  EXPECT_EQ(padded.query_start, fresh.query_start);
  EXPECT_EQ(padded.context_lens, fresh.context_lens);
  EXPECT_EQ(padded.block_tables, fresh.block_tables);
  EXPECT_EQ(padded.logit_rows, fresh.logit_rows);
  EXPECT_EQ(padded.query_start, (std::vector<int32_t>{0, 1, 2}));
}

// The padded step, run on the CPU as a graph would run it on the GPU (the same batch, the
// bucket's hints), gives every real sequence the logits of the step unpadded, and leaves
// their KV as the unpadded step writes it.
TEST(DecodeGraphTest, APaddedDecodeStepComputesTheSameLogits) {
  ModelConfig config = *RandomPresetConfig("tiny");
  config.num_layers = 2;
  std::unique_ptr<Backend> backend = MakeCpuBackend();
  constexpr int kBlockSize = 16, kBlocks = 64;
  KvCache kv(*backend, config, kBlocks, kBlockSize);
  LlamaModel model(config, RandomLlamaWeights(config, 7, *backend), *backend, kv,
                   ModelLimits{.max_tokens = 256, .max_seqs = 8, .max_blocks_per_seq = 32});
  // Three sequences prefilled (23, 9 and 40 tokens), then one decode step.
  const std::vector<int> lengths = {23, 9, 40};
  std::vector<std::vector<int32_t>> tables(3);
  StepBatch prefill;
  prefill.Clear();
  int next_block = 0;
  for (int s = 0; s < 3; ++s) {
    std::vector<int32_t> tokens(lengths[s]);
    for (int i = 0; i < lengths[s]; ++i) tokens[i] = (s * 131 + i * 17) % config.vocab_size;
    for (int b = 0; b < (lengths[s] + kBlockSize) / kBlockSize; ++b) {
      tables[s].push_back(next_block++);
    }
    prefill.AddSequence(tokens, 0, tables[s], kBlockSize, false);
  }
  model.Forward(prefill);
  StepBatch decode;
  decode.Clear();
  for (int s = 0; s < 3; ++s) {
    decode.AddSequence(std::vector<int32_t>{static_cast<int32_t>(5 + s)}, lengths[s], tables[s],
                       kBlockSize, true);
  }
  const Tensor plain = model.Forward(decode);
  std::vector<float> want(plain.numel());
  backend->CopyToHost(plain, want.data());

  const std::optional<DecodeGraphShape> shape =
      DecodeGraphShapeFor(decode, model.limits(), kBlockSize);
  ASSERT_TRUE(shape.has_value());
  EXPECT_EQ(shape->batch, 4);
  EXPECT_EQ(shape->context, 512);
  StepBatch padded;
  PadDecodeBatch(decode, *shape, kBlockSize, kv.pad_block(), padded);
  const Tensor logits = model.Forward(padded);  // writes the same K/V again, and the pad's
  ASSERT_EQ(logits.dim(0), 4);
  std::vector<float> got(logits.numel());
  backend->CopyToHost(logits, got.data());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5 + 1e-5 * std::fabs(want[i])) << "logit " << i;
  }
  for (size_t i = want.size(); i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << "padding's logit " << i;
  }
  EXPECT_EQ(model.decode_graph_stats().replays, 0);  // ModelLimits::decode_graphs is off
}

}  // namespace
}  // namespace prefixd
