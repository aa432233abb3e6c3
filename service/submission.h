// service/submission.h — one generation request handed to the engine with what the server
// follows it by: metrics, the reply memory (chat) and the request log. Both protocols (gRPC
// and the OpenAI-compatible API) submit through here, so they count and log alike.
#ifndef PREFIXD_SERVICE_SUBMISSION_H_
#define PREFIXD_SERVICE_SUBMISSION_H_

#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "service/service_context.h"

namespace prefixd {

// Requests each tenant has in the engine (queued or running), for its max_requests quota.
// Thread-safe.
class InFlightRequests {
 public:
  // Counts one more for `tenant` unless it has `limit` already (limit < 0: no limit).
  bool TryAcquire(const std::string& tenant, int limit);
  void Release(const std::string& tenant);
  int count(const std::string& tenant) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

struct Submission {
  GenerationRequest request;     // namespace, prompt, sampling and deadline decided
  std::string protocol;          // "grpc" or "openai", for the request log
  std::string tenant;            // the caller's tenant, for the request log and its quota
  int tenant_max_requests = -1;  // the tenant's max_requests (-1: none)
  // The rendered text of a chat prompt: its reply is remembered under it (reply memory).
  std::optional<std::string> chat_text;
  // The prompt as text, for the request log with --log_prompts (empty for token ids).
  std::string prompt_text;
};

// Submits `submission`; `deliver` gets each update after the observers have seen it (on the
// engine's thread; it must not block). A refusal is counted and logged here too.
absl::StatusOr<RequestId> SubmitObserved(const ServiceContext& service, Submission submission,
                                         UpdateCallback deliver);

// Counts and logs a request refused before it reached the engine.
void RecordRefused(const ServiceContext& service, std::string_view protocol,
                   std::string_view request_id, std::string_view tenant,
                   const absl::Status& status);

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_SUBMISSION_H_
