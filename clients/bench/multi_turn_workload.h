// clients/bench/multi_turn_workload.h — prefix-bench's multi-turn chat workload.
//
// C conversations of T turns. Every conversation starts with the same system message (about
// S tokens; none when S is 0); each turn adds a user message of about Q tokens of random
// words, and asks for O tokens (greedy, ignore_eos). The reply goes back into the
// conversation as the assistant's message, so turn t's prompt is the whole conversation so
// far, rendered by the model's chat template on the server: all of it but the new question
// could come from the prefix cache.
//
// Messages are text (the chat path works on text), made of words from a fixed list drawn by a
// seeded RNG. Their length in tokens depends on the model's tokenizer, so prefix-bench first
// measures the tokens per word with the Tokenize RPC and sizes the messages from that.
#ifndef PREFIXD_CLIENTS_BENCH_MULTI_TURN_WORKLOAD_H_
#define PREFIXD_CLIENTS_BENCH_MULTI_TURN_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prefixd::bench {

struct MultiTurnShape {
  int conversations = 32;        // C
  int turns = 8;                 // T, per conversation
  int system_prompt_len = 1024;  // S, tokens (approximately); 0: no system message
  int question_len = 128;        // Q, tokens per user message (approximately)
  int output_len = 256;          // O, tokens generated per turn

  int num_requests() const { return conversations * turns; }
};

// "default" (C=32 T=8 S=1024 Q=128 O=256, for a GPU), "cpu-small" (C=16 T=6 S=64 Q=32
// O=32, the test model on a CPU) and "cpu-tiny" (C=4 T=3 S=32 Q=16 O=16; for tests).
absl::StatusOr<MultiTurnShape> MultiTurnPreset(absl::string_view name);
std::vector<std::string> MultiTurnPresetNames();

absl::Status ValidateMultiTurnShape(const MultiTurnShape& shape);

// `count` words from the list, space-separated.
std::string RandomWords(uint64_t seed, uint64_t stream, int count);

// Text to measure a tokenizer with: the first `words` words of one fixed sample (a longer
// sample starts with a shorter one, so the difference of two counts is the words' tokens).
std::string CalibrationText(int words);

// Words for `tokens` tokens at `tokens_per_word` (at least one word when tokens > 0).
int WordsForTokens(int tokens, double tokens_per_word);

struct MultiTurnWorkload {
  std::string system_prompt;                        // empty: none
  std::vector<std::vector<std::string>> questions;  // [conversation][turn]
};

// The messages for `shape` and `seed`, sized at `tokens_per_word`.
MultiTurnWorkload GenerateMultiTurnWorkload(const MultiTurnShape& shape, uint64_t seed,
                                            double tokens_per_word);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_MULTI_TURN_WORKLOAD_H_
