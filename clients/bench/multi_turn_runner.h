// clients/bench/multi_turn_runner.h — plays prefix-bench's multi-turn conversations against a
// server and records every turn.
#ifndef PREFIXD_CLIENTS_BENCH_MULTI_TURN_RUNNER_H_
#define PREFIXD_CLIENTS_BENCH_MULTI_TURN_RUNNER_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "clients/bench/multi_turn_report.h"
#include "clients/bench/multi_turn_workload.h"
#include "clients/cpp/prefixd_client.h"

namespace prefixd::bench {

struct MultiTurnRunOptions {
  int output_len = 16;  // max_tokens of every turn (ignore_eos)
  // 0: greedy. Otherwise sampled, with a seed per turn drawn from `seed`, so that a run
  // repeats exactly.
  float temperature = 0.0f;
  // At most this many conversations in flight; 0: all of them.
  int concurrency = 0;
  // Conversations start as a Poisson process of this many per second; infinite: all at once.
  double conversation_rate = std::numeric_limits<double>::infinity();
  uint64_t seed = 1;  // of the start times and the sampling
  // Drawn as a progress bar on stderr when it is a terminal; empty: no progress bar.
  std::string progress_label;
  std::string request_id_prefix = "bench";  // turn t of conversation c: PREFIX-c-t
};

struct MultiTurnRunResult {
  std::vector<TurnRecord> turns;  // by conversation, then turn
  double duration_s = 0;          // first turn sent → last turn ended
};

// Plays every conversation: turn t sends the system message, the questions and replies so far
// and question t as GenerateRequest.chat, after asking Tokenize for the ids of that same
// conversation; the reply text goes back as the assistant's message. A conversation's turns
// run one after another, conversations side by side on their own threads. A failed turn
// ends its conversation.
MultiTurnRunResult RunConversations(const PrefixdClient& client, const MultiTurnWorkload& workload,
                                    const MultiTurnRunOptions& options);

// Tokens per word of the workload's words on the server's tokenizer, from two Tokenize calls
// (so that BOS and the like cancel out).
absl::StatusOr<double> MeasureTokensPerWord(const PrefixdClient& client);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_MULTI_TURN_RUNNER_H_
