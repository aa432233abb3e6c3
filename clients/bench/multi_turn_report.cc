#include "clients/bench/multi_turn_report.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace prefixd::bench {
namespace {

constexpr int kMaxExamples = 5;
constexpr int kExampleTokens = 6;

double Ratio(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : 0.0;
}

std::string Percent(double ratio) { return absl::StrFormat("%.1f %%", 100.0 * ratio); }

nlohmann::ordered_json DistributionToJson(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"p50", d.p50},
          {"p90", d.p90},     {"p99", d.p99},   {"max", d.max}};
}

nlohmann::ordered_json TurnStatsToJson(const TurnStats& s) {
  return {{"requests", s.requests},
          {"succeeded", s.succeeded},
          {"prompt_tokens", s.prompt_tokens},
          {"cached_tokens", s.cached_tokens},
          {"ideal_cached_tokens", s.ideal_cached_tokens},
          {"ideal_exact_cached_tokens", s.ideal_exact_cached_tokens},
          {"achieved_hit_rate", s.achieved_hit_rate()},
          {"ideal_hit_rate", s.ideal_hit_rate()},
          {"ideal_exact_hit_rate", s.ideal_exact_hit_rate()},
          {"achieved_over_ideal", s.achieved_over_ideal()},
          {"compared", s.compared},
          {"retokenization_mismatches", s.retokenization_mismatches},
          {"retokenization_mismatch_rate", Ratio(static_cast<double>(s.retokenization_mismatches),
                                                 static_cast<double>(s.compared))},
          {"retokenization_lost_tokens", s.retokenization_lost_tokens},
          {"diverged_before_reply", s.diverged_before_reply},
          {"diverged_at_reply_start", s.diverged_at_reply_start},
          {"diverged_in_reply", s.diverged_in_reply},
          {"below_ideal", s.below_ideal},
          {"tokenize_disagreements", s.tokenize_disagreements},
          {"ttft_ms", DistributionToJson(s.ttft_ms)}};
}

void Accumulate(const TurnStats& from, TurnStats* into) {
  into->requests += from.requests;
  into->succeeded += from.succeeded;
  into->prompt_tokens += from.prompt_tokens;
  into->cached_tokens += from.cached_tokens;
  into->ideal_cached_tokens += from.ideal_cached_tokens;
  into->ideal_exact_cached_tokens += from.ideal_exact_cached_tokens;
  into->compared += from.compared;
  into->retokenization_mismatches += from.retokenization_mismatches;
  into->retokenization_lost_tokens += from.retokenization_lost_tokens;
  into->diverged_before_reply += from.diverged_before_reply;
  into->diverged_at_reply_start += from.diverged_at_reply_start;
  into->diverged_in_reply += from.diverged_in_reply;
  into->tokenize_disagreements += from.tokenize_disagreements;
  into->below_ideal += from.below_ideal;
}

std::vector<int32_t> Slice(absl::Span<const int32_t> ids, int from, int count) {
  from = std::clamp(from, 0, static_cast<int>(ids.size()));
  const int to = std::min(static_cast<int>(ids.size()), from + count);
  return std::vector<int32_t>(ids.begin() + from, ids.begin() + to);
}

}  // namespace

double TurnStats::achieved_hit_rate() const {
  return Ratio(static_cast<double>(cached_tokens), static_cast<double>(prompt_tokens));
}
double TurnStats::ideal_hit_rate() const {
  return Ratio(static_cast<double>(ideal_cached_tokens), static_cast<double>(prompt_tokens));
}
double TurnStats::ideal_exact_hit_rate() const {
  return Ratio(static_cast<double>(ideal_exact_cached_tokens), static_cast<double>(prompt_tokens));
}
double TurnStats::achieved_over_ideal() const {
  if (ideal_cached_tokens <= 0) return 1.0;
  return static_cast<double>(cached_tokens) / static_cast<double>(ideal_cached_tokens);
}

int CommonPrefix(absl::Span<const int32_t> a, absl::Span<const int32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return static_cast<int>(i);
}

int FullBlockTokens(int tokens, int block_size) {
  if (block_size <= 0 || tokens <= 0) return 0;
  return tokens / block_size * block_size;
}

TurnIdeal ComputeTurnIdeal(absl::Span<const int32_t> prev_prompt,
                           absl::Span<const int32_t> prev_generated,
                           absl::Span<const int32_t> prompt, int block_size) {
  TurnIdeal ideal;
  const int prev_len = static_cast<int>(prev_prompt.size() + prev_generated.size());
  ideal.common = CommonPrefix(prev_prompt, prompt);
  if (ideal.common == static_cast<int>(prev_prompt.size())) {
    ideal.common += CommonPrefix(prev_generated, prompt.subspan(prev_prompt.size()));
  }
  ideal.reusable = std::max(prev_len - 1, 0);
  ideal.ideal_cached = FullBlockTokens(std::min(ideal.common, ideal.reusable), block_size);
  ideal.ideal_exact_cached = FullBlockTokens(ideal.reusable, block_size);
  ideal.retokenized_identically = ideal.common >= prev_len;
  return ideal;
}

MultiTurnReport BuildMultiTurnReport(const std::vector<TurnRecord>& records, int turns,
                                     int block_size) {
  MultiTurnReport report;
  report.block_size = block_size;
  report.per_turn.resize(std::max(turns, 0));
  std::map<std::pair<int, int>, const TurnRecord*> by_turn;
  for (const TurnRecord& r : records) by_turn[{r.conversation, r.turn}] = &r;
  auto succeeded = [](const TurnRecord& r) { return FailureReason(r.request).empty(); };
  std::vector<std::vector<double>> ttft(report.per_turn.size());
  std::vector<double> all_ttft;

  for (const TurnRecord& r : records) {
    TurnAnalysis a;
    a.conversation = r.conversation;
    a.turn = r.turn;
    a.succeeded = succeeded(r);
    a.prompt_tokens = r.request.prompt_tokens;
    a.cached_tokens = r.request.cached_tokens;
    a.completion_tokens = r.request.completion_tokens;
    if (r.turn < 0 || r.turn >= turns) continue;  // not of this run
    TurnStats& stats = report.per_turn[r.turn];
    ++stats.requests;
    if (!a.succeeded) {
      if (r.turn + 1 < turns && !by_turn.contains({r.conversation, r.turn + 1})) {
        ++report.conversations_cut_short;
      }
      report.analyses.push_back(a);
      continue;
    }
    ++stats.succeeded;
    stats.prompt_tokens += r.request.prompt_tokens;
    stats.cached_tokens += r.request.cached_tokens;
    if (static_cast<int>(r.prompt_ids.size()) != r.request.prompt_tokens) {
      ++stats.tokenize_disagreements;
    }
    if (r.request.first_token_s >= 0) {
      const double ms = (r.request.first_token_s - r.request.start_s) * 1000.0;
      ttft[r.turn].push_back(ms);
      all_ttft.push_back(ms);
    }

    if (r.turn == 0) {
      // Only the system message can be shared, with a conversation started earlier.
      int best = 0;
      for (const TurnRecord& other : records) {
        if (other.turn == 0 && other.start_order < r.start_order) {
          best = std::max(best, CommonPrefix(other.prompt_ids, r.prompt_ids));
        }
      }
      a.ideal.common = best;
      a.ideal.ideal_cached = a.ideal.ideal_exact_cached = FullBlockTokens(best, block_size);
    } else if (auto prev = by_turn.find({r.conversation, r.turn - 1});
               prev != by_turn.end() && succeeded(*prev->second)) {
      a.has_history = true;
      a.ideal = ComputeTurnIdeal(prev->second->prompt_ids, prev->second->generated_ids,
                                 r.prompt_ids, block_size);
      ++stats.compared;
      if (!a.ideal.retokenized_identically) {
        ++stats.retokenization_mismatches;
        stats.retokenization_lost_tokens += a.ideal.ideal_exact_cached - a.ideal.ideal_cached;
        const int offset = a.ideal.common - static_cast<int>(prev->second->prompt_ids.size());
        if (offset < 0) {
          ++stats.diverged_before_reply;
        } else if (offset == 0) {
          ++stats.diverged_at_reply_start;
        } else {
          ++stats.diverged_in_reply;
        }
        if (static_cast<int>(report.examples.size()) < kMaxExamples) {
          const TurnRecord& p = *prev->second;
          std::vector<int32_t> previous = p.prompt_ids;
          previous.insert(previous.end(), p.generated_ids.begin(), p.generated_ids.end());
          RetokenizationExample e;
          e.conversation = r.conversation;
          e.turn = r.turn;
          e.reply_offset = a.ideal.common - static_cast<int>(p.prompt_ids.size());
          e.reply_tokens = static_cast<int>(p.generated_ids.size());
          e.generated = Slice(previous, a.ideal.common, kExampleTokens);
          e.retokenized = Slice(r.prompt_ids, a.ideal.common, kExampleTokens);
          report.examples.push_back(std::move(e));
        }
      } else if (r.request.cached_tokens < a.ideal.ideal_exact_cached - block_size) {
        ++stats.below_ideal;
      }
    }
    stats.ideal_cached_tokens += a.ideal.ideal_cached;
    stats.ideal_exact_cached_tokens += a.ideal.ideal_exact_cached;
    report.analyses.push_back(a);
  }
  for (size_t t = 0; t < report.per_turn.size(); ++t) {
    report.per_turn[t].ttft_ms = Summarize(std::move(ttft[t]));
    Accumulate(report.per_turn[t], &report.total);
  }
  report.total.ttft_ms = Summarize(std::move(all_ttft));
  return report;
}

std::string FormatMultiTurnReport(const MultiTurnReport& r) {
  std::string out = absl::StrFormat(
      "Prefix reuse by turn (block size %d tokens; ideal: every full block of the "
      "previous turn's prompt and reply that the new prompt repeats)\n",
      r.block_size);
  absl::StrAppendFormat(&out, "%-5s %5s %8s %8s %9s %9s %9s %9s %11s %8s %9s\n", "turn", "reqs",
                        "prompt", "cached", "achieved", "ideal", "ach/ideal", "if exact",
                        "retok diff", "lost", "TTFT p50");
  auto row = [&](const std::string& name, const TurnStats& s) {
    const std::string mismatches =
        s.compared > 0 ? absl::StrFormat("%d/%d", s.retokenization_mismatches, s.compared) : "-";
    absl::StrAppendFormat(&out, "%-5s %5d %8d %8d %9s %9s %9s %9s %11s %8d %9.1f\n", name,
                          s.succeeded, s.prompt_tokens, s.cached_tokens,
                          Percent(s.achieved_hit_rate()), Percent(s.ideal_hit_rate()),
                          Percent(s.achieved_over_ideal()), Percent(s.ideal_exact_hit_rate()),
                          mismatches, s.retokenization_lost_tokens, s.ttft_ms.p50);
  };
  for (size_t t = 0; t < r.per_turn.size(); ++t) row(absl::StrCat(t + 1), r.per_turn[t]);
  row("all", r.total);

  const TurnStats& t = r.total;
  absl::StrAppendFormat(&out, "%-34s %s of the ideal (%s achieved, %s ideal, %s if exact)\n",
                        "Achieved / ideal:", Percent(t.achieved_over_ideal()),
                        Percent(t.achieved_hit_rate()), Percent(t.ideal_hit_rate()),
                        Percent(t.ideal_exact_hit_rate()));
  absl::StrAppendFormat(
      &out,
      "%-34s %d of %d replies (%s) came back as other ids; %d cached tokens lost (%s of "
      "the prompt tokens)\n",
      "Re-tokenized replies differ:", t.retokenization_mismatches, t.compared,
      Percent(
          Ratio(static_cast<double>(t.retokenization_mismatches), static_cast<double>(t.compared))),
      t.retokenization_lost_tokens,
      Percent(Ratio(static_cast<double>(t.retokenization_lost_tokens),
                    static_cast<double>(t.prompt_tokens))));
  if (t.retokenization_mismatches > 0) {
    absl::StrAppendFormat(&out,
                          "%-34s %d at the reply's first token, %d further into the reply, %d "
                          "before the reply\n",
                          "  where they parted:", t.diverged_at_reply_start, t.diverged_in_reply,
                          t.diverged_before_reply);
  }
  for (const RetokenizationExample& e : r.examples) {
    absl::StrAppendFormat(&out,
                          "  conversation %d turn %d: at token %d of the previous reply (%d "
                          "tokens): generated [%s], prompt has [%s]\n",
                          e.conversation + 1, e.turn + 1, e.reply_offset, e.reply_tokens,
                          absl::StrJoin(e.generated, " "), absl::StrJoin(e.retokenized, " "));
  }
  if (t.below_ideal > 0) {
    absl::StrAppendFormat(&out,
                          "%-34s %d turns re-tokenized exactly but found over a block less than "
                          "their ideal cached (evicted?)\n",
                          "Below the ideal:", t.below_ideal);
  }
  if (t.tokenize_disagreements > 0) {
    absl::StrAppendFormat(&out,
                          "%-34s %d turns: Tokenize's prompt length differs from Generate's "
                          "prompt_tokens\n",
                          "Warning:", t.tokenize_disagreements);
  }
  if (r.conversations_cut_short > 0) {
    absl::StrAppendFormat(&out, "%-34s %d (a failed turn ends its conversation)\n",
                          "Conversations cut short:", r.conversations_cut_short);
  }
  return out;
}

nlohmann::ordered_json MultiTurnReportToJson(const MultiTurnReport& r) {
  nlohmann::ordered_json per_turn = nlohmann::ordered_json::array();
  for (size_t t = 0; t < r.per_turn.size(); ++t) {
    nlohmann::ordered_json j = {{"turn", t + 1}};
    j.update(TurnStatsToJson(r.per_turn[t]));
    per_turn.push_back(std::move(j));
  }
  nlohmann::ordered_json turns = nlohmann::ordered_json::array();
  for (const TurnAnalysis& a : r.analyses) {
    turns.push_back({{"conversation", a.conversation + 1},
                     {"turn", a.turn + 1},
                     {"succeeded", a.succeeded},
                     {"prompt_tokens", a.prompt_tokens},
                     {"cached_tokens", a.cached_tokens},
                     {"completion_tokens", a.completion_tokens},
                     {"has_history", a.has_history},
                     {"common", a.ideal.common},
                     {"reusable", a.ideal.reusable},
                     {"ideal_cached", a.ideal.ideal_cached},
                     {"ideal_exact_cached", a.ideal.ideal_exact_cached},
                     {"retokenized_identically", a.ideal.retokenized_identically}});
  }
  nlohmann::ordered_json examples = nlohmann::ordered_json::array();
  for (const RetokenizationExample& e : r.examples) {
    examples.push_back({{"conversation", e.conversation + 1},
                        {"turn", e.turn + 1},
                        {"reply_offset", e.reply_offset},
                        {"reply_tokens", e.reply_tokens},
                        {"generated", e.generated},
                        {"retokenized", e.retokenized}});
  }
  return {{"block_size", r.block_size},
          {"per_turn", per_turn},
          {"total", TurnStatsToJson(r.total)},
          {"conversations_cut_short", r.conversations_cut_short},
          {"requests", turns},
          {"retokenization_examples", examples}};
}

}  // namespace prefixd::bench
