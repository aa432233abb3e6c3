// prefixctl's argument handling and output formats, without a server.
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "clients/prefixctl/cli_args.h"
#include "clients/prefixctl/json_format.h"
#include "clients/prefixctl/text_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace prefixd::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ExitCodeTest, DistinguishesUnavailableFromOtherErrors) {
  EXPECT_EQ(ExitCodeForStatus(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeForStatus(absl::UnavailableError("x")), 3);
  EXPECT_EQ(ExitCodeForStatus(absl::InvalidArgumentError("x")), 1);
  EXPECT_EQ(ExitCodeForStatus(absl::UnauthenticatedError("x")), 1);
}

TEST(ParseTokenIdsTest, CommaSeparated) {
  EXPECT_THAT(*ParseTokenIds("1,2,3"), ElementsAre(1, 2, 3));
  EXPECT_THAT(*ParseTokenIds(" 7 , 8 "), ElementsAre(7, 8));
  EXPECT_FALSE(ParseTokenIds("1,,2").ok());
  EXPECT_FALSE(ParseTokenIds("1,a").ok());
  EXPECT_FALSE(ParseTokenIds("").ok());
  EXPECT_FALSE(ParseTokenIds("99999999999").ok());
}

PromptSources Words(std::vector<std::string> words) {
  PromptSources sources;
  sources.words = std::move(words);
  return sources;
}

PromptSources PromptFlag(std::string text) {
  PromptSources sources;
  sources.prompt_flag_given = true;
  sources.prompt_flag = std::move(text);
  return sources;
}

PromptSources TokenIdsFlag(std::string ids) {
  PromptSources sources;
  sources.token_ids_flag_given = true;
  sources.token_ids_flag = std::move(ids);
  return sources;
}

TEST(ResolvePromptTest, WordsAreJoinedWithSpaces) {
  std::istringstream in;
  absl::StatusOr<Prompt> p = ResolvePrompt(Words({"Once", "upon", "a", "time"}), in);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->is_token_ids);
  EXPECT_EQ(p->text, "Once upon a time");
}

TEST(ResolvePromptTest, DashReadsStandardInput) {
  std::istringstream in("from a pipe\nsecond line\n");
  absl::StatusOr<Prompt> p = ResolvePrompt(PromptFlag("-"), in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->text, "from a pipe\nsecond line\n");
  std::istringstream in2("x");
  EXPECT_EQ(ResolvePrompt(Words({"-"}), in2)->text, "x");
}

TEST(ResolvePromptTest, TokenIds) {
  std::istringstream in;
  absl::StatusOr<Prompt> p = ResolvePrompt(TokenIdsFlag("4,5"), in);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->is_token_ids);
  EXPECT_THAT(p->token_ids, ElementsAre(4, 5));
}

TEST(ResolvePromptTest, ExactlyOneSourceAndNotEmpty) {
  std::istringstream in;
  EXPECT_FALSE(ResolvePrompt({}, in).ok());
  PromptSources both = PromptFlag("b");
  both.words = {"a"};
  EXPECT_FALSE(ResolvePrompt(both, in).ok());
  EXPECT_FALSE(ResolvePrompt(PromptFlag(""), in).ok());
}

TEST(SetPromptTest, FillsTheOneof) {
  v1::GenerateRequest request;
  Prompt ids;
  ids.is_token_ids = true;
  ids.token_ids = {1, 2};
  SetPrompt(ids, &request);
  EXPECT_THAT(request.token_ids().ids(), ElementsAre(1, 2));
  v1::PinRequest pin;
  Prompt text;
  text.text = "hi";
  SetPrompt(text, &pin);
  EXPECT_EQ(pin.text(), "hi");
}

v1::GenerateResponse FinalResponse() {
  v1::GenerateResponse r;
  r.set_request_id("r1");
  r.add_token_ids(42);
  r.set_text("!");
  r.set_finish_reason(v1::FINISH_REASON_LENGTH);
  r.mutable_usage()->set_prompt_tokens(40);
  r.mutable_usage()->set_cached_tokens(32);
  r.mutable_usage()->set_completion_tokens(16);
  r.mutable_usage()->set_queue_seconds(0.0002);
  r.mutable_usage()->set_time_to_first_token_seconds(0.0091);
  r.mutable_usage()->set_total_seconds(0.061);
  return r;
}

TEST(JsonFormatTest, StreamedAndFinalMessages) {
  v1::GenerateResponse chunk;
  chunk.add_token_ids(1);
  chunk.add_token_ids(2);
  chunk.set_text("ab");
  const nlohmann::json c = nlohmann::json::parse(DumpJson(GenerateResponseToJson(chunk)));
  EXPECT_EQ(c["token_ids"], nlohmann::json({1, 2}));
  EXPECT_EQ(c["text"], "ab");
  EXPECT_FALSE(c.contains("usage"));
  EXPECT_FALSE(c.contains("finish_reason"));

  const nlohmann::json f = nlohmann::json::parse(DumpJson(GenerateResponseToJson(FinalResponse())));
  EXPECT_EQ(f["request_id"], "r1");
  EXPECT_EQ(f["finish_reason"], "LENGTH");
  EXPECT_EQ(f["usage"]["cached_tokens"], 32);
  EXPECT_EQ(f["usage"]["prompt_tokens"], 40);
}

TEST(JsonFormatTest, InvalidUtf8DoesNotBreakTheLine) {
  v1::GenerateResponse chunk;
  chunk.set_text("a\xff");
  const std::string line = DumpJson(GenerateResponseToJson(chunk));
  EXPECT_EQ(nlohmann::json::parse(line)["text"], "a\xEF\xBF\xBD");  // U+FFFD
}

TEST(JsonFormatTest, StatsKeepSixtyFourBitCountersAsNumbers) {
  v1::CacheStats stats;
  stats.set_block_size(16);
  stats.mutable_blocks()->set_total(4096);
  stats.set_query_tokens(int64_t{1} << 40);
  v1::NamespaceStats* ns = stats.add_namespaces();
  ns->set_name("team-a");
  ns->set_hit_rate(0.5);
  const nlohmann::json j = nlohmann::json::parse(DumpJson(CacheStatsToJson(stats)));
  EXPECT_EQ(j["blocks"]["total"], 4096);
  EXPECT_TRUE(j["query_tokens"].is_number_integer());
  EXPECT_EQ(j["query_tokens"].get<int64_t>(), int64_t{1} << 40);
  EXPECT_EQ(j["namespaces"][0]["name"], "team-a");
  EXPECT_EQ(j["blocks"]["pinned"], 0) << "zero fields are present";
}

TEST(JsonFormatTest, EventsWithHexKeys) {
  v1::CacheEvent e;
  e.set_sequence(9);
  e.mutable_stored()->add_block_keys(std::string("\x01\xab", 2));
  e.mutable_stored()->set_namespace_("ns");
  const nlohmann::json j = CacheEventToJson(e);
  EXPECT_EQ(j["sequence"], 9);
  EXPECT_EQ(j["type"], "stored");
  EXPECT_EQ(j["block_keys"][0], "01ab");
  EXPECT_EQ(j["parent_key"], "");
  EXPECT_EQ(j["medium"], "device") << "unset (an older server): the device";
  e.mutable_stored()->set_medium(v1::MEDIUM_HOST);
  EXPECT_EQ(CacheEventToJson(e)["medium"], "host");
  v1::CacheEvent removed;
  removed.mutable_removed()->set_medium(v1::MEDIUM_HOST);
  EXPECT_EQ(CacheEventToJson(removed)["medium"], "host");
}

TEST(JsonFormatTest, ErrorsCarryTheStatusCode) {
  const nlohmann::json j = StatusToJson(absl::UnavailableError("down"));
  EXPECT_EQ(j["error"]["code"], "UNAVAILABLE");
  EXPECT_EQ(j["error"]["code_number"], 14);
  EXPECT_EQ(j["error"]["message"], "down");
}

TEST(TextFormatTest, UsageShowsCachedTokensAndTimings) {
  const v1::GenerateResponse r = FinalResponse();
  EXPECT_EQ(FormatUsage(r.finish_reason(), r.usage()),
            "finish LENGTH | prompt 40 tokens, 32 cached (80.0%) | completion 16 tokens | "
            "queue 0.2 ms, first token 9.1 ms, total 61.0 ms");
}

TEST(TextFormatTest, ChatUsageLine) {
  v1::Usage u;
  u.set_prompt_tokens(812);
  u.set_cached_tokens(796);
  u.set_completion_tokens(41);
  u.set_time_to_first_token_seconds(0.0121);
  EXPECT_EQ(FormatChatUsage(u), "[prompt 812 tokens, 796 cached (98%), 41 tokens out, TTFT 12 ms]");
  EXPECT_EQ(FormatChatUsage(v1::Usage()),
            "[prompt 0 tokens, 0 cached (-), 0 tokens out, TTFT 0 ms]");
}

TEST(TextFormatTest, TokenizeShowsTheTextVerbatimThenTheIds) {
  v1::TokenizeResponse r;
  r.set_prompt_text("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  for (int id : {504, 506, 17, 507}) r.add_token_ids(id);
  EXPECT_EQ(FormatTokenize(r),
            "--- prompt text (71 bytes) ---\n"
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\n"
            "--- 4 token ids ---\n"
            "504,506,17,507\n");
  const nlohmann::json j = TokenizeResponseToJson(r);
  EXPECT_EQ(j["prompt_text"], r.prompt_text());
  EXPECT_EQ(j["token_ids"], nlohmann::json({504, 506, 17, 507}));
}

TEST(TextFormatTest, StatsShowHitRateBlocksAndNamespaces) {
  v1::CacheStats stats;
  stats.set_block_size(16);
  stats.mutable_blocks()->set_total(100);
  stats.mutable_blocks()->set_free(60);
  stats.mutable_blocks()->set_evictable(30);
  stats.mutable_blocks()->set_in_use(10);
  stats.mutable_blocks()->set_pinned(4);
  stats.set_query_tokens(200);
  stats.set_hit_tokens(50);
  v1::NamespaceStats* ns = stats.add_namespaces();
  ns->set_name("team-a");
  ns->set_query_tokens(200);
  ns->set_hit_tokens(50);
  ns->set_cached_blocks(40);
  const std::string text = FormatStats(stats);
  EXPECT_THAT(text, HasSubstr("25.0% (50 of 200 prompt tokens"));
  EXPECT_THAT(text, HasSubstr("60 free, 30 evictable, 10 in use (4 pinned)"));
  EXPECT_THAT(text, HasSubstr("team-a"));
  EXPECT_THAT(text, HasSubstr("25.0%"));
  EXPECT_THAT(text, Not(HasSubstr("host"))) << "no host tier, no host lines or columns";
}

// A GetStats answer from a server with a host tier: 20 of alice's 50 hit tokens came back
// from it.
v1::CacheStats TieredStats() {
  v1::CacheStats stats;
  stats.set_block_size(16);
  stats.mutable_blocks()->set_total(100);
  stats.mutable_blocks()->set_free(10);
  stats.mutable_blocks()->set_evictable(80);
  stats.mutable_blocks()->set_in_use(10);
  v1::BlockCounts* host = stats.mutable_host_blocks();
  host->set_total(256);
  host->set_free(200);
  host->set_evictable(54);
  host->set_in_use(2);
  stats.set_query_tokens(200);
  stats.set_hit_tokens(50);
  stats.set_host_hit_tokens(20);
  stats.set_evicted_blocks(70);
  stats.set_demoted_blocks(64);
  stats.set_promoted_blocks(8);
  stats.set_host_evicted_blocks(3);
  stats.set_dropped_blocks(6);
  stats.set_host_bytes_allocated(int64_t{4} << 20);
  stats.set_bytes_to_host(int64_t{64} << 16);
  stats.set_bytes_to_device(int64_t{8} << 16);
  v1::NamespaceStats* ns = stats.add_namespaces();
  ns->set_name("alice");
  ns->set_query_tokens(200);
  ns->set_hit_tokens(50);
  ns->set_cached_blocks(40);
  ns->set_host_hit_tokens(20);
  ns->set_host_cached_blocks(54);
  return stats;
}

TEST(TextFormatTest, StatsShowTheHostTierWhenTheServerHasOne) {
  const std::string text = FormatStats(TieredStats());
  EXPECT_THAT(text, HasSubstr("(50 of 200 prompt tokens served from the cache, 20 of them from "
                              "the host tier)"));
  EXPECT_THAT(text, HasSubstr("host tier   256 blocks (4.0 MiB allocated): 200 free, 54 "
                              "evictable, 2 being promoted\n"));
  EXPECT_THAT(text, HasSubstr("host moves  64 demoted (4.0 MiB), 8 promoted (512.0 KiB), 3 "
                              "evicted from host, 6 dropped\n"));
  EXPECT_THAT(text, Not(HasSubstr("refused")));
  // The namespace table gains the host columns: alice's 20 host hits and 54 host blocks.
  EXPECT_THAT(text, HasSubstr("host hits"));
  EXPECT_THAT(text, ::testing::ContainsRegex("alice +200 +50 +25\\.0% +40 +20 +54\n"));

  v1::CacheStats refused = TieredStats();
  refused.set_host_allocation_failures(1);
  EXPECT_THAT(FormatStats(refused), HasSubstr("1 host memory allocations refused"));
}

TEST(TextFormatTest, ATenantsViewShowsItsHostHitsWithoutThePools) {
  v1::CacheStats stats = TieredStats();
  stats.clear_blocks();
  stats.clear_host_blocks();
  const std::string text = FormatStats(stats);
  EXPECT_THAT(text, HasSubstr("20 of them from the host tier"));
  EXPECT_THAT(text, HasSubstr("admins only"));
  EXPECT_THAT(text, Not(HasSubstr("host tier  ")));
  EXPECT_THAT(text, Not(HasSubstr("demoted")));
  EXPECT_THAT(text, HasSubstr("host blocks")) << "its own namespace's host blocks";
}

TEST(JsonFormatTest, StatsCarryTheHostTierOnlyWhenThereIsOne) {
  const nlohmann::json j = nlohmann::json::parse(DumpJson(CacheStatsToJson(TieredStats())));
  EXPECT_EQ(j["host_blocks"]["total"], 256);
  EXPECT_EQ(j["host_blocks"]["in_use"], 2);
  EXPECT_EQ(j["host_hit_tokens"], 20);
  EXPECT_EQ(j["demoted_blocks"], 64);
  EXPECT_EQ(j["promoted_blocks"], 8);
  EXPECT_EQ(j["host_evicted_blocks"], 3);
  EXPECT_EQ(j["dropped_blocks"], 6);
  EXPECT_EQ(j["host_bytes_allocated"], 4 << 20);
  EXPECT_EQ(j["bytes_to_host"], 64 << 16);
  EXPECT_EQ(j["bytes_to_device"], 8 << 16);
  EXPECT_EQ(j["namespaces"][0]["host_hit_tokens"], 20);
  EXPECT_EQ(j["namespaces"][0]["host_cached_blocks"], 54);

  v1::CacheStats plain = TieredStats();
  plain.clear_host_blocks();
  const nlohmann::json p = nlohmann::json::parse(DumpJson(CacheStatsToJson(plain)));
  EXPECT_FALSE(p.contains("host_blocks"));
  EXPECT_FALSE(p.contains("demoted_blocks"));
}

TEST(TextFormatTest, Events) {
  v1::CacheEvent stored;
  stored.set_sequence(3);
  stored.mutable_stored()->add_block_keys(std::string(16, '\x11'));
  stored.mutable_stored()->set_namespace_("ns");
  EXPECT_EQ(FormatEvent(stored), "#3 stored 1 blocks in ns (parent -, keys 11111111)");
  v1::CacheEvent removed;
  removed.set_sequence(4);
  removed.mutable_removed()->add_block_keys(std::string(16, '\x22'));
  EXPECT_EQ(FormatEvent(removed), "#4 removed 1 blocks from (default) (keys 22222222)");
  // The host tier's events say so; the device's read as before.
  removed.mutable_removed()->set_medium(v1::MEDIUM_DEVICE);
  EXPECT_EQ(FormatEvent(removed), "#4 removed 1 blocks from (default) (keys 22222222)");
  v1::CacheEvent demoted = stored;
  demoted.mutable_stored()->set_medium(v1::MEDIUM_HOST);
  EXPECT_EQ(FormatEvent(demoted), "#3 stored 1 blocks (host) in ns (parent -, keys 11111111)");
  removed.mutable_removed()->set_medium(v1::MEDIUM_HOST);
  EXPECT_EQ(FormatEvent(removed), "#4 removed 1 blocks (host) from (default) (keys 22222222)");
  v1::CacheEvent done;
  done.set_sequence(5);
  done.mutable_snapshot_done();
  EXPECT_EQ(FormatEvent(done), "#5 snapshot done; live events follow");
}

TEST(TextFormatTest, LogprobsTable) {
  v1::TokenLogprob lp;
  lp.set_token_id(7);
  lp.set_logprob(-0.5f);
  v1::TopLogprob* top = lp.add_top();
  top->set_token_id(7);
  top->set_logprob(-0.5f);
  const std::string text = FormatLogprobs({lp});
  EXPECT_THAT(text, HasSubstr("7:-0.500"));
  EXPECT_THAT(text, HasSubstr("-0.5000"));
}

}  // namespace
}  // namespace prefixd::ctl
