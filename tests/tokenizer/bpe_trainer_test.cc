#include "tools/bpe_trainer.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer.h"
#include "tools/test_corpus.h"

namespace prefixd {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

const std::vector<std::string> kSpecialTokens = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",     "<|start_header_id|>",
    "<|end_header_id|>", "<|reserved_0|>",  "<|reserved_1|>", "<|reserved_2|>"};

class TrainedTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> json =
        TrainByteLevelBpeTokenizerJson(TestCorpus(), 512, kSpecialTokens);
    ASSERT_TRUE(json.ok()) << json.status();
    json_ = new std::string(*std::move(json));
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(*json_, "trained.json");
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = t->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete json_;
  }
  static const Tokenizer& t() { return *tokenizer_; }

  static std::string* json_;
  static Tokenizer* tokenizer_;
};
std::string* TrainedTokenizerTest::json_ = nullptr;
Tokenizer* TrainedTokenizerTest::tokenizer_ = nullptr;

TEST_F(TrainedTokenizerTest, HasTheRequestedLayout) {
  EXPECT_EQ(t().vocab_size(), 512);
  const nlohmann::json json = nlohmann::json::parse(*json_);
  EXPECT_THAT(json["model"]["merges"], SizeIs(512 - 256 - 8));
  // Bytes first, in GPT-2's order.
  EXPECT_EQ(t().TokenToId("!"), 0);
  EXPECT_EQ(t().TokenToId("Ġ"), 220);
  EXPECT_EQ(t().TokenToId("Ċ"), 198);
  // Special tokens last.
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(t().TokenToId(kSpecialTokens[i]), 504 + i);
    EXPECT_TRUE(t().IsSpecial(504 + i));
  }
  EXPECT_FALSE(t().IsSpecial(503));
}

TEST_F(TrainedTokenizerTest, IsDeterministic) {
  absl::StatusOr<std::string> again =
      TrainByteLevelBpeTokenizerJson(TestCorpus(), 512, kSpecialTokens);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again == *json_) << "two runs wrote different files";
}

TEST_F(TrainedTokenizerTest, CommonWordsAreSingleTokens) {
  for (const char* word : {" the", " and", " of", " to", " a", " in", " is", " that", " it",
                           " cache", " river", " library"}) {
    EXPECT_THAT(t().Encode(word, false), SizeIs(1)) << "'" << word << "'";
  }
  // The most frequent pair of the corpus is learned first: (Ġ, t).
  EXPECT_EQ(t().IdToToken(256), "Ġt");
}

TEST_F(TrainedTokenizerTest, AddsBosAndRoundTrips) {
  EXPECT_EQ(t().bos_token_id(), 504);
  const std::vector<TokenId> ids = t().Encode("The river", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 504);
  EXPECT_EQ(t().Decode(ids, true), "The river");
  const std::string corpus(TestCorpus());
  EXPECT_EQ(t().Decode(t().Encode(corpus, false), false), corpus);
  const std::string odd = "Zebras? 日本語, 🦀 and \xff\xfe bytes<|eot_id|>";
  EXPECT_EQ(t().Decode(t().Encode(odd, false), false), odd);
  // Chat markers are single tokens.
  std::vector<TokenId> expected = {507};
  for (TokenId id : t().Encode("user", false)) expected.push_back(id);
  expected.push_back(508);
  EXPECT_EQ(t().Encode("<|start_header_id|>user<|end_header_id|>", false), expected);
}

TEST_F(TrainedTokenizerTest, EncodesAMegabyteQuickly) {
  std::string text;
  while (text.size() < (1 << 20)) text += TestCorpus();
  const auto start = std::chrono::steady_clock::now();
  const std::vector<TokenId> ids = t().Encode(text, false);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Recorded, not asserted: timings vary with the machine and the sanitizers. Measured:
  // 0.04-0.07 s (15-30 MB/s) in the RelWithDebInfo build, 0.2 s under ASan+UBSan.
  std::printf("encoded %zu bytes into %zu tokens in %.3f s (%.1f MB/s)\n", text.size(), ids.size(),
              seconds, text.size() / seconds / 1e6);
  RecordProperty("encode_seconds", std::to_string(seconds));
  EXPECT_EQ(t().Decode(ids, false), text);
}

TEST(BpeTrainerTest, SpecialTokensAreOptional) {
  absl::StatusOr<std::string> json = TrainByteLevelBpeTokenizerJson(TestCorpus(), 300, {});
  ASSERT_TRUE(json.ok()) << json.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(*json, "trained.json");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 300);
  EXPECT_EQ((*t)->bos_token_id(), std::nullopt);
  EXPECT_EQ((*t)->Encode("", true).size(), 0u);
}

TEST(BpeTrainerTest, RejectsBadArguments) {
  EXPECT_THAT(TrainByteLevelBpeTokenizerJson(TestCorpus(), 260, kSpecialTokens).status().message(),
              HasSubstr("vocab_size 260 leaves no room for the 256 byte tokens and 8 special"));
  EXPECT_THAT(TrainByteLevelBpeTokenizerJson(TestCorpus(), 512, {"<a>", "<a>"}).status().message(),
              HasSubstr("special token '<a>' is listed twice"));
  EXPECT_THAT(TrainByteLevelBpeTokenizerJson(TestCorpus(), 512, {""}).status().message(),
              HasSubstr("a special token is empty"));
  EXPECT_THAT(TrainByteLevelBpeTokenizerJson(TestCorpus(), 512, {"<\xff>"}).status().message(),
              HasSubstr("special token '<\\xff>' is not valid UTF-8"));
  EXPECT_THAT(TrainByteLevelBpeTokenizerJson(TestCorpus(), 512, {"a"}).status().message(),
              HasSubstr("special token 'a' is also a learned token"));
  EXPECT_THAT(TrainByteLevelBpeTokenizerJson("abab cdcd", 300, {}).status().message(),
              HasSubstr("runs out of pairs to merge"));
}

}  // namespace
}  // namespace prefixd
