#include "clients/bench/bench_runner.h"

#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/status.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "clients/bench/progress_bar.h"
#include "clients/bench/run_state.h"
#include "clients/cpp/prefix_key.h"

namespace prefixd::bench {
namespace {

// One Generate stream on gRPC's callback API. Owns itself: deleted in OnDone, which gRPC
// calls exactly once, after every other callback.
class GenerateStream final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  GenerateStream(std::shared_ptr<RunState> state, size_t index, const BenchRequest& request,
                 const std::string& request_id)
      : state_(std::move(state)), record_(&state_->records[index]) {
    *request_.mutable_token_ids()->mutable_ids() = {request.prompt_token_ids.begin(),
                                                    request.prompt_token_ids.end()};
    v1::SamplingParams* sampling = request_.mutable_sampling();
    sampling->set_temperature(0.0f);
    sampling->set_max_tokens(request.output_len);
    sampling->set_ignore_eos(true);
    request_.set_request_id(request_id);
    record_->expected_output_len = request.output_len;
  }

  void Start(const PrefixdClient& client) {
    client.PrepareContext(&context_, PrefixKey(request_));
    record_->start_s = state_->Elapsed();
    client.generation_stub()->async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is over; OnDone follows
    RecordResponse(response_, state_->Elapsed(), record_);
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    record_->end_s = state_->Elapsed();
    const absl::Status s = FromGrpcStatus(status);
    record_->code = s.code();
    record_->message = std::string(s.message());
    const bool failed = !FailureReason(*record_).empty();
    std::shared_ptr<RunState> state = std::move(state_);
    delete this;
    state->Finished(failed);
  }

 private:
  std::shared_ptr<RunState> state_;
  RequestRecord* record_;  // in state_->records
  grpc::ClientContext context_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
};

}  // namespace

void RecordResponse(const v1::GenerateResponse& response, double now_s, RequestRecord* record) {
  RequestRecord& r = *record;
  if (r.final_messages > 0) ++r.messages_after_final;
  if (response.token_ids_size() > 0) {
    if (r.first_token_s < 0) {
      r.first_token_s = now_s;
    } else {
      r.inter_token_s.push_back(now_s - r.last_token_s);
    }
    r.last_token_s = now_s;
    r.streamed_tokens += response.token_ids_size();
  }
  if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    ++r.final_messages;
    r.finish_reason = response.finish_reason();
    r.prompt_tokens = response.usage().prompt_tokens();
    r.cached_tokens = response.usage().cached_tokens();
    r.completion_tokens = response.usage().completion_tokens();
  }
}

RunResult DispatchRequests(const std::vector<BenchRequest>& requests, const RunOptions& options,
                           const StartStreamFn& start) {
  const std::vector<double> arrivals =
      PoissonArrivalOffsets(static_cast<int>(requests.size()), options.request_rate, options.seed);
  auto state = std::make_shared<RunState>(requests.size());

  std::thread progress_thread;
  if (!options.progress_label.empty()) {
    progress_thread = std::thread([state, &options, total = requests.size()] {
      ProgressBar bar(stderr, options.progress_label, static_cast<int64_t>(total));
      if (!bar.enabled()) return;
      for (;;) {
        int64_t completed = 0, failed = 0;
        const bool done = state->AwaitAllFor(absl::Milliseconds(100), &completed, &failed);
        bar.Draw(completed, failed, state->Elapsed());
        if (done) return;
      }
    });
  }

  for (size_t i = 0; i < requests.size(); ++i) {
    const Clock::time_point due = state->start() + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(arrivals[i]));
    if (Clock::now() < due) std::this_thread::sleep_until(due);
    state->AcquireSlot(options.concurrency);
    start(state, i, requests[i], absl::StrCat(options.request_id_prefix, "-", i));
  }
  state->AwaitAll();
  if (progress_thread.joinable()) progress_thread.join();

  RunResult result;
  result.records = std::move(state->records);
  if (!result.records.empty()) {
    double first_start = result.records.front().start_s, last_end = 0;
    for (const RequestRecord& r : result.records) {
      first_start = std::min(first_start, r.start_s);
      last_end = std::max(last_end, r.end_s);
    }
    result.duration_s = last_end - first_start;
  }
  return result;
}

RunResult RunRequests(const PrefixdClient& client, const std::vector<BenchRequest>& requests,
                      const RunOptions& options) {
  return DispatchRequests(
      requests, options,
      [&client](std::shared_ptr<RunState> state, size_t index, const BenchRequest& request,
                const std::string& id) {
        (new GenerateStream(std::move(state), index, request, id))->Start(client);
      });
}

}  // namespace prefixd::bench
