#include "tools/test_model.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/llama_weights.h"
#include "kernels/kernels.h"
#include "nlohmann/json.hpp"
#include "tools/bpe_trainer.h"
#include "tools/safetensors_writer.h"
#include "tools/test_corpus.h"

namespace prefixd {
namespace {

constexpr int kTestVocabSize = 512;

// fp32 -> bf16, round to nearest even (NaN stays NaN).
uint16_t ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

// Meta-Llama-3-8B-Instruct's chat template, except that message content is not trimmed: a
// real instruct model's reply has no whitespace at its edges, but the test model's random
// weights often produce some (greedy: only newlines), and trimming it would make each next
// turn differ from what the model computed. That is the template's doing, not the cache's,
// and it would hide what the multi-turn tests and benchmarks measure.
constexpr char kLlama3ChatTemplate[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// Like Llama 3 Instruct: the template's special tokens, and <|eot_id|> ends a turn (as
// generation_config.json says; config.json names only <|end_of_text|>).
std::string TokenizerConfigJson() {
  nlohmann::ordered_json j;
  j["bos_token"] = "<|begin_of_text|>";
  j["eos_token"] = "<|eot_id|>";
  j["clean_up_tokenization_spaces"] = true;
  j["model_max_length"] = 2048;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  j["chat_template"] = kLlama3ChatTemplate;
  return j.dump(2) + "\n";
}

std::string GenerationConfigJson(const ModelConfig& c) {
  nlohmann::ordered_json j;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  j["eos_token_id"] = {kTestEndOfText, kTestEndOfTurn};
  j["do_sample"] = true;
  j["temperature"] = 0.6;
  j["top_p"] = 0.9;
  return j.dump(2) + "\n";
}

}  // namespace

std::string ModelConfigToJson(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {std::string(ArchitectureName(c.architecture))};
  j["model_type"] = std::string(ArchitectureModelType(c.architecture));
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_llama3) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_llama3->factor},
        {"low_freq_factor", c.rope_llama3->low_freq_factor},
        {"high_freq_factor", c.rope_llama3->high_freq_factor},
        {"original_max_position_embeddings", c.rope_llama3->original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.qkv_bias;
  j["mlp_bias"] = false;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  j["torch_dtype"] = "bfloat16";
  return j.dump(2) + "\n";
}

absl::Status WriteTestModel(const std::string& folder, uint64_t seed) {
  absl::StatusOr<ModelConfig> config = RandomPresetConfig("tiny");
  if (!config.ok()) return config.status();
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", folder, ": ", ec.message()));
  const std::filesystem::path dir(folder);

  absl::StatusOr<std::string> tokenizer = TrainByteLevelBpeTokenizerJson(
      TestCorpus(), kTestVocabSize,
      {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
       "<|end_header_id|>", "<|reserved_0|>", "<|reserved_1|>", "<|reserved_2|>"});
  if (!tokenizer.ok()) return tokenizer.status();

  // The "tiny" random weights, computed by the CPU backend, rounded to bf16.
  std::unique_ptr<Backend> cpu = MakeCpuBackend(1);
  const LlamaWeights weights = RandomLlamaWeights(*config, seed, *cpu);
  std::vector<NamedTensor> tensors;
  for (const WeightSpec& spec : LlamaWeightSpecs(*config)) {
    const Tensor view = LlamaWeightView(weights, *config, spec.name);
    std::vector<float> host(view.numel());
    cpu->CopyToHost(view, host.data());
    std::string bytes(host.size() * 2, '\0');
    for (size_t i = 0; i < host.size(); ++i) {
      const uint16_t b = ToBf16(host[i]);
      std::memcpy(bytes.data() + 2 * i, &b, 2);
    }
    tensors.push_back(NamedTensor{spec.name, DType::kBF16, spec.shape, std::move(bytes)});
  }

  if (absl::Status s = WriteFile(dir / "config.json", ModelConfigToJson(*config)); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFile(dir / "tokenizer.json", *tokenizer); !s.ok()) return s;
  if (absl::Status s = WriteFile(dir / "tokenizer_config.json", TokenizerConfigJson()); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFile(dir / "generation_config.json", GenerationConfigJson(*config));
      !s.ok()) {
    return s;
  }
  return WriteSafetensors((dir / "model.safetensors").string(), tensors,
                          {{"format", "pt"}, {"producer", "prefixd make-test-model"}});
}

}  // namespace prefixd
