// clients/prefixctl/text_format.h — prefixctl's human-readable output.
#ifndef PREFIXD_CLIENTS_PREFIXCTL_TEXT_FORMAT_H_
#define PREFIXD_CLIENTS_PREFIXCTL_TEXT_FORMAT_H_

#include <string>
#include <vector>

#include "prefixd/v1/cache.pb.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::ctl {

// One line, e.g. "finish LENGTH | prompt 40 tokens, 32 cached (80.0%) | completion 16
// tokens | queue 0.2 ms, first token 9.1 ms, total 61.0 ms".
std::string FormatUsage(v1::FinishReason finish_reason, const v1::Usage& usage);

// The summary `prefixctl chat` prints after each reply, e.g. "[prompt 812 tokens, 796 cached
// (98%), 41 tokens out, TTFT 12 ms]" (TTFT as the server measured it).
std::string FormatChatUsage(const v1::Usage& usage);

// The rendered prompt verbatim between two rules (a newline added after it, so that its own
// final newlines show), then its token ids, comma-separated (as --token_ids takes them):
//   --- prompt text (57 bytes) ---
//   <|begin_of_text|>...
//   --- 12 token ids ---
//   504,17,...
std::string FormatTokenize(const v1::TokenizeResponse& response);

// A table of the chosen tokens' logprobs and their top alternatives.
std::string FormatLogprobs(const std::vector<v1::TokenLogprob>& logprobs);

// Hit rate, blocks by state, counters, then a table of namespaces; the host tier's blocks,
// moves and per-namespace columns when the server has one.
std::string FormatStats(const v1::CacheStats& stats);
// ListPins as a table, oldest first.
std::string FormatPins(const v1::ListPinsResponse& pins);

// One line per event, e.g. "#12 stored 3 blocks in default (parent 1f2e…, keys 9a0b… …)";
// host tier events say "blocks (host)".
std::string FormatEvent(const v1::CacheEvent& event);

}  // namespace prefixd::ctl

#endif  // PREFIXD_CLIENTS_PREFIXCTL_TEXT_FORMAT_H_
