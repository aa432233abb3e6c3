// tokenizer/chat_template.h — a model's chat template: a conversation to prompt text,
// exactly as Hugging Face transformers' apply_chat_template renders it.
//
// The template comes from the model folder (tokenizer_config.json's "chat_template", a
// string or a list of named templates, or chat_template.jinja) or from a file that
// overrides it. It is rendered with transformers' settings (tokenizer/jinja/template.h)
// and these variables: messages, tools (a list or None), documents (None),
// add_generation_prompt, the special tokens of tokenizer_config.json (bos_token,
// eos_token, ...), and the caller's keyword arguments. The text it renders is tokenized
// WITHOUT adding special tokens again: the template writes BOS itself.
#ifndef PREFIXD_TOKENIZER_CHAT_TEMPLATE_H_
#define PREFIXD_TOKENIZER_CHAT_TEMPLATE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja/template.h"

namespace prefixd {

// One apply_chat_template call, in transformers' JSON shapes.
struct Conversation {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // [{role, content, ...}]
  std::optional<nlohmann::ordered_json> tools;                        // a list, or None
  std::optional<bool> add_generation_prompt;  // unset: true unless continue_final_message
  bool continue_final_message = false;
  nlohmann::ordered_json kwargs = nlohmann::ordered_json::object();  // more variables
};

// Immutable after loading: Render may run on many threads at once.
class ChatTemplate {
 public:
  // The special tokens of a tokenizer_config.json as template variables ("bos_token":
  // "<s>", ...): strings, or AddedToken objects whose "content" is the string.
  using SpecialTokens = std::map<std::string, nlohmann::ordered_json>;

  // Loads the template of a model folder, or of `override_file` (a Jinja file) when not
  // empty; the folder's tokenizer_config.json still gives the special tokens. Returns null
  // when the model has no template and no override is given. Errors name the file, and for
  // a template that does not parse, its line and column.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Load(std::string_view model_folder,
                                                            std::string_view override_file);

  // From sources in memory: `templates` maps a name ("default", "tool_use") to Jinja source
  // (one unnamed template is "default"); `source_name` names them in errors.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(
      const std::map<std::string, std::string>& templates, SpecialTokens special_tokens,
      std::string_view source_name);

  // The prompt text. INVALID_ARGUMENT for a conversation the template refuses
  // (raise_exception: exactly its message), a malformed conversation, or a template error;
  // RESOURCE_EXHAUSTED when rendering exceeds its bounds.
  absl::StatusOr<std::string> Render(const Conversation& conversation,
                                     const jinja::RenderOptions& options = {}) const;

  // Names of the templates ("default", "tool_use", ...).
  std::vector<std::string> names() const;
  const SpecialTokens& special_tokens() const { return special_tokens_; }

 private:
  ChatTemplate() = default;

  std::map<std::string, jinja::Template> templates_;
  SpecialTokens special_tokens_;
};

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_CHAT_TEMPLATE_H_
