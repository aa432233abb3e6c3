#include "tools/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_regex.h"
#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {
namespace {

using TokenIndex = int32_t;

uint64_t PairKey(TokenIndex a, TokenIndex b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// A distinct pre-token of the corpus: its current tokens and how often it occurs.
struct Word {
  std::vector<TokenIndex> tokens;
  int64_t count = 0;
};

// Learns merges over the words; tokens are byte-level strings ("Ġthe").
class BpeLearner {
 public:
  BpeLearner() : ranked_(RankOrder{&tokens_}) {
    for (uint8_t b : ByteLevelVocabOrder()) {
      byte_token_[b] = static_cast<TokenIndex>(tokens_.size());
      AddToken(std::string(ByteLevelChar(b)));
    }
  }

  void AddWord(std::string_view bytes) {
    auto [it, inserted] = word_index_.try_emplace(AbslView(bytes), words_.size());
    if (inserted) {
      Word word;
      for (char c : bytes) word.tokens.push_back(byte_token_[static_cast<uint8_t>(c)]);
      words_.push_back(std::move(word));
    }
    ++words_[it->second].count;
  }

  // Counts the pairs of all words; call once, after the last AddWord.
  void CountPairs() {
    for (size_t w = 0; w < words_.size(); ++w) AddPairs(static_cast<int32_t>(w), +1);
  }

  // Merges the best pair everywhere. False if no pair is left.
  bool MergeBest() {
    if (ranked_.empty()) return false;
    const Ranked best = *ranked_.begin();
    const std::string merged = tokens_[best.left] + tokens_[best.right];
    auto existing = token_ids_.find(merged);
    const TokenIndex merged_id = existing != token_ids_.end() ? existing->second : AddToken(merged);
    merges_.emplace_back(best.left, best.right);

    const uint64_t key = PairKey(best.left, best.right);
    std::vector<int32_t> affected(pair_words_[key].begin(), pair_words_[key].end());
    std::sort(affected.begin(), affected.end());
    pair_words_.erase(key);
    for (int32_t w : affected) {
      std::vector<TokenIndex>& tokens = words_[w].tokens;
      AddPairs(w, -1);
      std::vector<TokenIndex> out;
      out.reserve(tokens.size());
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (i + 1 < tokens.size() && tokens[i] == best.left && tokens[i + 1] == best.right) {
          out.push_back(merged_id);
          ++i;
        } else {
          out.push_back(tokens[i]);
        }
      }
      tokens = std::move(out);
      AddPairs(w, +1);
    }
    return true;
  }

  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::vector<std::pair<TokenIndex, TokenIndex>>& merges() const { return merges_; }

 private:
  struct Ranked {
    int64_t count;
    TokenIndex left;
    TokenIndex right;
  };
  // Most frequent first; ties by the pair's strings, so the order never depends on ids
  // or hashing.
  struct RankOrder {
    const std::vector<std::string>* tokens;
    bool operator()(const Ranked& a, const Ranked& b) const {
      if (a.count != b.count) return a.count > b.count;
      if (a.left != b.left) return (*tokens)[a.left] < (*tokens)[b.left];
      return (*tokens)[a.right] < (*tokens)[b.right];
    }
  };

  TokenIndex AddToken(std::string token) {
    const auto id = static_cast<TokenIndex>(tokens_.size());
    token_ids_.emplace(token, id);
    tokens_.push_back(std::move(token));
    return id;
  }

  // Adds (sign +1) or removes (-1) the pairs of word w to / from the counts.
  void AddPairs(int32_t w, int sign) {
    const Word& word = words_[w];
    for (size_t i = 0; i + 1 < word.tokens.size(); ++i) {
      const TokenIndex a = word.tokens[i], b = word.tokens[i + 1];
      const uint64_t key = PairKey(a, b);
      int64_t& count = pair_counts_[key];
      if (count > 0) ranked_.erase(Ranked{count, a, b});
      count += sign * word.count;
      if (count > 0) {
        ranked_.insert(Ranked{count, a, b});
      } else {
        pair_counts_.erase(key);
      }
      if (sign > 0) pair_words_[key].insert(w);
    }
  }

  std::vector<std::string> tokens_;
  absl::flat_hash_map<std::string, TokenIndex> token_ids_;
  std::array<TokenIndex, 256> byte_token_{};
  std::vector<Word> words_;
  absl::flat_hash_map<std::string, size_t> word_index_;
  absl::flat_hash_map<uint64_t, int64_t> pair_counts_;
  // Words that held the pair when it was counted (a superset: entries go stale).
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<int32_t>> pair_words_;
  std::set<Ranked, RankOrder> ranked_;
  std::vector<std::pair<TokenIndex, TokenIndex>> merges_;
};

nlohmann::ordered_json ByteLevelStep(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

nlohmann::ordered_json TemplatePiece(bool special, const std::string& id, int type_id) {
  return {{special ? "SpecialToken" : "Sequence", {{"id", id}, {"type_id", type_id}}}};
}

}  // namespace

absl::StatusOr<std::string> TrainByteLevelBpeTokenizerJson(
    std::string_view corpus, int vocab_size, const std::vector<std::string>& special_tokens) {
  const int num_special = static_cast<int>(special_tokens.size());
  if (vocab_size < 256 + num_special) {
    return absl::InvalidArgumentError(StrCatStd("vocab_size ", vocab_size,
                                                " leaves no room for the 256 byte tokens and ",
                                                num_special, " special tokens"));
  }
  absl::flat_hash_set<std::string> seen;
  for (const std::string& s : special_tokens) {
    if (s.empty()) return absl::InvalidArgumentError("a special token is empty");
    for (size_t pos = 0; pos < s.size();) {
      const Utf8Char c = DecodeUtf8(s, pos);
      if (!c.valid) {
        return absl::InvalidArgumentError(
            StrCatStd("special token ", QuoteForMessage(s), " is not valid UTF-8"));
      }
      pos += c.length;
    }
    if (!seen.insert(s).second) {
      return absl::InvalidArgumentError(
          StrCatStd("special token ", QuoteForMessage(s), " is listed twice"));
    }
  }

  absl::StatusOr<std::unique_ptr<Regex>> split = Regex::Compile(kLlama3SplitPattern);
  if (!split.ok()) return split.status();
  BpeLearner learner;
  // Pre-tokens are the regex's matches and whatever lies between them (invalid UTF-8),
  // as the tokenizer's Split(behavior: Isolated) makes them.
  size_t done = 0;
  (*split)->ForEachMatch(corpus, [&](size_t begin, size_t end) {
    if (begin > done) learner.AddWord(corpus.substr(done, begin - done));
    learner.AddWord(corpus.substr(begin, end - begin));
    done = end;
  });
  if (done < corpus.size()) learner.AddWord(corpus.substr(done));
  learner.CountPairs();

  const size_t target = static_cast<size_t>(vocab_size - num_special);
  while (learner.tokens().size() < target) {
    if (!learner.MergeBest()) {
      return absl::InvalidArgumentError(StrCatStd(
          "the corpus (", corpus.size(), " bytes) runs out of pairs to merge at ",
          learner.tokens().size(), " tokens; vocab_size ", vocab_size, " needs ", target));
    }
  }
  const std::vector<std::string>& tokens = learner.tokens();
  for (const std::string& s : special_tokens) {
    if (std::find(tokens.begin(), tokens.end(), s) != tokens.end()) {
      return absl::InvalidArgumentError(
          StrCatStd("special token ", QuoteForMessage(s), " is also a learned token"));
    }
  }

  using Json = nlohmann::ordered_json;
  Json vocab = Json::object();
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;
  Json merges = Json::array();
  for (const auto& [left, right] : learner.merges()) {
    merges.push_back(Json::array({tokens[left], tokens[right]}));
  }
  Json added = Json::array();
  for (int i = 0; i < num_special; ++i) {
    added.push_back({{"id", static_cast<int>(tokens.size()) + i},
                     {"content", special_tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  Json processors = Json::array({ByteLevelStep(true, false, true)});
  if (num_special > 0) {
    const std::string& bos = special_tokens[0];
    processors.push_back(
        {{"type", "TemplateProcessing"},
         {"single", Json::array({TemplatePiece(true, bos, 0), TemplatePiece(false, "A", 0)})},
         {"pair", Json::array({TemplatePiece(true, bos, 0), TemplatePiece(false, "A", 0),
                               TemplatePiece(true, bos, 1), TemplatePiece(false, "B", 1)})},
         {"special_tokens",
          {{bos,
            {{"id", bos},
             {"ids", Json::array({static_cast<int>(tokens.size())})},
             {"tokens", Json::array({bos})}}}}}});
  }

  Json out;
  out["version"] = "1.0";
  out["truncation"] = nullptr;
  out["padding"] = nullptr;
  out["added_tokens"] = std::move(added);
  out["normalizer"] = nullptr;
  out["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", Json::array({{{"type", "Split"},
                                      {"pattern", {{"Regex", std::string(kLlama3SplitPattern)}}},
                                      {"behavior", "Isolated"},
                                      {"invert", false}},
                                     ByteLevelStep(false, true, false)})}};
  out["post_processor"] = {{"type", "Sequence"}, {"processors", std::move(processors)}};
  out["decoder"] = ByteLevelStep(true, true, true);
  out["model"] = {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr},
                  {"fuse_unk", false},
                  {"byte_fallback", false},
                  {"ignore_merges", false},
                  {"vocab", std::move(vocab)},
                  {"merges", std::move(merges)}};
  // Corpus bytes that are not UTF-8 never reach a token string: every token is made of
  // byte-level characters, so dump() cannot meet invalid UTF-8.
  return out.dump(2) + "\n";
}

}  // namespace prefixd
