// tokenizer/unicode_nfc.h — Unicode Normalization Form C, for tokenizers whose normalizer is
// "NFC" (Qwen2). The tables are Unicode 9.0.0's, as in Hugging Face tokenizers (unicode_nfc.cc).
#ifndef PREFIXD_TOKENIZER_UNICODE_NFC_H_
#define PREFIXD_TOKENIZER_UNICODE_NFC_H_

#include <string>
#include <string_view>

namespace prefixd {

// The NFC form of `text`. Bytes that are not valid UTF-8 are kept as they are and act
// as boundaries: nothing composes across them.
std::string NfcNormalize(std::string_view text);

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_UNICODE_NFC_H_
