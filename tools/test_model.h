// tools/test_model.h — the tiny, deterministic Hugging Face checkpoint the tests, the README
// demo and the GPU checks use.
//
// config.json      LlamaForCausalLM with the shapes of the "tiny" random preset (4 layers,
//                  hidden 256, 8 heads / 4 kv heads, llama3 RoPE scaling, tied embeddings)
// model.safetensors  BF16 weights: the "tiny" random weights for `seed`, rounded to bf16
// tokenizer.json   a byte-level BPE (Llama 3 style) of 512 tokens trained on an embedded
//                  English corpus; BOS <|begin_of_text|> = 504, EOS <|end_of_text|> = 505,
//                  then <|eot_id|> 506, <|start_header_id|> 507, <|end_header_id|> 508
// tokenizer_config.json  Llama 3 Instruct's chat template and special tokens
// generation_config.json eos_token_id [505, 506]: a chat turn ends at <|eot_id|>
#ifndef PREFIXD_TOOLS_TEST_MODEL_H_
#define PREFIXD_TOOLS_TEST_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/model_config.h"

namespace prefixd {

inline constexpr uint64_t kTestModelSeed = 20261122;
inline constexpr int32_t kTestBeginOfText = 504;
inline constexpr int32_t kTestEndOfText = 505;
inline constexpr int32_t kTestEndOfTurn = 506;  // <|eot_id|>

// A Hugging Face (transformers v4 style) config.json for `config`.
std::string ModelConfigToJson(const ModelConfig& config);

// Writes config.json, generation_config.json, model.safetensors, tokenizer.json and
// tokenizer_config.json into `folder` (created if missing; existing files are replaced).
absl::Status WriteTestModel(const std::string& folder, uint64_t seed = kTestModelSeed);

}  // namespace prefixd

#endif  // PREFIXD_TOOLS_TEST_MODEL_H_
