// prefix-bench's multi-turn ideal and report, from hand-made turns (no server).
#include "clients/bench/multi_turn_report.h"

#include <numeric>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd::bench {
namespace {

using ::testing::HasSubstr;

constexpr int kBlock = 16;

std::vector<int32_t> Range(int32_t from, int n) {
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), from);
  return ids;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(MultiTurnIdealTest, CommonPrefixAndFullBlocks) {
  EXPECT_EQ(CommonPrefix({1, 2, 3}, {1, 2, 4, 5}), 2);
  EXPECT_EQ(CommonPrefix({}, {1}), 0);
  EXPECT_EQ(CommonPrefix({1, 2}, {1, 2}), 2);
  EXPECT_EQ(FullBlockTokens(47, 16), 32);
  EXPECT_EQ(FullBlockTokens(48, 16), 48);
  EXPECT_EQ(FullBlockTokens(15, 16), 0);
  EXPECT_EQ(FullBlockTokens(-1, 16), 0);
}

TEST(MultiTurnIdealTest, ReplyReTokenizedIdentically) {
  const std::vector<int32_t> prev_prompt = Range(100, 27);
  const std::vector<int32_t> generated = Range(200, 13);
  // The next prompt: everything before, the end of the reply's message, a new question.
  const std::vector<int32_t> prompt = Concat(Concat(prev_prompt, generated), Range(300, 12));
  const TurnIdeal ideal = ComputeTurnIdeal(prev_prompt, generated, prompt, kBlock);
  EXPECT_TRUE(ideal.retokenized_identically);
  EXPECT_EQ(ideal.common, 40);
  EXPECT_EQ(ideal.reusable, 39) << "the last generated token never has KV";
  EXPECT_EQ(ideal.ideal_cached, 32);
  EXPECT_EQ(ideal.ideal_exact_cached, 32);
}

TEST(MultiTurnIdealTest, TheLastGeneratedTokenCostsABlockOnABoundary) {
  const std::vector<int32_t> prev_prompt = Range(100, 20);
  const std::vector<int32_t> generated = Range(200, 12);  // 32 tokens in all
  const std::vector<int32_t> prompt = Concat(Concat(prev_prompt, generated), Range(300, 5));
  const TurnIdeal ideal = ComputeTurnIdeal(prev_prompt, generated, prompt, kBlock);
  EXPECT_TRUE(ideal.retokenized_identically);
  EXPECT_EQ(ideal.ideal_cached, 16);
  EXPECT_EQ(ideal.ideal_exact_cached, 16);
}

TEST(MultiTurnIdealTest, ReplyReTokenizedDifferently) {
  const std::vector<int32_t> prev_prompt = Range(100, 20);
  const std::vector<int32_t> generated = Range(200, 30);
  std::vector<int32_t> retokenized = generated;
  retokenized[5] = 999;  // e.g. two generated tokens merged into one
  retokenized.erase(retokenized.begin() + 6);
  const std::vector<int32_t> prompt = Concat(Concat(prev_prompt, retokenized), Range(300, 8));
  const TurnIdeal ideal = ComputeTurnIdeal(prev_prompt, generated, prompt, kBlock);
  EXPECT_FALSE(ideal.retokenized_identically);
  EXPECT_EQ(ideal.common, 25);
  EXPECT_EQ(ideal.ideal_cached, 16);
  EXPECT_EQ(ideal.ideal_exact_cached, 48);
}

TEST(MultiTurnIdealTest, APromptThatRendersTheHistoryDifferently) {
  // E.g. a template that drops earlier reasoning: the prompts part ways before the reply.
  const std::vector<int32_t> prev_prompt = Range(100, 40);
  const std::vector<int32_t> generated = Range(200, 10);
  std::vector<int32_t> prompt = Concat(Concat(prev_prompt, generated), Range(300, 8));
  prompt[20] = 7;
  const TurnIdeal ideal = ComputeTurnIdeal(prev_prompt, generated, prompt, kBlock);
  EXPECT_FALSE(ideal.retokenized_identically);
  EXPECT_EQ(ideal.common, 20);
  EXPECT_EQ(ideal.ideal_cached, 16);
}

TurnRecord Turn(int conversation, int turn, int64_t start_order, std::vector<int32_t> prompt,
                std::vector<int32_t> generated, int cached) {
  TurnRecord r;
  r.conversation = conversation;
  r.turn = turn;
  r.start_order = start_order;
  r.prompt_ids = std::move(prompt);
  r.generated_ids = std::move(generated);
  RequestRecord& q = r.request;
  q.code = absl::StatusCode::kOk;
  q.expected_output_len = static_cast<int>(r.generated_ids.size());
  q.start_s = 0.1 * static_cast<double>(start_order);
  q.first_token_s = q.start_s + 0.010 * (turn + 1);
  q.end_s = q.first_token_s + 0.05;
  q.streamed_tokens = q.completion_tokens = static_cast<int>(r.generated_ids.size());
  q.final_messages = 1;
  q.finish_reason = v1::FINISH_REASON_LENGTH;
  q.prompt_tokens = static_cast<int>(r.prompt_ids.size());
  q.cached_tokens = cached;
  return r;
}

// Two conversations of two turns sharing a 20-token system prefix; conversation 1's reply
// re-tokenizes differently, conversation 0 finds less than it could in turn 2.
std::vector<TurnRecord> TwoConversations() {
  const std::vector<int32_t> system = Range(1, 20);
  const std::vector<int32_t> p00 = Concat(system, Range(100, 10));  // 30 tokens
  const std::vector<int32_t> p10 = Concat(system, Range(500, 10));
  const std::vector<int32_t> g00 = Range(200, 20);  // 50 tokens with the prompt
  const std::vector<int32_t> g10 = Range(600, 20);
  const std::vector<int32_t> p01 = Concat(Concat(p00, g00), Range(300, 10));  // 60
  std::vector<int32_t> g10_retokenized = g10;
  g10_retokenized[3] = 9999;
  const std::vector<int32_t> p11 = Concat(Concat(p10, g10_retokenized), Range(700, 10));
  return {
      Turn(0, 0, 0, p00, g00, 0),
      Turn(0, 1, 2, p01, Range(400, 8), 16),  // ideal: full blocks of 49 = 48
      Turn(1, 0, 1, p10, g10, 16),            // shares 20 with p00: ideal 16
      Turn(1, 1, 3, p11, Range(800, 8), 32),  // common 33: ideal 32, exact 48
  };
}

TEST(MultiTurnReportTest, PerTurnIdealsMismatchesAndLostTokens) {
  const MultiTurnReport r = BuildMultiTurnReport(TwoConversations(), 2, kBlock);
  EXPECT_EQ(r.block_size, kBlock);
  ASSERT_EQ(r.per_turn.size(), 2u);

  const TurnStats& first = r.per_turn[0];
  EXPECT_EQ(first.requests, 2);
  EXPECT_EQ(first.prompt_tokens, 60);
  EXPECT_EQ(first.cached_tokens, 16);
  EXPECT_EQ(first.ideal_cached_tokens, 16) << "only the conversation started second";
  EXPECT_EQ(first.compared, 0);

  const TurnStats& second = r.per_turn[1];
  EXPECT_EQ(second.compared, 2);
  EXPECT_EQ(second.prompt_tokens, 120);
  EXPECT_EQ(second.cached_tokens, 48);
  EXPECT_EQ(second.ideal_cached_tokens, 48 + 32);
  EXPECT_EQ(second.ideal_exact_cached_tokens, 48 + 48);
  EXPECT_EQ(second.retokenization_mismatches, 1);
  EXPECT_EQ(second.retokenization_lost_tokens, 16);
  EXPECT_EQ(second.diverged_in_reply, 1);
  EXPECT_EQ(second.diverged_at_reply_start + second.diverged_before_reply, 0);
  EXPECT_EQ(second.below_ideal, 1) << "conversation 1 turn 2: 16 cached of 48";
  EXPECT_DOUBLE_EQ(second.achieved_over_ideal(), 48.0 / 80.0);
  EXPECT_DOUBLE_EQ(second.ideal_hit_rate(), 80.0 / 120.0);
  EXPECT_EQ(second.ttft_ms.count, 2);
  EXPECT_NEAR(second.ttft_ms.p50, 20.0, 1e-9);

  EXPECT_EQ(r.total.requests, 4);
  EXPECT_EQ(r.total.prompt_tokens, 180);
  EXPECT_EQ(r.total.ideal_cached_tokens, 96);
  EXPECT_EQ(r.total.retokenization_mismatches, 1);
  EXPECT_EQ(r.total.tokenize_disagreements, 0);

  ASSERT_EQ(r.examples.size(), 1u);
  EXPECT_EQ(r.examples[0].conversation, 1);
  EXPECT_EQ(r.examples[0].turn, 1);
  EXPECT_EQ(r.examples[0].reply_offset, 3);
  EXPECT_EQ(r.examples[0].generated[0], 603);
  EXPECT_EQ(r.examples[0].retokenized[0], 9999);
  ASSERT_EQ(r.analyses.size(), 4u);
}

TEST(MultiTurnReportTest, AFailedTurnEndsItsConversationAndHasNoIdeal) {
  std::vector<TurnRecord> records = TwoConversations();
  records[2].request.code = absl::StatusCode::kResourceExhausted;  // conversation 1, turn 1
  records.pop_back();                     // ... so its turn 2 was never sent
  records[0].request.prompt_tokens = 31;  // Tokenize and Generate disagree
  const MultiTurnReport r = BuildMultiTurnReport(records, 2, kBlock);
  EXPECT_EQ(r.conversations_cut_short, 1);
  EXPECT_EQ(r.per_turn[0].requests, 2);
  EXPECT_EQ(r.per_turn[0].succeeded, 1);
  EXPECT_EQ(r.per_turn[1].requests, 1);
  EXPECT_EQ(r.total.tokenize_disagreements, 1);
}

TEST(MultiTurnReportTest, TextAndJson) {
  const MultiTurnReport r = BuildMultiTurnReport(TwoConversations(), 2, kBlock);
  const std::string text = FormatMultiTurnReport(r);
  EXPECT_THAT(text, HasSubstr("block size 16 tokens"));
  EXPECT_THAT(text, HasSubstr("1/2"));
  EXPECT_THAT(text, HasSubstr("1 of 2 replies (50.0 %) came back as other ids; 16 cached tokens"));
  EXPECT_THAT(text, HasSubstr("conversation 2 turn 2: at token 3 of the previous reply"));
  EXPECT_THAT(text, HasSubstr("0 at the reply's first token, 1 further into the reply, 0 before"));
  EXPECT_THAT(text, HasSubstr("Below the ideal:"));

  const nlohmann::ordered_json j = MultiTurnReportToJson(r);
  EXPECT_EQ(j["block_size"], kBlock);
  ASSERT_EQ(j["per_turn"].size(), 2u);
  EXPECT_EQ(j["per_turn"][1]["turn"], 2);
  EXPECT_EQ(j["per_turn"][1]["retokenization_mismatches"], 1);
  EXPECT_DOUBLE_EQ(j["per_turn"][1]["retokenization_mismatch_rate"].get<double>(), 0.5);
  EXPECT_EQ(j["total"]["ideal_cached_tokens"], 96);
  ASSERT_EQ(j["requests"].size(), 4u);
  const auto& turn = j["requests"][1];
  EXPECT_EQ(turn["conversation"], 1);
  EXPECT_EQ(turn["turn"], 2);
  EXPECT_EQ(turn["cached_tokens"], 16);
  EXPECT_EQ(turn["ideal_exact_cached"], 48);
  EXPECT_EQ(turn["retokenized_identically"], true);
  EXPECT_EQ(j["retokenization_examples"][0]["retokenized"][0], 9999);
}

}  // namespace
}  // namespace prefixd::bench
