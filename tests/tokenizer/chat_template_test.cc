#include "tokenizer/chat_template.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

// Meta-Llama-3-8B-Instruct's template.
constexpr char kLlama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// A model folder in a fresh temporary directory.
class ModelFolder {
 public:
  ModelFolder() {
    static int n = 0;
    path_ = ::testing::TempDir() + "chat_template_test_" + std::to_string(getpid()) + "_" +
            std::to_string(n++);
    std::filesystem::create_directories(path_);
  }
  ~ModelFolder() { std::filesystem::remove_all(path_); }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ + "/" + name, std::ios::binary) << text;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Conversation Chat(std::initializer_list<std::pair<const char*, const char*>> messages) {
  Conversation c;
  for (const auto& [role, content] : messages)
    c.messages.push_back({{"role", role}, {"content", content}});
  return c;
}

TEST(ChatTemplateTest, RendersTheTokenizerConfigTemplateWithItsSpecialTokens) {
  ModelFolder folder;
  Json config = {{"bos_token", "<|begin_of_text|>"},
                 {"eos_token", {{"__type", "AddedToken"}, {"content", "<|eot_id|>"}}},
                 {"pad_token", nullptr},
                 {"chat_template", kLlama3}};
  folder.Write("tokenizer_config.json", config.dump());
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Load(folder.path(), "");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_NE(*t, nullptr);
  EXPECT_EQ((*t)->special_tokens().at("eos_token"), "<|eot_id|>");
  EXPECT_EQ((*t)->special_tokens().count("pad_token"), 0u);

  absl::StatusOr<std::string> text =
      (*t)->Render(Chat({{"system", "Be brief."}, {"user", "  Hi!  "}}));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");

  Conversation no_prompt = Chat({{"user", "Hi!"}});
  no_prompt.add_generation_prompt = false;
  text = (*t)->Render(no_prompt);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>");
}

TEST(ChatTemplateTest, ChatTemplateJinjaWinsAndAFlagOverridesBoth) {
  ModelFolder folder;
  folder.Write("tokenizer_config.json",
               Json({{"bos_token", "<s>"}, {"chat_template", "config {{ bos_token }}"}}).dump());
  folder.Write("chat_template.jinja", "jinja file {{ bos_token }}");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Load(folder.path(), "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Render(Chat({{"user", "x"}})), "jinja file <s>");

  const std::string override_file = folder.path() + "/override.jinja";
  std::ofstream(override_file) << "override {{ bos_token }}{{ messages | length }}";
  t = ChatTemplate::Load(folder.path(), override_file);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Render(Chat({{"user", "x"}, {"assistant", "y"}})), "override <s>2");
}

TEST(ChatTemplateTest, AModelWithoutATemplateHasNone) {
  ModelFolder folder;
  folder.Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Load(folder.path(), "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, nullptr);
  t = ChatTemplate::Load("", "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, nullptr);
}

TEST(ChatTemplateTest, NamedTemplatesPickToolUseWhenToolsAreGiven) {
  ModelFolder folder;
  folder.Write(
      "tokenizer_config.json",
      Json({{"chat_template",
             Json::array({{{"name", "default"}, {"template", "plain"}},
                          {{"name", "tool_use"}, {"template", "tools: {{ tools | tojson }}"}}})}})
          .dump());
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Load(folder.path(), "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT((*t)->names(), ElementsAre("default", "tool_use"));
  Conversation c = Chat({{"user", "x"}});
  EXPECT_EQ(*(*t)->Render(c), "plain");
  c.tools = Json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
  EXPECT_EQ(*(*t)->Render(c), R"(tools: [{"type": "function", "function": {"name": "f"}}])");
}

TEST(ChatTemplateTest, ContinueFinalMessageEndsInsideTheLastMessage) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t =
      ChatTemplate::Create({{"default", kLlama3}}, {{"bos_token", "<B>"}}, "test");
  ASSERT_TRUE(t.ok()) << t.status();
  Conversation c = Chat({{"user", "Count to three."}, {"assistant", "One, two,"}});
  c.continue_final_message = true;
  absl::StatusOr<std::string> text = (*t)->Render(c);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<B><|start_header_id|>user<|end_header_id|>\n\nCount to three.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nOne, two,");

  c.add_generation_prompt = true;
  EXPECT_THAT((*t)->Render(c).status().message(), HasSubstr("cannot both be set"));
}

TEST(ChatTemplateTest, TemplateErrorsAreTheTemplatesOwnMessage) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Create(
      {{"default",
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}"
        "{% endfor %}"}},
      {}, "test");
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<std::string> text = (*t)->Render(Chat({{"system", "x"}, {"user", "y"}}));
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(text.status().message(), "System role not supported");
  EXPECT_EQ(jinja::ErrorKind(text.status()), "TemplateError");
}

TEST(ChatTemplateTest, KeywordArgumentsReachTheTemplateButNotItsOwnVariables) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t =
      ChatTemplate::Create({{"default",
                             "{% if enable_thinking is defined and not enable_thinking %}no think"
                             "{% else %}think{% endif %}"}},
                           {}, "test");
  ASSERT_TRUE(t.ok()) << t.status();
  Conversation c = Chat({{"user", "x"}});
  EXPECT_EQ(*(*t)->Render(c), "think");
  c.kwargs = {{"enable_thinking", false}};
  EXPECT_EQ(*(*t)->Render(c), "no think");
  c.kwargs = {{"messages", Json::array()}};
  EXPECT_THAT((*t)->Render(c).status().message(), HasSubstr("may not set \"messages\""));
}

TEST(ChatTemplateTest, BadFilesAreNamedWithLineAndColumn) {
  ModelFolder folder;
  folder.Write("tokenizer_config.json", R"({"chat_template": "ok\n{% if %}"})");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Load(folder.path(), "");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr(folder.path() + "/tokenizer_config.json"));
  EXPECT_THAT(t.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(t.status().message(), HasSubstr("column"));

  folder.Write("tokenizer_config.json", R"({"chat_template": 7})");
  t = ChatTemplate::Load(folder.path(), "");
  EXPECT_THAT(t.status().message(), HasSubstr("chat_template must be a string"));

  folder.Write("tokenizer_config.json", R"({"chat_template": "x", "bos_token": 3})");
  t = ChatTemplate::Load(folder.path(), "");
  EXPECT_THAT(t.status().message(), HasSubstr("bos_token must be a string"));

  folder.Write("tokenizer_config.json", R"({"chat_template": )");
  t = ChatTemplate::Load(folder.path(), "");
  EXPECT_THAT(t.status().message(), HasSubstr("invalid JSON"));

  folder.Write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  t = ChatTemplate::Load(folder.path(), folder.path() + "/missing.jinja");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("missing.jinja"));
}

TEST(ChatTemplateTest, AHostileTemplateIsBounded) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> t =
      ChatTemplate::Create({{"default",
                             "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}"
                             "{% endfor %}"}},
                           {}, "test");
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<std::string> text = (*t)->Render(Chat({{"user", "x"}}));
  EXPECT_EQ(text.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace prefixd
