// Fuzzes the OpenAI-compatible API's request bodies through parsing, validation and the
// response formatting: any bytes are refused with INVALID_ARGUMENT naming the problem, or
// become an engine request whose fields are within bounds, and the JSON prefixd sends back
// (one body or SSE chunks) always parses.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/check.h"
#include "engine/request.h"
#include "nlohmann/json.hpp"
#include "service/convert.h"
#include "service/openai_response.h"
#include "tests/fuzz/prompt_encoder.h"

namespace {

using prefixd::fuzz::FuzzChatTemplate;
using prefixd::fuzz::FuzzTokenizer;

void CheckJson(std::string_view text) {
  PREFIXD_CHECK(nlohmann::json::accept(text), std::string(text));
}

// Every SSE event is `data: <JSON>\n\n` or the final `data: [DONE]\n\n`.
void CheckEvents(std::string_view sse) {
  while (!sse.empty()) {
    PREFIXD_CHECK(sse.substr(0, 6) == "data: ", std::string(sse));
    const size_t end = sse.find("\n\n");
    PREFIXD_CHECK(end != std::string_view::npos, std::string(sse));
    const std::string_view payload = sse.substr(6, end - 6);
    if (payload != "[DONE]") CheckJson(payload);
    sse.remove_prefix(end + 2);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 2: {
      auto call = prefixd::ParseTokenizeRequest(body);
      PREFIXD_CHECK(call.ok() || call.status().code() == absl::StatusCode::kInvalidArgument,
                    call.status().ToString());
      return 0;
    }
    case 3: {
      auto call = prefixd::ParseDetokenizeRequest(body);
      PREFIXD_CHECK(call.ok() || call.status().code() == absl::StatusCode::kInvalidArgument,
                    call.status().ToString());
      return 0;
    }
    default:
      break;
  }
  auto parsed = data[0] % 4 == 0 ? prefixd::ParseChatCompletionRequest(body)
                                 : prefixd::ParseCompletionRequest(body);
  if (!parsed.ok()) {
    PREFIXD_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument,
                  parsed.status().ToString());
    const prefixd::OpenAiError error = prefixd::ToOpenAiError(parsed.status());
    PREFIXD_CHECK(error.http_status == 400, error.body);
    CheckJson(error.body);
    return 0;
  }
  auto converted = prefixd::ToGenerationRequest(
      parsed->generate, prefixd::PromptEncoder{FuzzTokenizer(), FuzzChatTemplate()});
  if (!converted.ok()) {
    const absl::StatusCode code = converted.status().code();
    PREFIXD_CHECK(
        code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kResourceExhausted,
        converted.status().ToString());
    CheckJson(prefixd::ToOpenAiError(converted.status()).body);
    return 0;
  }
  constexpr int kVocab = 512;
  const prefixd::SamplingParams& p = converted->sampling;
  if (prefixd::ValidateSamplingParams(p, kVocab).ok()) {
    PREFIXD_CHECK(p.temperature >= 0 && p.temperature <= 2, "temperature");
    PREFIXD_CHECK(p.top_p > 0 && p.top_p <= 1 && p.top_k >= 0 && p.max_tokens >= 0, "sampling");
  }
  PREFIXD_CHECK(!converted->prompt.empty(), "empty prompt accepted");
  // What goes back: the prompt's own text as generated output, with logprobs, streamed and
  // whole.
  prefixd::GenerationUpdate update;
  update.tokens = converted->prompt;
  update.text = parsed->generate.text();
  for (prefixd::TokenId id : converted->prompt) {
    update.logprobs.push_back({id, -1.5f, {{id, -1.5f}, {(id + 1) % kVocab, -2.0f}}});
  }
  prefixd::OpenAiResponse stream(*parsed, "id", "model", 1, FuzzTokenizer());
  std::string sse = stream.StreamStart() + stream.StreamUpdate(update);
  update.finished = true;
  update.finish_reason = prefixd::FinishReason::kLength;
  sse += stream.StreamUpdate(update);
  CheckEvents(sse);
  PREFIXD_CHECK(sse.size() >= 14 && sse.substr(sse.size() - 14) == "data: [DONE]\n\n", sse);
  prefixd::OpenAiResponse whole(*parsed, "id", "model", 1, FuzzTokenizer());
  whole.Collect(update);
  const prefixd::OpenAiError body_out = whole.Body();
  PREFIXD_CHECK(body_out.http_status == 200, body_out.body);
  CheckJson(body_out.body);
  return 0;
}
