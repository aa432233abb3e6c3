#include "service/convert.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/unknown_field_set.h"
#include "nlohmann/json.hpp"

namespace prefixd {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::string SanitizeUtf8(std::string text) {
  std::string out;
  size_t i = 0;
  const size_t n = text.size();
  bool changed = false;
  while (i < n) {
    const unsigned char c = text[i];
    int len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    }
    bool valid = len > 0 && i + len <= n;
    for (int k = 1; valid && k < len; ++k) {
      const unsigned char cc = text[i + k];
      if ((cc & 0xC0) != 0x80) valid = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
    if (valid &&
        ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
         (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))) {
      valid = false;
    }
    if (valid) {
      out.append(text, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      changed = true;
      ++i;
    }
  }
  return changed ? out : text;
}

absl::Status CheckNoUnknownFields(const google::protobuf::Message& message) {
  const google::protobuf::Reflection* r = message.GetReflection();
  const google::protobuf::UnknownFieldSet& unknown = r->GetUnknownFields(message);
  if (!unknown.empty()) {
    std::vector<int> numbers;
    for (int i = 0; i < unknown.field_count(); ++i) numbers.push_back(unknown.field(i).number());
    return absl::InvalidArgumentError(absl::StrCat(
        message.GetTypeName(), " has fields this server does not know (numbers ",
        absl::StrJoin(numbers, ", "), "); is the client built from a newer prefixd.v1?"));
  }
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(message, f); ++i) {
        if (absl::Status s = CheckNoUnknownFields(r->GetRepeatedMessage(message, f, i)); !s.ok()) {
          return s;
        }
      }
    } else if (absl::Status s = CheckNoUnknownFields(r->GetMessage(message, f)); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

namespace {

using Json = nlohmann::ordered_json;

// A JSON field of the wire conversation; `what` says what it must be ("an array").
absl::StatusOr<Json> ParseJsonField(const std::string& text, std::string_view field) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    std::string_view what = e.what();
    if (size_t end = what.find("] "); what.starts_with("[json.") && end != what.npos) {
      what.remove_prefix(end + 2);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), " is not valid JSON: ", std::string(what)));
  }
}

// Keys a message's typed fields own: extra_json may not set them.
constexpr std::string_view kTypedMessageKeys[] = {"role", "content", "tool_calls", "tool_call_id",
                                                  "name"};

}  // namespace

absl::StatusOr<Conversation> ToConversation(const v1::Conversation& chat) {
  Conversation out;
  if (chat.messages().empty()) {
    return absl::InvalidArgumentError("chat.messages is empty: a conversation needs a message");
  }
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& m = chat.messages(i);
    const std::string at = absl::StrCat("chat.messages[", i, "]");
    if (m.role().empty()) return absl::InvalidArgumentError(absl::StrCat(at, ".role is empty"));
    Json message = Json::object();
    message["role"] = m.role();
    switch (m.content_case()) {
      case v1::ChatMessage::kText:
        message["content"] = m.text();
        break;
      case v1::ChatMessage::kParts: {
        Json parts = Json::array();
        for (const v1::ContentPart& part : m.parts().parts()) {
          if (part.type().empty()) {
            return absl::InvalidArgumentError(absl::StrCat(at, ".parts: a part has no type"));
          }
          Json p = Json::object();
          p["type"] = part.type();
          if (part.type() == "text" || !part.text().empty()) p["text"] = part.text();
          parts.push_back(std::move(p));
        }
        message["content"] = std::move(parts);
        break;
      }
      default:
        message["content"] = nullptr;
    }
    if (!m.tool_calls_json().empty()) {
      absl::StatusOr<Json> calls =
          ParseJsonField(m.tool_calls_json(), absl::StrCat(at, ".tool_calls_json"));
      if (!calls.ok()) return calls.status();
      if (!calls->is_array()) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ".tool_calls_json must be a JSON array of tool calls"));
      }
      for (const Json& call : *calls) {
        if (!call.is_object()) {
          return absl::InvalidArgumentError(
              absl::StrCat(at, ".tool_calls_json: each tool call must be an object"));
        }
      }
      message["tool_calls"] = *std::move(calls);
    }
    if (!m.tool_call_id().empty()) message["tool_call_id"] = m.tool_call_id();
    if (!m.name().empty()) message["name"] = m.name();
    if (!m.extra_json().empty()) {
      absl::StatusOr<Json> extra = ParseJsonField(m.extra_json(), absl::StrCat(at, ".extra_json"));
      if (!extra.ok()) return extra.status();
      if (!extra->is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(at, ".extra_json must be a JSON object"));
      }
      for (const auto& [key, value] : extra->items()) {
        for (std::string_view typed : kTypedMessageKeys) {
          if (key == typed) {
            return absl::InvalidArgumentError(absl::StrCat(at, ".extra_json may not set \"", key,
                                                           "\": the message has a field for it"));
          }
        }
        message[key] = value;
      }
    }
    out.messages.push_back(std::move(message));
  }
  if (!chat.tools_json().empty()) {
    absl::StatusOr<Json> tools = ParseJsonField(chat.tools_json(), "chat.tools_json");
    if (!tools.ok()) return tools.status();
    if (!tools->is_array()) {
      return absl::InvalidArgumentError("chat.tools_json must be a JSON array of tool schemas");
    }
    out.tools = *std::move(tools);
  }
  if (chat.has_add_generation_prompt()) out.add_generation_prompt = chat.add_generation_prompt();
  out.continue_final_message = chat.continue_final_message();
  if (!chat.template_kwargs_json().empty()) {
    absl::StatusOr<Json> kwargs =
        ParseJsonField(chat.template_kwargs_json(), "chat.template_kwargs_json");
    if (!kwargs.ok()) return kwargs.status();
    if (!kwargs->is_object()) {
      return absl::InvalidArgumentError("chat.template_kwargs_json must be a JSON object");
    }
    out.kwargs = *std::move(kwargs);
  }
  return out;
}

namespace {

// The prompt ids of `text` (the rendering of `conversation`) with the remembered reply of its
// last assistant message, when the server remembers one for this namespace.
std::optional<std::vector<TokenId>> WithRememberedReply(const Conversation& conversation,
                                                        const std::string& text,
                                                        const PromptEncoder& encoder) {
  if (encoder.replies == nullptr || encoder.ns == nullptr) return std::nullopt;
  const Json& messages = conversation.messages;
  size_t last = messages.size();
  for (size_t i = messages.size(); i-- > 0;) {
    if (messages[i].value("role", "") == "assistant") {
      last = i;
      break;
    }
  }
  if (last == messages.size() || last == 0) return std::nullopt;
  // The prompt that produced that reply: the messages before it, ending with the header of
  // the assistant's turn.
  Conversation before = conversation;
  before.messages = Json(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(last));
  before.add_generation_prompt = true;
  before.continue_final_message = false;
  absl::StatusOr<std::string> before_text = encoder.chat_template->Render(before);
  if (!before_text.ok()) return std::nullopt;
  std::shared_ptr<const ReplyMemory::Turn> turn = encoder.replies->Find(*encoder.ns, *before_text);
  if (turn == nullptr) return std::nullopt;
  return AssembleWithReply(*encoder.tokenizer, *turn, *before_text, text);
}

}  // namespace

absl::StatusOr<EncodedPrompt> EncodeChat(const v1::Conversation& chat,
                                         const PromptEncoder& encoder) {
  if (encoder.chat_template == nullptr) {
    return absl::FailedPreconditionError(
        "this model has no chat template: start the server with --chat_template=FILE, or "
        "send the prompt as text or token_ids");
  }
  if (encoder.tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        "this model has no tokenizer: start the server with --tokenizer=FILE, or send the "
        "prompt as token_ids");
  }
  absl::StatusOr<Conversation> conversation = ToConversation(chat);
  if (!conversation.ok()) return conversation.status();
  absl::StatusOr<std::string> text = encoder.chat_template->Render(*conversation);
  if (!text.ok()) {
    const std::string kind = jinja::ErrorKind(text.status());
    if (text.status().code() == absl::StatusCode::kInvalidArgument && !kind.empty() &&
        kind != "TemplateError") {
      return absl::InvalidArgumentError(
          absl::StrCat("the chat template failed on this conversation: ", text.status().message()));
    }
    return text.status();
  }
  if (text->empty())
    return absl::InvalidArgumentError("the chat template rendered an empty prompt");
  EncodedPrompt out;
  if (std::optional<std::vector<TokenId>> ids =
          WithRememberedReply(*conversation, *text, encoder)) {
    out.ids = *std::move(ids);
  } else {
    out.ids = encoder.tokenizer->Encode(*text, /*add_special_tokens=*/false);
  }
  out.text = *std::move(text);
  if (out.ids.empty()) return absl::InvalidArgumentError("prompt is empty");
  return out;
}

template <typename Request>
absl::StatusOr<std::vector<TokenId>> PromptTokens(const Request& request,
                                                  const PromptEncoder& encoder,
                                                  std::string* chat_text) {
  switch (request.prompt_case()) {
    case Request::kText:
      if (request.text().empty()) return absl::InvalidArgumentError("prompt is empty");
      if (encoder.tokenizer == nullptr) {
        return absl::InvalidArgumentError(
            "this model has no tokenizer: send the prompt as token_ids");
      }
      return encoder.tokenizer->Encode(request.text(), /*add_special_tokens=*/true);
    case Request::kTokenIds:
      if (request.token_ids().ids().empty()) return absl::InvalidArgumentError("prompt is empty");
      return std::vector<TokenId>(request.token_ids().ids().begin(),
                                  request.token_ids().ids().end());
    case Request::kChat: {
      absl::StatusOr<EncodedPrompt> prompt = EncodeChat(request.chat(), encoder);
      if (!prompt.ok()) return prompt.status();
      if (chat_text != nullptr) *chat_text = std::move(prompt->text);
      return std::move(prompt->ids);
    }
    default:
      return absl::InvalidArgumentError("prompt is empty: set text, token_ids or chat");
  }
}

template absl::StatusOr<std::vector<TokenId>> PromptTokens(const v1::GenerateRequest&,
                                                           const PromptEncoder&, std::string*);
template absl::StatusOr<std::vector<TokenId>> PromptTokens(const v1::PinRequest&,
                                                           const PromptEncoder&, std::string*);
template absl::StatusOr<std::vector<TokenId>> PromptTokens(const v1::UnpinRequest&,
                                                           const PromptEncoder&, std::string*);

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const PromptEncoder& encoder,
                                                      std::string* chat_text) {
  if (absl::Status s = CheckNoUnknownFields(request); !s.ok()) return s;
  if (request.request_id().size() > 128) {
    return absl::InvalidArgumentError("request_id is longer than 128 bytes");
  }
  GenerationRequest out;
  absl::StatusOr<std::vector<TokenId>> prompt = PromptTokens(request, encoder, chat_text);
  if (!prompt.ok()) return prompt.status();
  out.prompt = *std::move(prompt);
  out.request_id = request.request_id();
  const v1::SamplingParams& s = request.sampling();
  SamplingParams& p = out.sampling;
  if (s.has_temperature()) p.temperature = s.temperature();
  p.top_k = s.top_k();
  if (s.has_top_p()) p.top_p = s.top_p();
  if (s.has_seed()) p.seed = s.seed();
  p.max_tokens = s.max_tokens();
  p.stop.assign(s.stop().begin(), s.stop().end());
  p.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  p.ignore_eos = s.ignore_eos();
  const v1::LogprobOptions& lp = request.logprobs();
  if (lp.top_n() < 0 || lp.top_n() > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs.top_n must be in [0, ", kMaxTopLogprobs, "], got ", lp.top_n()));
  }
  p.logprobs = lp.enabled() || lp.top_n() > 0;
  p.top_logprobs = lp.top_n();
  return out;
}

void AppendUpdate(GenerationUpdate& update, v1::GenerateResponse& response) {
  for (TokenId t : update.tokens) response.add_token_ids(t);
  response.mutable_text()->append(SanitizeUtf8(std::move(update.text)));
  for (const SampledToken& t : update.logprobs) {
    v1::TokenLogprob* lp = response.add_logprobs();
    lp->set_token_id(t.token);
    lp->set_logprob(t.logprob);
    for (const TopLogprob& alt : t.top) {
      v1::TopLogprob* a = lp->add_top();
      a->set_token_id(alt.token);
      a->set_logprob(alt.logprob);
    }
  }
  if (!update.finished || !update.status.ok()) return;
  switch (update.finish_reason) {
    case FinishReason::kStop:
      response.set_finish_reason(v1::FINISH_REASON_STOP);
      break;
    case FinishReason::kLength:
      response.set_finish_reason(v1::FINISH_REASON_LENGTH);
      break;
    case FinishReason::kCancelled:
      response.set_finish_reason(v1::FINISH_REASON_CANCELLED);
      break;
    case FinishReason::kNone:
      break;
  }
  v1::Usage* u = response.mutable_usage();
  u->set_prompt_tokens(update.usage.prompt_tokens);
  u->set_cached_tokens(update.usage.cached_tokens);
  u->set_completion_tokens(update.usage.completion_tokens);
  u->set_queue_seconds(absl::ToDoubleSeconds(update.usage.queue_time));
  u->set_time_to_first_token_seconds(absl::ToDoubleSeconds(update.usage.time_to_first_token));
  u->set_total_seconds(absl::ToDoubleSeconds(update.usage.total_time));
}

namespace {

void FillBlockCounts(const BlockCounts& in, v1::BlockCounts& out) {
  out.set_total(in.total);
  out.set_free(in.free);
  out.set_evictable(in.evictable);
  out.set_in_use(in.in_use);
  out.set_pinned(in.pinned);
}

v1::Medium ToMedium(CacheEvent::Medium medium) {
  return medium == CacheEvent::Medium::kHost ? v1::MEDIUM_HOST : v1::MEDIUM_DEVICE;
}

}  // namespace

void FillCacheStats(const EngineStats& stats, bool all_namespaces,
                    const std::vector<std::string>& visible, v1::CacheStats& out) {
  const CacheStats& c = stats.cache;
  out.set_block_size(c.block_size);
  int64_t query_tokens = 0, hit_tokens = 0, host_hit_tokens = 0;
  for (const NamespaceStats& ns : c.tree.namespaces) {
    if (!all_namespaces && std::find(visible.begin(), visible.end(), ns.name) == visible.end()) {
      continue;
    }
    v1::NamespaceStats* n = out.add_namespaces();
    n->set_name(ns.name);
    n->set_query_tokens(ns.query_tokens);
    n->set_hit_tokens(ns.hit_tokens);
    n->set_hit_rate(ns.query_tokens > 0 ? static_cast<double>(ns.hit_tokens) / ns.query_tokens
                                        : 0.0);
    n->set_cached_blocks(ns.cached_blocks);
    n->set_host_hit_tokens(ns.host_hit_tokens);
    n->set_host_cached_blocks(ns.host_cached_blocks);
    query_tokens += ns.query_tokens;
    hit_tokens += ns.hit_tokens;
    host_hit_tokens += ns.host_hit_tokens;
  }
  if (!all_namespaces) {
    // A tenant's view: the sums over its own namespaces. The pools, the queue and the
    // global counters move with other tenants' traffic (their prompt lengths, whether they
    // hit), so they are the operator's (admins, /metrics) only.
    out.set_query_tokens(query_tokens);
    out.set_hit_tokens(hit_tokens);
    out.set_hit_rate(query_tokens > 0 ? static_cast<double>(hit_tokens) / query_tokens : 0.0);
    out.set_host_hit_tokens(host_hit_tokens);
    return;
  }
  FillBlockCounts(c.blocks, *out.mutable_blocks());
  // Unset without a host tier: a client tells "none" from "empty".
  if (c.host_blocks.total > 0) FillBlockCounts(c.host_blocks, *out.mutable_host_blocks());
  out.set_query_tokens(c.tree.query_tokens);
  out.set_hit_tokens(c.tree.hit_tokens);
  out.set_hit_rate(
      c.tree.query_tokens > 0 ? static_cast<double>(c.tree.hit_tokens) / c.tree.query_tokens : 0.0);
  out.set_evicted_blocks(c.tree.evicted_blocks);
  out.set_flushed_blocks(c.tree.flushed_blocks);
  out.set_inserted_blocks(c.tree.inserted_blocks);
  out.set_hash_collisions(c.tree.hash_collisions);
  out.set_running_requests(stats.running);
  out.set_waiting_requests(stats.waiting);
  out.set_host_hit_tokens(c.tree.host_hit_tokens);
  out.set_demoted_blocks(c.tree.demoted_blocks);
  out.set_promoted_blocks(c.tree.promoted_blocks);
  out.set_host_evicted_blocks(c.tree.host_evicted_blocks);
  out.set_dropped_blocks(c.tree.dropped_blocks);
  out.set_host_bytes_allocated(stats.host_kv.bytes_allocated);
  out.set_bytes_to_host(stats.host_kv.bytes_to_host);
  out.set_bytes_to_device(stats.host_kv.bytes_to_device);
  out.set_host_allocation_failures(stats.host_kv.allocation_failures);
}

void FillCacheEvent(const CacheEvent& event, int block_size, v1::CacheEvent& out) {
  out.set_sequence(event.sequence);
  if (event.kind == CacheEvent::Kind::kStored) {
    v1::BlocksStored* s = out.mutable_stored();
    for (const BlockKey& k : event.keys) s->add_block_keys(k.ToBytes());
    s->set_parent_key(event.parent.ToBytes());
    s->set_block_size(block_size);
    s->set_namespace_(event.ns);
    s->set_medium(ToMedium(event.medium));
  } else {
    v1::BlocksRemoved* r = out.mutable_removed();
    for (const BlockKey& k : event.keys) r->add_block_keys(k.ToBytes());
    r->set_namespace_(event.ns);
    r->set_medium(ToMedium(event.medium));
  }
}

}  // namespace prefixd
