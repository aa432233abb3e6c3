#include "service/reply_memory.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd {
namespace {

using ::testing::ElementsAreArray;

std::unique_ptr<Tokenizer> LoadTokenizer() {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::FromFile(std::string(PREFIXD_TESTDATA_DIR) + "/llama3_style_tokenizer.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

// `text` one byte-level token per character: a spelling no BPE would choose.
std::vector<TokenId> Spelled(const Tokenizer& tok, const std::string& text) {
  std::vector<TokenId> ids;
  for (char c : text) {
    // Byte-level BPE spells a space as U+0120.
    std::optional<TokenId> id =
        tok.TokenToId(c == ' ' ? std::string("\xC4\xA0") : std::string(1, c));
    EXPECT_TRUE(id.has_value()) << c;
    ids.push_back(*id);
  }
  return ids;
}

std::vector<TokenId> Concat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const CacheNamespace kAlice{"alice", "m", ""};
const CacheNamespace kBob{"bob", "m", ""};

TEST(ReplyMemoryTest, TheNextTurnRunsTheGeneratedIdsNotARetokenization) {
  std::unique_ptr<Tokenizer> tok = LoadTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string before = "<|begin_of_text|>user: the river\nassistant: ";
  const std::string reply = "the old library";
  const std::string text = before + reply + "<|eot_id|>user: and then?\nassistant: ";
  ReplyMemory::Turn turn;
  turn.prompt_ids = tok->Encode(before, false);
  turn.reply_ids = Spelled(*tok, reply);
  ASSERT_NE(tok->Encode(reply, false), turn.reply_ids) << "the spelling must not be canonical";

  std::optional<std::vector<TokenId>> ids = AssembleWithReply(*tok, turn, before, text);
  ASSERT_TRUE(ids.has_value());
  EXPECT_THAT(*ids, ElementsAreArray(
                        Concat(Concat(turn.prompt_ids, turn.reply_ids),
                               tok->Encode(text.substr(before.size() + reply.size()), false))));
  EXPECT_EQ(tok->Decode(*ids, false), text);
}

TEST(ReplyMemoryTest, OnlyTheTokensWhoseTextTheMessageRepeatsAreReused) {
  std::unique_ptr<Tokenizer> tok = LoadTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string before = "user: hi\nassistant:";
  ReplyMemory::Turn turn;
  turn.prompt_ids = tok->Encode(before, false);
  // The template trimmed the reply's trailing spaces, and the model's last token was EOT.
  turn.reply_ids = Concat(Spelled(*tok, " ab  "), {*tok->TokenToId("<|eot_id|>")});
  const std::string text = before + " ab<|eot_id|>user: more\nassistant:";
  std::optional<std::vector<TokenId>> ids = AssembleWithReply(*tok, turn, before, text);
  ASSERT_TRUE(ids.has_value());
  const std::vector<TokenId> kept(turn.reply_ids.begin(), turn.reply_ids.begin() + 3);
  EXPECT_THAT(*ids,
              ElementsAreArray(Concat(Concat(turn.prompt_ids, kept),
                                      tok->Encode("<|eot_id|>user: more\nassistant:", false))));
  EXPECT_EQ(tok->Decode(*ids, false), text);

  // A message that does not start like the reply reuses nothing.
  EXPECT_FALSE(AssembleWithReply(*tok, turn, before, before + "xyz").has_value());
  // Nor does a text that does not start with the remembered prompt.
  EXPECT_FALSE(AssembleWithReply(*tok, turn, before, "user: ho\nassistant: ab").has_value());
}

// A byte that is not UTF-8 reached the client as U+FFFD, and comes back so.
TEST(ReplyMemoryTest, BytesTheClientSawAsReplacementCharactersStillMatch) {
  std::unique_ptr<Tokenizer> tok = LoadTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string before = "user: hi\nassistant:";
  ReplyMemory::Turn turn;
  turn.prompt_ids = tok->Encode(before, false);
  // Byte-level BPE spells byte 0xC3 as U+00C3: alone, before "a", it is not UTF-8.
  turn.reply_ids = Concat({*tok->TokenToId("\xC3\x83")}, Spelled(*tok, "ab"));
  const std::string text = before +
                           "\xEF\xBF\xBD"
                           "ab<|eot_id|>";
  std::optional<std::vector<TokenId>> ids = AssembleWithReply(*tok, turn, before, text);
  ASSERT_TRUE(ids.has_value());
  EXPECT_THAT(*ids, ElementsAreArray(Concat(Concat(turn.prompt_ids, turn.reply_ids),
                                            {*tok->TokenToId("<|eot_id|>")})));
}

// Special tokens reached the client as nothing: the ids the model generated keep them.
TEST(ReplyMemoryTest, SpecialTokensInsideAReplyAreKept) {
  std::unique_ptr<Tokenizer> tok = LoadTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string before = "user: hi\nassistant:";
  ReplyMemory::Turn turn;
  turn.prompt_ids = tok->Encode(before, false);
  turn.reply_ids =
      Concat(Concat(Spelled(*tok, "a"), {*tok->TokenToId("<|end_of_text|>")}), Spelled(*tok, "b"));
  const std::string text = before + "ab<|eot_id|>";
  std::optional<std::vector<TokenId>> ids = AssembleWithReply(*tok, turn, before, text);
  ASSERT_TRUE(ids.has_value());
  EXPECT_THAT(*ids, ElementsAreArray(Concat(Concat(turn.prompt_ids, turn.reply_ids),
                                            {*tok->TokenToId("<|eot_id|>")})));
}

TEST(ReplyMemoryTest, KeysAreExactPerNamespaceAndBoundedByBytes) {
  ReplyMemory memory(/*max_bytes=*/4096);
  ReplyMemory::Turn turn{{1, 2, 3}, {4, 5}};
  memory.Remember(kAlice, "prompt", turn);
  ASSERT_NE(memory.Find(kAlice, "prompt"), nullptr);
  EXPECT_THAT(memory.Find(kAlice, "prompt")->reply_ids, ElementsAreArray({4, 5}));
  EXPECT_EQ(memory.Find(kBob, "prompt"), nullptr) << "another tenant's reply";
  EXPECT_EQ(memory.Find(kAlice, "prompt "), nullptr);
  EXPECT_EQ(memory.Find(kAlice, "promp"), nullptr);

  for (int i = 0; i < 200; ++i) memory.Remember(kAlice, "p" + std::to_string(i), turn);
  EXPECT_LE(memory.bytes(), 4096u);
  EXPECT_GT(memory.entries(), 0u);
  EXPECT_EQ(memory.Find(kAlice, "prompt"), nullptr) << "the oldest entry is evicted first";
  EXPECT_NE(memory.Find(kAlice, "p199"), nullptr);

  ReplyMemory off(0);
  off.Remember(kAlice, "prompt", turn);
  EXPECT_EQ(off.Find(kAlice, "prompt"), nullptr);
}

}  // namespace
}  // namespace prefixd
