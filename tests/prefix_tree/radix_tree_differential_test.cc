// Randomized differential test of the prefix cache: long random operation sequences over
// several namespaces, each step compared with a deliberately simple reference model and
// followed by the invariant check (see tree_ops.h).
//
// Seeded and reproducible. Environment:
//   PREFIXD_SEED=<n>      base seed (default fixed, so CI runs the same sequences)
//   PREFIXD_DIFF_OPS=<n>  operations per configuration (default 2000; there are 15 configurations)
// A failure prints the seed, the configuration, the operation index and the last
// operations run; rerun that one configuration with
//   PREFIXD_SEED=<seed> radix_tree_differential_test --gtest_filter='*<name>*'
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/prefix_tree/tree_ops.h"

namespace prefixd::tree_ops {
namespace {

constexpr uint64_t kDefaultSeed = 20240611;
constexpr int64_t kDefaultOps = 2000;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  uint64_t parsed = 0;
  if (value == nullptr || !absl::SimpleAtoi(value, &parsed)) return fallback;
  return parsed;
}

struct DiffCase {
  const char* name;
  TreeOpsConfig config;
};

// Block sizes 1, 4 and 16 with the real hash and with forced collisions; small
// vocabularies so that blocks and prefixes repeat; pools small enough that eviction and
// exhaustion are frequent.
const DiffCase kCases[] = {
    {"Block1", {.block_size = 1, .num_blocks = 48, .vocab = 3, .max_prompt_blocks = 24}},
    {"Block4", {.block_size = 4, .num_blocks = 64, .vocab = 3, .max_prompt_blocks = 10}},
    {"Block16", {.block_size = 16, .num_blocks = 96, .vocab = 2, .max_prompt_blocks = 8}},
    {"Block4TightPool", {.block_size = 4, .num_blocks = 12, .vocab = 2, .max_prompt_blocks = 6}},
    {"Block4BigVocab", {.block_size = 4, .num_blocks = 64, .vocab = 50, .max_prompt_blocks = 10}},
    {"Block1AllCollide",
     {.block_size = 1,
      .num_blocks = 48,
      .vocab = 3,
      .max_prompt_blocks = 24,
      .hash = HashMode::kAllCollide}},
    {"Block4AllCollide",
     {.block_size = 4,
      .num_blocks = 64,
      .vocab = 3,
      .max_prompt_blocks = 10,
      .hash = HashMode::kAllCollide}},
    {"Block16AllCollide",
     {.block_size = 16,
      .num_blocks = 96,
      .vocab = 2,
      .max_prompt_blocks = 8,
      .hash = HashMode::kAllCollide}},
    {"Block1TwoKeys",
     {.block_size = 1,
      .num_blocks = 48,
      .vocab = 3,
      .max_prompt_blocks = 24,
      .hash = HashMode::kTwoKeys}},
    {"Block4TwoKeys",
     {.block_size = 4,
      .num_blocks = 64,
      .vocab = 3,
      .max_prompt_blocks = 10,
      .hash = HashMode::kTwoKeys}},
    {"Block16TwoKeys",
     {.block_size = 16,
      .num_blocks = 96,
      .vocab = 2,
      .max_prompt_blocks = 8,
      .hash = HashMode::kTwoKeys}},
    {"Block4Disabled",
     {.block_size = 4, .num_blocks = 64, .vocab = 3, .max_prompt_blocks = 10, .enabled = false}},
    {"Block2", {.block_size = 2, .num_blocks = 40, .vocab = 2, .max_prompt_blocks = 12}},
    {"Block8TwoKeys",
     {.block_size = 8,
      .num_blocks = 64,
      .vocab = 2,
      .max_prompt_blocks = 8,
      .hash = HashMode::kTwoKeys}},
    {"Block16LargePool",
     {.block_size = 16, .num_blocks = 512, .vocab = 2, .max_prompt_blocks = 12}},
};

// Test names and failure messages show the case by name.
void PrintTo(const DiffCase& c, std::ostream* os) { *os << c.name; }

class RadixTreeDifferentialTest : public ::testing::TestWithParam<DiffCase> {};

TEST_P(RadixTreeDifferentialTest, MatchesTheReferenceModel) {
  const uint64_t base_seed = EnvOr("PREFIXD_SEED", kDefaultSeed);
  const int64_t ops = static_cast<int64_t>(EnvOr("PREFIXD_DIFF_OPS", kDefaultOps));
  // Each configuration gets its own stream, derived from the base seed and its name.
  uint64_t seed = base_seed;
  for (const char* c = GetParam().name; *c != '\0'; ++c) {
    seed = (seed ^ static_cast<uint8_t>(*c)) * 0x100000001B3ull;  // FNV-1a
  }
  TreeOpsConfig config = GetParam().config;
  config.hash_seed = seed;
  RandomChoices choices(seed);
  TreeOpsHarness harness(config, choices);
  const std::string where = absl::StrCat("PREFIXD_SEED=", base_seed, ", case ", GetParam().name,
                                         " (", config.ToString(), ")");
  for (int64_t i = 0; i < ops; ++i) {
    const absl::Status s = harness.Step();
    ASSERT_TRUE(s.ok()) << where << "\nfailed at operation #" << harness.steps() << ": "
                        << s.message() << "\nlast operations:\n"
                        << harness.History();
  }
  const absl::Status s = harness.Drain();
  ASSERT_TRUE(s.ok()) << where << "\nfailed while draining after " << harness.steps()
                      << " operations: " << s.message() << "\nlast operations:\n"
                      << harness.History();

  // The sequence reached the cases that matter.
  const TreeOpsHarness::Coverage& c = harness.coverage();
  std::printf(
      "%s: %lld ops: %lld hit, %lld inserted, %lld duplicate, %lld rejected, %lld evicted "
      "blocks; %lld exhausted, %lld pins, %lld unpins\n",
      GetParam().name, static_cast<long long>(harness.steps()),
      static_cast<long long>(c.hit_blocks), static_cast<long long>(c.inserted_blocks),
      static_cast<long long>(c.duplicate_blocks), static_cast<long long>(c.rejected_blocks),
      static_cast<long long>(c.evicted_blocks), static_cast<long long>(c.exhausted),
      static_cast<long long>(c.pins), static_cast<long long>(c.unpins));
  if (ops < kDefaultOps) return;  // a short run proves nothing about coverage
  if (!config.enabled) {
    EXPECT_EQ(c.hit_blocks + c.inserted_blocks, 0) << "a disabled cache shared blocks";
    return;
  }
  EXPECT_GT(c.hit_blocks, 0);
  EXPECT_GT(c.inserted_blocks, 0);
  EXPECT_GT(c.duplicate_blocks, 0);
  EXPECT_GT(c.evicted_blocks, 0);
  EXPECT_GT(c.exhausted, 0);
  EXPECT_GT(c.pins, 0);
  EXPECT_GT(c.unpins, 0);
  if (config.hash != HashMode::kXxh3) {
    EXPECT_GT(c.rejected_blocks, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, RadixTreeDifferentialTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<DiffCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace prefixd::tree_ops
