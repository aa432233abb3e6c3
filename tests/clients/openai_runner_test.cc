// prefix-bench's reading of OpenAI completion chunks and of --openai_url.
#include "clients/bench/openai_runner.h"

#include "gtest/gtest.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::bench {
namespace {

TEST(OpenAiRunnerTest, RecordsTokensTimingsAndUsage) {
  RequestRecord r;
  ASSERT_TRUE(RecordOpenAiEvent(
      R"({"choices":[{"index":0,"text":"ab","token_ids":[1,2],"finish_reason":null}],"usage":null})",
      1.0, &r));
  ASSERT_TRUE(RecordOpenAiEvent(
      R"({"choices":[{"index":0,"text":"c","token_ids":[3],"finish_reason":null}]})", 1.5, &r));
  ASSERT_TRUE(RecordOpenAiEvent(
      R"({"choices":[{"index":0,"text":"","token_ids":[],"finish_reason":"length"}]})", 1.6, &r));
  ASSERT_TRUE(RecordOpenAiEvent(
      R"({"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,
          "prompt_tokens_details":{"cached_tokens":8}}})",
      1.7, &r));
  EXPECT_DOUBLE_EQ(r.first_token_s, 1.0);
  EXPECT_DOUBLE_EQ(r.last_token_s, 1.5);
  ASSERT_EQ(r.inter_token_s.size(), 1u);
  EXPECT_DOUBLE_EQ(r.inter_token_s[0], 0.5);
  EXPECT_EQ(r.streamed_tokens, 3);
  EXPECT_EQ(r.final_messages, 1);
  EXPECT_EQ(r.messages_after_final, 0);
  EXPECT_EQ(r.finish_reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.prompt_tokens, 10);
  EXPECT_EQ(r.cached_tokens, 8);
  EXPECT_EQ(r.completion_tokens, 3);

  // A choice after the final one is a broken promise; junk is not a chunk.
  EXPECT_TRUE(RecordOpenAiEvent(R"({"choices":[{"index":0,"text":"x","token_ids":[4]}]})", 2, &r));
  EXPECT_EQ(r.messages_after_final, 1);
  EXPECT_FALSE(RecordOpenAiEvent("not json", 2, &r));
  EXPECT_FALSE(RecordOpenAiEvent(R"({"object":"x"})", 2, &r));
}

TEST(OpenAiRunnerTest, ParsesTheUrl) {
  absl::StatusOr<OpenAiTarget> t = ParseOpenAiUrl("http://127.0.0.1:8000/v1");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->host, "127.0.0.1");
  EXPECT_EQ(t->port, "8000");
  t = ParseOpenAiUrl("http://[::1]:9000/");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->host, "::1");
  EXPECT_FALSE(ParseOpenAiUrl("https://x:1").ok());
  EXPECT_FALSE(ParseOpenAiUrl("127.0.0.1:8000").ok());
  EXPECT_FALSE(ParseOpenAiUrl("http://host").ok());
  EXPECT_FALSE(ParseOpenAiUrl("http://host:0").ok());
}

}  // namespace
}  // namespace prefixd::bench
