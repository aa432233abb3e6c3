// tests/fuzz/prompt_encoder.h — the tokenizer and chat template that the request fuzzers
// (gRPC's Generate, the OpenAI API's bodies) encode prompts with: a Llama-3 style
// vocabulary and template, so that chat prompts are rendered and tokenized too.
#ifndef PREFIXD_TESTS_FUZZ_PROMPT_ENCODER_H_
#define PREFIXD_TESTS_FUZZ_PROMPT_ENCODER_H_

#include <string>

#include "base/check.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace prefixd::fuzz {

inline const Tokenizer* FuzzTokenizer() {
  static const Tokenizer* t = [] {
    auto tok =
        Tokenizer::FromFile(std::string(PREFIXD_TESTDATA_DIR) + "/llama3_style_tokenizer.json");
    PREFIXD_CHECK(tok.ok(), tok.status().ToString());
    return tok->release();
  }();
  return t;
}

inline const ChatTemplate* FuzzChatTemplate() {
  static const ChatTemplate* t = [] {
    auto chat = ChatTemplate::Create(
        {{"default",
          "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
          "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
          "{% endif %}"}},
        {{"bos_token", "<|begin_of_text|>"}}, "fuzz template");
    PREFIXD_CHECK(chat.ok(), chat.status().ToString());
    return chat->release();
  }();
  return t;
}

}  // namespace prefixd::fuzz

#endif  // PREFIXD_TESTS_FUZZ_PROMPT_ENCODER_H_
