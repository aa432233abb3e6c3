// engine/model_loader.h — from a --model argument to weights on a backend.
#ifndef PREFIXD_ENGINE_MODEL_LOADER_H_
#define PREFIXD_ENGINE_MODEL_LOADER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/llama_weights.h"
#include "engine/model_config.h"
#include "kernels/kernels.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

struct LoadedModel {
  std::string id;  // the folder's name, or "random:<preset>"
  ModelConfig config;
  LlamaWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;         // null when the model has none
  std::unique_ptr<ChatTemplate> chat_template;  // null when the model has none
};

// Files that replace the model folder's own (empty: the folder's).
struct ModelOverrides {
  std::string tokenizer_path;      // a tokenizer.json
  std::string chat_template_path;  // a Jinja chat template
};

inline constexpr std::string_view kRandomPrefix = "random:";
inline constexpr uint64_t kRandomModelSeed = 0x70726566697864;  // "prefixd"

// `spec` is a Hugging Face model folder (config.json, model.safetensors or an index with
// shards, tokenizer.json) or "random:<preset>" (deterministic random weights of a known
// shape, no tokenizer). The folder's chat template comes from tokenizer_config.json or
// chat_template.jinja, and its generation_config.json adds to the stop tokens.
absl::StatusOr<LoadedModel> LoadModel(std::string_view spec, const ModelOverrides& overrides,
                                      Backend& backend, const LoadProgress& progress = {});

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_MODEL_LOADER_H_
