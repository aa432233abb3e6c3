// service/convert.h — between the wire (prefixd.v1 protos, grpc::Status) and the engine.
//
// Every check a request field needs that does not need the engine happens here, with a
// message that names the field; the engine adds its own (vocabulary, context length).
#ifndef PREFIXD_SERVICE_CONVERT_H_
#define PREFIXD_SERVICE_CONVERT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "grpcpp/support/status.h"
#include "prefixd/v1/cache.pb.h"
#include "prefixd/v1/generation.pb.h"

namespace prefixd {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Replaces bytes that are not valid UTF-8 with U+FFFD (protobuf strings must be UTF-8; a
// byte-level token can end inside a character, and the model may emit any byte).
std::string SanitizeUtf8(std::string text);

// INVALID_ARGUMENT naming the fields a newer client set that this server does not know.
absl::Status CheckNoUnknownFields(const google::protobuf::Message& message);

// The prompt of a request as token ids: `token_ids` as given, or `text` through the model's
// tokenizer (with its special tokens, e.g. BOS).
template <typename Request>
absl::StatusOr<std::vector<TokenId>> PromptTokens(const Request& request,
                                                  const Tokenizer* tokenizer);

// The engine's view of a Generate request (without namespace and deadline, which the
// service decides).
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const Tokenizer* tokenizer);

// Adds an engine update to a response being assembled (several updates may be merged into
// one message while the client is slow to read).
void AppendUpdate(GenerationUpdate& update, v1::GenerateResponse& response);

// GetStats: the whole cache; per-namespace rows only for `visible` names (all if empty and
// `all_namespaces`).
void FillCacheStats(const EngineStats& stats, bool all_namespaces,
                    const std::vector<std::string>& visible, v1::CacheStats& out);

// A cache event on the wire.
void FillCacheEvent(const CacheEvent& event, int block_size, v1::CacheEvent& out);

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_CONVERT_H_
