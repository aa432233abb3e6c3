#include "clients/bench/multi_turn_workload.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "clients/bench/seeded_random.h"

namespace prefixd::bench {
namespace {

struct NamedPreset {
  absl::string_view name;
  MultiTurnShape shape;
};

constexpr NamedPreset kPresets[] = {
    {"default", MultiTurnShape{32, 8, 1024, 128, 256}},
    {"cpu-small", MultiTurnShape{16, 6, 64, 32, 32}},
    {"cpu-tiny", MultiTurnShape{4, 3, 32, 16, 16}},
};

// Streams of the multi-turn workload (apart from the shared-prefix workload's 1..4).
constexpr uint64_t kSystemStream = 101;
constexpr uint64_t kQuestionStream = 102;
constexpr uint64_t kCalibrationStream = 103;

// Common English words: a tokenizer trained on English text (the test model's is) gives
// each a token or two, like the messages of a real chat.
constexpr absl::string_view kWords[] = {
    "the",      "of",        "and",     "to",     "in",     "is",        "you",       "that",
    "it",       "he",        "was",     "for",    "on",     "are",       "as",        "with",
    "his",      "they",      "at",      "be",     "this",   "have",      "from",      "or",
    "one",      "had",       "by",      "word",   "but",    "not",       "what",      "all",
    "were",     "we",        "when",    "your",   "can",    "said",      "there",     "use",
    "an",       "each",      "which",   "she",    "do",     "how",       "their",     "if",
    "will",     "up",        "other",   "about",  "out",    "many",      "then",      "them",
    "these",    "so",        "some",    "her",    "would",  "make",      "like",      "him",
    "into",     "time",      "has",     "look",   "two",    "more",      "write",     "go",
    "see",      "number",    "no",      "way",    "could",  "people",    "my",        "than",
    "first",    "water",     "been",    "call",   "who",    "oil",       "its",       "now",
    "find",     "long",      "down",    "day",    "did",    "get",       "come",      "made",
    "may",      "part",      "over",    "new",    "sound",  "take",      "only",      "little",
    "work",     "know",      "place",   "year",   "live",   "me",        "back",      "give",
    "most",     "very",      "after",   "thing",  "our",    "just",      "name",      "good",
    "sentence", "man",       "think",   "say",    "great",  "where",     "help",      "through",
    "much",     "before",    "line",    "right",  "too",    "mean",      "old",       "any",
    "same",     "tell",      "boy",     "follow", "came",   "want",      "show",      "also",
    "around",   "form",      "three",   "small",  "set",    "put",       "end",       "does",
    "another",  "well",      "large",   "must",   "big",    "even",      "such",      "because",
    "turn",     "here",      "why",     "ask",    "went",   "men",       "read",      "need",
    "land",     "different", "home",    "us",     "move",   "try",       "kind",      "hand",
    "picture",  "again",     "change",  "off",    "play",   "spell",     "air",       "away",
    "animal",   "house",     "point",   "page",   "letter", "mother",    "answer",    "found",
    "study",    "still",     "learn",   "should", "world",  "high",      "every",     "near",
    "add",      "food",      "between", "own",    "below",  "country",   "plant",     "last",
    "school",   "father",    "keep",    "tree",   "never",  "start",     "city",      "earth",
    "eye",      "light",     "thought", "head",   "under",  "story",     "saw",       "left",
    "few",      "while",     "along",   "might",  "close",  "something", "seem",      "next",
    "hard",     "open",      "example", "begin",  "life",   "always",    "those",     "both",
    "paper",    "together",  "got",     "group",  "often",  "run",       "important", "until",
    "children", "side",      "feet",    "car",    "mile",   "night",     "walk",      "white",
};
constexpr uint64_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);

}  // namespace

absl::StatusOr<MultiTurnShape> MultiTurnPreset(absl::string_view name) {
  for (const NamedPreset& p : kPresets) {
    if (p.name == name) return p.shape;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown multi-turn preset '", name, "' (known: ",
                                                 absl::StrJoin(MultiTurnPresetNames(), ", "), ")"));
}

std::vector<std::string> MultiTurnPresetNames() {
  std::vector<std::string> names;
  for (const NamedPreset& p : kPresets) names.emplace_back(p.name);
  return names;
}

absl::Status ValidateMultiTurnShape(const MultiTurnShape& s) {
  auto at_least = [](const char* name, int v, int min) -> absl::Status {
    if (v >= min) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be at least ", min, " (got ", v, ")"));
  };
  for (absl::Status status :
       {at_least("--conversations", s.conversations, 1), at_least("--turns", s.turns, 1),
        at_least("--system_prompt_len", s.system_prompt_len, 0),
        at_least("--question_len", s.question_len, 1), at_least("--output_len", s.output_len, 1)}) {
    if (!status.ok()) return status;
  }
  if (static_cast<int64_t>(s.conversations) * s.turns > 1'000'000) {
    return absl::InvalidArgumentError("more than a million turns");
  }
  return absl::OkStatus();
}

std::string RandomWords(uint64_t seed, uint64_t stream, int count) {
  std::mt19937_64 rng = MakeRng(seed, stream);
  std::string text;
  for (int i = 0; i < count; ++i) {
    absl::StrAppend(&text, i == 0 ? "" : " ", kWords[UniformBelow(rng, kNumWords)]);
  }
  return text;
}

std::string CalibrationText(int words) { return RandomWords(0, kCalibrationStream, words); }

int WordsForTokens(int tokens, double tokens_per_word) {
  if (tokens <= 0) return 0;
  if (!(tokens_per_word > 0)) tokens_per_word = 1;
  return std::max(1, static_cast<int>(std::lround(tokens / tokens_per_word)));
}

MultiTurnWorkload GenerateMultiTurnWorkload(const MultiTurnShape& shape, uint64_t seed,
                                            double tokens_per_word) {
  MultiTurnWorkload workload;
  workload.system_prompt =
      RandomWords(seed, kSystemStream, WordsForTokens(shape.system_prompt_len, tokens_per_word));
  const int question_words = WordsForTokens(shape.question_len, tokens_per_word);
  workload.questions.resize(shape.conversations);
  for (int c = 0; c < shape.conversations; ++c) {
    for (int t = 0; t < shape.turns; ++t) {
      // A stream per message: C and T do not change each other's messages.
      const uint64_t stream = SplitMix64(kQuestionStream ^ SplitMix64((uint64_t{1} << 32) * c + t));
      workload.questions[c].push_back(RandomWords(seed, stream, question_words));
    }
  }
  return workload;
}

}  // namespace prefixd::bench
