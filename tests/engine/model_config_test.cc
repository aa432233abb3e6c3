#include "engine/model_config.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace prefixd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Llama 3.1 8B as transformers 4.x writes it: top-level rope_theta, rope_scaling.
constexpr char kLlama31V4[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// Llama 3.2 1B as transformers 5.x writes it: rope_parameters, dtype, explicit nulls.
constexpr char kLlama32V5[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "dtype": "bfloat16",
  "eos_token_id": [128001, 128008, 128009],
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pad_token_id": null,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_parameters": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rope_type": "llama3"
  },
  "tie_word_embeddings": true,
  "transformers_version": "5.0.0",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr char kMistral7B[] = R"({
  "architectures": ["MistralForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "head_dim": null,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "vocab_size": 32000
})";

// Qwen2 keeps a sliding_window it does not use unless use_sliding_window is set.
constexpr char kQwen2_05B[] = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// A small valid config that the validation tests break one field at a time.
constexpr char kSmall[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "vocab_size": 1000,
  "hidden_size": 256,
  "intermediate_size": 512,
  "num_hidden_layers": 2,
  "num_attention_heads": 8,
  "num_key_value_heads": 4,
  "max_position_embeddings": 2048,
  "rope_theta": 10000.0,
  "eos_token_id": 2
})";

// kSmall with `patch` applied as a JSON merge patch (a null removes the field).
std::string Patched(const char* patch) {
  nlohmann::json j = nlohmann::json::parse(kSmall);
  j.merge_patch(nlohmann::json::parse(patch));
  return j.dump();
}

// The error message of parsing kSmall patched with `patch`; fails the test if it parses.
std::string ErrorOf(const char* patch) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(Patched(patch), "/m/config.json");
  EXPECT_FALSE(c.ok()) << "patch " << patch << " was accepted";
  if (c.ok()) return "";
  EXPECT_THAT(c.status().message(), HasSubstr("/m/config.json: ")) << "error names the file";
  return std::string(c.status().message());
}

ModelConfig Parse(const char* json) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(json, "config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

// ---- The architectures ----

TEST(ModelConfigTest, LoadsLlama31TransformersV4File) {
  ModelConfig c = Parse(kLlama31V4);
  EXPECT_EQ(c.architecture, ModelArchitecture::kLlama);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // hidden_size / num_heads
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  ASSERT_TRUE(c.rope_llama3.has_value());
  EXPECT_DOUBLE_EQ(c.rope_llama3->factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_llama3->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_llama3->high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_llama3->original_max_position_embeddings, 8192);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.max_context_len(), 131072);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.NumParameters(), 8'030'261'248);
}

TEST(ModelConfigTest, LoadsTransformersV5RopeParameters) {
  ModelConfig c = Parse(kLlama32V5);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  ASSERT_TRUE(c.rope_llama3.has_value());
  EXPECT_DOUBLE_EQ(c.rope_llama3->factor, 32.0);
  EXPECT_EQ(c.rope_llama3->original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, "bfloat16");
  // The same model as the preset, written by the newer transformers.
  absl::StatusOr<ModelConfig> preset = RandomPresetConfig("llama-3.2-1b");
  ASSERT_TRUE(preset.ok());
  EXPECT_EQ(c.NumParameters(), preset->NumParameters());
  EXPECT_EQ(c.RopeInvFreq(), preset->RopeInvFreq());
}

TEST(ModelConfigTest, V5DefaultRopeTypeMeansNoScaling) {
  ModelConfig c = Parse(Patched(R"({"rope_theta": null,
                  "rope_parameters": {"rope_type": "default", "rope_theta": 250000.0}})")
                            .c_str());
  EXPECT_DOUBLE_EQ(c.rope_theta, 250000.0);
  EXPECT_FALSE(c.rope_llama3.has_value());
}

TEST(ModelConfigTest, V4AndV5SpellingsOfTheSameRopeAgree) {
  ModelConfig v4 = Parse(Patched(R"({"rope_theta": 500000.0, "rope_scaling": {
      "type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 1024}})")
                             .c_str());
  ModelConfig v5 = Parse(Patched(R"({"rope_theta": null, "rope_parameters": {
      "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 1024}})")
                             .c_str());
  EXPECT_EQ(v4.RopeInvFreq(), v5.RopeInvFreq());
  EXPECT_TRUE(v4.rope_llama3.has_value());
}

TEST(ModelConfigTest, NullRopeScalingIsPlainRope) {
  ModelConfig c = Parse(Patched(R"({"rope_scaling": null})").c_str());
  EXPECT_FALSE(c.rope_llama3.has_value());
  c = Parse(Patched(R"({"rope_scaling": {"rope_type": "default"}})").c_str());
  EXPECT_FALSE(c.rope_llama3.has_value());
}

TEST(ModelConfigTest, LoadsMistralWithSlidingWindow) {
  ModelConfig c = Parse(kMistral7B);
  EXPECT_EQ(c.architecture, ModelArchitecture::kMistral);
  EXPECT_EQ(c.head_dim, 128);  // "head_dim": null
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(c.max_context_len(), 4096);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2));
  EXPECT_EQ(c.bos_token_id, 1);

  nlohmann::json j = nlohmann::json::parse(kMistral7B);
  j["sliding_window"] = nullptr;
  c = Parse(j.dump().c_str());
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.max_context_len(), 32768);
}

TEST(ModelConfigTest, LoadsQwen2WithQkvBias) {
  ModelConfig c = Parse(kQwen2_05B);
  EXPECT_EQ(c.architecture, ModelArchitecture::kQwen2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_FALSE(c.sliding_window.has_value());  // use_sliding_window is false
  EXPECT_EQ(c.max_context_len(), 32768);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.NumParameters(), 494'032'768);  // Qwen2-0.5B's published 0.49 B
}

TEST(ModelConfigTest, LlamaAttentionBiasBiasesAllFourProjections) {
  ModelConfig c = Parse(Patched(R"({"attention_bias": true})").c_str());
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  ModelConfig plain = Parse(kSmall);
  // q (256) + k, v (2 * 128) + o (256) bias values per layer, 2 layers.
  EXPECT_EQ(c.NumParameters() - plain.NumParameters(), 2 * (256 + 2 * 128 + 256));
}

TEST(ModelConfigTest, OptionalFieldsTakeTransformersDefaults) {
  ModelConfig c = Parse(Patched(R"({"num_key_value_heads": null, "rope_theta": null,
                                    "max_position_embeddings": null, "eos_token_id": null})")
                            .c_str());
  EXPECT_EQ(c.num_kv_heads, 8);  // = num_attention_heads
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(ModelConfigTest, ExplicitHeadDimNeedNotDivideHiddenSize) {
  ModelConfig c = Parse(Patched(R"({"hidden_size": 300, "head_dim": 64})").c_str());
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.q_size(), 8 * 64);
  EXPECT_EQ(c.kv_size(), 4 * 64);
}

TEST(ModelConfigTest, ModelTypeStandsInForMissingArchitectures) {
  ModelConfig c = Parse(Patched(R"({"architectures": null, "model_type": "qwen2"})").c_str());
  EXPECT_EQ(c.architecture, ModelArchitecture::kQwen2);
}

TEST(ModelConfigTest, LoadModelConfigReadsFolder) {
  const std::string dir = ::testing::TempDir() + "model_config_test_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << kMistral7B;
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 4096);

  std::ofstream(dir + "/config.json") << "{\"vocab_size\": ";
  c = LoadModelConfig(dir);
  EXPECT_THAT(c.status().message(), HasSubstr(dir + "/config.json: invalid JSON"));
  std::filesystem::remove_all(dir);

  c = LoadModelConfig(dir);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr(dir + "/config.json"));
}

// Llama 3 Instruct ends its turns with <|eot_id|>, which only generation_config.json names.
TEST(ModelConfigTest, GenerationConfigEosTokensJoinTheStopSet) {
  const std::string dir =
      ::testing::TempDir() + "generation_config_test_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << kLlama31V4;
  std::ofstream(dir + "/generation_config.json")
      << R"({"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128009],
             "temperature": 0.6, "top_p": 0.9})";
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));

  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": 7})";
  c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009, 7));

  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [128001, 200000]})";
  c = LoadModelConfig(dir);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr(dir + "/generation_config.json"));
  EXPECT_THAT(c.status().message(), HasSubstr("200000"));

  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": "</s>"})";
  c = LoadModelConfig(dir);
  EXPECT_THAT(c.status().message(), HasSubstr("eos_token_id must be an integer"));

  std::ofstream(dir + "/generation_config.json") << "[1, 2";
  c = LoadModelConfig(dir);
  EXPECT_THAT(c.status().message(), HasSubstr(dir + "/generation_config.json: invalid JSON"));
  std::filesystem::remove_all(dir);
}

// ---- RoPE frequencies ----

TEST(RopeInvFreqTest, DefaultRopeIsThetaToTheMinusTwoJOverD) {
  ModelConfig c;
  c.head_dim = 8;
  c.rope_theta = 10000.0;
  std::vector<float> f = c.RopeInvFreq();
  ASSERT_EQ(f.size(), 4u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.1f);
  EXPECT_FLOAT_EQ(f[2], 0.01f);
  EXPECT_FLOAT_EQ(f[3], 0.001f);
}

TEST(RopeInvFreqTest, Llama3ScalingMatchesDoublePrecisionFormula) {
  ModelConfig c;
  c.head_dim = 128;
  c.rope_theta = 500000.0;
  c.rope_llama3 = Llama3RopeScaling{.factor = 8.0,
                                    .low_freq_factor = 1.0,
                                    .high_freq_factor = 4.0,
                                    .original_max_position_embeddings = 8192};
  std::vector<float> f = c.RopeInvFreq();
  ASSERT_EQ(f.size(), 64u);
  int high = 0, medium = 0, low = 0;
  for (int j = 0; j < 64; ++j) {
    // Wavelengths under 8192 / 4 keep their frequency, those over 8192 / 1 are slowed 8×,
    // and the band between blends linearly in 8192 / wavelength.
    const double base = 1.0 / std::pow(500000.0, 2.0 * j / 128.0);
    const double wavelen = 2 * std::numbers::pi / base;
    double expected;
    if (wavelen < 2048) {
      expected = base;
      ++high;
    } else if (wavelen > 8192) {
      expected = base / 8;
      ++low;
    } else {
      const double smooth = (8192 / wavelen - 1) / 3;
      expected = (1 - smooth) * base / 8 + smooth * base;
      ++medium;
    }
    EXPECT_NEAR(f[j], expected, 1e-6 * expected) << "j = " << j << ", wavelength " << wavelen;
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
  EXPECT_GT(low, 0);
}

// ---- Presets ----

TEST(RandomPresetTest, TinyIsExactlyAsDocumented) {
  absl::StatusOr<ModelConfig> c = RandomPresetConfig("tiny");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->architecture, ModelArchitecture::kLlama);
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 256);
  EXPECT_EQ(c->intermediate_size, 688);
  EXPECT_EQ(c->num_layers, 4);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  ASSERT_TRUE(c->rope_llama3.has_value());
  EXPECT_DOUBLE_EQ(c->rope_llama3->factor, 8.0);
  EXPECT_DOUBLE_EQ(c->rope_llama3->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope_llama3->high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_llama3->original_max_position_embeddings, 1024);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 504);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(505));
  EXPECT_EQ(c->RopeInvFreq().size(), 16u);
}

TEST(RandomPresetTest, ParameterCountsMatchThePublishedModels) {
  auto params = [](const char* name) {
    absl::StatusOr<ModelConfig> c = RandomPresetConfig(name);
    EXPECT_TRUE(c.ok()) << name;
    return c.ok() ? c->NumParameters() : 0;
  };
  EXPECT_EQ(params("llama-3-8b"), 8'030'261'248);
  EXPECT_EQ(params("llama-3.2-1b"), 1'235'814'400);
  EXPECT_EQ(params("qwen2-0.5b"), 494'032'768);
  // embed 512·256, 4 × (attention 4·256·... ) — computed by hand:
  // per layer q 65536 + k,v 65536 + o 65536 + mlp 528384 + norms 512 = 725504.
  EXPECT_EQ(params("tiny"), 512 * 256 + 4 * 725504 + 256);
}

TEST(RandomPresetTest, Qwen2PresetHasQkvBias) {
  absl::StatusOr<ModelConfig> c = RandomPresetConfig("qwen2-0.5b");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->architecture, ModelArchitecture::kQwen2);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->o_bias);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(151643));
}

TEST(RandomPresetTest, SummaryIsOneReadableLine) {
  absl::StatusOr<ModelConfig> c = RandomPresetConfig("llama-3.2-1b");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->Summary(),
            "llama 16 layers, hidden 2048, 32 heads (8 kv) × 64, vocab 128256, 1.24 B params");
}

TEST(RandomPresetTest, UnknownPresetListsTheKnownOnes) {
  absl::StatusOr<ModelConfig> c = RandomPresetConfig("llama-9");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("'llama-9'"));
  for (const std::string& name : RandomPresetNames()) {
    EXPECT_THAT(c.status().message(), HasSubstr(name));
  }
  EXPECT_THAT(RandomPresetNames(),
              ::testing::IsSupersetOf({"tiny", "llama-3.2-1b", "llama-3-8b", "qwen2-0.5b"}));
}

// ---- Validation: one malformed field each ----

TEST(ModelConfigValidationTest, InvalidJson) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig("{\"vocab_size\": 12,", "/m/config.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("/m/config.json: invalid JSON"));
}

TEST(ModelConfigValidationTest, TopLevelNotAnObject) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig("[1, 2]", "/m/config.json");
  EXPECT_THAT(c.status().message(), HasSubstr("expected a JSON object at the top level"));
}

TEST(ModelConfigValidationTest, MissingRequiredField) {
  EXPECT_THAT(ErrorOf(R"({"vocab_size": null})"), HasSubstr("missing required field 'vocab_size'"));
  EXPECT_THAT(ErrorOf(R"({"architectures": null})"),
              HasSubstr("missing required field 'architectures'"));
}

TEST(ModelConfigValidationTest, WrongJsonTypes) {
  EXPECT_THAT(ErrorOf(R"({"hidden_size": "256"})"),
              HasSubstr("hidden_size must be an integer, got \"256\""));
  EXPECT_THAT(ErrorOf(R"({"num_hidden_layers": 2.5})"),
              HasSubstr("num_hidden_layers must be an integer, got 2.5"));
  EXPECT_THAT(ErrorOf(R"({"tie_word_embeddings": "yes"})"),
              HasSubstr("tie_word_embeddings must be true or false"));
  EXPECT_THAT(ErrorOf(R"({"rope_theta": "big"})"), HasSubstr("rope_theta must be a number"));
  EXPECT_THAT(ErrorOf(R"({"architectures": "LlamaForCausalLM"})"),
              HasSubstr("architectures must be a non-empty list"));
  EXPECT_THAT(ErrorOf(R"({"rope_scaling": [8]})"), HasSubstr("rope_scaling must be an object"));
}

TEST(ModelConfigValidationTest, NonPositiveSizes) {
  EXPECT_THAT(ErrorOf(R"({"num_hidden_layers": 0})"),
              HasSubstr("num_hidden_layers must be positive, got 0"));
  EXPECT_THAT(ErrorOf(R"({"intermediate_size": -4})"),
              HasSubstr("intermediate_size must be positive, got -4"));
  EXPECT_THAT(ErrorOf(R"({"rms_norm_eps": 0})"), HasSubstr("rms_norm_eps must be positive"));
}

TEST(ModelConfigValidationTest, AbsurdVocabSize) {
  EXPECT_THAT(ErrorOf(R"({"vocab_size": 1000000000000})"),
              HasSubstr("vocab_size (1000000000000) is larger than the limit"));
}

TEST(ModelConfigValidationTest, KvHeadsMustDivideHeads) {
  EXPECT_THAT(ErrorOf(R"({"num_key_value_heads": 5})"),
              HasSubstr("/m/config.json: num_key_value_heads (5) must divide "
                        "num_attention_heads (8)"));
}

TEST(ModelConfigValidationTest, HeadsMustDivideHiddenSizeWithoutHeadDim) {
  EXPECT_THAT(ErrorOf(R"({"hidden_size": 260})"),
              HasSubstr("hidden_size (260) must be divisible by num_attention_heads (8)"));
}

TEST(ModelConfigValidationTest, OddHeadDim) {
  EXPECT_THAT(ErrorOf(R"({"head_dim": 33})"), HasSubstr("head_dim (33) must be even"));
}

TEST(ModelConfigValidationTest, UnsupportedArchitecture) {
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig(Patched(R"({"architectures": ["GPT2LMHeadModel"]})"), "config.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(c.status().message(),
              HasSubstr("unsupported architecture 'GPT2LMHeadModel' (supported: "
                        "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"));
}

TEST(ModelConfigValidationTest, UnsupportedRopeType) {
  EXPECT_THAT(ErrorOf(R"({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})"),
              HasSubstr("rope_scaling.rope_type 'yarn' is not supported (default, llama3 are)"));
  EXPECT_THAT(ErrorOf(R"({"rope_parameters": {"rope_type": "linear", "factor": 2.0}})"),
              HasSubstr("rope_parameters.rope_type 'linear' is not supported"));
  EXPECT_THAT(ErrorOf(R"({"rope_scaling": {"factor": 4.0}})"),
              HasSubstr("missing required field 'rope_scaling.rope_type'"));
}

TEST(ModelConfigValidationTest, Llama3RopeNeedsItsParameters) {
  EXPECT_THAT(ErrorOf(R"({"rope_scaling": {"rope_type": "llama3", "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})"),
              HasSubstr("missing required field 'rope_scaling.factor'"));
  EXPECT_THAT(ErrorOf(R"({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                          "low_freq_factor": 4.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192}})"),
              HasSubstr("rope_scaling.high_freq_factor (4) must be larger than "
                        "rope_scaling.low_freq_factor (4)"));
}

TEST(ModelConfigValidationTest, HiddenActMustBeSilu) {
  EXPECT_THAT(ErrorOf(R"({"hidden_act": "gelu"})"),
              HasSubstr("hidden_act 'gelu' is not supported (only silu is)"));
}

TEST(ModelConfigValidationTest, MlpBiasIsUnsupported) {
  EXPECT_THAT(ErrorOf(R"({"mlp_bias": true})"), HasSubstr("mlp_bias: true is not supported"));
}

TEST(ModelConfigValidationTest, Qwen2SlidingWindowIsUnsupported) {
  nlohmann::json j = nlohmann::json::parse(kQwen2_05B);
  j["use_sliding_window"] = true;
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump(), "config.json");
  EXPECT_THAT(c.status().message(), HasSubstr("use_sliding_window: true is not supported"));
}

TEST(ModelConfigValidationTest, TokenIdsMustBeInTheVocabulary) {
  EXPECT_THAT(ErrorOf(R"({"eos_token_id": [2, 1000]})"),
              HasSubstr("eos_token_id 1000 is outside the vocabulary [0, 1000)"));
  EXPECT_THAT(ErrorOf(R"({"bos_token_id": -1})"),
              HasSubstr("bos_token_id -1 is outside the vocabulary"));
  EXPECT_THAT(ErrorOf(R"({"eos_token_id": "</s>"})"),
              HasSubstr("eos_token_id must be an integer or a list of integers"));
}

}  // namespace
}  // namespace prefixd
