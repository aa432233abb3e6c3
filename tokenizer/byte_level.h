// tokenizer/byte_level.h — GPT-2's reversible map between bytes and printable characters.
//
// Byte-level BPE (GPT-2, Llama 3, Qwen2) works on text in which every byte has been
// replaced by one printable Unicode character, so that a vocabulary of strings can cover
// all 256 bytes: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
// themselves, the other 68 bytes to U+0100.. in byte order (space -> 'Ġ', '\n' -> 'Ċ').
#ifndef PREFIXD_TOKENIZER_BYTE_LEVEL_H_
#define PREFIXD_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace prefixd {

// The UTF-8 of the character that stands for `byte`.
std::string_view ByteLevelChar(uint8_t byte);

// The byte that `c` stands for, or -1 if `c` is not one of the 256 characters.
int ByteLevelByte(char32_t c);

// The 256 bytes in GPT-2's vocabulary order: the bytes that map to themselves first
// (ascending), then the others (ascending). A byte-level vocabulary gives byte
// ByteLevelVocabOrder()[i] the id i.
const std::array<uint8_t, 256>& ByteLevelVocabOrder();

// Appends the byte-level form of `bytes` (every byte replaced by its character).
void AppendByteLevel(std::string_view bytes, std::string& out);

// If every character of `token` is one of the 256, appends the bytes they stand for and
// returns true; otherwise appends nothing and returns false.
bool AppendBytesOfByteLevel(std::string_view token, std::string& out);

}  // namespace prefixd

#endif  // PREFIXD_TOKENIZER_BYTE_LEVEL_H_
