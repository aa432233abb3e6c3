// engine/model_config.h — the shape of a Llama-family model, read from a Hugging Face
// config.json (transformers v4 or v5) or taken from a named random preset.
//
// Supported: LlamaForCausalLM (Llama 2/3/3.1/3.2, incl. rope_type "llama3"),
// MistralForCausalLM (sliding window), Qwen2ForCausalLM (qkv bias). Everything the forward
// pass depends on is validated here, so the engine can trust a ModelConfig: sizes are
// positive and within sane limits, heads divide, head_dim is even.
#ifndef PREFIXD_ENGINE_MODEL_CONFIG_H_
#define PREFIXD_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace prefixd {

enum class ModelArchitecture : uint8_t { kLlama, kMistral, kQwen2 };

// The Hugging Face class name, e.g. "LlamaForCausalLM".
std::string_view ArchitectureName(ModelArchitecture architecture);
// The Hugging Face model_type, e.g. "llama".
std::string_view ArchitectureModelType(ModelArchitecture architecture);

// Llama 3.1's frequency-dependent RoPE scaling (transformers rope_type "llama3"):
// low frequencies are slowed down by `factor`, high ones kept, the band between blended.
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  ModelArchitecture architecture = ModelArchitecture::kLlama;
  int vocab_size = 0;
  int hidden_size = 0;        // D
  int intermediate_size = 0;  // I, the SwiGLU width
  int num_layers = 0;
  int num_heads = 0;     // Hq
  int num_kv_heads = 0;  // Hkv, divides Hq
  int head_dim = 0;      // d, even
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<Llama3RopeScaling> rope_llama3;  // nullopt: plain RoPE
  int max_position_embeddings = 0;
  std::optional<int> sliding_window;  // Mistral: attend to the last W positions only
  bool tie_word_embeddings = false;   // lm_head shares embed_tokens' weight
  bool qkv_bias = false;              // q_proj, k_proj, v_proj have a bias
  bool o_bias = false;                // o_proj has a bias
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // any of them ends a completion
  std::string dtype;                   // checkpoint dtype as written ("bfloat16"); informational

  int q_size() const { return num_heads * head_dim; }        // Hq d
  int kv_size() const { return num_kv_heads * head_dim; }    // Hkv d
  int qkv_size() const { return q_size() + 2 * kv_size(); }  // (Hq + 2 Hkv) d

  // The longest sequence (prompt + completion) served: max_position_embeddings, capped by
  // sliding_window so that full attention equals the model's windowed attention.
  int max_context_len() const;

  // head_dim / 2 RoPE inverse frequencies, computed in float32 exactly as transformers
  // does (_compute_default_rope_parameters, then _compute_llama3_parameters if scaled).
  std::vector<float> RopeInvFreq() const;

  // Weights of the checkpoint: embeddings, every layer's projections (and biases) and
  // norms, the final norm, and lm_head unless tied.
  int64_t NumParameters() const;

  // e.g. "llama 16 layers, hidden 2048, 32 heads (8 kv) × 64, vocab 128256, 1.24 B params".
  std::string Summary() const;
};

// Parses and validates the text of a config.json; `path` names the file in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json, std::string_view path);
// Reads <folder>/config.json, then <folder>/generation_config.json if present: its
// eos_token_id (one or a list) joins the stop set (Llama 3 Instruct ends its turns with
// <|eot_id|>, which config.json does not list).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& folder);
// Adds generation_config.json's eos_token_id(s) to `config.eos_token_ids`.
absl::Status ApplyGenerationConfig(std::string_view json, std::string_view path,
                                   ModelConfig& config);

// Shapes of real models for benchmarks and tests without weight files: "tiny",
// "llama-3.2-1b", "llama-3-8b", "qwen2-0.5b". Unknown names are an error listing these.
absl::StatusOr<ModelConfig> RandomPresetConfig(std::string_view name);
std::vector<std::string> RandomPresetNames();

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_MODEL_CONFIG_H_
