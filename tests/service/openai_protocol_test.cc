// OpenAI request bodies → prefixd requests, and engine updates → OpenAI's JSON and SSE.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/openai_response.h"

namespace prefixd {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

absl::Status ChatError(const std::string& body) {
  return ParseChatCompletionRequest(body).status();
}

TEST(OpenAiRequestTest, ChatMessagesBecomeAConversation) {
  absl::StatusOr<OpenAiRequest> r = ParseChatCompletionRequest(R"({
    "model": "m", "stream": true, "stream_options": {"include_usage": true},
    "messages": [
      {"role": "system", "content": "Be terse."},
      {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ann"},
      {"role": "assistant", "content": null, "reasoning_content": "hmm",
       "tool_calls": [{"id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "chat_template_kwargs": {"enable_thinking": false},
    "max_tokens": 5, "max_completion_tokens": 7, "temperature": 0.5, "top_p": 0.9,
    "top_k": -1, "seed": -3, "stop": "END", "stop_token_ids": [9], "ignore_eos": true,
    "logprobs": true, "top_logprobs": 3, "user": "u-1", "some_future_field": {"x": 1}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->user, "u-1");
  const v1::Conversation& chat = r->generate.chat();
  ASSERT_EQ(chat.messages_size(), 4);
  EXPECT_EQ(chat.messages(0).text(), "Be terse.");
  EXPECT_EQ(chat.messages(1).parts().parts(0).text(), "Hi");
  EXPECT_EQ(chat.messages(1).name(), "ann");
  EXPECT_FALSE(chat.messages(2).has_text() || chat.messages(2).has_parts());
  EXPECT_EQ(Json::parse(chat.messages(2).tool_calls_json())[0]["id"], "c1");
  EXPECT_EQ(Json::parse(chat.messages(2).extra_json())["reasoning_content"], "hmm");
  EXPECT_EQ(chat.messages(3).tool_call_id(), "c1");
  EXPECT_EQ(Json::parse(chat.tools_json())[0]["function"]["name"], "f");
  EXPECT_EQ(Json::parse(chat.template_kwargs_json())["enable_thinking"], false);
  const v1::SamplingParams& s = r->generate.sampling();
  EXPECT_EQ(s.max_tokens(), 7);  // max_completion_tokens wins
  EXPECT_FLOAT_EQ(s.temperature(), 0.5f);
  EXPECT_FLOAT_EQ(s.top_p(), 0.9f);
  EXPECT_EQ(s.top_k(), 0);
  EXPECT_EQ(s.seed(), static_cast<uint64_t>(int64_t{-3}));
  EXPECT_THAT(s.stop(), ::testing::ElementsAre("END"));
  EXPECT_THAT(s.stop_token_ids(), ::testing::ElementsAre(9));
  EXPECT_TRUE(s.ignore_eos());
  EXPECT_TRUE(r->generate.logprobs().enabled());
  EXPECT_EQ(r->generate.logprobs().top_n(), 3);
}

TEST(OpenAiRequestTest, CompletionPromptForms) {
  auto text = ParseCompletionRequest(R"({"prompt": "Hello", "logprobs": 2})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->generate.text(), "Hello");
  EXPECT_EQ(text->generate.logprobs().top_n(), 2);
  auto ids = ParseCompletionRequest(R"({"prompt": [1, 2, 3]})");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(ids->generate.token_ids().ids(), ::testing::ElementsAre(1, 2, 3));
  auto one = ParseCompletionRequest(R"({"prompt": [[4, 5]]})");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(one->generate.token_ids().ids(), ::testing::ElementsAre(4, 5));
  auto batch = ParseCompletionRequest(R"({"prompt": ["a", "b"]})");
  EXPECT_THAT(batch.status().message(), HasSubstr("one prompt per request"));
  EXPECT_EQ(ParamOf(batch.status()), "prompt");
}

TEST(OpenAiRequestTest, ErrorsNameTheField) {
  struct Case {
    std::string body, param, message;
  };
  const std::vector<Case> cases = {
      {R"({"messages": [{"role": "user", "content": "x"}], "n": 2})", "n", "'n' must be 1"},
      {R"({"messages": [{"role": "user", "content": "x"}], "temperature": 5})", "temperature",
       "'temperature' must be a number in [0, 2], got 5"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"})", "max_tokens",
       "got \"ten\""},
      {R"({"messages": [{"role": "user", "content": "x"}], "stream_options": {}})",
       "stream_options", "only allowed when 'stream' is true"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].type", "reads text only"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role", "is required"},
      {R"({"messages": "hi"})", "messages", "must be an array"},
      {R"({"model": "m"})", "messages", "'messages' is required"},
      {R"({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 0.5})",
       "presence_penalty", "not supported"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 5}})", "logit_bias",
       "not supported"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs",
       "needs 'logprobs'"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stop": [1]})", "stop",
       "a string or a list of strings"},
  };
  for (const Case& c : cases) {
    const absl::Status s = ChatError(c.body);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_EQ(ParamOf(s).value_or("<none>"), c.param) << c.body << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.body;
  }
}

TEST(OpenAiRequestTest, MalformedBodies) {
  // A number too large for a double is a 400 too, not an exception out of the parser (found
  // by the fuzzer).
  const absl::Status overflow = ChatError(R"({"messages": [], "seed": 8888888848888888e8888})");
  EXPECT_EQ(overflow.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(overflow.message()), HasSubstr("number overflow"));
  EXPECT_THAT(std::string(ChatError("").message()), HasSubstr("body is empty"));
  EXPECT_THAT(std::string(ChatError("{\"messages\": [").message()), HasSubstr("not valid JSON"));
  EXPECT_THAT(std::string(ChatError("[1, 2]").message()), HasSubstr("must be a JSON object"));
  EXPECT_THAT(std::string(ChatError("{\"messages\": \"\xff\"}").message()),
              HasSubstr("not valid JSON"));
  const std::string deep = "{\"a\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_THAT(std::string(ChatError(deep).message()), HasSubstr("nests deeper than"));
}

TEST(OpenAiRequestTest, TokenizeAndDetokenize) {
  auto text = ParseTokenizeRequest(R"({"prompt": "hi", "add_special_tokens": false})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->request.text(), "hi");
  EXPECT_FALSE(text->add_special_tokens);
  auto chat = ParseTokenizeRequest(R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->request.chat().messages_size(), 1);
  EXPECT_FALSE(ParseTokenizeRequest("{}").ok());
  auto ids = ParseDetokenizeRequest(R"({"tokens": [7, 8]})");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(ids->request.token_ids(), ::testing::ElementsAre(7, 8));
  EXPECT_EQ(ParamOf(ParseDetokenizeRequest(R"({"tokens": ["a"]})").status()), "tokens");
}

TEST(OpenAiErrorTest, StatusesMapToHttp) {
  EXPECT_EQ(ToOpenAiError(absl::InvalidArgumentError("x")).http_status, 400);
  EXPECT_EQ(ToOpenAiError(absl::OutOfRangeError("x")).http_status, 400);
  EXPECT_EQ(ToOpenAiError(absl::UnauthenticatedError("x")).http_status, 401);
  EXPECT_EQ(ToOpenAiError(absl::PermissionDeniedError("x")).http_status, 403);
  EXPECT_EQ(ToOpenAiError(absl::ResourceExhaustedError("x")).http_status, 429);
  EXPECT_EQ(ToOpenAiError(absl::UnavailableError("x")).http_status, 503);
  const OpenAiError e = ToOpenAiError(ChatError(R"({"messages": []})"));
  const Json body = Json::parse(e.body);
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "messages");
  EXPECT_TRUE(body["error"]["code"].is_null());
  EXPECT_THAT(body["error"]["message"].get<std::string>(), HasSubstr("must not be empty"));
}

GenerationUpdate Update(std::vector<TokenId> tokens, std::string text) {
  GenerationUpdate u;
  u.tokens = std::move(tokens);
  u.text = std::move(text);
  return u;
}

GenerationUpdate Final(FinishReason reason) {
  GenerationUpdate u;
  u.finished = true;
  u.finish_reason = reason;
  u.usage.prompt_tokens = 40;
  u.usage.cached_tokens = 32;
  u.usage.completion_tokens = 3;
  return u;
}

// The JSON payloads of an SSE stream, "[DONE]" as a string.
std::vector<Json> Events(const std::string& sse) {
  std::vector<Json> events;
  for (absl::string_view event : absl::StrSplit(sse, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(event, "data: ")) << event;
    const std::string payload(event.substr(6));
    events.push_back(payload == "[DONE]" ? Json("[DONE]") : Json::parse(payload));
  }
  return events;
}

TEST(OpenAiResponseTest, ChatStreamAsOpenAiSendsIt) {
  auto r = ParseChatCompletionRequest(
      R"({"messages": [{"role": "user", "content": "x"}], "stream": true,
          "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(r.ok());
  OpenAiResponse response(*r, "chatcmpl-1", "m", 1700000000, nullptr);
  std::string sse = response.StreamStart();
  sse += response.StreamUpdate(Update({1, 2}, "Hel"));
  sse += response.StreamUpdate(Update({3}, "lo\xff"));  // invalid UTF-8 from the model
  sse += response.StreamUpdate(Final(FinishReason::kStop));
  const std::vector<Json> events = Events(sse);
  ASSERT_EQ(events.size(), 6u) << sse;
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(events[0]["usage"].is_null());
  EXPECT_EQ(events[1]["choices"][0]["delta"]["content"], "Hel");
  EXPECT_EQ(events[2]["choices"][0]["delta"]["content"], "lo\xEF\xBF\xBD");
  EXPECT_TRUE(events[2]["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(events[3]["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(events[3]["choices"][0]["delta"].empty());
  EXPECT_TRUE(events[4]["choices"].empty());
  EXPECT_EQ(events[4]["usage"]["prompt_tokens_details"]["cached_tokens"], 32);
  EXPECT_EQ(events[4]["usage"]["total_tokens"], 43);
  EXPECT_EQ(events[5], "[DONE]");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(events[i]["id"], "chatcmpl-1");
}

TEST(OpenAiResponseTest, StreamWithoutUsageAndFailedStream) {
  auto r = ParseCompletionRequest(R"({"prompt": "x", "stream": true})");
  ASSERT_TRUE(r.ok());
  OpenAiResponse response(*r, "cmpl-1", "m", 1, nullptr);
  EXPECT_EQ(response.StreamStart(), "");
  GenerationUpdate failed = Final(FinishReason::kNone);
  failed.status = absl::InternalError("step failed");
  const std::vector<Json> events =
      Events(response.StreamUpdate(Update({1}, "a")) + response.StreamUpdate(failed));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["object"], "text_completion");
  EXPECT_EQ(events[0]["choices"][0]["text"], "a");
  EXPECT_FALSE(events[0].contains("usage"));
  EXPECT_EQ(events[1]["error"]["message"], "step failed");
  EXPECT_EQ(events[2], "[DONE]");
}

TEST(OpenAiResponseTest, ReturnTokenIdsCarriesEachChunksIds) {
  auto r =
      ParseCompletionRequest(R"({"prompt": [5, 6], "stream": true, "return_token_ids": true})");
  ASSERT_TRUE(r.ok());
  OpenAiResponse streamed(*r, "cmpl-2", "m", 1, nullptr);
  // A token whose text is not complete yet still reaches the client as an id.
  const std::vector<Json> events =
      Events(streamed.StreamUpdate(Update({1, 2}, "ab")) + streamed.StreamUpdate(Update({3}, "")) +
             streamed.StreamUpdate(Final(FinishReason::kLength)));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0]["choices"][0]["token_ids"], Json::array({1, 2}));
  EXPECT_EQ(events[1]["choices"][0]["token_ids"], Json::array({3}));
  EXPECT_EQ(events[2]["choices"][0]["token_ids"], Json::array());
  EXPECT_EQ(events[2]["choices"][0]["finish_reason"], "length");

  auto whole_request = ParseCompletionRequest(R"({"prompt": "x", "return_token_ids": true})");
  ASSERT_TRUE(whole_request.ok());
  OpenAiResponse whole(*whole_request, "cmpl-3", "m", 1, nullptr);
  whole.Collect(Update({1, 2}, "ab"));
  whole.Collect(Update({3}, "c"));
  whole.Collect(Final(FinishReason::kStop));
  EXPECT_EQ(Json::parse(whole.Body().body)["choices"][0]["token_ids"], Json::array({1, 2, 3}));
}

TEST(OpenAiResponseTest, WholeBodyAlwaysHasCachedTokens) {
  auto r = ParseChatCompletionRequest(
      R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 1})");
  ASSERT_TRUE(r.ok());
  OpenAiResponse response(*r, "chatcmpl-2", "m", 1, nullptr);
  GenerationUpdate u = Update({7}, "Hi");
  u.logprobs.push_back({7, -0.25f, {{7, -0.25f}}});
  response.Collect(u);
  GenerationUpdate done = Final(FinishReason::kLength);
  done.usage.cached_tokens = 0;
  response.Collect(done);
  const OpenAiError out = response.Body();
  ASSERT_EQ(out.http_status, 200);
  const Json body = Json::parse(out.body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "Hi");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  const Json& lp = body["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], "token_7");
  EXPECT_FLOAT_EQ(lp["logprob"].get<float>(), -0.25f);
  EXPECT_EQ(lp["top_logprobs"].size(), 1u);
  EXPECT_TRUE(lp["bytes"].is_array());

  OpenAiResponse failed(*r, "chatcmpl-3", "m", 1, nullptr);
  GenerationUpdate deadline = Final(FinishReason::kNone);
  deadline.status = absl::ResourceExhaustedError("queue full");
  failed.Collect(deadline);
  EXPECT_EQ(failed.Body().http_status, 429);
}

}  // namespace
}  // namespace prefixd
