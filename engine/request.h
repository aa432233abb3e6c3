// engine/request.h — what a caller asks of the engine, and what it gets back.
#ifndef PREFIXD_ENGINE_REQUEST_H_
#define PREFIXD_ENGINE_REQUEST_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kernels/kernels.h"
#include "prefix_tree/block_hash.h"

namespace prefixd {

using RequestId = uint64_t;

inline constexpr int kMaxTopLogprobs = 20;
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 64;

struct SamplingParams {
  float temperature = 1.0f;      // 0: greedy
  int top_k = 0;                 // 0: no cut
  float top_p = 1.0f;            // (0, 1]
  std::optional<uint64_t> seed;  // unset: drawn at random when the request is accepted
  int max_tokens = 0;            // 0: up to the model's context
  std::vector<std::string> stop;
  std::vector<TokenId> stop_token_ids;
  bool ignore_eos = false;
  bool logprobs = false;
  int top_logprobs = 0;  // 0..kMaxTopLogprobs; implies logprobs
};

// How one tenant shares the engine with the others.
struct TenantPolicy {
  // Its turns in admission: waiting requests are served in weighted round robin across
  // tenants, first come first served within one (SchedulerOptions::weights). At least 1.
  int weight = 1;
  // Its guaranteed share of the KV cache, a fraction in [0, 1]: eviction does not take its
  // cached blocks below it while another owner holds more than its own share
  // (RadixTreeOptions::guaranteed_blocks).
  double kv_share = 0;
};

struct GenerationRequest {
  // Who asks: its turn in admission (SchedulerOptions::weights). Empty: ns.tenant.
  std::string tenant = {};
  CacheNamespace ns;
  std::vector<TokenId> prompt;
  SamplingParams sampling;
  absl::Time deadline = absl::InfiniteFuture();
  std::string request_id;  // the client's id, for logs
};

enum class FinishReason { kNone, kStop, kLength, kCancelled };

struct RequestUsage {
  int prompt_tokens = 0;
  int cached_tokens = 0;  // prompt tokens served from the prefix cache at first admission
  int completion_tokens = 0;
  int preemptions = 0;
  bool admitted = false;      // scheduled at least once (a request cancelled in the queue was not)
  absl::Duration queue_time;  // arrival to first scheduled step
  absl::Duration time_to_first_token;  // arrival to first generated token
  absl::Duration total_time;           // arrival to the terminal update
};

// Tokens generated since the previous update, their text, and on the last update how the
// request ended. Exactly one update per accepted request has `finished` set.
struct GenerationUpdate {
  std::vector<TokenId> tokens;
  std::string text;
  std::vector<SampledToken> logprobs;  // one per token, when asked for
  bool finished = false;
  // finished and ok: ended normally for `finish_reason`. finished and not ok: failed
  // (DEADLINE_EXCEEDED, CANCELLED when the caller cancelled, INTERNAL on a step failure).
  absl::Status status;
  FinishReason finish_reason = FinishReason::kNone;
  RequestUsage usage;  // set on the finished update
};

// Called on the engine's thread, in order, once per step that produced output for the
// request. Must not block: hand the update to another thread if that takes time.
using UpdateCallback = std::function<void(GenerationUpdate&&)>;

// Static checks of sampling values against a vocabulary; the engine adds the checks that
// need the model (context length, pool size).
absl::Status ValidateSamplingParams(const SamplingParams& params, int vocab_size);

std::string_view FinishReasonName(FinishReason reason);

}  // namespace prefixd

#endif  // PREFIXD_ENGINE_REQUEST_H_
