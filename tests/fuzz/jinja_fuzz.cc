// Fuzzes the Jinja2 interpreter: the input is a template source, optionally followed by
// "\n#####\n" and a JSON object of variables (otherwise a fixed chat conversation with tools
// is used). Parse and Render must return, never crash, hang or leak, within small limits;
// a render that succeeds stays within its output bound, and every error carries a kind.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/check.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/template.h"

namespace {

using Json = nlohmann::ordered_json;

const Json& DefaultVariables() {
  static const Json* vars = new Json(Json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "What's the weather in Paris? <think>é ✓</think>"},
      {"role": "assistant", "content": "", "tool_calls": [{"id": "a1b2c3d4e", "type": "function",
        "function": {"name": "get_weather", "arguments": {"location": "Paris", "n": 2.5}}}]},
      {"role": "tool", "tool_call_id": "a1b2c3d4e", "content": "{\"temperature\": 22}"},
      {"role": "assistant", "content": "It is 22 degrees."}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                     "required": ["location"]}}}],
    "documents": null,
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "enable_thinking": false
  })"));
  return *vars;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kSeparator = "\n#####\n";
  std::string_view source = input;
  Json custom;
  const Json* vars = &DefaultVariables();
  if (size_t sep = input.find(kSeparator); sep != std::string_view::npos) {
    source = input.substr(0, sep);
    custom =
        Json::parse(input.substr(sep + kSeparator.size()), nullptr, /*allow_exceptions=*/false);
    if (custom.is_object()) vars = &custom;
  }

  absl::StatusOr<prefixd::jinja::Template> parsed = prefixd::jinja::Template::Parse(source);
  if (!parsed.ok()) {
    PREFIXD_CHECK(prefixd::jinja::ErrorKind(parsed.status()) == "TemplateSyntaxError",
                  parsed.status().ToString());
    return 0;
  }
  prefixd::jinja::RenderOptions options;
  options.limits.max_steps = 20000;
  options.limits.max_call_depth = 32;
  options.limits.max_output_bytes = 64 << 10;
  options.strftime_now = [](std::string_view format) { return std::string(format.substr(0, 64)); };
  absl::StatusOr<std::string> rendered = parsed->Render(*vars, options);
  if (rendered.ok()) {
    PREFIXD_CHECK(rendered->size() <= options.limits.max_output_bytes, rendered->size());
  } else {
    const absl::StatusCode code = rendered.status().code();
    PREFIXD_CHECK(
        code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kResourceExhausted,
        rendered.status().ToString());
    PREFIXD_CHECK(!prefixd::jinja::ErrorKind(rendered.status()).empty(),
                  rendered.status().ToString());
  }
  return 0;
}
