#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

// The fixtures in testdata/ are written by testdata/make_fixtures.py, which lists their
// vocabularies and merges. The expected ids below are derived by hand from those lists
// (and agree with Hugging Face tokenizers 0.23 on the same files).
//
// llama3_style_tokenizer.json (byte-level, Llama 3's split regex, ignore_merges):
//   ids 0..255: the bytes in GPT-2 order. '!'..'~' are 0..93 (so 'a' = 64, 'h' = 71,
//   '\'' = 6, '1' = 16), 'Ċ' ('\n') = 198, 'Ġ' (' ') = 220.
//   merges by rank:  0 Ġ t=256  1 l l=257  2 e ll=258  3 h e=259  4 h ell=260
//     5 hell o=261  6 Ġt he=262  7 Ġ w=263  8 o r=264  9 Ġw or=265  10 Ġwor l=266
//     11 Ġworl d=267  12 ' s=268  13 1 2=269  14 12 3=270  15 Ċ Ċ=271  16 Ġ Ġ=272
//   273 "Ġhello" is in the vocabulary but no merge makes it.
//   added: 274 <|begin_of_text|>, 275 <|end_of_text|>, 276 <|eot_id|> (special),
//          277 [citation] (not special). Template: <|begin_of_text|> $A.
//
// llama2_style_tokenizer.json (Prepend("▁") + Replace(" ", "▁"), byte_fallback):
//   0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF> (byte b is 3 + b),
//   259 ▁, 260 h, 261 e, 262 l, 263 o, 264 w, 265 r, 266 d, 267 t, 268 a, 269 s, 270 i,
//   271 n; merges by rank:  0 l l=272  1 ▁ h=273  2 e ll=274  3 ▁h ell=275
//     4 ▁hell o=276  5 ▁ w=277  6 o r=278  7 ▁w or=279  8 l d=280  9 ▁wor ld=281
//     10 ▁ ▁=282  11 i n=283  12 ▁ a=284
//   added: 0 <unk>, 1 <s>, 2 </s>, 285 [INST] (all special). Template: <s> $A.
//   Decoder: Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0).

namespace prefixd {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Json = nlohmann::json;

constexpr char kLlama3Style[] = "llama3_style_tokenizer.json";
constexpr char kLlama2Style[] = "llama2_style_tokenizer.json";

std::string TestdataPath(const std::string& name) {
  return std::string(PREFIXD_TESTDATA_DIR) + "/" + name;
}

Json ReadFixture(const std::string& name) {
  std::ifstream file(TestdataPath(name), std::ios::binary);
  return Json::parse(std::string(std::istreambuf_iterator<char>(file), {}));
}

std::unique_ptr<Tokenizer> LoadJson(const Json& json) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(json.dump(), "test.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

std::unique_ptr<Tokenizer> LoadFixture(const std::string& name) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromFile(TestdataPath(name));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

// The fixture with one change.
std::unique_ptr<Tokenizer> LoadVariant(const std::string& name,
                                       const std::function<void(Json&)>& change) {
  Json json = ReadFixture(name);
  change(json);
  return LoadJson(json);
}

std::vector<TokenId> Ids(std::initializer_list<TokenId> ids) { return ids; }

// Where a stream may cut `text`: before each character, reading each byte that does not
// start a valid UTF-8 character as a unit of its own, and at the end.
std::vector<bool> CharacterBoundaries(const std::string& text) {
  std::vector<bool> boundary(text.size() + 1, false);
  size_t pos = 0;
  while (pos < text.size()) {
    boundary[pos] = true;
    const auto b = static_cast<uint8_t>(text[pos]);
    size_t n = b < 0x80                 ? 1
               : b >= 0xC2 && b <= 0xDF ? 2
               : b >= 0xE0 && b <= 0xEF ? 3
               : b >= 0xF0 && b <= 0xF4 ? 4
                                        : 0;
    bool valid = n > 0 && pos + n <= text.size();
    if (valid && n > 1) {
      const uint32_t cp_min[] = {0, 0, 0x80, 0x800, 0x10000};
      uint32_t cp = b & (0x7F >> n);
      for (size_t i = 1; i < n && valid; ++i) {
        const auto c = static_cast<uint8_t>(text[pos + i]);
        valid = (c & 0xC0) == 0x80;
        cp = (cp << 6) | (c & 0x3F);
      }
      valid = valid && cp >= cp_min[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    pos += valid ? n : 1;
  }
  boundary[text.size()] = true;
  return boundary;
}

// Streams `ids` and checks the deltas: together they are Decode(ids), and none ends
// inside a character of the result.
void ExpectStreamMatchesDecode(const Tokenizer& t, const std::vector<TokenId>& ids,
                               bool skip_special_tokens) {
  const std::string expected = t.Decode(ids, skip_special_tokens);
  const std::vector<bool> boundary = CharacterBoundaries(expected);
  StreamDecoder stream(t, skip_special_tokens);
  std::string streamed;
  for (TokenId id : ids) {
    streamed += stream.Push(id);
    ASSERT_LE(streamed.size(), expected.size());
    EXPECT_TRUE(boundary[streamed.size()]) << "a delta ends inside a character";
  }
  streamed += stream.Finish();
  EXPECT_EQ(streamed, expected);
}

std::string RandomBytes(std::mt19937& rng, int max_length) {
  std::uniform_int_distribution<int> length(0, max_length);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string s(length(rng), '\0');
  for (char& c : s) c = static_cast<char>(byte(rng));
  return s;
}

// Text without a leading space (Metaspace decoding strips one) and without '▁'; with
// `added_tokens`, the fixtures' added tokens appear in it too.
std::string RandomText(std::mt19937& rng, bool added_tokens) {
  static const std::vector<std::string> kPieces = {
      "hello", "world",   "the", " ",  "  ",   "\n",     "\t",        "it's",
      "42",    "1234567", "é",   "ñ",  "你好", "🦀",   "👍🏽",  ",",
      "!",     "a",       "wor", "ld", "<s>",  "[INST]", "<|eot_id|>"};
  std::uniform_int_distribution<size_t> pick(0, kPieces.size() - (added_tokens ? 1 : 4));
  std::uniform_int_distribution<int> length(0, 12);
  std::string s = "x";
  for (int n = length(rng); n > 0; --n) s += kPieces[pick(rng)];
  return s;
}

// ---- byte-level (Llama 3 style) ----

class ByteLevelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tokenizer_ = LoadFixture(kLlama3Style).release(); }
  static void TearDownTestSuite() { delete tokenizer_; }
  static const Tokenizer& t() { return *tokenizer_; }
  static Tokenizer* tokenizer_;
};
Tokenizer* ByteLevelTest::tokenizer_ = nullptr;

TEST_F(ByteLevelTest, VocabularyLookups) {
  EXPECT_EQ(t().vocab_size(), 278);
  EXPECT_EQ(t().TokenToId("!"), 0);
  EXPECT_EQ(t().TokenToId("Ċ"), 198);
  EXPECT_EQ(t().TokenToId("Ġ"), 220);
  EXPECT_EQ(t().TokenToId("Ġthe"), 262);
  EXPECT_EQ(t().TokenToId("<|eot_id|>"), 276);
  EXPECT_EQ(t().TokenToId("the"), std::nullopt);
  EXPECT_EQ(t().IdToToken(267), "Ġworld");
  EXPECT_EQ(t().IdToToken(274), "<|begin_of_text|>");
  EXPECT_EQ(t().IdToToken(278), "");
  EXPECT_EQ(t().IdToToken(-1), "");
  EXPECT_TRUE(t().IsSpecial(274));
  EXPECT_TRUE(t().IsSpecial(276));
  EXPECT_FALSE(t().IsSpecial(277));  // [citation] is added but not special
  EXPECT_FALSE(t().IsSpecial(261));
  EXPECT_FALSE(t().IsSpecial(100000));
}

TEST_F(ByteLevelTest, EncodesWords) {
  // "hello" is in the vocabulary (ignore_merges: taken whole); " world": Ġ w o r l d
  // -> (Ġ w)=7, (o r)=8 -> Ġw or -> (Ġw or)=9 -> Ġwor l -> 10 -> Ġworl d -> 11 -> Ġworld.
  EXPECT_THAT(t().Encode("hello world", false), ElementsAre(261, 267));
  // " the": Ġ t h e -> (Ġ t)=0 -> Ġt h e -> (h e)=3 -> Ġt he -> (Ġt he)=6 -> Ġthe.
  // "the": t h e -> (h e)=3 -> t he; no merge (t he).
  EXPECT_THAT(t().Encode("the the", false), ElementsAre(83, 259, 262));
}

TEST_F(ByteLevelTest, MergesApplyByRank) {
  // "hellos" is not a token: h e l l o s. The lowest rank first: (l l)=1 -> h e ll o s;
  // (e ll)=2 -> h ell o s; (h ell)=4 (the queued (h e)=3 is stale: 'e' is gone);
  // (hell o)=5 -> hello s. Merging left to right instead would have made "he" first.
  EXPECT_THAT(t().Encode("hellos", false), ElementsAre(261, 82));
  // "hel": (h e)=3 -> he l; no (he l) merge.
  EXPECT_THAT(t().Encode("hel", false), ElementsAre(259, 75));
}

TEST_F(ByteLevelTest, IgnoreMergesTakesVocabularyWordsWhole) {
  // " hello" is token 273, which no merge reaches.
  EXPECT_THAT(t().Encode(" hello", false), ElementsAre(273));
  std::unique_ptr<Tokenizer> merges_only =
      LoadVariant(kLlama3Style, [](Json& j) { j["model"]["ignore_merges"] = false; });
  // Ġ h e l l o -> ... -> Ġ hello (no merge joins Ġ and hello).
  EXPECT_THAT(merges_only->Encode(" hello", false), ElementsAre(220, 261));
}

TEST_F(ByteLevelTest, SplitsContractionsBeforeMerging) {
  // Llama 3's regex cuts "it's" into "it" + "'s", so (' s)=12 applies: ' s -> 's.
  EXPECT_THAT(t().Encode("it's", false), ElementsAre(72, 83, 268));
  // Case-insensitive contractions: "HE" + "'S" (no merge for ' S: 6, 50).
  EXPECT_THAT(t().Encode("HE'S", false), ElementsAre(39, 36, 6, 50));
}

TEST_F(ByteLevelTest, SplitsNumbersIntoGroupsOfThree) {
  // "12345" -> "123" "45": 1 2 3 -> 12 3 -> 123; '4' = 19, '5' = 20.
  EXPECT_THAT(t().Encode("12345", false), ElementsAre(270, 19, 20));
  // "4123" -> "412" "3": 4 1 2 -> 4 12; then 3. As one piece it would have been 4 123.
  EXPECT_THAT(t().Encode("4123", false), ElementsAre(19, 269, 18));
}

// Llama 3's regex takes "'s" as a contraction, the token (' s)=268, after a letter or a
// digit; after a character that is neither, the "'" joins it in a piece of punctuation.
TEST_F(ByteLevelTest, LettersAndDigitsOfUnicode15And16AreLettersAndDigits) {
  // Debian's PCRE2 has Unicode 14, where these are unassigned; Hugging Face's regex
  // engine has Unicode 16.
  const std::string kCharacters[] = {
      "\u1C89",      // CYRILLIC CAPITAL LETTER TJE (16.0)
      "\U00011F04",  // KAWI LETTER A (15.0)
      "\U00016D5A",  // a KIRAT RAI letter (16.0)
      "\U00011F50",  // KAWI DIGIT ZERO (15.0)
      "\U0001CCF0",  // OUTLINED DIGIT ZERO (16.0)
  };
  for (const std::string& c : kCharacters) {
    std::vector<TokenId> expected = t().Encode(c, false);
    expected.push_back(268);
    EXPECT_EQ(t().Encode(c + "'s", false), expected) << c;
  }
}

TEST_F(ByteLevelTest, MongolianVowelSeparatorIsNotWhitespace) {
  // U+180E left White_Space in Unicode 6.3. Hugging Face's \s is White_Space; PCRE2's \s
  // takes U+180E too. Not a space, U+180E is punctuation here: "'" joins it, 's' is alone.
  std::vector<TokenId> expected = t().Encode("\u180e", false);
  expected.insert(expected.end(), {6, 82});
  EXPECT_EQ(t().Encode("\u180e's", false), expected);
  // An em space is whitespace: "'s" stays a contraction after it.
  expected = t().Encode("\u2003", false);
  expected.push_back(268);
  EXPECT_EQ(t().Encode("\u2003's", false), expected);
}

TEST_F(ByteLevelTest, SplitsSpacesAndNewlines) {
  // "a  b" -> "a" " " " b": the run of spaces gives its last space to the next word.
  EXPECT_THAT(t().Encode("a  b", false), ElementsAre(64, 220, 220, 65));
  // Trailing spaces stay together: "a" "  " -> (Ġ Ġ)=16.
  EXPECT_THAT(t().Encode("a  ", false), ElementsAre(64, 272));
  // Newlines are their own piece: "a" "\n\n" "b" -> (Ċ Ċ)=15.
  EXPECT_THAT(t().Encode("a\n\nb", false), ElementsAre(64, 271, 65));
}

TEST_F(ByteLevelTest, MatchesAddedTokensInsideText) {
  EXPECT_THAT(t().Encode("<|begin_of_text|>hello<|eot_id|>", false), ElementsAre(274, 261, 276));
  EXPECT_THAT(t().Encode("x[citation]y", false), ElementsAre(87, 277, 88));
  // Not quite a token: plain bytes.
  EXPECT_THAT(t().Encode("<|eot", false), ElementsAre(27, 91, 68, 78, 83));
}

TEST_F(ByteLevelTest, TemplateAddsBos) {
  EXPECT_EQ(t().bos_token_id(), 274);
  EXPECT_THAT(t().template_prefix(), ElementsAre(274));
  EXPECT_THAT(t().template_suffix(), IsEmpty());
  EXPECT_THAT(t().Encode("hello world", true), ElementsAre(274, 261, 267));
  EXPECT_THAT(t().Encode("", true), ElementsAre(274));
  EXPECT_THAT(t().Encode("", false), IsEmpty());
}

TEST_F(ByteLevelTest, DecodesWithAndWithoutSpecialTokens) {
  const std::vector<TokenId> ids = {274, 261, 267, 276};
  EXPECT_EQ(t().Decode(ids, false), "<|begin_of_text|>hello world<|eot_id|>");
  EXPECT_EQ(t().Decode(ids, true), "hello world");
  // An added token that is not special stays.
  EXPECT_EQ(t().Decode(Ids({87, 277, 88}), true), "x[citation]y");
}

TEST_F(ByteLevelTest, DecodeSkipsIdsWithoutToken) {
  EXPECT_EQ(t().Decode(Ids({261, -1, 278, 1 << 30, 267}), false), "hello world");
}

TEST_F(ByteLevelTest, RoundTripsAnyBytes) {
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
  for (const std::string& text :
       {all_bytes, std::string("🦀 crabs, 你好, naïve"), std::string("\xff\xfe\xc3(\xe2\x82"),
        std::string("   leading and trailing   "), std::string("<|eot_id|> inside")}) {
    EXPECT_EQ(t().Decode(t().Encode(text, false), false), text);
    EXPECT_EQ(t().Decode(t().Encode(text, true), false), "<|begin_of_text|>" + text);
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    const std::string text = RandomBytes(rng, 40);
    EXPECT_EQ(t().Decode(t().Encode(text, false), false), text);
  }
}

TEST_F(ByteLevelTest, StreamHoldsBackSplitCharacters) {
  // 🦀 is F0 9F A6 80: four byte tokens, and nothing to show until the last.
  const std::vector<TokenId> ids = t().Encode("a🦀", false);
  ASSERT_EQ(ids.size(), 5u);
  StreamDecoder stream(t(), true);
  EXPECT_EQ(stream.Push(ids[0]), "a");
  EXPECT_EQ(stream.Push(ids[1]), "");
  EXPECT_EQ(stream.Push(ids[2]), "");
  EXPECT_EQ(stream.Push(ids[3]), "");
  EXPECT_EQ(stream.Push(ids[4]), "🦀");
  EXPECT_EQ(stream.Finish(), "");
  // A character that never completes comes out at the end, as Decode has it.
  StreamDecoder cut(t(), true);
  EXPECT_EQ(cut.Push(ids[1]), "");
  EXPECT_EQ(cut.Push(ids[2]), "");
  EXPECT_EQ(cut.Finish(), "\xf0\x9f");
}

TEST_F(ByteLevelTest, StreamDeltasConcatenateToDecode) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<TokenId> any_id(-2, t().vocab_size() + 2);
  for (int i = 0; i < 300; ++i) {
    std::vector<TokenId> ids =
        t().Encode(i % 2 ? RandomBytes(rng, 30) : RandomText(rng, true), true);
    if (i % 3 == 0) {
      for (TokenId& id : ids) id = any_id(rng);
    }
    ExpectStreamMatchesDecode(t(), ids, false);
    ExpectStreamMatchesDecode(t(), ids, true);
  }
}

TEST_F(ByteLevelTest, StreamContextIsNotRepeated) {
  const std::vector<TokenId> prompt = t().Encode("hello", true);
  StreamDecoder stream(t(), true, prompt);
  EXPECT_EQ(stream.Push(267), " world");
  EXPECT_EQ(stream.Push(276), "");  // <|eot_id|>, skipped
  EXPECT_EQ(stream.Finish(), "");
}

TEST_F(ByteLevelTest, LongPiecesEncodeInLinearishTime) {
  // One pre-token of a million letters: (l l) merges half a million times. A quadratic
  // merge loop would not finish in time.
  const std::string letters(1 << 20, 'l');
  std::vector<TokenId> ids = t().Encode(letters, false);
  EXPECT_EQ(ids.size(), letters.size() / 2);
  EXPECT_EQ(t().Decode(ids, false), letters);
  const std::string spaces(1 << 20, ' ');
  EXPECT_EQ(t().Decode(t().Encode(spaces, false), false), spaces);
}

TEST_F(ByteLevelTest, ConcurrentEncodeAndDecodeAgree) {
  std::vector<std::string> texts;
  std::mt19937 rng(3);
  for (int i = 0; i < 64; ++i) texts.push_back(RandomText(rng, false));
  std::vector<std::vector<TokenId>> expected;
  for (const std::string& text : texts) expected.push_back(t().Encode(text, true));
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          const std::vector<TokenId> ids = t().Encode(texts[i], true);
          if (ids != expected[i] || t().Decode(ids, true) != texts[i]) ++failures[k];
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_THAT(failures, ElementsAre(0, 0, 0, 0));
}

// ---- other byte-level configurations ----

TEST(ByteLevelVariantsTest, Gpt2PreTokenizerWithPrefixSpace) {
  std::unique_ptr<Tokenizer> t = LoadVariant(kLlama3Style, [](Json& j) {
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  });
  // " hello" (prefix space added) is token 273.
  EXPECT_THAT(t->Encode("hello world", false), ElementsAre(273, 267));
  // The text after an added token gets its own prefix space, as in Hugging Face.
  EXPECT_THAT(t->Encode("<|eot_id|>the", false), ElementsAre(276, 262));
}

TEST(ByteLevelVariantsTest, NfcNormalizerComposesCharacters) {
  std::unique_ptr<Tokenizer> t = LoadVariant(kLlama3Style, [](Json& j) {
    j["normalizer"] = {{"type", "NFC"}};
  });
  // e + U+0301 COMBINING ACUTE becomes é (C3 A9: ids 127, 102), as typed directly.
  EXPECT_THAT(t->Encode("cafe\u0301", false), ElementsAre(66, 64, 69, 127, 102));
  EXPECT_THAT(t->Encode("caf\u00e9", false), ElementsAre(66, 64, 69, 127, 102));
  // Hangul jamo compose into a syllable; U+212B ANGSTROM SIGN becomes U+00C5.
  EXPECT_EQ(t->Decode(t->Encode("\u1100\u1161\u11a8 \u212b", false), false), "\uac01 \u00c5");
}

TEST(ByteLevelVariantsTest, NfcHasUnicode9DataAsHuggingFaceHas) {
  // Hugging Face normalizes with Unicode 9.0's tables: marks added since are starters
  // (class 0) there, and composites added since do not compose.
  std::unique_ptr<Tokenizer> nfc = LoadVariant(kLlama3Style, [](Json& j) {
    j["normalizer"] = {{"type", "NFC"}};
  });
  std::unique_ptr<Tokenizer> plain = LoadFixture(kLlama3Style);
  // U+07FD NKO DANTAYALAN (11.0, class 220) blocks e + U+0301 from composing into é.
  EXPECT_EQ(nfc->Encode("e\u07fd\u0301", false), plain->Encode("e\u07fd\u0301", false));
  // Nor is U+1AC1 (14.0, class 230) reordered after U+0316 (class 220).
  EXPECT_EQ(nfc->Encode("a\u1ac1\u0316", false), plain->Encode("a\u1ac1\u0316", false));
  // U+11935 U+11930 (DIVES AKURU, 13.0) do not compose into U+11938.
  EXPECT_EQ(nfc->Encode("\U00011935\U00011930", false),
            plain->Encode("\U00011935\U00011930", false));
  // Marks of 9.0 still reorder and compose across: e U+0316 U+0301 -> é U+0316.
  EXPECT_EQ(nfc->Encode("e\u0301\u0316", false), plain->Encode("\u00e9\u0316", false));
  EXPECT_EQ(nfc->Encode("e\u0316\u0301", false), plain->Encode("\u00e9\u0316", false));
}

TEST(ByteLevelVariantsTest, SplitPatternsReadAsInHuggingFace) {
  // A Split that removes what `pattern` matches; the rest is encoded byte by byte, so the
  // ids show what matched.
  auto removing = [](const std::string& pattern) {
    return LoadVariant(kLlama3Style, [&](Json& j) {
      j["pre_tokenizer"] = {
          {"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", pattern}}},
             {"behavior", "Removed"},
             {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    });
  };
  std::unique_ptr<Tokenizer> plain = LoadFixture(kLlama3Style);
  auto kept = [&](const std::string& pattern, const std::string& text) -> std::string {
    std::unique_ptr<Tokenizer> t = removing(pattern);
    return t == nullptr ? "(does not load)" : plain->Decode(t->Encode(text, false), false);
  };
  EXPECT_EQ(kept(R"(\s+)", "a \u180e\u3000b"), "a\u180eb");
  EXPECT_EQ(kept(R"(\p{L}+)", "a\u1c89 1\U0001ccf0"), " 1\U0001ccf0");
  EXPECT_EQ(kept(R"([^\s\p{L}\p{N}]+)", "x\U00011f50.\U00016d5a!"), "x\U00011f50\U00016d5a");
  // Long category names, as Oniguruma takes them; PCRE2 alone knows only short ones.
  EXPECT_EQ(kept(R"(\p{Letter}+|\p{Decimal_Number})", "ab1\u00b2c"), "\u00b2");
  // Oniguruma's \w counts marks, \d is Nd, \h is a hex digit; ^ starts every line.
  EXPECT_EQ(kept(R"(\w+)", "e\u0301-x_1"), "-");
  EXPECT_EQ(kept(R"(\d)", "1\u00b2\U0001ccf0"), "\u00b2");
  EXPECT_EQ(kept(R"(\h+)", "cafe\tbabe"), "\t");
  EXPECT_EQ(kept(R"(^x)", "xa\nxb"), "a\nb");
}

TEST(ByteLevelVariantsTest, SplitBehaviors) {
  auto with_split = [](const std::string& behavior) {
    return LoadVariant(kLlama3Style, [&](Json& j) {
      j["pre_tokenizer"] = {
          {"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"String", " "}}},
             {"behavior", behavior},
             {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    });
  };
  // "a the": Isolated -> "a" " " "the"; Removed -> "a" "the"; MergedWithNext -> "a" " the".
  EXPECT_THAT(with_split("Isolated")->Encode("a the", false), ElementsAre(64, 220, 83, 259));
  EXPECT_THAT(with_split("Removed")->Encode("a the", false), ElementsAre(64, 83, 259));
  EXPECT_THAT(with_split("MergedWithNext")->Encode("a the", false), ElementsAre(64, 262));
  EXPECT_THAT(with_split("MergedWithPrevious")->Encode("a the", false),
              ElementsAre(64, 220, 83, 259));
}

TEST(ByteLevelVariantsTest, DigitsPreTokenizer) {
  auto with_digits = [](bool individual) {
    return LoadVariant(kLlama3Style, [&](Json& j) {
      j["pre_tokenizer"] = {
          {"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Digits"}, {"individual_digits", individual}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    });
  };
  // One piece per digit: no merges apply.
  EXPECT_THAT(with_digits(true)->Encode("12345", false), ElementsAre(16, 17, 18, 19, 20));
  // One piece for the run: 1 2 -> 12, 12 3 -> 123.
  EXPECT_THAT(with_digits(false)->Encode("12345", false), ElementsAre(270, 19, 20));
}

TEST(ByteLevelVariantsTest, AddedTokenOptions) {
  std::unique_ptr<Tokenizer> t = LoadVariant(kLlama3Style, [](Json& j) {
    auto added = [](int id, const char* content, bool lstrip, bool rstrip, bool single_word) {
      return Json{{"id", id},         {"content", content},         {"lstrip", lstrip},
                  {"rstrip", rstrip}, {"single_word", single_word}, {"normalized", false},
                  {"special", false}};
    };
    j["added_tokens"].push_back(added(278, "<l>", true, false, false));
    j["added_tokens"].push_back(added(279, "<r>", false, true, false));
    j["added_tokens"].push_back(added(280, "wo", false, false, true));
  });
  // lstrip / rstrip take the spaces beside the token.
  EXPECT_THAT(t->Encode("a  <l>b", false), ElementsAre(64, 278, 65));
  EXPECT_THAT(t->Encode("a<r>  b", false), ElementsAre(64, 279, 65));
  // single_word: "wo" alone, not inside "two" (" two": Ġt w o).
  EXPECT_THAT(t->Encode("wo two", false), ElementsAre(280, 256, 86, 78));
}

// ---- Metaspace + byte fallback (Llama 2 style) ----

class MetaspaceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tokenizer_ = LoadFixture(kLlama2Style).release(); }
  static void TearDownTestSuite() { delete tokenizer_; }
  static const Tokenizer& t() { return *tokenizer_; }
  static Tokenizer* tokenizer_;
};
Tokenizer* MetaspaceTest::tokenizer_ = nullptr;

TEST_F(MetaspaceTest, EncodesWholeTextAsOneWord) {
  // Normalized to "▁hello▁world", one word (no pre-tokenizer): ▁ h e l l o ▁ w o r l d;
  // (l l)=0 -> ll; (▁ h)=1 -> ▁h; (e ll)=2 -> ell; (▁h ell)=3 -> ▁hell;
  // (▁hell o)=4 -> ▁hello; (▁ w)=5 -> ▁w; (o r)=6 -> or; (▁w or)=7 -> ▁wor;
  // (l d)=8 -> ld; (▁wor ld)=9 -> ▁world.
  EXPECT_THAT(t().Encode("hello world", false), ElementsAre(276, 281));
  EXPECT_THAT(t().Encode("hello world", true), ElementsAre(1, 276, 281));
  EXPECT_EQ(t().bos_token_id(), 1);
  EXPECT_EQ(t().vocab_size(), 286);
}

TEST_F(MetaspaceTest, SpacesBecomeMetaspaceTokens) {
  // "▁a▁▁b": (▁ ▁)=10 first, then (▁ a)=12; 'b' is not in the vocabulary: <0x62> = 101.
  EXPECT_THAT(t().Encode("a  b", false), ElementsAre(284, 282, 101));
  // A leading space is the prepended ▁ (no second one is added: Replace comes after).
  EXPECT_THAT(t().Encode(" hello", false), ElementsAre(259, 276));
}

TEST_F(MetaspaceTest, FallsBackToBytes) {
  // 🦀 = F0 9F A6 80 -> <0xF0> <0x9F> <0xA6> <0x80> = 3 + byte.
  EXPECT_THAT(t().Encode("a🦀", false), ElementsAre(284, 243, 162, 169, 131));
  // "'" = <0x27> = 42; "▁" has no merge with 'i'.
  EXPECT_THAT(t().Encode("it's", false), ElementsAre(259, 270, 267, 42, 269));
}

TEST_F(MetaspaceTest, UnknownTokenWithoutByteFallback) {
  std::unique_ptr<Tokenizer> fused =
      LoadVariant(kLlama2Style, [](Json& j) { j["model"]["byte_fallback"] = false; });
  EXPECT_THAT(fused->Encode("a🦀🦀", false), ElementsAre(284, 0));
  std::unique_ptr<Tokenizer> unfused = LoadVariant(kLlama2Style, [](Json& j) {
    j["model"]["byte_fallback"] = false;
    j["model"]["fuse_unk"] = false;
  });
  EXPECT_THAT(unfused->Encode("a🦀🦀", false), ElementsAre(284, 0, 0));
}

TEST_F(MetaspaceTest, AddedTokensAndTheSegmentAfterThem) {
  // Each stretch between added tokens is normalized on its own: "hello" -> "▁hello".
  EXPECT_THAT(t().Encode("<s>hello", false), ElementsAre(1, 276));
  EXPECT_THAT(t().Encode("[INST]hello world", true), ElementsAre(1, 285, 276, 281));
}

TEST_F(MetaspaceTest, DecodeStripsTheFirstSpace) {
  EXPECT_EQ(t().Decode(Ids({1, 276, 281}), true), "hello world");
  // Strip applies to the whole text: "<s>" comes first, so the space after it stays.
  EXPECT_EQ(t().Decode(Ids({1, 276, 281}), false), "<s> hello world");
  EXPECT_EQ(t().Decode(Ids({284, 243, 162, 169, 131}), false), "a🦀");
}

TEST_F(MetaspaceTest, RoundTripsText) {
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    const std::string text = RandomText(rng, false);
    EXPECT_EQ(t().Decode(t().Encode(text, true), true), text);
  }
  // Invalid UTF-8 falls back to byte tokens too.
  EXPECT_EQ(t().Decode(t().Encode("x\xff\xc3", false), false), "x\xff\xc3");
}

TEST_F(MetaspaceTest, StreamStripsLikeDecode) {
  StreamDecoder stream(t(), true);
  EXPECT_EQ(stream.Push(1), "");
  EXPECT_EQ(stream.Push(276), "hello");
  EXPECT_EQ(stream.Push(281), " world");
  EXPECT_EQ(stream.Finish(), "");
  StreamDecoder with_special(t(), false);
  EXPECT_EQ(with_special.Push(1), "<s>");
  EXPECT_EQ(with_special.Push(276), " hello");
  // After a prompt, the first generated word keeps its space.
  StreamDecoder continuation(t(), true, t().Encode("hello", true));
  EXPECT_EQ(continuation.Push(281), " world");
}

TEST_F(MetaspaceTest, StreamDeltasConcatenateToDecode) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<TokenId> any_id(-2, t().vocab_size() + 2);
  for (int i = 0; i < 300; ++i) {
    std::vector<TokenId> ids =
        t().Encode(i % 2 ? RandomBytes(rng, 30) : RandomText(rng, true), true);
    if (i % 3 == 0) {
      for (TokenId& id : ids) id = any_id(rng);
    }
    ExpectStreamMatchesDecode(t(), ids, false);
    ExpectStreamMatchesDecode(t(), ids, true);
  }
}

TEST(MetaspaceVariantsTest, MetaspacePreTokenizerPrependsOnlyAtTheStart) {
  std::unique_ptr<Tokenizer> t = LoadVariant(kLlama2Style, [](Json& j) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {
        {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", true}};
    j["decoder"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}};
  });
  EXPECT_THAT(t->Encode("hello world", false), ElementsAre(276, 281));
  // prepend_scheme "first": no ▁ for the text after <s>: h ell o (no "h ell" merge).
  EXPECT_THAT(t->Encode("<s>hello", false), ElementsAre(1, 260, 274, 263));
  EXPECT_EQ(t->Decode(Ids({276, 281}), false), "hello world");
}

// ---- errors ----

struct BadFileCase {
  std::string name;
  std::string fixture;
  std::function<void(Json&)> change;
  std::string message;
};

void PrintTo(const BadFileCase& c, std::ostream* os) { *os << c.name; }

class BadFileTest : public ::testing::TestWithParam<BadFileCase> {};

TEST_P(BadFileTest, IsRejectedWithAPreciseMessage) {
  Json json = ReadFixture(GetParam().fixture);
  GetParam().change(json);
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(json.dump(), "tok.json");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr(GetParam().message));
  EXPECT_THAT(t.status().message(), HasSubstr("tok.json: "));
}

Json Added(int id, const std::string& content) {
  return {{"id", id}, {"content", content}, {"special", true}};
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, BadFileTest,
    ::testing::Values(
        BadFileCase{"MissingModel", kLlama3Style, [](Json& j) { j.erase("model"); },
                    "tok.json: \"model\" is missing"},
        BadFileCase{"UnsupportedModel", kLlama3Style,
                    [](Json& j) { j["model"]["type"] = "WordPiece"; },
                    "model type 'WordPiece' is not supported"},
        BadFileCase{"MissingVocab", kLlama3Style, [](Json& j) { j["model"].erase("vocab"); },
                    "model.vocab: is missing"},
        BadFileCase{"DuplicateVocabId", kLlama3Style,
                    [](Json& j) { j["model"]["vocab"]["zz"] = 5; }, "id 5 is given to both"},
        BadFileCase{"NegativeId", kLlama3Style, [](Json& j) { j["model"]["vocab"]["zz"] = -3; },
                    "has id -3, outside [0, 16777215]"},
        BadFileCase{"HugeId", kLlama3Style,
                    [](Json& j) { j["model"]["vocab"]["zz"] = int64_t{1} << 40; },
                    "outside [0, 16777215]"},
        BadFileCase{"FractionalId", kLlama3Style, [](Json& j) { j["model"]["vocab"]["zz"] = 1.5; },
                    "not an integer"},
        BadFileCase{"MergeOfUnknownToken", kLlama3Style,
                    [](Json& j) {
                      j["model"]["merges"].push_back({"a", "zz"});
                    },
                    "model.merges[17] ('a' 'zz'): 'zz' is not in the vocab"},
        BadFileCase{"MergeResultNotInVocab", kLlama3Style,
                    [](Json& j) {
                      j["model"]["merges"].push_back({"a", "b"});
                    },
                    "the merged token 'ab' is not in the vocab"},
        BadFileCase{"MalformedMergeString", kLlama2Style,
                    [](Json& j) { j["model"]["merges"][3] = "lll"; },
                    "model.merges[3]: expected \"left right\", got 'lll'"},
        BadFileCase{"UnknownUnk", kLlama2Style, [](Json& j) { j["model"]["unk_token"] = "<nope>"; },
                    "model.unk_token '<nope>' is not in the vocab"},
        BadFileCase{"Dropout", kLlama3Style, [](Json& j) { j["model"]["dropout"] = 0.1; },
                    "model.dropout: is not supported"},
        BadFileCase{"SubwordPrefix", kLlama3Style,
                    [](Json& j) { j["model"]["continuing_subword_prefix"] = "##"; },
                    "model.continuing_subword_prefix: is not supported"},
        BadFileCase{"BoolOfWrongType", kLlama3Style,
                    [](Json& j) { j["model"]["byte_fallback"] = "yes"; },
                    "model.byte_fallback: expected a boolean, got a string"},
        BadFileCase{"UnsupportedPreTokenizer", kLlama3Style,
                    [](Json& j) {
                      j["pre_tokenizer"] = {{"type", "Whitespace"}};
                    },
                    "tok.json: pre_tokenizer type 'Whitespace' is not supported"},
        BadFileCase{"UnsupportedNestedPreTokenizer", kLlama3Style,
                    [](Json& j) {
                      j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Punctuation"}};
                    },
                    "pre_tokenizer.pretokenizers[1] type 'Punctuation' is not supported"},
        BadFileCase{"BadRegex", kLlama3Style,
                    [](Json& j) {
                      j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(ab"}};
                    },
                    "pre_tokenizer.pretokenizers[0].pattern: regex /(ab/ does not compile"},
        BadFileCase{"UnknownSplitBehavior", kLlama3Style,
                    [](Json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Up"; },
                    "unknown split behavior 'Up'"},
        BadFileCase{"UnknownPrependScheme", kLlama2Style,
                    [](Json& j) {
                      j["pre_tokenizer"] = {{"type", "Metaspace"}, {"prepend_scheme", "often"}};
                    },
                    "pre_tokenizer.prepend_scheme: expected 'first', 'always' or 'never'"},
        BadFileCase{"UnsupportedNormalizer", kLlama2Style,
                    [](Json& j) {
                      j["normalizer"]["normalizers"][1] = {{"type", "Lowercase"}};
                    },
                    "normalizer.normalizers[1] type 'Lowercase' is not supported"},
        BadFileCase{"UnsupportedDecoder", kLlama3Style,
                    [](Json& j) {
                      j["decoder"] = {{"type", "WordPiece"}};
                    },
                    "decoder type 'WordPiece' is not supported"},
        BadFileCase{"DecoderAfterFuse", kLlama2Style,
                    [](Json& j) {
                      j["decoder"]["decoders"][3] = {
                          {"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "b"}};
                    },
                    "decoder.decoders[3]: decoder 'Replace' after 'Fuse' is not supported"},
        BadFileCase{"StripAtEndAfterFuse", kLlama2Style,
                    [](Json& j) { j["decoder"]["decoders"][3]["stop"] = 1; },
                    "a Strip with stop > 0 after Fuse is not supported"},
        BadFileCase{"UnsupportedPostProcessor", kLlama3Style,
                    [](Json& j) {
                      j["post_processor"] = {{"type", "BertProcessing"}};
                    },
                    "post_processor type 'BertProcessing' is not supported"},
        BadFileCase{"TemplateNamesUnknownToken", kLlama2Style,
                    [](Json& j) { j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<x>"; },
                    "post_processor.single[0]: special token '<x>' is not in special_tokens"},
        BadFileCase{"TemplateIdOutsideVocab", kLlama2Style,
                    [](Json& j) { j["post_processor"]["special_tokens"]["<s>"]["ids"] = {900}; },
                    "special token '<s>' has id 900, which is not in the vocabulary"},
        BadFileCase{"TemplateWithoutSequence", kLlama2Style,
                    [](Json& j) { j["post_processor"]["single"].erase(1); },
                    "the template never uses sequence 'A'"},
        BadFileCase{"AddedTokenIdTwice", kLlama3Style,
                    [](Json& j) { j["added_tokens"].push_back(Added(276, "<x>")); },
                    "added_tokens[4]: id 276 of '<x>' is also the id of '<|eot_id|>'"},
        BadFileCase{"AddedTokenContentTwice", kLlama3Style,
                    [](Json& j) { j["added_tokens"].push_back(Added(300, "<|eot_id|>")); },
                    "added_tokens[4]: '<|eot_id|>' is already added_tokens[2]"},
        BadFileCase{"AddedTokenWithoutContent", kLlama3Style,
                    [](Json& j) { j["added_tokens"][0].erase("content"); },
                    "added_tokens[0].content: is missing"},
        BadFileCase{"AddedTokenEmpty", kLlama3Style,
                    [](Json& j) { j["added_tokens"][0]["content"] = ""; },
                    "added_tokens[0].content: is empty"},
        BadFileCase{"TopLevelArray", kLlama3Style, [](Json& j) { j = Json::array(); },
                    "expected a JSON object at the top level, got an array"}),
    [](const ::testing::TestParamInfo<BadFileCase>& info) { return info.param.name; });

TEST(TokenizerErrorsTest, InvalidJson) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson("{\"model\": ", "tok.json");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tok.json: invalid JSON: parse error at line 1"));
}

TEST(TokenizerErrorsTest, DeepNestingIsAnErrorNotACrash) {
  const std::string deep =
      "{\"model\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(deep, "tok.json");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("model: expected an object, got an array"));
}

TEST(TokenizerErrorsTest, MissingFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t =
      Tokenizer::FromFile(TestdataPath("no_such_tokenizer.json"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("no_such_tokenizer.json"));
}

}  // namespace
}  // namespace prefixd
