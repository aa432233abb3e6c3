// service/openai_response.h — engine updates as OpenAI's JSON, without the network: one
// body, or Server-Sent Events chunks exactly as api.openai.com streams them.
#ifndef PREFIXD_SERVICE_OPENAI_RESPONSE_H_
#define PREFIXD_SERVICE_OPENAI_RESPONSE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/request.h"
#include "service/openai_protocol.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

// One completion's response, built from the engine's updates in order. Streaming: each
// Stream*() call returns the SSE bytes to send (possibly none). Otherwise Collect() every
// update and take Body() after the terminal one.
class OpenAiResponse {
 public:
  // `tokenizer` renders logprob tokens (may be null: token strings are then "token_<id>").
  OpenAiResponse(const OpenAiRequest& request, std::string id, std::string model,
                 int64_t created_unix_seconds, const Tokenizer* tokenizer);

  std::string StreamStart();
  // After the terminal update: the finish chunk, the usage chunk when asked for, then
  // `data: [DONE]`; or an error event then `data: [DONE]` when the request failed.
  std::string StreamUpdate(const GenerationUpdate& update);

  void Collect(const GenerationUpdate& update);
  // The response after the terminal update: 200 and the completion, or the failure.
  OpenAiError Body() const;

 private:
  std::string Chunk(std::string_view text, const std::vector<TokenId>& tokens,
                    const std::vector<SampledToken>& logprobs, const char* finish_reason);

  const OpenAiEndpoint endpoint_;
  const bool include_usage_;
  const bool return_token_ids_;
  const bool logprobs_;
  const std::string id_;
  const std::string model_;
  const int64_t created_;
  const Tokenizer* const tokenizer_;
  size_t text_bytes_ = 0;  // text sent so far (completions' text_offset)
  // Non-streaming: what is collected.
  std::string text_;
  std::vector<TokenId> token_ids_;
  std::vector<SampledToken> logprob_list_;
  std::optional<GenerationUpdate> final_;
};

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_OPENAI_RESPONSE_H_
