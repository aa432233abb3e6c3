// prefix-bench's multi-turn workload: presets, validation, and seeded messages.
#include "clients/bench/multi_turn_workload.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd::bench {
namespace {

using ::testing::HasSubstr;

int Words(const std::string& text) {
  if (text.empty()) return 0;
  return static_cast<int>(std::vector<std::string>(absl::StrSplit(text, ' ')).size());
}

TEST(MultiTurnPresetTest, KnownPresets) {
  absl::StatusOr<MultiTurnShape> small = MultiTurnPreset("cpu-small");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->conversations, 16);
  EXPECT_EQ(small->turns, 6);
  EXPECT_EQ(small->question_len, 32);
  EXPECT_EQ(small->output_len, 32);
  EXPECT_EQ(small->num_requests(), 96);
  EXPECT_TRUE(MultiTurnPreset("default").ok());
  EXPECT_TRUE(MultiTurnPreset("cpu-tiny").ok());
  EXPECT_THAT(MultiTurnPreset("huge").status().message(), HasSubstr("cpu-small"));
}

TEST(MultiTurnPresetTest, Validation) {
  MultiTurnShape shape;
  EXPECT_TRUE(ValidateMultiTurnShape(shape).ok());
  shape.system_prompt_len = 0;
  EXPECT_TRUE(ValidateMultiTurnShape(shape).ok()) << "no system message is allowed";
  shape.turns = 0;
  EXPECT_THAT(ValidateMultiTurnShape(shape).message(), HasSubstr("--turns"));
  shape = MultiTurnShape();
  shape.conversations = 0;
  EXPECT_THAT(ValidateMultiTurnShape(shape).message(), HasSubstr("--conversations"));
  shape = MultiTurnShape();
  shape.system_prompt_len = -1;
  EXPECT_FALSE(ValidateMultiTurnShape(shape).ok());
}

TEST(MultiTurnWorkloadTest, WordsForTokens) {
  EXPECT_EQ(WordsForTokens(32, 1.0), 32);
  EXPECT_EQ(WordsForTokens(32, 1.6), 20);
  EXPECT_EQ(WordsForTokens(1, 3.0), 1) << "at least one word";
  EXPECT_EQ(WordsForTokens(0, 1.0), 0);
  EXPECT_EQ(WordsForTokens(10, 0.0), 10) << "an unmeasured ratio counts as 1";
}

TEST(MultiTurnWorkloadTest, SeededMessagesOfTheRightSize) {
  MultiTurnShape shape{
      .conversations = 3, .turns = 4, .system_prompt_len = 40, .question_len = 20, .output_len = 8};
  const MultiTurnWorkload a = GenerateMultiTurnWorkload(shape, 7, 2.0);
  EXPECT_EQ(Words(a.system_prompt), 20);
  ASSERT_EQ(a.questions.size(), 3u);
  for (const auto& conversation : a.questions) {
    ASSERT_EQ(conversation.size(), 4u);
    for (const std::string& q : conversation) EXPECT_EQ(Words(q), 10);
  }
  EXPECT_NE(a.questions[0][0], a.questions[1][0]);
  EXPECT_NE(a.questions[0][0], a.questions[0][1]);

  const MultiTurnWorkload same = GenerateMultiTurnWorkload(shape, 7, 2.0);
  EXPECT_EQ(same.questions, a.questions);
  EXPECT_EQ(same.system_prompt, a.system_prompt);
  EXPECT_NE(GenerateMultiTurnWorkload(shape, 8, 2.0).questions, a.questions);

  // More conversations or turns do not change the messages already there.
  shape.conversations = 5;
  shape.turns = 6;
  const MultiTurnWorkload bigger = GenerateMultiTurnWorkload(shape, 7, 2.0);
  EXPECT_EQ(bigger.questions[2][3], a.questions[2][3]);

  shape.system_prompt_len = 0;
  EXPECT_EQ(GenerateMultiTurnWorkload(shape, 7, 2.0).system_prompt, "");
}

TEST(MultiTurnWorkloadTest, CalibrationTextGrowsByAppending) {
  const std::string short_text = CalibrationText(10);
  const std::string long_text = CalibrationText(20);
  EXPECT_EQ(Words(short_text), 10);
  EXPECT_TRUE(absl::StartsWith(long_text, short_text + " "));
}

}  // namespace
}  // namespace prefixd::bench
