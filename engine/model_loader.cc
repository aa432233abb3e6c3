#include "engine/model_loader.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace prefixd {

absl::StatusOr<LoadedModel> LoadModel(std::string_view spec, const ModelOverrides& overrides,
                                      Backend& backend, const LoadProgress& progress) {
  const std::string& tokenizer_path = overrides.tokenizer_path;
  LoadedModel model;
  const bool random = spec.substr(0, kRandomPrefix.size()) == kRandomPrefix;
  const std::filesystem::path folder(random ? std::string_view() : spec);
  std::error_code ec;
  if (!random && !std::filesystem::is_directory(folder, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model folder '", std::string(spec),
                     "' does not exist (give a Hugging Face model folder or random:<preset>)"));
  }
  // The small files first, so that a bad one is reported before the weights load.
  absl::StatusOr<std::unique_ptr<ChatTemplate>> chat_template =
      ChatTemplate::Load(folder.string(), overrides.chat_template_path);
  if (!chat_template.ok()) return chat_template.status();
  model.chat_template = *std::move(chat_template);
  if (!tokenizer_path.empty()) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromFile(tokenizer_path);
    if (!t.ok()) return t.status();
    model.tokenizer = *std::move(t);
  } else if (const std::filesystem::path tok = folder / "tokenizer.json";
             !random && std::filesystem::exists(tok, ec)) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromFile(tok.string());
    if (!t.ok()) return t.status();
    model.tokenizer = *std::move(t);
  }

  if (random) {
    absl::StatusOr<ModelConfig> config = RandomPresetConfig(spec.substr(kRandomPrefix.size()));
    if (!config.ok()) return config.status();
    model.id = std::string(spec);
    model.config = *std::move(config);
  } else {
    absl::StatusOr<ModelConfig> config = LoadModelConfig(folder.string());
    if (!config.ok()) return config.status();
    model.config = *std::move(config);
    model.id = std::filesystem::absolute(folder).lexically_normal().filename().string();
    if (model.id.empty()) model.id = std::string(spec);
  }
  if (model.tokenizer != nullptr && model.tokenizer->vocab_size() > model.config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer has ", model.tokenizer->vocab_size(),
                     " tokens but the model only ", model.config.vocab_size));
  }

  if (random) {
    model.weights = RandomLlamaWeights(model.config, kRandomModelSeed, backend, progress);
  } else {
    absl::StatusOr<ModelWeights> files = ModelWeights::OpenFolder(folder.string());
    if (!files.ok()) return files.status();
    absl::StatusOr<LlamaWeights> weights =
        LoadLlamaWeights(model.config, *files, backend, progress);
    if (!weights.ok()) return weights.status();
    model.weights = *std::move(weights);
  }
  return model;
}

}  // namespace prefixd
