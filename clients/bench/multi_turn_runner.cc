#include "clients/bench/multi_turn_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "clients/bench/bench_runner.h"
#include "clients/bench/progress_bar.h"
#include "clients/bench/seeded_random.h"
#include "clients/bench/workload.h"

namespace prefixd::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kCalibrationWords = 256;

v1::ChatMessage Message(const char* role, const std::string& text) {
  v1::ChatMessage message;
  message.set_role(role);
  message.set_text(text);
  return message;
}

// Shared by the conversation threads and the progress bar.
struct RunProgress {
  explicit RunProgress(Clock::time_point start) : start(start) {}
  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - start).count(); }

  const Clock::time_point start;
  std::atomic<int64_t> next_conversation{0};
  std::atomic<int64_t> start_order{0};
  std::atomic<int64_t> turns_done{0};  // sent and ended, or skipped after a failure
  std::atomic<int64_t> turns_failed{0};
};

// Plays conversation `c`; appends its turns to `records`.
void PlayConversation(const PrefixdClient& client, const MultiTurnWorkload& workload, int c,
                      const MultiTurnRunOptions& options, RunProgress& progress,
                      std::vector<TurnRecord>& records) {
  const std::vector<std::string>& questions = workload.questions[c];
  const int turns = static_cast<int>(questions.size());
  v1::Conversation conversation;
  if (!workload.system_prompt.empty()) {
    *conversation.add_messages() = Message("system", workload.system_prompt);
  }
  for (int t = 0; t < turns; ++t) {
    *conversation.add_messages() = Message("user", questions[t]);
    TurnRecord& record = records.emplace_back();
    record.conversation = c;
    record.turn = t;
    record.request.expected_output_len = options.output_len;

    v1::TokenizeRequest tokenize;
    *tokenize.mutable_chat() = conversation;
    absl::StatusOr<v1::TokenizeResponse> tokenized = client.Tokenize(tokenize);
    std::string reply;
    if (tokenized.ok()) {
      record.prompt_ids.assign(tokenized->token_ids().begin(), tokenized->token_ids().end());
      v1::GenerateRequest request;
      *request.mutable_chat() = conversation;
      request.set_request_id(absl::StrCat(options.request_id_prefix, "-", c, "-", t));
      v1::SamplingParams* sampling = request.mutable_sampling();
      sampling->set_temperature(options.temperature);
      if (options.temperature > 0) {
        sampling->set_seed(SplitMix64(options.seed ^ SplitMix64((uint64_t{1} << 32) * c + t)));
      }
      sampling->set_max_tokens(options.output_len);
      sampling->set_ignore_eos(true);
      record.start_order = progress.start_order.fetch_add(1);
      record.request.start_s = progress.Elapsed();
      const absl::Status status = client.Generate(request, [&](const v1::GenerateResponse& r) {
        RecordResponse(r, progress.Elapsed(), &record.request);
        record.generated_ids.insert(record.generated_ids.end(), r.token_ids().begin(),
                                    r.token_ids().end());
        reply += r.text();
      });
      record.request.end_s = progress.Elapsed();
      record.request.code = status.code();
      record.request.message = std::string(status.message());
    } else {
      record.start_order = progress.start_order.fetch_add(1);
      record.request.start_s = record.request.end_s = progress.Elapsed();
      record.request.code = tokenized.status().code();
      record.request.message = absl::StrCat("Tokenize: ", tokenized.status().message());
    }
    const bool failed = !FailureReason(record.request).empty();
    progress.turns_done.fetch_add(failed ? turns - t : 1);  // the rest are skipped
    if (failed) {
      progress.turns_failed.fetch_add(1);
      return;
    }
    *conversation.add_messages() = Message("assistant", reply);
  }
}

}  // namespace

MultiTurnRunResult RunConversations(const PrefixdClient& client, const MultiTurnWorkload& workload,
                                    const MultiTurnRunOptions& options) {
  const int conversations = static_cast<int>(workload.questions.size());
  int64_t total_turns = 0;
  for (const auto& questions : workload.questions) total_turns += questions.size();
  const std::vector<double> arrivals =
      PoissonArrivalOffsets(conversations, options.conversation_rate, options.seed);
  RunProgress progress(Clock::now());
  std::vector<std::vector<TurnRecord>> records(conversations);  // [c]: written by one thread

  absl::Notification done;
  std::thread progress_thread;
  if (!options.progress_label.empty()) {
    progress_thread = std::thread([&] {
      ProgressBar bar(stderr, options.progress_label, total_turns);
      if (!bar.enabled()) return;
      for (;;) {
        const bool finished = done.WaitForNotificationWithTimeout(absl::Milliseconds(100));
        bar.Draw(progress.turns_done.load(), progress.turns_failed.load(), progress.Elapsed());
        if (finished) return;
      }
    });
  }

  const int workers =
      options.concurrency > 0 ? std::min(options.concurrency, conversations) : conversations;
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      for (;;) {
        const int64_t c = progress.next_conversation.fetch_add(1);
        if (c >= conversations) return;
        const Clock::time_point due =
            progress.start +
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrivals[c]));
        if (Clock::now() < due) std::this_thread::sleep_until(due);
        PlayConversation(client, workload, static_cast<int>(c), options, progress, records[c]);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  done.Notify();
  if (progress_thread.joinable()) progress_thread.join();

  MultiTurnRunResult result;
  for (std::vector<TurnRecord>& conversation : records) {
    for (TurnRecord& turn : conversation) result.turns.push_back(std::move(turn));
  }
  if (!result.turns.empty()) {
    double first_start = result.turns.front().request.start_s, last_end = 0;
    for (const TurnRecord& t : result.turns) {
      first_start = std::min(first_start, t.request.start_s);
      last_end = std::max(last_end, t.request.end_s);
    }
    result.duration_s = last_end - first_start;
  }
  return result;
}

absl::StatusOr<double> MeasureTokensPerWord(const PrefixdClient& client) {
  int counts[2] = {0, 0};
  const int words[2] = {kCalibrationWords, 2 * kCalibrationWords};
  for (int i = 0; i < 2; ++i) {
    v1::TokenizeRequest request;
    request.set_text(CalibrationText(words[i]));
    absl::StatusOr<v1::TokenizeResponse> response = client.Tokenize(request);
    if (!response.ok()) return response.status();
    counts[i] = response->token_ids_size();
  }
  return std::max(1, counts[1] - counts[0]) / static_cast<double>(words[1] - words[0]);
}

}  // namespace prefixd::bench
