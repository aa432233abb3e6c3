// The request log: one line per request, fields that cannot be forged, prompts only on
// request, levels.
#include "service/request_log.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

GenerationUpdate Finished(absl::Status status) {
  GenerationUpdate u;
  u.finished = true;
  u.status = std::move(status);
  u.finish_reason = u.status.ok() ? FinishReason::kLength : FinishReason::kNone;
  u.usage.prompt_tokens = 40;
  u.usage.cached_tokens = 32;
  u.usage.completion_tokens = 8;
  u.usage.queue_time = absl::Milliseconds(1.5);
  u.usage.time_to_first_token = absl::Milliseconds(12);
  u.usage.total_time = absl::Milliseconds(80);
  return u;
}

std::string TempPath(const char* name) {
  return std::string(::testing::TempDir()) + "/" + name + std::to_string(getpid());
}

TEST(RequestLogTest, OneLinePerRequestWithEveryField) {
  const std::string path = TempPath("requests.log");
  {
    absl::StatusOr<std::unique_ptr<RequestLog>> log = RequestLog::Create({.path = path});
    ASSERT_TRUE(log.ok()) << log.status();
    (*log)->RecordFinished("openai", "req-1", "acme", "acme", Finished(absl::OkStatus()),
                           "secret prompt");
    (*log)->RecordFinished("grpc", "id with spaces\nstatus=OK", "acme", "public",
                           Finished(absl::DeadlineExceededError("deadline")), "");
    (*log)->RecordRejected("openai", "req-3", "", absl::ResourceExhaustedError("queue full"));
  }  // written out on destruction
  const std::string text = ReadFile(path);
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << text;
  EXPECT_THAT(lines[0], HasSubstr(" info request id=req-1 tenant=acme namespace=acme "
                                  "protocol=openai status=OK finish=length prompt_tokens=40 "
                                  "cached_tokens=32 completion_tokens=8 preemptions=0 "
                                  "queue_ms=1.5 ttft_ms=12.0 total_ms=80.0"));
  EXPECT_THAT(text, Not(HasSubstr("secret prompt")));
  // A caller's id cannot start a line or add fields of its own.
  EXPECT_THAT(lines[1], HasSubstr(" warning request id=\"id with spaces\\nstatus=OK\" "));
  EXPECT_THAT(lines[1], HasSubstr("status=DEADLINE_EXCEEDED finish=error"));
  EXPECT_THAT(lines[1], HasSubstr("error=deadline"));
  EXPECT_THAT(lines[2], HasSubstr("request id=req-3 tenant=- protocol=openai "
                                  "status=RESOURCE_EXHAUSTED refused error=\"queue full\""));
  std::remove(path.c_str());
}

TEST(RequestLogTest, PromptsOnlyWhenAskedAndLevels) {
  const std::string path = TempPath("prompts.log");
  {
    auto log = RequestLog::Create({.path = path, .level = "warn", .log_prompts = true});
    ASSERT_TRUE(log.ok()) << log.status();
    (*log)->RecordFinished("grpc", "ok-1", "t", "t", Finished(absl::OkStatus()), "hello");
    (*log)->RecordFinished("grpc", "bad-1", "t", "t", Finished(absl::InternalError("boom")),
                           "say \"hi\"");
  }
  const std::string text = ReadFile(path);
  EXPECT_THAT(text, Not(HasSubstr("ok-1")));  // info is below warn
  EXPECT_THAT(text, HasSubstr("id=bad-1"));
  EXPECT_THAT(text, HasSubstr("prompt=\"say \\\"hi\\\"\""));
  std::remove(path.c_str());
}

TEST(RequestLogTest, BadOptionsAreClearErrors) {
  absl::StatusOr<std::unique_ptr<RequestLog>> log =
      RequestLog::Create({.path = "", .level = "loud"});
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(log.status().message(), HasSubstr("--log_level=loud"));
  log = RequestLog::Create({.path = "/etc/hostname/requests.log"});
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(log.status().message(), HasSubstr("/etc/hostname/requests.log"));
}

TEST(RequestLogTest, RequestIdsAreFresh) {
  const std::string a = NewRequestId(), b = NewRequestId();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 28u);
  EXPECT_EQ(a.substr(0, 4), "req-");
}

}  // namespace
}  // namespace prefixd
