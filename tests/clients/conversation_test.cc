// prefixctl's conversations: the JSON it reads (--messages_file) and the prompt it builds
// from --chat, --system, --system_file and --messages_file, without a server.
#include "clients/prefixctl/conversation.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "clients/prefixctl/cli_args.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace prefixd::ctl {
namespace {

using ::testing::HasSubstr;

TEST(ParseConversationJsonTest, ListOfMessages) {
  absl::StatusOr<v1::Conversation> c = ParseConversationJson(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image"}]},
      {"role": "assistant", "content": null,
       "tool_calls": [{"id": "c1", "type": "function",
                       "function": {"name": "f", "arguments": {"x": 1}}}],
       "reasoning_content": "thinking"},
      {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "42"}])");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->messages_size(), 4);
  EXPECT_EQ(c->messages(0).role(), "system");
  EXPECT_EQ(c->messages(0).text(), "Be brief.");
  ASSERT_TRUE(c->messages(1).has_parts());
  ASSERT_EQ(c->messages(1).parts().parts_size(), 2);
  EXPECT_EQ(c->messages(1).parts().parts(0).text(), "Hi");
  EXPECT_EQ(c->messages(1).parts().parts(1).type(), "image");
  const v1::ChatMessage& assistant = c->messages(2);
  EXPECT_EQ(assistant.content_case(), v1::ChatMessage::CONTENT_NOT_SET) << "null content";
  EXPECT_EQ(nlohmann::json::parse(assistant.tool_calls_json())[0]["function"]["arguments"]["x"], 1);
  EXPECT_EQ(nlohmann::json::parse(assistant.extra_json())["reasoning_content"], "thinking");
  EXPECT_EQ(c->messages(3).tool_call_id(), "c1");
  EXPECT_EQ(c->messages(3).name(), "f");
  EXPECT_FALSE(c->has_add_generation_prompt()) << "the server's default";
}

TEST(ParseConversationJsonTest, ObjectWithTemplateArguments) {
  absl::StatusOr<v1::Conversation> c = ParseConversationJson(R"({
      "messages": [{"role": "user", "content": "Hi"}],
      "tools": [{"type": "function", "function": {"name": "f"}}],
      "add_generation_prompt": false,
      "continue_final_message": true,
      "chat_template_kwargs": {"enable_thinking": false}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->messages_size(), 1);
  EXPECT_EQ(nlohmann::json::parse(c->tools_json())[0]["function"]["name"], "f");
  ASSERT_TRUE(c->has_add_generation_prompt());
  EXPECT_FALSE(c->add_generation_prompt());
  EXPECT_TRUE(c->continue_final_message());
  EXPECT_EQ(nlohmann::json::parse(c->template_kwargs_json())["enable_thinking"], false);
}

TEST(ParseConversationJsonTest, ErrorsNameTheProblem) {
  struct Case {
    const char* json;
    const char* message;
  };
  for (const Case& c : {
           Case{"not json", "not valid JSON"},
           Case{"42", "list of messages"},
           Case{R"([{"content": "x"}])", "message 1: has no \"role\""},
           Case{R"([{"role": "user"}, {"role": 7}])", "message 2: \"role\" must be a string"},
           Case{R"([{"role": "user", "content": 3}])", "\"content\" must be"},
           Case{R"([{"role": "user", "content": [{"text": "x"}]}])", "\"type\""},
           Case{R"({"messages": [], "temperature": 1})", "unknown field \"temperature\""},
           Case{R"({"tools": []})", "no \"messages\""},
       }) {
    absl::StatusOr<v1::Conversation> parsed = ParseConversationJson(c.json);
    ASSERT_FALSE(parsed.ok()) << c.json;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message)) << c.json;
  }
}

PromptSources Chat(std::vector<std::string> words) {
  PromptSources sources;
  sources.words = std::move(words);
  sources.chat_flag = true;
  return sources;
}

TEST(ResolveChatPromptTest, WordsBecomeTheUserMessageAfterTheSystemMessage) {
  std::istringstream in;
  PromptSources sources = Chat({"What", "is", "a", "prefix?"});
  sources.chat_flag = false;
  sources.system_given = true;
  sources.system = "Be brief.";
  absl::StatusOr<Prompt> p = ResolvePrompt(sources, in);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->is_chat);
  ASSERT_EQ(p->chat.messages_size(), 2);
  EXPECT_EQ(p->chat.messages(0).role(), "system");
  EXPECT_EQ(p->chat.messages(0).text(), "Be brief.");
  EXPECT_EQ(p->chat.messages(1).role(), "user");
  EXPECT_EQ(p->chat.messages(1).text(), "What is a prefix?");
  EXPECT_FALSE(p->chat.has_add_generation_prompt());

  v1::GenerateRequest request;
  SetPrompt(*p, &request);
  EXPECT_EQ(request.prompt_case(), v1::GenerateRequest::kChat);
  v1::TokenizeRequest tokenize;
  SetPrompt(*p, &tokenize);
  EXPECT_EQ(tokenize.chat().messages_size(), 2);
}

TEST(ResolveChatPromptTest, MessagesFileFromStandardInputThenWords) {
  std::istringstream in(R"([{"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello!"}])");
  PromptSources sources = Chat({"And", "again"});
  sources.chat_flag = false;
  sources.messages_file_given = true;
  sources.messages_file = "-";
  sources.add_generation_prompt = false;
  absl::StatusOr<Prompt> p = ResolvePrompt(sources, in);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->chat.messages_size(), 3);
  EXPECT_EQ(p->chat.messages(1).text(), "Hello!");
  EXPECT_EQ(p->chat.messages(2).text(), "And again");
  ASSERT_TRUE(p->chat.has_add_generation_prompt());
  EXPECT_FALSE(p->chat.add_generation_prompt());
}

TEST(ResolveChatPromptTest, SystemFile) {
  const std::string path = ::testing::TempDir() + "/conversation_test_system.txt";
  std::ofstream(path) << "You are a pirate.";
  std::istringstream in;
  PromptSources sources;
  sources.system_file_given = true;
  sources.system_file = path;
  absl::StatusOr<Prompt> p = ResolvePrompt(sources, in);
  std::remove(path.c_str());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->chat.messages_size(), 1) << "a system message alone is a conversation (pin)";
  EXPECT_EQ(p->chat.messages(0).text(), "You are a pirate.");

  sources.system_file = "/nonexistent/system.txt";
  EXPECT_THAT(ResolvePrompt(sources, in).status().message(), HasSubstr("--system_file"));
}

TEST(ResolveChatPromptTest, RefusesWhatCannotMakeOneConversation) {
  struct Case {
    PromptSources sources;
    std::string input;
    const char* message;
  };
  std::vector<Case> cases;
  {
    PromptSources s = Chat({});
    cases.push_back({s, "", "the conversation is empty"});
  }
  {
    PromptSources s = Chat({});
    s.token_ids_flag_given = true;
    s.token_ids_flag = "1,2";
    cases.push_back({s, "", "--token_ids"});
  }
  {
    PromptSources s = Chat({"hi"});
    s.system_given = s.system_file_given = true;
    s.system = "a";
    s.system_file = "b";
    cases.push_back({s, "", "one way only"});
  }
  {
    PromptSources s = Chat({"-"});
    s.messages_file_given = true;
    s.messages_file = "-";
    cases.push_back({s, "[]", "standard input"});
  }
  {
    PromptSources s = Chat({"hi"});
    s.system_given = true;
    s.system = "a";
    s.messages_file_given = true;
    s.messages_file = "-";
    cases.push_back({s, R"([{"role": "system", "content": "b"}])", "already starts with a system"});
  }
  {
    PromptSources s = Chat({});
    s.messages_file_given = true;
    s.messages_file = "-";
    cases.push_back({s, "{", "not valid JSON"});
  }
  for (const Case& c : cases) {
    std::istringstream in(c.input);
    absl::StatusOr<Prompt> p = ResolvePrompt(c.sources, in);
    ASSERT_FALSE(p.ok()) << c.message;
    EXPECT_THAT(p.status().message(), HasSubstr(c.message));
  }
}

TEST(ResolveChatPromptTest, ConversationStartForChat) {
  std::istringstream in;
  PromptSources sources;
  EXPECT_EQ(ResolveConversationStart(sources, in)->messages_size(), 0) << "no system prompt";
  sources.system_given = true;
  sources.system = "Be kind.";
  absl::StatusOr<v1::Conversation> start = ResolveConversationStart(sources, in);
  ASSERT_TRUE(start.ok()) << start.status();
  ASSERT_EQ(start->messages_size(), 1);
  EXPECT_EQ(start->messages(0).role(), "system");
}

}  // namespace
}  // namespace prefixd::ctl
