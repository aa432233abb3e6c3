// Fuzzes a Generate request through the server's validation: any bytes on the wire either
// fail to parse, are refused with INVALID_ARGUMENT / OUT_OF_RANGE, or become an engine
// request whose every field is within bounds.
#include <cmath>
#include <cstdint>
#include <memory>

#include "base/check.h"
#include "engine/request.h"
#include "prefixd/v1/generation.pb.h"
#include "service/convert.h"
#include "tests/fuzz/prompt_encoder.h"

namespace {

using prefixd::fuzz::FuzzChatTemplate;
using prefixd::fuzz::FuzzTokenizer;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  prefixd::v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto converted = prefixd::ToGenerationRequest(
      request, prefixd::PromptEncoder{FuzzTokenizer(), FuzzChatTemplate()});
  if (!converted.ok()) {
    PREFIXD_CHECK(converted.status().code() == absl::StatusCode::kInvalidArgument ||
                      converted.status().code() == absl::StatusCode::kResourceExhausted,
                  converted.status().ToString());
    return 0;
  }
  constexpr int kVocab = 512;
  const absl::Status valid = prefixd::ValidateSamplingParams(converted->sampling, kVocab);
  if (!valid.ok()) {
    PREFIXD_CHECK(valid.code() == absl::StatusCode::kInvalidArgument, valid.ToString());
    return 0;
  }
  const prefixd::SamplingParams& p = converted->sampling;
  PREFIXD_CHECK(std::isfinite(p.temperature) && p.temperature >= 0, "temperature");
  PREFIXD_CHECK(p.top_p > 0 && p.top_p <= 1 && p.top_k >= 0 && p.max_tokens >= 0, "sampling");
  PREFIXD_CHECK(p.top_logprobs >= 0 && p.top_logprobs <= prefixd::kMaxTopLogprobs, "logprobs");
  for (int32_t id : p.stop_token_ids) PREFIXD_CHECK(id >= 0 && id < kVocab, "stop id");
  PREFIXD_CHECK(!converted->prompt.empty(), "empty prompt accepted");
  // The text that goes back on the wire is valid UTF-8 whatever the model emits.
  const std::string text = prefixd::SanitizeUtf8(request.text());
  prefixd::v1::GenerateResponse response;
  response.set_text(text);
  std::string wire;
  PREFIXD_CHECK(response.SerializeToString(&wire), "serialize");
  prefixd::v1::GenerateResponse back;
  PREFIXD_CHECK(back.ParseFromString(wire) && back.text() == text, "UTF-8 round trip");
  return 0;
}
