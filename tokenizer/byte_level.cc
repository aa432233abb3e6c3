#include "tokenizer/byte_level.h"

#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {
namespace {

bool MapsToItself(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

// The highest character used: U+0100 + 67 (the 68 bytes that do not map to themselves).
constexpr char32_t kMaxChar = 0x143;

struct ByteLevelTables {
  std::array<std::string, 256> char_of_byte;
  std::array<int16_t, kMaxChar + 1> byte_of_char;
  std::array<uint8_t, 256> vocab_order;

  ByteLevelTables() {
    byte_of_char.fill(-1);
    int shifted = 0;
    int order = 0;
    for (int b = 0; b < 256; ++b) {
      if (MapsToItself(b)) vocab_order[order++] = static_cast<uint8_t>(b);
    }
    for (int b = 0; b < 256; ++b) {
      char32_t c = static_cast<char32_t>(b);
      if (!MapsToItself(b)) {
        c = 0x100 + shifted++;
        vocab_order[order++] = static_cast<uint8_t>(b);
      }
      AppendUtf8(c, char_of_byte[b]);
      byte_of_char[c] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables* tables = new ByteLevelTables();
  return *tables;
}

}  // namespace

std::string_view ByteLevelChar(uint8_t byte) { return Tables().char_of_byte[byte]; }

int ByteLevelByte(char32_t c) { return c <= kMaxChar ? Tables().byte_of_char[c] : -1; }

const std::array<uint8_t, 256>& ByteLevelVocabOrder() { return Tables().vocab_order; }

void AppendByteLevel(std::string_view bytes, std::string& out) {
  const ByteLevelTables& tables = Tables();
  for (char c : bytes) out += tables.char_of_byte[static_cast<uint8_t>(c)];
}

bool AppendBytesOfByteLevel(std::string_view token, std::string& out) {
  const size_t old_size = out.size();
  for (size_t pos = 0; pos < token.size();) {
    const Utf8Char c = DecodeUtf8(token, pos);
    const int b = c.valid ? ByteLevelByte(c.code_point) : -1;
    if (b < 0) {
      out.resize(old_size);
      return false;
    }
    out += static_cast<char>(b);
    pos += c.length;
  }
  return true;
}

}  // namespace prefixd
