// tokenizer/jinja/template.h — a Jinja2 interpreter for chat templates.
//
// Python's jinja2 (3.1, as transformers configures it) is the semantics to match: a chat
// template rendered here gives the same bytes as transformers' apply_chat_template. The
// interpreter is split as huggingface.js/jinja is: lexer (tokens), parser (an AST of small
// node types), runtime (a Value hierarchy and a chain of scopes).
#ifndef PREFIXD_TOKENIZER_JINJA_TEMPLATE_H_
#define PREFIXD_TOKENIZER_JINJA_TEMPLATE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace prefixd::jinja {

struct Node;  // the parsed template (ast.h)

// Bounds on one Render: a hostile template or conversation cannot hang or exhaust the
// server. Exceeding one is RESOURCE_EXHAUSTED.
struct RenderLimits {
  int64_t max_steps = 5'000'000;         // statements, expressions and loop iterations
  int max_call_depth = 256;              // nested macro calls (recursive macros)
  size_t max_output_bytes = 16u << 20;   // the rendered text, and any one string built
};

struct RenderOptions {
  RenderLimits limits;
  // strftime_now(format) as a template global; unset: the current local time.
  std::function<std::string(std::string_view format)> strftime_now;
};

// Errors carry the kind Python's jinja2 would raise, as a payload under kErrorKindUrl:
// "TemplateSyntaxError" (Parse), "TemplateError" (raise_exception), "UndefinedError",
// "TypeError", "ValueError", "IndexError" ... (Render).
inline constexpr std::string_view kErrorKindUrl = "prefixd.dev/jinja-error-kind";
// The kind of a Parse or Render error ("" for OK or a status without the payload).
std::string ErrorKind(const absl::Status& status);

// Immutable after Parse: Render may run on many threads at once.
class Template {
 public:
  // Syntax errors are INVALID_ARGUMENT "line L, column C: <message>", kind
  // TemplateSyntaxError. Whitespace rules are transformers': trim_blocks and lstrip_blocks
  // on, loopcontrols (break, continue), and {% generation %} blocks rendered as plain text.
  static absl::StatusOr<Template> Parse(std::string_view source);

  // Renders with `variables` (a JSON object; key order is kept, as Python dicts keep it)
  // plus the globals raise_exception(msg), strftime_now(fmt), namespace(...), range(...).
  // raise_exception(msg) is INVALID_ARGUMENT with exactly `msg` as the message (kind
  // TemplateError); other runtime errors are INVALID_ARGUMENT "line L: <message>";
  // exceeding a limit is RESOURCE_EXHAUSTED.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& variables,
                                     const RenderOptions& options = {}) const;

  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  ~Template();

 private:
  explicit Template(std::shared_ptr<const Node> root);
  std::shared_ptr<const Node> root_;
};

}  // namespace prefixd::jinja

#endif  // PREFIXD_TOKENIZER_JINJA_TEMPLATE_H_
