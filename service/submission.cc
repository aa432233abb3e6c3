#include "service/submission.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/request_log.h"

namespace prefixd {
namespace {

// The ids a chat reply's request generated, remembered when it ends well so that the
// conversation's next turn runs them (service/reply_memory.h).
class ReplyRecorder {
 public:
  ReplyRecorder(ReplyMemory* memory, CacheNamespace ns, std::string prompt_text,
                std::vector<TokenId> prompt_ids, std::vector<TokenId> stop_ids)
      : memory_(memory),
        ns_(std::move(ns)),
        prompt_text_(std::move(prompt_text)),
        stop_ids_(std::move(stop_ids)) {
    turn_.prompt_ids = std::move(prompt_ids);
  }

  void OnUpdate(const GenerationUpdate& update) {
    turn_.reply_ids.insert(turn_.reply_ids.end(), update.tokens.begin(), update.tokens.end());
    if (!update.finished || !update.status.ok()) return;
    // A final stop token's text never reached the client.
    if (update.finish_reason == FinishReason::kStop && !turn_.reply_ids.empty() &&
        std::find(stop_ids_.begin(), stop_ids_.end(), turn_.reply_ids.back()) != stop_ids_.end()) {
      turn_.reply_ids.pop_back();
    }
    memory_->Remember(ns_, prompt_text_, std::move(turn_));
  }

 private:
  ReplyMemory* memory_;
  CacheNamespace ns_;
  std::string prompt_text_;
  std::vector<TokenId> stop_ids_;
  ReplyMemory::Turn turn_;
};

std::vector<TokenId> StopIds(const Engine& engine, const SamplingParams& sampling) {
  std::vector<TokenId> ids = sampling.stop_token_ids;
  if (!sampling.ignore_eos) {
    ids.insert(ids.end(), engine.config().eos_token_ids.begin(),
               engine.config().eos_token_ids.end());
  }
  return ids;
}

}  // namespace

bool InFlightRequests::TryAcquire(const std::string& tenant, int limit) {
  absl::MutexLock lock(&mu_);
  int& n = counts_[tenant];
  if (limit >= 0 && n >= limit) return false;
  ++n;
  return true;
}

void InFlightRequests::Release(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(tenant);
  if (it != counts_.end() && --it->second <= 0) counts_.erase(it);
}

int InFlightRequests::count(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(tenant);
  return it == counts_.end() ? 0 : it->second;
}

void RecordRefused(const ServiceContext& service, std::string_view protocol,
                   std::string_view request_id, std::string_view tenant,
                   const absl::Status& status) {
  if (service.metrics != nullptr) service.metrics->RecordRejected(status);
  if (service.request_log != nullptr) {
    service.request_log->RecordRejected(protocol, request_id, tenant, status);
  }
}

absl::StatusOr<RequestId> SubmitObserved(const ServiceContext& service, Submission submission,
                                         UpdateCallback deliver) {
  GenerationRequest& r = submission.request;
  const std::string tenant = submission.tenant;
  r.tenant = tenant;  // its turn in admission
  InFlightRequests* in_flight = service.in_flight;
  if (in_flight != nullptr && !in_flight->TryAcquire(tenant, submission.tenant_max_requests)) {
    const absl::Status status = absl::ResourceExhaustedError(
        absl::StrCat("tenant \"", tenant, "\" has ", submission.tenant_max_requests,
                     " requests queued or running, its max_requests; wait for one to end"));
    RecordRefused(service, submission.protocol, r.request_id, tenant, status);
    return status;
  }
  const std::string ns = r.ns.DisplayName();
  // The observers follow the request in the callback: the updates arrive in order on the
  // engine's thread, so they need no lock of their own.
  std::optional<ServingMetrics::RequestRecorder> recorder;
  if (service.metrics != nullptr) recorder = service.metrics->StartRequest(ns, absl::Now());
  std::optional<ReplyRecorder> reply;
  if (service.replies != nullptr && submission.chat_text) {
    reply.emplace(service.replies, r.ns, *submission.chat_text, r.prompt,
                  StopIds(*service.engine, r.sampling));
  }
  RequestLog* log = service.request_log;
  std::string log_text;
  if (log != nullptr && log->log_prompts()) log_text = std::move(submission.prompt_text);
  const std::string request_id = r.request_id;
  const std::string protocol = submission.protocol;
  auto on_update = [recorder, reply = std::move(reply), log, protocol, request_id, tenant, ns,
                    in_flight, log_text = std::move(log_text),
                    deliver = std::move(deliver)](GenerationUpdate&& update) mutable {
    if (recorder) recorder->OnUpdate(update, absl::Now());
    if (reply) reply->OnUpdate(update);
    if (update.finished) {
      if (log != nullptr) log->RecordFinished(protocol, request_id, tenant, ns, update, log_text);
      if (in_flight != nullptr) in_flight->Release(tenant);
    }
    deliver(std::move(update));
  };
  absl::StatusOr<RequestId> id = service.engine->Submit(std::move(r), std::move(on_update));
  if (!id.ok()) {
    if (in_flight != nullptr) in_flight->Release(tenant);
    RecordRefused(service, protocol, request_id, tenant, id.status());
  }
  return id;
}

}  // namespace prefixd
