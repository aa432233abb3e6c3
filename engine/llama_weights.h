// engine/llama_weights.h — a Llama-family model's weights in one backend's memory.
//
// Projections that read the same input are stacked so one gemm computes them:
// q, k and v into `qkv`, gate and up into `gate_up`. Weight matrices are [out, in]
// (the Hugging Face nn.Linear layout), so every projection is Gemm(x, w) = x · wᵀ.
#ifndef PREFIXD_ENGINE_LLAMA_WEIGHTS_H_
#define PREFIXD_ENGINE_LLAMA_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "kernels/kernels.h"

namespace prefixd {

struct LlamaLayerWeights {
  DeviceTensor input_norm;      // [D]
  DeviceTensor qkv;             // [(Hq + 2 Hkv) d, D]: q rows, then k rows, then v rows
  DeviceTensor qkv_bias;        // [(Hq + 2 Hkv) d], or empty
  DeviceTensor o;               // [D, Hq d]
  DeviceTensor o_bias;          // [D], or empty
  DeviceTensor post_attn_norm;  // [D]
  DeviceTensor gate_up;         // [2 I, D]: gate rows, then up rows
  DeviceTensor down;            // [D, I]
};

struct LlamaWeights {
  DeviceTensor embed;  // [V, D]
  std::vector<LlamaLayerWeights> layers;
  DeviceTensor final_norm;  // [D]
  DeviceTensor lm_head;     // [V, D]; empty when tied to `embed`

  const Tensor& output_projection() const {
    return lm_head.empty() ? embed.view() : lm_head.view();
  }
};

// Called as loading proceeds: (bytes done, bytes total).
using LoadProgress = std::function<void(int64_t done, int64_t total)>;

// Reads every tensor the config implies from `files`, converting to the backend's compute
// dtype. Errors name the missing or misshapen tensor and its file.
absl::StatusOr<LlamaWeights> LoadLlamaWeights(const ModelConfig& config, const ModelWeights& files,
                                              Backend& backend, const LoadProgress& progress = {});

// Deterministic random weights of the config's shapes: every tensor is uniform in
// [-scale, scale] from Backend::FillRandom with a seed derived from `seed` and its name,
// so every backend produces the same values. Norm weights are 1.
LlamaWeights RandomLlamaWeights(const ModelConfig& config, uint64_t seed, Backend& backend,
                                const LoadProgress& progress = {});

// Device tensors of the config's shapes, uninitialised.
LlamaWeights AllocateLlamaWeights(const ModelConfig& config, Backend& backend);

// The device view holding the Hugging Face tensor `name` (e.g. "model.layers.0.self_attn.
// k_proj.weight": rows of the stacked qkv). Crashes on a name the config does not have.
Tensor LlamaWeightView(const LlamaWeights& weights, const ModelConfig& config,
                       std::string_view name);

// The Hugging Face names of every tensor of the config, with their shapes, in load order.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<WeightSpec> LlamaWeightSpecs(const ModelConfig& config);

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_LLAMA_WEIGHTS_H_
