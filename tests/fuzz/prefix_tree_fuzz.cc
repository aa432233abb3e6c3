// libFuzzer target for prefix_tree/: the input is an operation sequence on a PrefixCache
// (decoded by ByteChoices, see tests/prefix_tree/tree_ops.h), run by the same interpreter
// and reference model as radix_tree_differential_test. Any mismatch with the model, broken
// invariant or leak at the end aborts, and libFuzzer keeps the input as a reproducer.
//
// Build and run: see tests/fuzz/CMakeLists.txt and tests/fuzz/run_fuzzers.sh. To replay a
// reproducer: build-fuzz/tests/fuzz/prefix_tree_fuzz <crash-file>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tests/prefix_tree/tree_ops.h"

namespace {

// Enough for long sequences, few enough that one input runs in milliseconds.
constexpr int64_t kMaxSteps = 2000;

[[noreturn]] void Fail(const prefixd::tree_ops::TreeOpsConfig& config,
                       const prefixd::tree_ops::TreeOpsHarness& harness, const absl::Status& s) {
  std::fprintf(stderr,
               "prefix_tree_fuzz: mismatch at operation #%lld: %s\nconfig: %s\n"
               "last operations:\n%s\n",
               static_cast<long long>(harness.steps()), std::string(s.message()).c_str(),
               config.ToString().c_str(), harness.History().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using prefixd::tree_ops::ByteChoices;
  ByteChoices choices(absl::MakeConstSpan(data, size));
  const prefixd::tree_ops::TreeOpsConfig config = prefixd::tree_ops::ConfigFromChoices(choices);
  prefixd::tree_ops::TreeOpsHarness harness(config, choices);
  while (!choices.done() && harness.steps() < kMaxSteps) {
    if (absl::Status s = harness.Step(); !s.ok()) Fail(config, harness, s);
  }
  if (absl::Status s = harness.Drain(); !s.ok()) Fail(config, harness, s);
  return 0;
}
