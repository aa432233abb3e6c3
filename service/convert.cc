#include "service/convert.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/unknown_field_set.h"

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

template <typename Request>
absl::StatusOr<std::vector<TokenId>> PromptTokens(const Request& request,
                                                  const Tokenizer* tokenizer) {
  switch (request.prompt_case()) {
    case Request::kText:
      if (request.text().empty()) return absl::InvalidArgumentError("prompt is empty");
      if (tokenizer == nullptr) {
        return absl::InvalidArgumentError(
            "this model has no tokenizer: send the prompt as token_ids");
      }
      return tokenizer->Encode(request.text(), /*add_special_tokens=*/true);
    case Request::kTokenIds:
      if (request.token_ids().ids().empty()) return absl::InvalidArgumentError("prompt is empty");
      return std::vector<TokenId>(request.token_ids().ids().begin(),
                                  request.token_ids().ids().end());
    default:
      return absl::InvalidArgumentError("prompt is empty: set text or token_ids");
  }
}

template absl::StatusOr<std::vector<TokenId>> PromptTokens(const v1::GenerateRequest&,
                                                           const Tokenizer*);
template absl::StatusOr<std::vector<TokenId>> PromptTokens(const v1::PinRequest&, const Tokenizer*);
template absl::StatusOr<std::vector<TokenId>> PromptTokens(const v1::UnpinRequest&,
                                                           const Tokenizer*);

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& request,
                                                      const Tokenizer* tokenizer) {
  if (absl::Status s = CheckNoUnknownFields(request); !s.ok()) return s;
  if (request.request_id().size() > 128) {
    return absl::InvalidArgumentError("request_id is longer than 128 bytes");
  }
  GenerationRequest out;
  absl::StatusOr<std::vector<TokenId>> prompt = PromptTokens(request, tokenizer);
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

void FillCacheStats(const EngineStats& stats, bool all_namespaces,
                    const std::vector<std::string>& visible, v1::CacheStats& out) {
  const CacheStats& c = stats.cache;
  out.set_block_size(c.block_size);
  v1::BlockCounts* b = out.mutable_blocks();
  b->set_total(c.blocks.total);
  b->set_free(c.blocks.free);
  b->set_evictable(c.blocks.evictable);
  b->set_in_use(c.blocks.in_use);
  b->set_pinned(c.blocks.pinned);
  out.set_query_tokens(c.tree.query_tokens);
  out.set_hit_tokens(c.tree.hit_tokens);
  out.set_hit_rate(
      c.tree.query_tokens > 0 ? static_cast<double>(c.tree.hit_tokens) / c.tree.query_tokens : 0.0);
  out.set_evicted_blocks(c.tree.evicted_blocks);
  out.set_inserted_blocks(c.tree.inserted_blocks);
  out.set_hash_collisions(c.tree.hash_collisions);
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
  }
  out.set_running_requests(stats.running);
  out.set_waiting_requests(stats.waiting);
}

void FillCacheEvent(const CacheEvent& event, int block_size, v1::CacheEvent& out) {
  out.set_sequence(event.sequence);
  if (event.kind == CacheEvent::Kind::kStored) {
    v1::BlocksStored* s = out.mutable_stored();
    for (const BlockKey& k : event.keys) s->add_block_keys(k.ToBytes());
    s->set_parent_key(event.parent.ToBytes());
    s->set_block_size(block_size);
    s->set_namespace_(event.ns);
  } else {
    v1::BlocksRemoved* r = out.mutable_removed();
    for (const BlockKey& k : event.keys) r->add_block_keys(k.ToBytes());
    r->set_namespace_(event.ns);
  }
}

}  // namespace prefixd
