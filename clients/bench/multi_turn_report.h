// clients/bench/multi_turn_report.h — what the prefix cache could have served in a multi-turn
// run, and how close it came, turn by turn.
//
// A turn's prompt is the previous turn's prompt, its reply, the end of the reply's message
// and the new question. When the previous turn ends, the cache holds the KV of every full
// block of its prompt and reply, except that the last generated token never ran through the
// model, so its KV does not exist: `reusable` = prev prompt + prev completion - 1 tokens.
//
// The chat path carries the reply as text, and the server tokenizes it again. Where that
// does not give back the generated ids (a BPE merge across what were two tokens, a trimmed
// space, a special token in the text), the new prompt leaves the cached path there, and
// every block after that point must be computed again. So two ideals:
//   ideal        = full blocks of min(common, reusable), common = the longest common prefix
//                  of (prev prompt ++ generated ids) and this prompt (from Tokenize);
//   ideal_exact  = full blocks of reusable: what re-tokenizing exactly would have allowed.
// The first turn of a conversation can only share the system message with the conversations
// started before it: its ideal is the full blocks of its longest common prefix with any
// earlier-started first-turn prompt.
#ifndef PREFIXD_CLIENTS_BENCH_MULTI_TURN_REPORT_H_
#define PREFIXD_CLIENTS_BENCH_MULTI_TURN_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "clients/bench/bench_report.h"
#include "clients/bench/latency_stats.h"
#include "nlohmann/json.hpp"

namespace prefixd::bench {

// One turn of one conversation, as the runner saw it.
struct TurnRecord {
  int conversation = 0;
  int turn = 0;                        // 0-based
  int64_t start_order = 0;             // when its Generate started, counted over the whole run
  std::vector<int32_t> prompt_ids;     // Tokenize of the conversation the turn sent
  std::vector<int32_t> generated_ids;  // streamed by Generate
  RequestRecord request;
};

// Length of the longest common prefix of `a` and `b`.
int CommonPrefix(absl::Span<const int32_t> a, absl::Span<const int32_t> b);

// `tokens` rounded down to whole blocks.
int FullBlockTokens(int tokens, int block_size);

// What a turn after the first could find cached, from the previous turn of its conversation.
struct TurnIdeal {
  int common = 0;              // LCP(prev prompt ++ prev generated, this prompt)
  int reusable = 0;            // prev prompt + prev generated - 1: tokens with KV
  int ideal_cached = 0;        // FullBlockTokens(min(common, reusable))
  int ideal_exact_cached = 0;  // FullBlockTokens(reusable)
  // Whether this prompt continues with the previous turn's generated ids unchanged.
  bool retokenized_identically = true;
};
TurnIdeal ComputeTurnIdeal(absl::Span<const int32_t> prev_prompt,
                           absl::Span<const int32_t> prev_generated,
                           absl::Span<const int32_t> prompt, int block_size);

// A reply whose text did not re-tokenize to its ids, for the report.
struct RetokenizationExample {
  int conversation = 0;
  int turn = 0;          // the turn whose prompt diverged (0-based)
  int reply_offset = 0;  // where, counted in the previous reply's generated ids
  int reply_tokens = 0;
  std::vector<int32_t> generated;    // the previous reply's ids from the divergence on (a few)
  std::vector<int32_t> retokenized;  // this prompt's ids at the same positions
};

struct TurnStats {
  int64_t requests = 0;  // turns sent
  int64_t succeeded = 0;
  int64_t prompt_tokens = 0;  // over succeeded turns
  int64_t cached_tokens = 0;
  int64_t ideal_cached_tokens = 0;
  int64_t ideal_exact_cached_tokens = 0;
  // Turns after the first whose previous turn succeeded too (the ones with an ideal from
  // their history), how many of those did not find the previous reply's ids again, and the
  // cached tokens that cost (ideal_exact - ideal over them).
  int64_t compared = 0;
  int64_t retokenization_mismatches = 0;
  int64_t retokenization_lost_tokens = 0;
  // Where those prompts left the previous turn's ids: before its reply (the template
  // rendered the history differently), at the reply's first token (e.g. a trimmed leading
  // space), or further into the reply.
  int64_t diverged_before_reply = 0;
  int64_t diverged_at_reply_start = 0;
  int64_t diverged_in_reply = 0;
  // Turns whose Tokenize length differs from the usage's prompt_tokens (should be none).
  int64_t tokenize_disagreements = 0;
  // Turns (with an ideal from their history) that re-tokenized identically but got less than
  // their ideal minus one block from the cache.
  int64_t below_ideal = 0;
  Distribution ttft_ms;

  double achieved_hit_rate() const;     // cached / prompt
  double ideal_hit_rate() const;        // ideal cached / prompt
  double ideal_exact_hit_rate() const;  // ideal exact cached / prompt
  double achieved_over_ideal() const;   // cached / ideal cached (1 when the ideal is 0)
};

// Per turn, and the ideal of each turn record.
struct TurnAnalysis {
  int conversation = 0;
  int turn = 0;
  bool succeeded = false;
  int prompt_tokens = 0;  // usage
  int cached_tokens = 0;
  int completion_tokens = 0;
  bool has_history = false;  // turn > 0 and the previous turn succeeded
  TurnIdeal ideal;           // for the first turn: only ideal_cached (== ideal_exact_cached)
};

struct MultiTurnReport {
  int block_size = 0;
  std::vector<TurnStats> per_turn;  // [turn]
  TurnStats total;
  int64_t conversations_cut_short = 0;          // a failed turn ends its conversation
  std::vector<TurnAnalysis> analyses;           // one per record, in the order given
  std::vector<RetokenizationExample> examples;  // the first few mismatches
};

// `records`: every turn sent, any order. `block_size`: the server's (GetStats).
MultiTurnReport BuildMultiTurnReport(const std::vector<TurnRecord>& records, int turns,
                                     int block_size);

// A per-turn table, the totals, and the re-tokenization findings.
std::string FormatMultiTurnReport(const MultiTurnReport& report);
nlohmann::ordered_json MultiTurnReportToJson(const MultiTurnReport& report);

}  // namespace prefixd::bench

#endif  // PREFIXD_CLIENTS_BENCH_MULTI_TURN_REPORT_H_
