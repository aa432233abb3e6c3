#include "tokenizer/jinja/template.h"

#include <utility>

#include "absl/strings/cord.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/runtime.h"

namespace prefixd::jinja {
namespace {

const absl::string_view kKindUrl(kErrorKindUrl.data(), kErrorKindUrl.size());

absl::Status ToStatus(const Error& error, bool with_column) {
  std::string message;
  if (std::string_view(error.kind) == "TemplateError" || error.line == 0) {
    message = error.message;  // raise_exception: exactly the template's message
  } else if (with_column) {
    message = Cat("line ", error.line, ", column ", error.column, ": ", error.message);
  } else {
    message = Cat("line ", error.line, ": ", error.message);
  }
  absl::Status status(error.code, message);
  status.SetPayload(kKindUrl, absl::Cord(error.kind));
  return status;
}

}  // namespace

std::string ErrorKind(const absl::Status& status) {
  auto kind = status.GetPayload(kKindUrl);
  return kind ? std::string(*kind) : std::string();
}

Template::Template(std::shared_ptr<const Node> root) : root_(std::move(root)) {}
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

absl::StatusOr<Template> Template::Parse(std::string_view source) {
  try {
    std::shared_ptr<const Node> root = ParseTemplate(source);
    return Template(std::move(root));
  } catch (const Error& error) {
    return ToStatus(error, /*with_column=*/true);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while parsing the template");
  }
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& variables,
                                             const RenderOptions& options) const {
  try {
    Interpreter interp(options);
    return interp.Render(static_cast<const TemplateRoot&>(*root_), variables);
  } catch (const Error& error) {
    return ToStatus(error, /*with_column=*/false);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while rendering the template");
  }
}

}  // namespace prefixd::jinja
