// Chat prompts as a client sees them: conversations rendered by the model's own template on a
// real prefixd, the Tokenize/Detokenize RPCs, multi-turn cache hits, and the errors.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "prefixd/v1/generation.grpc.pb.h"
#include "tests/service/server_process.h"

namespace prefixd {
namespace {

using ::prefixd::testing::ServerProcess;
using ::testing::HasSubstr;

constexpr int32_t kBeginOfText = 504;  // the test model's <|begin_of_text|>
constexpr int kBlockSize = 16;

class ChatClient {
 public:
  explicit ChatClient(const std::string& target)
      : stub_(v1::Generation::NewStub(
            grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))) {}

  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::TokenizeResponse response;
    grpc::Status s = stub_->Tokenize(&ctx, request, &response);
    if (!s.ok())
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    return response;
  }

  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::DetokenizeRequest request;
    request.mutable_token_ids()->Assign(ids.begin(), ids.end());
    request.set_skip_special_tokens(true);
    v1::DetokenizeResponse response;
    grpc::Status s = stub_->Detokenize(&ctx, request, &response);
    if (!s.ok())
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    return response.text();
  }

  struct Reply {
    grpc::Status status;
    std::vector<int32_t> ids;
    std::string text;
    v1::Usage usage;
  };
  Reply Generate(const v1::GenerateRequest& request) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    Reply r;
    auto reader = stub_->Generate(&ctx, request);
    v1::GenerateResponse m;
    while (reader->Read(&m)) {
      r.ids.insert(r.ids.end(), m.token_ids().begin(), m.token_ids().end());
      r.text += m.text();
      if (m.has_usage()) r.usage = m.usage();
    }
    r.status = reader->Finish();
    return r;
  }

 private:
  std::unique_ptr<v1::Generation::Stub> stub_;
};

void Add(v1::Conversation& chat, const std::string& role, const std::string& text) {
  v1::ChatMessage* m = chat.add_messages();
  m->set_role(role);
  m->set_text(text);
}

v1::GenerateRequest ChatRequest(const v1::Conversation& chat, int max_tokens) {
  v1::GenerateRequest r;
  *r.mutable_chat() = chat;
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  return r;
}

size_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path =
      ::testing::TempDir() + "chat_test_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(ChatTest, RendersTheModelsTemplateAndAddsNoSecondBos) {
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  ChatClient client((*server)->target());

  v1::TokenizeRequest request;
  Add(*request.mutable_chat(), "system", "You are a helpful assistant.");
  Add(*request.mutable_chat(), "user", "Tell me about the old library.");
  absl::StatusOr<v1::TokenizeResponse> chat = client.Tokenize(request);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->prompt_text(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
            "Tell me about the old library.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const std::vector<int32_t> ids(chat->token_ids().begin(), chat->token_ids().end());
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], kBeginOfText);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), kBeginOfText), 1) << "BOS twice";

  // The same text as a plain text prompt gets the tokenizer's BOS on top of the template's:
  // what a client that renders templates itself and sends text would get wrong.
  v1::TokenizeRequest text;
  text.set_text(chat->prompt_text());
  absl::StatusOr<v1::TokenizeResponse> plain = client.Tokenize(text);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_EQ(plain->token_ids_size(), static_cast<int>(ids.size()) + 1);
  EXPECT_EQ(plain->token_ids(0), kBeginOfText);
  EXPECT_EQ(plain->token_ids(1), kBeginOfText);
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), plain->token_ids().begin() + 1));

  absl::StatusOr<std::string> back = client.Detokenize(ids);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back,
            "system\n\nYou are a helpful assistant.user\n\nTell me about the old "
            "library.assistant\n\n");
  EXPECT_EQ(client.Detokenize({1 << 20}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*server)->Stop(), 0);
}

TEST(ChatTest, EachTurnIsServedFromTheCacheUpToThePreviousReply) {
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  ChatClient client((*server)->target());

  v1::Conversation chat;
  Add(chat, "system",
      "You are the librarian of the old library by the river. You answer questions about its "
      "books, its readers and its long history, always politely and in a few sentences.");
  Add(chat, "user", "Which book is read the most?");
  std::vector<int32_t> previous;  // the previous turn's prompt ++ its reply
  int replies_retokenized_differently = 0;
  size_t previous_prompt = 0;
  int turns_hitting_reply_blocks = 0;
  for (int turn = 0; turn < 4; ++turn) {
    v1::TokenizeRequest tokenize;
    *tokenize.mutable_chat() = chat;
    absl::StatusOr<v1::TokenizeResponse> prompt = client.Tokenize(tokenize);
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    const std::vector<int32_t> ids(prompt->token_ids().begin(), prompt->token_ids().end());

    // Sampled, so that replies hold what BPE would not choose (the test model's greedy
    // replies are runs of newlines).
    v1::GenerateRequest request = ChatRequest(chat, 40);
    request.mutable_sampling()->set_temperature(1);
    request.mutable_sampling()->set_seed(turn + 1);
    request.mutable_sampling()->set_ignore_eos(true);
    const ChatClient::Reply reply = client.Generate(request);
    ASSERT_TRUE(reply.status.ok()) << reply.status.error_message();
    EXPECT_EQ(reply.usage.prompt_tokens(), static_cast<int>(ids.size()));
    if (turn > 0) {
      // Every full block the previous turn computed, its reply included, is found again —
      // as far as re-tokenizing the reply's text reproduces the ids the model generated.
      const size_t common = CommonPrefix(previous, ids);
      // The server runs the ids the model generated for the reply (the reply memory), so the
      // new prompt repeats all of the previous turn; its last token has no KV yet.
      EXPECT_EQ(common, previous.size()) << "turn " << turn;
      const int full_blocks = static_cast<int>((previous.size() - 1) / kBlockSize * kBlockSize);
      EXPECT_GE(reply.usage.cached_tokens(), full_blocks - kBlockSize) << "turn " << turn;
      EXPECT_GE(reply.usage.cached_tokens(), previous_prompt / kBlockSize * kBlockSize - kBlockSize)
          << "turn " << turn;
      if (common >= previous_prompt + 2 * kBlockSize) {
        // The reply filled a block that this turn shares: it must come from the cache.
        ++turns_hitting_reply_blocks;
        EXPECT_GT(reply.usage.cached_tokens(), static_cast<int>(previous_prompt))
            << "turn " << turn << ": the previous reply's blocks were not cached";
      }
    }
    v1::TokenizeRequest text_only;
    text_only.set_text(reply.text);
    absl::StatusOr<v1::TokenizeResponse> retokenized = client.Tokenize(text_only);
    ASSERT_TRUE(retokenized.ok()) << retokenized.status();
    if (!std::equal(reply.ids.begin(), reply.ids.end(), retokenized->token_ids().begin() + 1,
                    retokenized->token_ids().end())) {
      ++replies_retokenized_differently;
    }
    previous = ids;
    previous_prompt = ids.size();
    previous.insert(previous.end(), reply.ids.begin(), reply.ids.end());
    Add(chat, "assistant", reply.text);
    Add(chat, "user", absl::StrCat("And what about question number ", turn + 2, "?"));
  }
  EXPECT_GT(turns_hitting_reply_blocks, 0);
  // The test means something only if some replies are not what BPE gives for their text.
  EXPECT_GT(replies_retokenized_differently, 0);
  EXPECT_EQ((*server)->Stop(), 0);
}

TEST(ChatTest, BadConversationsGetPreciseErrors) {
  const std::string strict =
      WriteTemp("strict.jinja",
                "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
                "{{ raise_exception('System role not supported') }}{% endif %}"
                "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}");
  auto server = ServerProcess::Start({"--chat_template=" + strict});
  ASSERT_TRUE(server.ok()) << server.status();
  ChatClient client((*server)->target());

  auto tokenize_error = [&](const v1::Conversation& chat) {
    v1::TokenizeRequest request;
    *request.mutable_chat() = chat;
    return client.Tokenize(request).status();
  };
  v1::Conversation ok;
  Add(ok, "user", "hello");
  EXPECT_TRUE(tokenize_error(ok).ok()) << tokenize_error(ok);

  v1::Conversation system = ok;
  Add(system, "system", "x");
  absl::Status s = tokenize_error(system);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "System role not supported");
  const ChatClient::Reply refused = client.Generate(ChatRequest(system, 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused.status.error_message(), "System role not supported");

  v1::Conversation calls = ok;
  calls.mutable_messages(0)->set_tool_calls_json("{not json");
  s = tokenize_error(calls);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("chat.messages[0].tool_calls_json is not valid JSON"));

  calls.mutable_messages(0)->set_tool_calls_json(R"({"id": 1})");
  EXPECT_THAT(tokenize_error(calls).message(), HasSubstr("must be a JSON array"));

  v1::Conversation extra = ok;
  extra.mutable_messages(0)->set_extra_json(R"({"role": "system"})");
  EXPECT_THAT(tokenize_error(extra).message(), HasSubstr("may not set \"role\""));

  v1::Conversation no_role;
  no_role.add_messages()->set_text("x");
  EXPECT_THAT(tokenize_error(no_role).message(), HasSubstr("chat.messages[0].role is empty"));

  EXPECT_THAT(tokenize_error(v1::Conversation()).message(), HasSubstr("messages is empty"));

  v1::Conversation kwargs = ok;
  kwargs.set_template_kwargs_json("[1]");
  EXPECT_THAT(tokenize_error(kwargs).message(), HasSubstr("must be a JSON object"));

  v1::Conversation tools = ok;
  tools.set_tools_json(R"({"type": "function"})");
  EXPECT_THAT(tokenize_error(tools).message(), HasSubstr("tools_json must be a JSON array"));

  v1::Conversation both = ok;
  both.set_continue_final_message(true);
  both.set_add_generation_prompt(true);
  EXPECT_EQ(tokenize_error(both).code(), absl::StatusCode::kInvalidArgument);

  // A template bug that the conversation triggers is the caller's error, and says where.
  const std::string buggy = WriteTemp("buggy.jinja", "{{ messages[0]['content'].nope() }}");
  auto buggy_server = ServerProcess::Start({"--chat_template=" + buggy});
  ASSERT_TRUE(buggy_server.ok()) << buggy_server.status();
  ChatClient buggy_client((*buggy_server)->target());
  v1::TokenizeRequest request;
  *request.mutable_chat() = ok;
  s = buggy_client.Tokenize(request).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("chat template"));
  EXPECT_EQ((*buggy_server)->Stop(), 0);
  EXPECT_EQ((*server)->Stop(), 0);
  std::filesystem::remove(strict);
  std::filesystem::remove(buggy);
}

TEST(ChatTest, AModelWithoutATemplateNamesTheFlag) {
  // The test model's files without its tokenizer_config.json.
  const std::string dir = ::testing::TempDir() + "chat_test_model_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    std::filesystem::copy_file(std::string(PREFIXD_TEST_MODEL_DIR) + "/" + f, dir + "/" + f,
                               std::filesystem::copy_options::overwrite_existing);
  }
  auto server = ServerProcess::Start({"--model=" + dir});
  ASSERT_TRUE(server.ok()) << server.status();
  ChatClient client((*server)->target());
  v1::GenerateRequest request;
  Add(*request.mutable_chat(), "user", "hello");
  const ChatClient::Reply r = client.Generate(request);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(r.status.error_message(), HasSubstr("--chat_template"));
  EXPECT_EQ((*server)->Stop(), 0);
  std::filesystem::remove_all(dir);
}

TEST(ChatTest, ATemplateThatDoesNotParseStopsTheServerNamingTheFile) {
  const std::string bad = WriteTemp("bad.jinja", "{% for m in messages %}\n  {{ m.content }\n");
  auto server = ServerProcess::Start({"--chat_template=" + bad});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr(bad));
  EXPECT_THAT(server.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(server.status().message(), HasSubstr("column"));
  std::filesystem::remove(bad);
}

}  // namespace
}  // namespace prefixd
