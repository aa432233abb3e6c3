#include "engine/llama_weights.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace prefixd {
namespace {

std::string LayerName(int layer, const char* suffix) {
  return absl::StrCat("model.layers.", layer, ".", suffix);
}

// 64-bit FNV-1a of the name, mixed with the model seed: one seed per tensor.
uint64_t TensorSeed(uint64_t seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Uniform bound of a random tensor: norms are 1 (handled apart), projections
// U(±1/sqrt(fan_in)), biases small, embeddings 0.2 (logits of a tied head come out with a
// standard deviation of about 0.115 sqrt(D): decisive but not one-hot).
float RandomScale(const WeightSpec& spec) {
  if (spec.shape.size() == 1) return 0.02f;  // biases
  if (spec.name.find("embed_tokens") != std::string::npos) return 0.2f;
  if (spec.name == "lm_head.weight") return 0.2f;
  return 1.0f / std::sqrt(static_cast<float>(spec.shape[1]));
}

bool IsNorm(std::string_view name) { return name.find("norm") != std::string_view::npos; }

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

}  // namespace

LlamaWeights AllocateLlamaWeights(const ModelConfig& c, Backend& backend) {
  const int64_t d = c.hidden_size, qkv = c.qkv_size(), inter = c.intermediate_size;
  const DType dtype = backend.compute_dtype();
  LlamaWeights w;
  w.embed = backend.Allocate(dtype, {c.vocab_size, d});
  for (int i = 0; i < c.num_layers; ++i) {
    LlamaLayerWeights& l = w.layers.emplace_back();
    l.input_norm = backend.Allocate(dtype, {d});
    l.qkv = backend.Allocate(dtype, {qkv, d});
    if (c.qkv_bias) l.qkv_bias = backend.Allocate(dtype, {qkv});
    l.o = backend.Allocate(dtype, {d, c.q_size()});
    if (c.o_bias) l.o_bias = backend.Allocate(dtype, {d});
    l.post_attn_norm = backend.Allocate(dtype, {d});
    l.gate_up = backend.Allocate(dtype, {2 * inter, d});
    l.down = backend.Allocate(dtype, {d, inter});
  }
  w.final_norm = backend.Allocate(dtype, {d});
  if (!c.tie_word_embeddings) w.lm_head = backend.Allocate(dtype, {c.vocab_size, d});
  return w;
}

std::vector<WeightSpec> LlamaWeightSpecs(const ModelConfig& c) {
  const int64_t d = c.hidden_size, qd = c.q_size(), kvd = c.kv_size(), inter = c.intermediate_size;
  std::vector<WeightSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, d}});
  for (int i = 0; i < c.num_layers; ++i) {
    specs.push_back({LayerName(i, "input_layernorm.weight"), {d}});
    specs.push_back({LayerName(i, "self_attn.q_proj.weight"), {qd, d}});
    specs.push_back({LayerName(i, "self_attn.k_proj.weight"), {kvd, d}});
    specs.push_back({LayerName(i, "self_attn.v_proj.weight"), {kvd, d}});
    if (c.qkv_bias) {
      specs.push_back({LayerName(i, "self_attn.q_proj.bias"), {qd}});
      specs.push_back({LayerName(i, "self_attn.k_proj.bias"), {kvd}});
      specs.push_back({LayerName(i, "self_attn.v_proj.bias"), {kvd}});
    }
    specs.push_back({LayerName(i, "self_attn.o_proj.weight"), {d, qd}});
    if (c.o_bias) specs.push_back({LayerName(i, "self_attn.o_proj.bias"), {d}});
    specs.push_back({LayerName(i, "post_attention_layernorm.weight"), {d}});
    specs.push_back({LayerName(i, "mlp.gate_proj.weight"), {inter, d}});
    specs.push_back({LayerName(i, "mlp.up_proj.weight"), {inter, d}});
    specs.push_back({LayerName(i, "mlp.down_proj.weight"), {d, inter}});
  }
  specs.push_back({"model.norm.weight", {d}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, d}});
  return specs;
}

Tensor LlamaWeightView(const LlamaWeights& w, const ModelConfig& c, std::string_view name) {
  const int64_t qd = c.q_size(), kvd = c.kv_size(), inter = c.intermediate_size;
  if (name == "model.embed_tokens.weight") return w.embed.view();
  if (name == "model.norm.weight") return w.final_norm.view();
  if (name == "lm_head.weight") return w.output_projection();
  constexpr std::string_view kLayers = "model.layers.";
  if (name.substr(0, kLayers.size()) == kLayers) {
    std::string_view rest = name.substr(kLayers.size());
    int i = 0;
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') {
      i = i * 10 + (rest[digits++] - '0');
    }
    if (digits > 0 && digits < rest.size() && rest[digits] == '.' && i < c.num_layers) {
      const LlamaLayerWeights& l = w.layers[i];
      rest = rest.substr(digits + 1);
      if (rest == "input_layernorm.weight") return l.input_norm.view();
      if (rest == "post_attention_layernorm.weight") return l.post_attn_norm.view();
      if (rest == "self_attn.q_proj.weight") return l.qkv.view().Rows(0, qd);
      if (rest == "self_attn.k_proj.weight") return l.qkv.view().Rows(qd, qd + kvd);
      if (rest == "self_attn.v_proj.weight") return l.qkv.view().Rows(qd + kvd, qd + 2 * kvd);
      if (rest == "self_attn.o_proj.weight") return l.o.view();
      if (rest == "mlp.gate_proj.weight") return l.gate_up.view().Rows(0, inter);
      if (rest == "mlp.up_proj.weight") return l.gate_up.view().Rows(inter, 2 * inter);
      if (rest == "mlp.down_proj.weight") return l.down.view();
      if (c.qkv_bias && rest == "self_attn.q_proj.bias") return l.qkv_bias.view().Rows(0, qd);
      if (c.qkv_bias && rest == "self_attn.k_proj.bias") {
        return l.qkv_bias.view().Rows(qd, qd + kvd);
      }
      if (c.qkv_bias && rest == "self_attn.v_proj.bias") {
        return l.qkv_bias.view().Rows(qd + kvd, qd + 2 * kvd);
      }
      if (c.o_bias && rest == "self_attn.o_proj.bias") return l.o_bias.view();
    }
  }
  PREFIXD_CHECK(false, "no weight named ", std::string(name), " in this model");
}

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const ModelConfig& config, const ModelWeights& files,
                                              Backend& backend, const LoadProgress& progress) {
  const std::vector<WeightSpec> specs = LlamaWeightSpecs(config);
  // Check every tensor before touching device memory: a bad checkpoint fails fast.
  std::vector<const TensorInfo*> infos;
  int64_t total = 0;
  for (const WeightSpec& spec : specs) {
    absl::StatusOr<const TensorInfo*> info = files.Require(spec.name, spec.shape);
    if (!info.ok()) return info.status();
    if ((*info)->dtype != DType::kF32 && (*info)->dtype != DType::kBF16 &&
        (*info)->dtype != DType::kF16) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", spec.name, "' has dtype ",
                                                     DTypeName((*info)->dtype),
                                                     "; weights must be F32, BF16 or F16"));
    }
    infos.push_back(*info);
    total += static_cast<int64_t>((*info)->nbytes);
  }
  LlamaWeights weights = AllocateLlamaWeights(config, backend);
  int64_t done = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    Tensor dst = LlamaWeightView(weights, config, specs[i].name);
    backend.ConvertFromHost(infos[i]->data, infos[i]->dtype, dst);
    done += static_cast<int64_t>(infos[i]->nbytes);
    if (progress) progress(done, total);
  }
  backend.Synchronize();
  return weights;
}

LlamaWeights RandomLlamaWeights(const ModelConfig& config, uint64_t seed, Backend& backend,
                                const LoadProgress& progress) {
  const std::vector<WeightSpec> specs = LlamaWeightSpecs(config);
  int64_t total = 0;
  for (const WeightSpec& spec : specs) total += NumElements(spec.shape);
  LlamaWeights weights = AllocateLlamaWeights(config, backend);
  int64_t done = 0;
  for (const WeightSpec& spec : specs) {
    Tensor dst = LlamaWeightView(weights, config, spec.name);
    if (IsNorm(spec.name)) {
      backend.Fill(dst, 1.0f);
    } else {
      backend.FillRandom(dst, TensorSeed(seed, spec.name), RandomScale(spec));
    }
    done += NumElements(spec.shape);
    if (progress) progress(done, total);
  }
  backend.Synchronize();
  return weights;
}

}  // namespace prefixd
