// make-test-model — writes the tiny deterministic test checkpoint (see tools/test_model.h).
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/test_model.h"

ABSL_FLAG(std::string, out, "",
          "folder to write config.json, model.safetensors and "
          "tokenizer.json into (created if missing)");
ABSL_FLAG(uint64_t, seed, prefixd::kTestModelSeed, "seed of the random weights");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes a tiny, deterministic Hugging Face Llama checkpoint (4 layers, hidden 256, "
      "vocab 512, BF16) with a byte-level BPE tokenizer.\nUsage: make-test-model --out DIR");
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "make-test-model: --out DIR is required (see --help)\n");
    return 2;
  }
  const absl::Status status = prefixd::WriteTestModel(out, absl::GetFlag(FLAGS_seed));
  if (!status.ok()) {
    std::fprintf(stderr, "make-test-model: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("make-test-model: wrote %s\n", out.c_str());
  return 0;
}
