// service/openai_protocol.h — OpenAI's request shapes and errors, without the network.
//
// A request body becomes a prefixd.v1.GenerateRequest (so the OpenAI port and gRPC share
// every later check and the same engine path). Errors carry OpenAI's shape:
// {"error": {"message", "type", "param", "code"}}. The responses are in openai_response.h.
#ifndef PREFIXD_SERVICE_OPENAI_PROTOCOL_H_
#define PREFIXD_SERVICE_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd {

enum class OpenAiEndpoint { kChatCompletions, kCompletions };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChatCompletions;
  v1::GenerateRequest generate;  // prompt, sampling and logprob options
  std::string model;             // as asked; empty when not given
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  bool return_token_ids = false;  // vLLM's extension: choices carry "token_ids"
  std::string user;
};

// INVALID_ARGUMENT errors from the parsers name the offending field; ParamOf reads it back.
std::optional<std::string> ParamOf(const absl::Status& status);

// `POST /v1/chat/completions` and `POST /v1/completions` bodies. Unknown fields are ignored,
// as OpenAI's server does; a known field of the wrong type, a value out of range, or a
// feature prefixd does not have (n > 1, penalties, logit_bias, ...) is INVALID_ARGUMENT.
absl::StatusOr<OpenAiRequest> ParseChatCompletionRequest(std::string_view body);
absl::StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body);

// vLLM's `POST /tokenize` ({"prompt"} or {"messages"}) and `POST /detokenize` ({"tokens"}).
struct TokenizeCall {
  v1::TokenizeRequest request;
  bool add_special_tokens = true;  // for a text prompt
  std::string model;
};
absl::StatusOr<TokenizeCall> ParseTokenizeRequest(std::string_view body);
struct DetokenizeCall {
  v1::DetokenizeRequest request;
  std::string model;
};
absl::StatusOr<DetokenizeCall> ParseDetokenizeRequest(std::string_view body);

// An error as OpenAI sends it: HTTP status and body.
struct OpenAiError {
  int http_status = 500;
  std::string body;
};
OpenAiError ToOpenAiError(const absl::Status& status);
OpenAiError MakeOpenAiError(int http_status, std::string_view message, std::string_view param = "",
                            std::string_view code = "");

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_OPENAI_PROTOCOL_H_
