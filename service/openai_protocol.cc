#include "service/openai_protocol.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "service/convert.h"

namespace prefixd {
namespace {

using Json = nlohmann::json;

constexpr char kParamPayload[] = "prefixd.openai.param";
constexpr int kMaxJsonDepth = 64;

// JSON text of `j`; strings that are not UTF-8 (token text may not be) get U+FFFD.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

absl::Status BadParam(const std::string& param, std::string message) {
  absl::Status status = absl::InvalidArgumentError(std::move(message));
  if (!param.empty()) status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

std::string Shown(const Json& j) {
  std::string text = Dump(j);
  if (text.size() > 40) text = absl::StrCat(text.substr(0, 37), "...");
  return text;
}

// Nesting depth of `j`, without recursion (a hostile body may nest a million deep).
int Depth(const Json& root) {
  int deepest = 0;
  std::vector<std::pair<const Json*, int>> stack = {{&root, 1}};
  while (!stack.empty()) {
    auto [j, depth] = stack.back();
    stack.pop_back();
    deepest = std::max(deepest, depth);
    if (depth > kMaxJsonDepth) return depth;
    if (j->is_structured()) {
      for (const Json& child : *j) stack.push_back({&child, depth + 1});
    }
  }
  return deepest;
}

absl::StatusOr<Json> ParseBody(std::string_view body) {
  if (body.empty()) return BadParam("", "the request body is empty; expected a JSON object");
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::exception& e) {  // parse errors, and numbers out of range (406)
    std::string what = e.what();
    if (const size_t at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
    return BadParam("", absl::StrCat("the request body is not valid JSON: ", what));
  }
  if (!j.is_object()) return BadParam("", "the request body must be a JSON object");
  if (Depth(j) > kMaxJsonDepth) {
    return BadParam("",
                    absl::StrCat("the request body nests deeper than ", kMaxJsonDepth, " levels"));
  }
  return j;
}

// Reads the fields of one JSON object, keeping the first error. Absent and null fields
// read as not given.
class Fields {
 public:
  Fields(const Json& object, std::string prefix = "")
      : object_(object), prefix_(std::move(prefix)) {}

  const Json* Get(const std::string& name) const {
    auto it = object_.find(name);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string Param(const std::string& name) const { return absl::StrCat(prefix_, name); }

  std::optional<bool> Bool(const std::string& name) {
    const Json* j = Get(name);
    if (j == nullptr) return std::nullopt;
    if (!j->is_boolean()) return Fail(name, "a boolean", *j), std::nullopt;
    return j->get<bool>();
  }
  std::optional<std::string> String(const std::string& name) {
    const Json* j = Get(name);
    if (j == nullptr) return std::nullopt;
    if (!j->is_string()) return Fail(name, "a string", *j), std::nullopt;
    return j->get<std::string>();
  }
  std::optional<double> Number(const std::string& name, double lo, double hi) {
    const Json* j = Get(name);
    if (j == nullptr) return std::nullopt;
    const std::string range = absl::StrCat("a number in [", lo, ", ", hi, "]");
    if (!j->is_number()) return Fail(name, range, *j), std::nullopt;
    const double v = j->get<double>();
    if (!(v >= lo && v <= hi)) return Fail(name, range, *j), std::nullopt;
    return v;
  }
  std::optional<int64_t> Int(const std::string& name, int64_t lo, int64_t hi) {
    const Json* j = Get(name);
    if (j == nullptr) return std::nullopt;
    const std::string range = absl::StrCat("an integer in [", lo, ", ", hi, "]");
    if (!j->is_number_integer()) return Fail(name, range, *j), std::nullopt;
    if (j->is_number_unsigned() && j->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Fail(name, range, *j), std::nullopt;
    }
    const int64_t v = j->get<int64_t>();
    if (v < lo || v > hi) return Fail(name, range, *j), std::nullopt;
    return v;
  }
  const Json* Array(const std::string& name) { return Typed(name, &Json::is_array, "an array"); }
  const Json* Object(const std::string& name) { return Typed(name, &Json::is_object, "an object"); }

  void Fail(const std::string& name, const std::string& expected, const Json& got) {
    Error(name, absl::StrCat("'", Param(name), "' must be ", expected, ", got ", Shown(got)));
  }
  void Error(const std::string& name, std::string message) {
    if (status_.ok()) status_ = BadParam(Param(name), std::move(message));
  }
  void Absorb(const absl::Status& status) {
    if (status_.ok() && !status.ok()) status_ = status;
  }
  const absl::Status& status() const { return status_; }

 private:
  const Json* Typed(const std::string& name, bool (Json::*is)() const noexcept, const char* what) {
    const Json* j = Get(name);
    if (j == nullptr) return nullptr;
    if (!(j->*is)()) return Fail(name, what, *j), nullptr;
    return j;
  }

  const Json& object_;
  std::string prefix_;
  absl::Status status_;
};

// Features prefixd does not have: refused rather than silently ignored, so that a client
// never gets output it did not ask for.
void RefuseUnsupported(Fields& f) {
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    if (std::optional<double> v = f.Number(name, -2, 2); v && *v != 0) {
      f.Error(name, absl::StrCat("'", name, "' is not supported by prefixd (only 0)"));
    }
  }
  if (std::optional<double> v = f.Number("repetition_penalty", 0, 1e9); v && *v != 1) {
    f.Error("repetition_penalty", "'repetition_penalty' is not supported by prefixd (only 1)");
  }
  if (const Json* bias = f.Object("logit_bias"); bias != nullptr && !bias->empty()) {
    f.Error("logit_bias", "'logit_bias' is not supported by prefixd");
  }
  if (std::optional<int64_t> n = f.Int("n", 1, 128); n && *n != 1) {
    f.Error("n", "'n' must be 1: prefixd returns one choice per request");
  }
  if (std::optional<int64_t> n = f.Int("best_of", 1, 128); n && *n != 1) {
    f.Error("best_of", "'best_of' must be 1: prefixd returns one choice per request");
  }
  if (const Json* format = f.Object("response_format"); format != nullptr) {
    Fields rf(*format, "response_format.");
    if (std::optional<std::string> type = rf.String("type"); type && *type != "text") {
      f.Error("response_format", absl::StrCat("response_format type \"", *type,
                                              "\" is not supported by prefixd (only \"text\")"));
    }
    f.Absorb(rf.status());
  }
}

// The fields both endpoints share: model, sampling, stop, streaming, user.
void ReadCommon(Fields& f, OpenAiRequest& out) {
  if (std::optional<std::string> model = f.String("model")) out.model = *model;
  if (std::optional<std::string> user = f.String("user")) out.user = *user;
  out.stream = f.Bool("stream").value_or(false);
  // vLLM's extension: each choice (each chunk's, when streaming) carries its token ids.
  out.return_token_ids = f.Bool("return_token_ids").value_or(false);
  if (const Json* options = f.Object("stream_options")) {
    if (!out.stream) {
      f.Error("stream_options", "'stream_options' is only allowed when 'stream' is true");
    }
    Fields so(*options, "stream_options.");
    out.include_usage = so.Bool("include_usage").value_or(false);
    f.Absorb(so.status());
  }
  v1::SamplingParams& s = *out.generate.mutable_sampling();
  if (std::optional<double> t = f.Number("temperature", 0, 2)) {
    s.set_temperature(static_cast<float>(*t));
  }
  if (std::optional<double> p = f.Number("top_p", 0, 1)) {
    if (*p == 0) {
      f.Error("top_p", "'top_p' must be greater than 0");
    } else {
      s.set_top_p(static_cast<float>(*p));
    }
  }
  if (std::optional<int64_t> k = f.Int("top_k", -1, 1 << 30)) {
    s.set_top_k(*k < 0 ? 0 : static_cast<int32_t>(*k));  // vLLM: -1 is no cut
  }
  if (std::optional<int64_t> seed = f.Int("seed", INT64_MIN, INT64_MAX)) {
    s.set_seed(static_cast<uint64_t>(*seed));
  }
  // max_completion_tokens is the newer name; it wins when both are given.
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (std::optional<int64_t> n = f.Int(name, 1, 1 << 30)) {
      s.set_max_tokens(static_cast<int32_t>(*n));
    }
  }
  if (const Json* stop = f.Get("stop")) {
    if (stop->is_string()) {
      s.add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const Json& one : *stop) {
        if (!one.is_string()) {
          f.Fail("stop", "a string or a list of strings", *stop);
          break;
        }
        s.add_stop(one.get<std::string>());
      }
    } else {
      f.Fail("stop", "a string or a list of strings", *stop);
    }
  }
  if (const Json* ids = f.Array("stop_token_ids")) {
    for (const Json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        f.Fail("stop_token_ids", "a list of token ids", *ids);
        break;
      }
      s.add_stop_token_ids(id.get<int32_t>());
    }
  }
  if (std::optional<bool> ignore = f.Bool("ignore_eos")) s.set_ignore_eos(*ignore);
  RefuseUnsupported(f);
}

// One message of `messages` as the chat template reads it.
void ReadMessage(const Json& m, size_t i, Fields& f, v1::ChatMessage& out) {
  const std::string name = absl::StrCat("messages[", i, "]");
  if (!m.is_object()) return f.Fail(name, "an object", m);
  Fields mf(m, name + ".");
  if (std::optional<std::string> role = mf.String("role")) {
    out.set_role(*role);
  } else if (mf.status().ok()) {
    mf.Error("role", absl::StrCat("'", name, ".role' is required"));
  }
  if (const Json* content = mf.Get("content")) {
    if (content->is_string()) {
      out.set_text(content->get<std::string>());
    } else if (content->is_array()) {
      v1::ContentParts* parts = out.mutable_parts();
      for (size_t p = 0; p < content->size(); ++p) {
        const Json& part = (*content)[p];
        Fields pf(part, absl::StrCat(name, ".content[", p, "]."));
        if (!part.is_object()) {
          mf.Fail(absl::StrCat("content[", p, "]"), "an object", part);
          break;
        }
        const std::string type = pf.String("type").value_or("text");
        if (type != "text") {
          mf.Error(absl::StrCat("content[", p, "].type"),
                   absl::StrCat("content part type \"", type,
                                "\" is not supported: this model reads text only"));
          break;
        }
        v1::ContentPart* out_part = parts->add_parts();
        out_part->set_type(type);
        out_part->set_text(pf.String("text").value_or(""));
        mf.Absorb(pf.status());
      }
    } else {
      mf.Fail("content", "a string or a list of content parts", *content);
    }
  }
  if (const Json* calls = mf.Array("tool_calls")) out.set_tool_calls_json(Dump(*calls));
  if (std::optional<std::string> id = mf.String("tool_call_id")) out.set_tool_call_id(*id);
  if (std::optional<std::string> n = mf.String("name")) out.set_name(*n);
  Json extra = Json::object();
  for (auto it = m.begin(); it != m.end(); ++it) {
    static constexpr std::string_view kKnown[] = {"role", "content", "tool_calls", "tool_call_id",
                                                  "name"};
    if (std::find(std::begin(kKnown), std::end(kKnown), it.key()) == std::end(kKnown)) {
      extra[it.key()] = it.value();
    }
  }
  if (!extra.empty()) out.set_extra_json(Dump(extra));
  f.Absorb(mf.status());
}

// `messages` and the template's options (tools, chat_template_kwargs, vLLM's
// add_generation_prompt and continue_final_message).
void ReadConversation(Fields& f, v1::Conversation& chat, bool messages_required) {
  const Json* messages = f.Array("messages");
  if (messages == nullptr) {
    if (messages_required && f.status().ok()) f.Error("messages", "'messages' is required");
    return;
  }
  if (messages->empty()) f.Error("messages", "'messages' must not be empty");
  for (size_t i = 0; i < messages->size() && f.status().ok(); ++i) {
    ReadMessage((*messages)[i], i, f, *chat.add_messages());
  }
  if (const Json* tools = f.Array("tools"); tools != nullptr && !tools->empty()) {
    chat.set_tools_json(Dump(*tools));
  }
  if (const Json* kwargs = f.Object("chat_template_kwargs")) {
    chat.set_template_kwargs_json(Dump(*kwargs));
  }
  if (std::optional<bool> add = f.Bool("add_generation_prompt")) {
    chat.set_add_generation_prompt(*add);
  }
  if (std::optional<bool> cont = f.Bool("continue_final_message")) {
    chat.set_continue_final_message(*cont);
  }
}

// A token id list, or an error naming `param`.
bool ReadIds(const Json& ids, Fields& f, const std::string& param, v1::TokenIds& out) {
  for (const Json& id : ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX) {
      f.Fail(param, "a string or a list of token ids", ids);
      return false;
    }
    out.add_ids(id.get<int32_t>());
  }
  return true;
}

}  // namespace

std::optional<std::string> ParamOf(const absl::Status& status) {
  absl::optional<absl::Cord> param = status.GetPayload(kParamPayload);
  if (!param.has_value()) return std::nullopt;
  return std::string(*param);
}

absl::StatusOr<OpenAiRequest> ParseChatCompletionRequest(std::string_view body) {
  absl::StatusOr<Json> j = ParseBody(body);
  if (!j.ok()) return j.status();
  Fields f(*j);
  OpenAiRequest out;
  out.endpoint = OpenAiEndpoint::kChatCompletions;
  ReadCommon(f, out);
  ReadConversation(f, *out.generate.mutable_chat(), /*messages_required=*/true);
  v1::LogprobOptions& lp = *out.generate.mutable_logprobs();
  lp.set_enabled(f.Bool("logprobs").value_or(false));
  if (std::optional<int64_t> top = f.Int("top_logprobs", 0, kMaxTopLogprobs)) {
    if (!lp.enabled() && *top > 0) {
      f.Error("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
    lp.set_top_n(static_cast<int32_t>(*top));
  }
  if (!f.status().ok()) return f.status();
  return out;
}

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body) {
  absl::StatusOr<Json> j = ParseBody(body);
  if (!j.ok()) return j.status();
  Fields f(*j);
  OpenAiRequest out;
  out.endpoint = OpenAiEndpoint::kCompletions;
  ReadCommon(f, out);
  const Json* prompt = f.Get("prompt");
  if (prompt == nullptr) {
    f.Error("prompt", "'prompt' is required");
  } else if (prompt->is_string()) {
    out.generate.set_text(prompt->get<std::string>());
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
    ReadIds(*prompt, f, "prompt", *out.generate.mutable_token_ids());
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    out.generate.set_text((*prompt)[0].get<std::string>());
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_array()) {
    ReadIds((*prompt)[0], f, "prompt", *out.generate.mutable_token_ids());
  } else if (prompt->is_array() && prompt->size() > 1) {
    f.Error("prompt", "a batch of prompts is not supported: send one prompt per request");
  } else {
    f.Fail("prompt", "a string or a list of token ids", *prompt);
  }
  if (std::optional<int64_t> n = f.Int("logprobs", 0, kMaxTopLogprobs)) {
    out.generate.mutable_logprobs()->set_enabled(true);
    out.generate.mutable_logprobs()->set_top_n(static_cast<int32_t>(*n));
  }
  if (f.Bool("echo").value_or(false)) {
    f.Error("echo", "'echo' is not supported by prefixd");
  }
  if (std::optional<std::string> suffix = f.String("suffix"); suffix && !suffix->empty()) {
    f.Error("suffix", "'suffix' is not supported by prefixd");
  }
  if (!f.status().ok()) return f.status();
  return out;
}

absl::StatusOr<TokenizeCall> ParseTokenizeRequest(std::string_view body) {
  absl::StatusOr<Json> j = ParseBody(body);
  if (!j.ok()) return j.status();
  Fields f(*j);
  TokenizeCall out;
  if (std::optional<std::string> model = f.String("model")) out.model = *model;
  if (std::optional<std::string> prompt = f.String("prompt")) {
    out.request.set_text(*prompt);
    out.add_special_tokens = f.Bool("add_special_tokens").value_or(true);
  } else if (f.Get("messages") != nullptr) {
    ReadConversation(f, *out.request.mutable_chat(), /*messages_required=*/true);
  } else if (f.status().ok()) {
    f.Error("prompt", "give 'prompt' (text) or 'messages' (a conversation)");
  }
  if (!f.status().ok()) return f.status();
  return out;
}

absl::StatusOr<DetokenizeCall> ParseDetokenizeRequest(std::string_view body) {
  absl::StatusOr<Json> j = ParseBody(body);
  if (!j.ok()) return j.status();
  Fields f(*j);
  DetokenizeCall out;
  if (std::optional<std::string> model = f.String("model")) out.model = *model;
  const Json* tokens = f.Array("tokens");
  if (tokens == nullptr && f.status().ok()) f.Error("tokens", "'tokens' is required");
  if (tokens != nullptr) {
    v1::TokenIds ids;
    if (ReadIds(*tokens, f, "tokens", ids)) {
      out.request.mutable_token_ids()->Assign(ids.ids().begin(), ids.ids().end());
    }
  }
  if (!f.status().ok()) return f.status();
  return out;
}

OpenAiError MakeOpenAiError(int http_status, std::string_view message, std::string_view param,
                            std::string_view code) {
  const char* type = "invalid_request_error";
  switch (http_status) {
    case 401:
      type = "authentication_error";
      break;
    case 403:
      type = "permission_error";
      break;
    case 404:
      type = "not_found_error";
      break;
    case 429:
      type = "rate_limit_error";
      break;
    case 503:
      type = "service_unavailable_error";
      break;
    default:
      if (http_status >= 500) type = "server_error";
  }
  Json error = {{"message", std::string(message)},
                {"type", type},
                {"param", param.empty() ? Json() : Json(std::string(param))},
                {"code", code.empty() ? Json() : Json(std::string(code))}};
  return OpenAiError{http_status, Dump(Json{{"error", std::move(error)}})};
}

OpenAiError ToOpenAiError(const absl::Status& status) {
  const std::string param = ParamOf(status).value_or("");
  const std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return MakeOpenAiError(400, message, param);
    case absl::StatusCode::kOutOfRange:
      return MakeOpenAiError(400, message, param, "context_length_exceeded");
    case absl::StatusCode::kUnauthenticated:
      return MakeOpenAiError(401, message, "", "invalid_api_key");
    case absl::StatusCode::kPermissionDenied:
      return MakeOpenAiError(403, message);
    case absl::StatusCode::kNotFound:
      return MakeOpenAiError(404, message, param);
    case absl::StatusCode::kResourceExhausted:
      return MakeOpenAiError(429, message);
    case absl::StatusCode::kUnavailable:
      return MakeOpenAiError(503, message);
    case absl::StatusCode::kDeadlineExceeded:
      return MakeOpenAiError(504, message);
    case absl::StatusCode::kCancelled:
      return MakeOpenAiError(499, message);
    default:
      return MakeOpenAiError(500, message);
  }
}

}  // namespace prefixd
