// engine/model_loader.h — from a --model argument to weights on a backend.
#ifndef PREFIXD_ENGINE_MODEL_LOADER_H_
#define PREFIXD_ENGINE_MODEL_LOADER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/llama_weights.h"
#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "kernels/kernels.h"

namespace prefixd {

struct LoadedModel {
  std::string id;  // the folder's name, or "random:<preset>"
  ModelConfig config;
  LlamaWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the model has none
};

inline constexpr std::string_view kRandomPrefix = "random:";
inline constexpr uint64_t kRandomModelSeed = 0x70726566697864;  // "prefixd"

// `spec` is a Hugging Face model folder (config.json, model.safetensors or an index with
// shards, tokenizer.json) or "random:<preset>" (deterministic random weights of a known
// shape, no tokenizer). `tokenizer_path`, when not empty, overrides the tokenizer.
absl::StatusOr<LoadedModel> LoadModel(std::string_view spec, std::string_view tokenizer_path,
                                      Backend& backend, const LoadProgress& progress = {});

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_MODEL_LOADER_H_
