#include "engine/model_loader.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace prefixd {

absl::StatusOr<LoadedModel> LoadModel(std::string_view spec, std::string_view tokenizer_path,
                                      Backend& backend, const LoadProgress& progress) {
  LoadedModel model;
  if (spec.substr(0, kRandomPrefix.size()) == kRandomPrefix) {
    absl::StatusOr<ModelConfig> config = RandomPresetConfig(spec.substr(kRandomPrefix.size()));
    if (!config.ok()) return config.status();
    model.id = std::string(spec);
    model.config = *std::move(config);
    model.weights = RandomLlamaWeights(model.config, kRandomModelSeed, backend, progress);
  } else {
    const std::filesystem::path folder(spec);
    std::error_code ec;
    if (!std::filesystem::is_directory(folder, ec)) {
      return absl::NotFoundError(
          absl::StrCat("model folder '", std::string(spec),
                       "' does not exist (give a Hugging Face model folder or random:<preset>)"));
    }
    absl::StatusOr<ModelConfig> config = LoadModelConfig(folder.string());
    if (!config.ok()) return config.status();
    absl::StatusOr<ModelWeights> files = ModelWeights::OpenFolder(folder.string());
    if (!files.ok()) return files.status();
    absl::StatusOr<LlamaWeights> weights = LoadLlamaWeights(*config, *files, backend, progress);
    if (!weights.ok()) return weights.status();
    model.id = std::filesystem::absolute(folder).lexically_normal().filename().string();
    if (model.id.empty()) model.id = std::string(spec);
    model.config = *std::move(config);
    model.weights = *std::move(weights);
    const std::filesystem::path tok = folder / "tokenizer.json";
    if (tokenizer_path.empty() && std::filesystem::exists(tok, ec)) {
      absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromFile(tok.string());
      if (!t.ok()) return t.status();
      model.tokenizer = *std::move(t);
    }
  }
  if (!tokenizer_path.empty()) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromFile(std::string(tokenizer_path));
    if (!t.ok()) return t.status();
    model.tokenizer = *std::move(t);
  }
  if (model.tokenizer != nullptr && model.tokenizer->vocab_size() > model.config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer has ", model.tokenizer->vocab_size(),
                     " tokens but the model only ", model.config.vocab_size));
  }
  return model;
}

}  // namespace prefixd
