// Fuzzes the tokenizer two ways, chosen by the first byte:
//   even: the rest is a tokenizer.json — it loads or is refused, and a loaded one encodes
//         and decodes a few strings without crashing;
//   odd:  the rest is text for the byte-level and Metaspace fixtures — byte-level encoding
//         round-trips every byte string, and streaming decode equals one-shot decode.
#include <cstdint>
#include <memory>
#include <string>

#include "base/check.h"
#include "tokenizer/tokenizer.h"

namespace {

std::unique_ptr<prefixd::Tokenizer> Load(const char* name) {
  auto t = prefixd::Tokenizer::FromFile(std::string(PREFIXD_TESTDATA_DIR) + "/" + name);
  PREFIXD_CHECK(t.ok(), t.status().ToString());
  return *std::move(t);
}

const prefixd::Tokenizer& ByteLevel() {
  static const auto* t = Load("llama3_style_tokenizer.json").release();
  return *t;
}
const prefixd::Tokenizer& Metaspace() {
  static const auto* t = Load("llama2_style_tokenizer.json").release();
  return *t;
}

void CheckStreaming(const prefixd::Tokenizer& tok, const std::vector<int32_t>& ids) {
  prefixd::StreamDecoder stream(tok, /*skip_special_tokens=*/false);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.Push(id);
  streamed += stream.Finish();
  PREFIXD_CHECK(streamed == tok.Decode(ids, false), "stream != decode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto tok = prefixd::Tokenizer::FromJson(rest, "tokenizer.json");
    if (!tok.ok()) return 0;
    for (const char* text : {"Hello, world!", " two  spaces\n", "\xff\xfe invalid", ""}) {
      const std::vector<int32_t> ids = (*tok)->Encode(text, true);
      for (int32_t id : ids) PREFIXD_CHECK(id >= 0 && id < (*tok)->vocab_size(), "id range");
      CheckStreaming(**tok, ids);
    }
    return 0;
  }
  const std::vector<int32_t> ids = ByteLevel().Encode(rest, false);
  PREFIXD_CHECK(ByteLevel().Decode(ids, false) == rest, "byte-level round trip");
  CheckStreaming(ByteLevel(), ids);
  const std::vector<int32_t> meta = Metaspace().Encode(rest, true);
  CheckStreaming(Metaspace(), meta);
  // Arbitrary ids (in and out of the vocabulary) decode without crashing.
  std::vector<int32_t> raw;
  for (size_t i = 0; i + 1 < rest.size(); i += 2) {
    raw.push_back(static_cast<int16_t>((static_cast<uint8_t>(rest[i]) << 8) |
                                       static_cast<uint8_t>(rest[i + 1])));
  }
  CheckStreaming(Metaspace(), raw);
  CheckStreaming(ByteLevel(), raw);
  return 0;
}
