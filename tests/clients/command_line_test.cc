#include "clients/cpp/command_line.h"

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, test_count, 1, "an int flag");
ABSL_FLAG(bool, test_verbose, false, "a bool flag");
ABSL_FLAG(std::string, test_name, "", "a string flag");

namespace prefixd {
namespace {

using ::testing::ElementsAre;

const CommandLineSpec kSpec = {.flag_path_fragment = "tests/clients/command_line_test",
                               .repeated_flags = {"stop"}};

absl::StatusOr<CommandLine> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "tool");
  return ParseCommandLine(static_cast<int>(args.size()), args.data(), kSpec);
}

class CommandLineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_test_count, 1);
    absl::SetFlag(&FLAGS_test_verbose, false);
    absl::SetFlag(&FLAGS_test_name, "");
  }
};

TEST_F(CommandLineTest, FlagsAnywhereAmongArguments) {
  absl::StatusOr<CommandLine> cl =
      Parse({"generate", "--test_count=3", "hello", "--test_name", "x y", "world"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_THAT(cl->positional, ElementsAre("generate", "hello", "world"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 3);
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "x y");
  EXPECT_TRUE(cl->given.contains("test_count"));
  EXPECT_FALSE(cl->given.contains("test_verbose"));
}

TEST_F(CommandLineTest, BoolFlagsTakeNoSeparateValue) {
  ASSERT_TRUE(Parse({"--test_verbose", "word"}).ok());
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_verbose));
  absl::StatusOr<CommandLine> cl = Parse({"-notest_verbose"});
  ASSERT_TRUE(cl.ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_verbose));
  EXPECT_TRUE(cl->given.contains("test_verbose"));
  ASSERT_TRUE(Parse({"--test_verbose=true"}).ok());
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_verbose));
}

TEST_F(CommandLineTest, RepeatedFlagsCollectEveryValue) {
  absl::StatusOr<CommandLine> cl = Parse({"--stop=.", "--stop", "!", "--stop=a,b"});
  ASSERT_TRUE(cl.ok());
  EXPECT_THAT(cl->repeated.at("stop"), ElementsAre(".", "!", "a,b"));
}

TEST_F(CommandLineTest, DoubleDashEndsFlags) {
  absl::StatusOr<CommandLine> cl = Parse({"--", "--test_count=5", "-"});
  ASSERT_TRUE(cl.ok());
  EXPECT_THAT(cl->positional, ElementsAre("--test_count=5", "-"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 1);
}

TEST_F(CommandLineTest, HelpIsReported) {
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"stats", "-h"})->help);
  EXPECT_FALSE(Parse({"stats"})->help);
}

TEST_F(CommandLineTest, UsageErrorsNameTheFlag) {
  absl::StatusOr<CommandLine> unknown = Parse({"--nope=1"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), ::testing::HasSubstr("--nope"));
  absl::StatusOr<CommandLine> bad_value = Parse({"--test_count=many"});
  EXPECT_EQ(bad_value.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_value.status().message(), ::testing::HasSubstr("--test_count"));
  EXPECT_EQ(Parse({"--test_count"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--stop"}).status().code(), absl::StatusCode::kInvalidArgument);
  // Abseil's own flags are not the tool's.
  EXPECT_EQ(Parse({"--flagfile=/etc/passwd"}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace prefixd
