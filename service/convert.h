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
#include "service/reply_memory.h"

namespace prefixd {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Replaces bytes that are not valid UTF-8 with U+FFFD (protobuf strings must be UTF-8; a
// byte-level token can end inside a character, and the model may emit any byte).
std::string SanitizeUtf8(std::string text);

// INVALID_ARGUMENT naming the fields a newer client set that this server does not know.
absl::Status CheckNoUnknownFields(const google::protobuf::Message& message);

// What turns a prompt into token ids: the model's tokenizer and chat template (either may
// be null; a prompt form that needs a missing one is refused with a message saying so).
struct PromptEncoder {
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;
  // With both set, a conversation whose last assistant message repeats a reply remembered
  // for the caller's namespace runs the ids the model generated (service/reply_memory.h).
  ReplyMemory* replies = nullptr;
  const CacheNamespace* ns = nullptr;
};
inline PromptEncoder EncoderOf(const Engine& engine, ReplyMemory* replies = nullptr,
                               const CacheNamespace* ns = nullptr) {
  return PromptEncoder{engine.tokenizer(), engine.chat_template(), replies, ns};
}

// A conversation on the wire as the chat template reads it. INVALID_ARGUMENT naming the
// field for JSON that does not parse or has the wrong shape.
absl::StatusOr<Conversation> ToConversation(const v1::Conversation& chat);

// A prompt as the model will see it.
struct EncodedPrompt {
  std::string text;  // the rendered conversation, or the text as given (empty for ids)
  std::vector<TokenId> ids;
};

// A conversation rendered by the chat template and tokenized without adding special tokens
// (the template writes them), as transformers' apply_chat_template(tokenize=True) does.
// FAILED_PRECONDITION when the model has no chat template or no tokenizer.
absl::StatusOr<EncodedPrompt> EncodeChat(const v1::Conversation& chat,
                                         const PromptEncoder& encoder);

// The prompt of a request as token ids: `token_ids` as given, `text` through the model's
// tokenizer (with its special tokens, e.g. BOS), or `chat` as EncodeChat.
// `chat_text`, when not null, receives the rendered text of a chat prompt.
template <typename Request>
absl::StatusOr<std::vector<TokenId>> PromptTokens(const Request& request,
                                                  const PromptEncoder& encoder,
                                                  std::string* chat_text = nullptr);

// The engine's view of a Generate request (without namespace and deadline, which the
// service decides).
absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const PromptEncoder& encoder,
                                                      std::string* chat_text = nullptr);

// Adds an engine update to a response being assembled (several updates may be merged into
// one message while the client is slow to read).
void AppendUpdate(GenerationUpdate& update, v1::GenerateResponse& response);

// GetStats: the whole cache, both tiers (host_blocks only when there is a host tier);
// per-namespace rows only for `visible` names (all if empty and `all_namespaces`).
void FillCacheStats(const EngineStats& stats, bool all_namespaces,
                    const std::vector<std::string>& visible, v1::CacheStats& out);

// A cache event on the wire, with its medium (MEDIUM_DEVICE or MEDIUM_HOST).
void FillCacheEvent(const CacheEvent& event, int block_size, v1::CacheEvent& out);

}  // namespace prefixd

#endif  // PREFIXD_SERVICE_CONVERT_H_
