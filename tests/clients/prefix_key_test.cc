// The x-prefix-key rule (clients/cpp/prefix_key.h): requests that will share a prefix get
// one key, others get different ones, and the key is the documented hash (docs/scale-out.md),
// so any client can compute it. tests/clients/python_client_test.py checks the Python
// client against the same figures.
#include "clients/cpp/prefix_key.h"

#include <string>

#include "gtest/gtest.h"

namespace prefixd {
namespace {

v1::GenerateRequest Chat(std::initializer_list<std::pair<std::string, std::string>> messages) {
  v1::GenerateRequest r;
  for (const auto& [role, text] : messages) {
    v1::ChatMessage* m = r.mutable_chat()->add_messages();
    m->set_role(role);
    m->set_text(text);
  }
  return r;
}

TEST(PrefixKeyTest, IsTheDocumentedHash) {
  v1::GenerateRequest text;
  text.set_text("hello");
  EXPECT_EQ(PrefixKey(text), "658e980f05195ead");  // XXH64("\ntext\nhello")
  EXPECT_EQ(PrefixKey(Chat({{"system", "Be brief."}, {"user", "Hi"}})),
            "84afb6d64c6b1260");  // XXH64("\nchat\nsystem\nBe brief.\n")
  v1::GenerateRequest ids;
  ids.set_shared_namespace("team");
  for (int id : {1, 2, 3}) ids.mutable_token_ids()->add_ids(id);
  EXPECT_EQ(PrefixKey(ids), "d126b25cbd6b2030");  // XXH64("team\nids\n1,2,3,")
}

TEST(PrefixKeyTest, ChatsOverOneSystemPromptShareAKey) {
  const std::string key =
      PrefixKey(Chat({{"system", "You are a bakery's assistant."}, {"user", "Do you sell rye?"}}));
  EXPECT_EQ(key, PrefixKey(Chat({{"system", "You are a bakery's assistant."},
                                 {"user", "When do you open?"},
                                 {"assistant", "At seven."},
                                 {"user", "And on Sundays?"}})));
  EXPECT_NE(key, PrefixKey(Chat({{"system", "You are a florist's assistant."},
                                 {"user", "Do you sell rye?"}})));
  // No system message: the first message is what a second turn shares.
  EXPECT_EQ(
      PrefixKey(Chat({{"user", "Tell me a story."}})),
      PrefixKey(Chat(
          {{"user", "Tell me a story."}, {"assistant", "Once upon a time"}, {"user", "Go on."}})));
  // Tools render into the shared part of most templates.
  v1::GenerateRequest tools = Chat({{"system", "You are a bakery's assistant."}});
  tools.mutable_chat()->set_tools_json(R"([{"type": "function"}])");
  EXPECT_NE(key, PrefixKey(tools));
}

TEST(PrefixKeyTest, RawPromptsKeyOnTheirBeginning) {
  v1::GenerateRequest a, b;
  a.set_text(std::string(kPrefixKeyTextBytes, 'x') + "first question");
  b.set_text(std::string(kPrefixKeyTextBytes, 'x') + "second question");
  EXPECT_EQ(PrefixKey(a), PrefixKey(b));
  b.set_text("y" + b.text());
  EXPECT_NE(PrefixKey(a), PrefixKey(b));

  v1::GenerateRequest c, d;
  for (int i = 0; i < kPrefixKeyTokenIds; ++i) {
    c.mutable_token_ids()->add_ids(i);
    d.mutable_token_ids()->add_ids(i);
  }
  c.mutable_token_ids()->add_ids(1);
  d.mutable_token_ids()->add_ids(2);
  EXPECT_EQ(PrefixKey(c), PrefixKey(d));
  d.mutable_token_ids()->set_ids(0, 7);
  EXPECT_NE(PrefixKey(c), PrefixKey(d));
}

TEST(PrefixKeyTest, NamespacesAndPinsFollowTheRequests) {
  v1::GenerateRequest chat = Chat({{"system", "Be brief."}, {"user", "Hi"}});
  v1::PinRequest pin;
  *pin.mutable_chat()->add_messages() = chat.chat().messages(0);
  EXPECT_EQ(PrefixKey(pin), PrefixKey(chat));  // a Pin lands where its chats go
  chat.set_shared_namespace("team");
  EXPECT_NE(PrefixKey(pin), PrefixKey(chat));
  EXPECT_EQ(PrefixKey(v1::GenerateRequest()), "");  // no prompt, no key
}

}  // namespace
}  // namespace prefixd
