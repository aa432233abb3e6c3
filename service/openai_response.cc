#include "service/openai_response.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "service/convert.h"

namespace prefixd {
namespace {

using Json = nlohmann::json;

// JSON text of `j`; strings that are not UTF-8 (token text may not be) get U+FFFD.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string TokenText(const Tokenizer* tokenizer, TokenId id) {
  if (tokenizer == nullptr || id < 0 || id >= tokenizer->vocab_size()) {
    return absl::StrCat("token_", id);
  }
  const TokenId ids[] = {id};
  return tokenizer->Decode(ids, /*skip_special_tokens=*/false);
}

Json Bytes(const std::string& text) {
  Json bytes = Json::array();
  for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
  return bytes;
}

const char* FinishReasonText(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "abort";  // as vLLM: the server ended it (shutdown)
    case FinishReason::kNone:
      break;
  }
  return "stop";
}

Json LogprobsOf(OpenAiEndpoint endpoint, const Tokenizer* tokenizer,
                const std::vector<SampledToken>& logprobs, size_t text_offset) {
  if (endpoint == OpenAiEndpoint::kChatCompletions) {
    Json content = Json::array();
    for (const SampledToken& t : logprobs) {
      const std::string text = TokenText(tokenizer, t.token);
      Json top = Json::array();
      for (const TopLogprob& alt : t.top) {
        const std::string alt_text = TokenText(tokenizer, alt.token);
        top.push_back({{"token", alt_text}, {"logprob", alt.logprob}, {"bytes", Bytes(alt_text)}});
      }
      content.push_back({{"token", text},
                         {"logprob", t.logprob},
                         {"bytes", Bytes(text)},
                         {"top_logprobs", std::move(top)}});
    }
    return Json{{"content", std::move(content)}, {"refusal", nullptr}};
  }
  Json tokens = Json::array(), token_logprobs = Json::array(), top = Json::array(),
       offsets = Json::array();
  for (const SampledToken& t : logprobs) {
    const std::string text = TokenText(tokenizer, t.token);
    tokens.push_back(text);
    token_logprobs.push_back(t.logprob);
    Json alts = Json::object();
    for (const TopLogprob& alt : t.top) alts[TokenText(tokenizer, alt.token)] = alt.logprob;
    top.push_back(t.top.empty() ? Json() : std::move(alts));
    offsets.push_back(text_offset);
    text_offset += text.size();
  }
  return Json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top)},
              {"text_offset", std::move(offsets)}};
}

Json UsageOf(const RequestUsage& usage) {
  return Json{{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens}}}};
}

// One SSE event of a stream: `choices` (one choice, or none for the usage chunk) and, when
// the client asked for usage, "usage" (null but on the last chunk).
std::string SseChunk(OpenAiEndpoint endpoint, const std::string& id, const std::string& model,
                     int64_t created, Json choices, bool with_usage, Json usage = Json()) {
  const bool chat = endpoint == OpenAiEndpoint::kChatCompletions;
  Json chunk = {{"id", id},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", model},
                {"choices", std::move(choices)}};
  if (with_usage) chunk["usage"] = std::move(usage);
  return absl::StrCat("data: ", Dump(chunk), "\n\n");
}

}  // namespace

OpenAiResponse::OpenAiResponse(const OpenAiRequest& request, std::string id, std::string model,
                               int64_t created_unix_seconds, const Tokenizer* tokenizer)
    : endpoint_(request.endpoint),
      include_usage_(request.include_usage),
      return_token_ids_(request.return_token_ids),
      logprobs_(request.generate.logprobs().enabled() || request.generate.logprobs().top_n() > 0),
      id_(std::move(id)),
      model_(std::move(model)),
      created_(created_unix_seconds),
      tokenizer_(tokenizer) {}

std::string OpenAiResponse::Chunk(std::string_view text, const std::vector<TokenId>& tokens,
                                  const std::vector<SampledToken>& logprobs,
                                  const char* finish_reason) {
  Json choice = {{"index", 0}};
  if (endpoint_ == OpenAiEndpoint::kChatCompletions) {
    choice["delta"] = finish_reason != nullptr && text.empty()
                          ? Json::object()
                          : Json{{"content", SanitizeUtf8(std::string(text))}};
  } else {
    choice["text"] = SanitizeUtf8(std::string(text));
  }
  choice["logprobs"] = logprobs_ && !logprobs.empty()
                           ? LogprobsOf(endpoint_, tokenizer_, logprobs, text_bytes_)
                           : Json();
  choice["finish_reason"] = finish_reason != nullptr ? Json(finish_reason) : Json();
  if (return_token_ids_) choice["token_ids"] = tokens;
  text_bytes_ += text.size();
  return SseChunk(endpoint_, id_, model_, created_, Json::array({std::move(choice)}),
                  include_usage_);
}

std::string OpenAiResponse::StreamStart() {
  if (endpoint_ != OpenAiEndpoint::kChatCompletions) return "";
  Json choice = {{"index", 0},
                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                 {"logprobs", nullptr},
                 {"finish_reason", nullptr}};
  return SseChunk(endpoint_, id_, model_, created_, Json::array({std::move(choice)}),
                  include_usage_);
}

std::string OpenAiResponse::StreamUpdate(const GenerationUpdate& update) {
  std::string out;
  if (!update.text.empty() || !update.logprobs.empty() ||
      (return_token_ids_ && !update.tokens.empty())) {
    out = Chunk(update.text, update.tokens, update.logprobs, nullptr);
  }
  if (!update.finished) return out;
  if (!update.status.ok()) {
    absl::StrAppend(&out, "data: ", ToOpenAiError(update.status).body, "\n\n");
  } else {
    absl::StrAppend(&out, Chunk("", {}, {}, FinishReasonText(update.finish_reason)));
    if (include_usage_) {
      absl::StrAppend(&out, SseChunk(endpoint_, id_, model_, created_, Json::array(),
                                     /*with_usage=*/true, UsageOf(update.usage)));
    }
  }
  absl::StrAppend(&out, "data: [DONE]\n\n");
  return out;
}

void OpenAiResponse::Collect(const GenerationUpdate& update) {
  text_ += update.text;
  token_ids_.insert(token_ids_.end(), update.tokens.begin(), update.tokens.end());
  logprob_list_.insert(logprob_list_.end(), update.logprobs.begin(), update.logprobs.end());
  if (update.finished) {
    final_.emplace();
    final_->status = update.status;
    final_->finish_reason = update.finish_reason;
    final_->usage = update.usage;
  }
}

OpenAiError OpenAiResponse::Body() const {
  if (!final_) return MakeOpenAiError(500, "the request ended without a result");
  if (!final_->status.ok()) return ToOpenAiError(final_->status);
  const bool chat = endpoint_ == OpenAiEndpoint::kChatCompletions;
  const std::string text = SanitizeUtf8(text_);
  Json choice = {{"index", 0}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs_ ? LogprobsOf(endpoint_, tokenizer_, logprob_list_, 0) : Json();
  choice["finish_reason"] = FinishReasonText(final_->finish_reason);
  if (return_token_ids_) choice["token_ids"] = token_ids_;
  Json body = {{"id", id_},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created_},
               {"model", model_},
               {"choices", Json::array({std::move(choice)})},
               {"usage", UsageOf(final_->usage)}};
  return OpenAiError{200, Dump(body)};
}
}  // namespace prefixd
