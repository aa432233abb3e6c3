// Reading tokenizer.json (the format of Hugging Face tokenizers) into a TokenizerSpec.
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer_spec.h"
#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {

void TextPattern::ForEachMatch(std::string_view text,
                               absl::FunctionRef<void(size_t, size_t)> on_match) const {
  if (regex != nullptr) {
    regex->ForEachMatch(text, on_match);
    return;
  }
  for (size_t pos = text.find(literal); pos != std::string_view::npos;
       pos = text.find(literal, pos + literal.size())) {
    on_match(pos, pos + literal.size());
  }
}

std::string TextPattern::ReplaceAll(std::string_view text, std::string_view content) const {
  std::string out;
  out.reserve(text.size());
  size_t done = 0;
  ForEachMatch(text, [&](size_t begin, size_t end) {
    out.append(text.substr(done, begin - done));
    out.append(content);
    done = end;
  });
  out.append(text.substr(done));
  return out;
}

namespace {

using Json = nlohmann::json;

// Reads one tokenizer.json; every error names the source and the path of the field.
class SpecReader {
 public:
  explicit SpecReader(std::string_view source) : source_(source) {}

  absl::StatusOr<TokenizerSpec> Read(const Json& root);

 private:
  template <typename... Parts>
  absl::Status Error(std::string_view path, const Parts&... parts) const {
    return absl::InvalidArgumentError(StrCatStd(source_, ": ", path, ": ", parts...));
  }
  absl::Status Unsupported(std::string_view path, std::string_view type) const {
    return absl::InvalidArgumentError(
        StrCatStd(source_, ": ", path, " type '", type, "' is not supported"));
  }

  // Field accessors; a missing or null optional field gives its default.
  // Get: the field, or null if it is missing or JSON null.
  static const Json* Get(const Json& object, std::string_view key);
  absl::StatusOr<bool> GetBool(const Json& object, std::string_view key, std::string_view path,
                               bool default_value) const;
  absl::StatusOr<std::string> GetString(const Json& object, std::string_view key,
                                        std::string_view path) const;
  absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& object,
                                                               std::string_view key,
                                                               std::string_view path) const;
  absl::StatusOr<int64_t> GetInt(const Json& object, std::string_view key, std::string_view path,
                                 std::optional<int64_t> default_value) const;
  absl::StatusOr<std::string> GetType(const Json& object, std::string_view path) const;
  absl::StatusOr<const Json*> GetArray(const Json& object, std::string_view key,
                                       std::string_view path) const;
  absl::StatusOr<TextPattern> GetPattern(const Json& object, std::string_view path) const;
  absl::StatusOr<std::string> GetChar(const Json& object, std::string_view key,
                                      std::string_view path, std::string_view default_value) const;
  absl::StatusOr<PrependScheme> GetPrependScheme(const Json& object, std::string_view path) const;

  absl::Status ReadModel(const Json& model, BpeModelSpec& spec) const;
  absl::Status ReadAddedTokens(const Json& tokens, std::vector<AddedTokenSpec>& out) const;
  absl::Status ReadNormalizer(const Json& node, std::string path,
                              std::vector<NormalizerStep>& out) const;
  absl::Status ReadPreTokenizer(const Json& node, std::string path,
                                std::vector<PreTokenizerStep>& out) const;
  absl::Status ReadDecoder(const Json& node, std::string path, bool& fused, DecoderSpec& out) const;
  absl::Status ReadPostProcessor(const Json& node, std::string path, TokenizerSpec& out) const;
  absl::Status ReadTemplate(const Json& node, std::string_view path, TokenizerSpec& out) const;

  std::string source_;
};

std::string_view TypeName(const Json& value) {
  if (value.is_number_integer()) return "an integer";
  if (value.is_number()) return "a number";
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    default:
      return "a binary value";
  }
}

std::string Sub(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : StrCatStd(path, ".", key);
}

std::string Index(std::string_view path, size_t i) { return StrCatStd(path, "[", i, "]"); }

// An integer JSON value, clamped to int64 (an unsigned one above INT64_MAX saturates).
std::optional<int64_t> IntegerValue(const Json& value) {
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
               ? std::numeric_limits<int64_t>::max()
               : static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

const Json* SpecReader::Get(const Json& object, std::string_view key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<bool> SpecReader::GetBool(const Json& object, std::string_view key,
                                         std::string_view path, bool default_value) const {
  const Json* v = Get(object, key);
  if (v == nullptr) return default_value;
  if (!v->is_boolean()) {
    return Error(Sub(path, key), "expected a boolean, got ", TypeName(*v));
  }
  return v->get<bool>();
}

absl::StatusOr<std::optional<std::string>> SpecReader::GetOptionalString(
    const Json& object, std::string_view key, std::string_view path) const {
  const Json* v = Get(object, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) return Error(Sub(path, key), "expected a string, got ", TypeName(*v));
  return v->get<std::string>();
}

absl::StatusOr<std::string> SpecReader::GetString(const Json& object, std::string_view key,
                                                  std::string_view path) const {
  absl::StatusOr<std::optional<std::string>> s = GetOptionalString(object, key, path);
  if (!s.ok()) return s.status();
  if (!s->has_value()) return Error(Sub(path, key), "is missing");
  return **s;
}

absl::StatusOr<int64_t> SpecReader::GetInt(const Json& object, std::string_view key,
                                           std::string_view path,
                                           std::optional<int64_t> default_value) const {
  const Json* v = Get(object, key);
  if (v == nullptr) {
    if (default_value.has_value()) return *default_value;
    return Error(Sub(path, key), "is missing");
  }
  std::optional<int64_t> i = IntegerValue(*v);
  if (!i) return Error(Sub(path, key), "expected an integer, got ", TypeName(*v));
  return *i;
}

absl::StatusOr<std::string> SpecReader::GetType(const Json& object, std::string_view path) const {
  if (!object.is_object()) return Error(path, "expected an object, got ", TypeName(object));
  return GetString(object, "type", path);
}

absl::StatusOr<const Json*> SpecReader::GetArray(const Json& object, std::string_view key,
                                                 std::string_view path) const {
  const Json* v = Get(object, key);
  if (v == nullptr) return Error(Sub(path, key), "is missing");
  if (!v->is_array()) return Error(Sub(path, key), "expected an array, got ", TypeName(*v));
  return v;
}

absl::StatusOr<TextPattern> SpecReader::GetPattern(const Json& object,
                                                   std::string_view path) const {
  const std::string pattern_path = Sub(path, "pattern");
  const Json* v = Get(object, "pattern");
  if (v == nullptr) return Error(pattern_path, "is missing");
  const Json& p = *v;
  TextPattern out;
  if (p.is_object() && p.size() == 1 && p.contains("String") && p["String"].is_string()) {
    out.literal = p["String"].get<std::string>();
    if (out.literal.empty()) return Error(pattern_path, "the String pattern is empty");
    return out;
  }
  if (p.is_object() && p.size() == 1 && p.contains("Regex") && p["Regex"].is_string()) {
    absl::StatusOr<std::unique_ptr<Regex>> regex = Regex::Compile(p["Regex"].get<std::string>());
    if (!regex.ok()) return Error(pattern_path, regex.status().message());
    out.regex = std::move(*regex);
    return out;
  }
  return Error(pattern_path, "expected {\"String\": ...} or {\"Regex\": ...}");
}

absl::StatusOr<std::string> SpecReader::GetChar(const Json& object, std::string_view key,
                                                std::string_view path,
                                                std::string_view default_value) const {
  absl::StatusOr<std::optional<std::string>> s = GetOptionalString(object, key, path);
  if (!s.ok()) return s.status();
  std::string c = s->value_or(std::string(default_value));
  const bool one_char = !c.empty() && DecodeUtf8(c, 0).valid &&
                        static_cast<size_t>(DecodeUtf8(c, 0).length) == c.size();
  if (!one_char) {
    return Error(Sub(path, key), "expected a single character, got ", QuoteForMessage(c));
  }
  return c;
}

absl::StatusOr<PrependScheme> SpecReader::GetPrependScheme(const Json& object,
                                                           std::string_view path) const {
  absl::StatusOr<std::optional<std::string>> scheme =
      GetOptionalString(object, "prepend_scheme", path);
  if (!scheme.ok()) return scheme.status();
  if (!scheme->has_value()) {
    // Files written before prepend_scheme existed say add_prefix_space instead.
    absl::StatusOr<bool> add = GetBool(object, "add_prefix_space", path, true);
    if (!add.ok()) return add.status();
    return *add ? PrependScheme::kAlways : PrependScheme::kNever;
  }
  if (**scheme == "first") return PrependScheme::kFirst;
  if (**scheme == "always") return PrependScheme::kAlways;
  if (**scheme == "never") return PrependScheme::kNever;
  return Error(Sub(path, "prepend_scheme"), "expected 'first', 'always' or 'never', got ",
               QuoteForMessage(**scheme));
}

absl::Status SpecReader::ReadModel(const Json& model, BpeModelSpec& spec) const {
  const std::string path = "model";
  if (!model.is_object()) return Error(path, "expected an object, got ", TypeName(model));
  absl::StatusOr<std::optional<std::string>> type = GetOptionalString(model, "type", path);
  if (!type.ok()) return type.status();
  // Old files leave the type out; Hugging Face then tries the models in turn.
  if (type->has_value() && **type != "BPE") return Unsupported("model", **type);

  const Json* vocab = Get(model, "vocab");
  if (vocab == nullptr) return Error("model.vocab", "is missing");
  if (!vocab->is_object()) {
    return Error("model.vocab", "expected an object of token: id, got ", TypeName(*vocab));
  }
  spec.vocab.reserve(vocab->size());
  for (const auto& [token, id_json] : vocab->items()) {
    std::optional<int64_t> id = IntegerValue(id_json);
    if (!id) {
      return Error("model.vocab", "the id of ", QuoteForMessage(token), " is ", TypeName(id_json),
                   ", not an integer");
    }
    if (*id < 0 || *id > kMaxTokenId) {
      return Error("model.vocab", "token ", QuoteForMessage(token), " has id ", *id,
                   ", outside [0, ", kMaxTokenId, "]");
    }
    spec.vocab.emplace_back(token, static_cast<TokenId>(*id));
  }

  absl::StatusOr<const Json*> merges = GetArray(model, "merges", path);
  if (!merges.ok()) return merges.status();
  spec.merges.reserve((*merges)->size());
  for (size_t i = 0; i < (*merges)->size(); ++i) {
    const Json& m = (**merges)[i];
    if (m.is_string()) {
      // "left right": tokens hold no spaces in this form (byte-level writes 'Ġ', Metaspace '▁').
      std::vector<std::string> parts = absl::StrSplit(m.get<std::string>(), ' ');
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
        return Error(Index("model.merges", i), "expected \"left right\", got ",
                     QuoteForMessage(m.get<std::string>()));
      }
      spec.merges.emplace_back(std::move(parts[0]), std::move(parts[1]));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return Error(Index("model.merges", i),
                   "expected \"left right\" or [\"left\", \"right\"], got ", TypeName(m));
    }
  }

  const Json* dropout = Get(model, "dropout");
  if (dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return Error("model.dropout", "is not supported (encoding must be deterministic)");
  }
  for (std::string_view key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    absl::StatusOr<std::optional<std::string>> affix = GetOptionalString(model, key, path);
    if (!affix.ok()) return affix.status();
    if (affix->has_value() && !(*affix)->empty()) {
      return Error(Sub(path, key), "is not supported (got ", QuoteForMessage(**affix), ")");
    }
  }
  absl::StatusOr<std::optional<std::string>> unk = GetOptionalString(model, "unk_token", path);
  if (!unk.ok()) return unk.status();
  spec.unk_token = *unk;
  for (auto [key, field] :
       {std::pair{"byte_fallback", &spec.byte_fallback}, std::pair{"fuse_unk", &spec.fuse_unk},
        std::pair{"ignore_merges", &spec.ignore_merges}}) {
    absl::StatusOr<bool> b = GetBool(model, key, path, false);
    if (!b.ok()) return b.status();
    *field = *b;
  }
  return absl::OkStatus();
}

absl::Status SpecReader::ReadAddedTokens(const Json& tokens,
                                         std::vector<AddedTokenSpec>& out) const {
  if (tokens.is_null()) return absl::OkStatus();
  if (!tokens.is_array()) {
    return Error("added_tokens", "expected an array, got ", TypeName(tokens));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    const Json& t = tokens[i];
    const std::string path = Index("added_tokens", i);
    if (!t.is_object()) return Error(path, "expected an object, got ", TypeName(t));
    AddedTokenSpec spec;
    absl::StatusOr<int64_t> id = GetInt(t, "id", path, std::nullopt);
    if (!id.ok()) return id.status();
    if (*id < 0 || *id > kMaxTokenId) {
      return Error(Sub(path, "id"), *id, " is outside [0, ", kMaxTokenId, "]");
    }
    spec.id = static_cast<TokenId>(*id);
    absl::StatusOr<std::string> content = GetString(t, "content", path);
    if (!content.ok()) return content.status();
    if (content->empty()) return Error(Sub(path, "content"), "is empty");
    spec.content = *std::move(content);
    absl::StatusOr<bool> special = GetBool(t, "special", path, false);
    if (!special.ok()) return special.status();
    spec.special = *special;
    for (auto [key, field, default_value] :
         {std::tuple{"lstrip", &spec.lstrip, false}, std::tuple{"rstrip", &spec.rstrip, false},
          std::tuple{"single_word", &spec.single_word, false},
          std::tuple{"normalized", &spec.normalized, !spec.special}}) {
      absl::StatusOr<bool> b = GetBool(t, key, path, default_value);
      if (!b.ok()) return b.status();
      *field = *b;
    }
    out.push_back(std::move(spec));
  }
  return absl::OkStatus();
}

absl::Status SpecReader::ReadNormalizer(const Json& node, std::string path,
                                        std::vector<NormalizerStep>& out) const {
  if (node.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = GetType(node, path);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    absl::StatusOr<const Json*> steps = GetArray(node, "normalizers", path);
    if (!steps.ok()) return steps.status();
    for (size_t i = 0; i < (*steps)->size(); ++i) {
      absl::Status s = ReadNormalizer((**steps)[i], Index(Sub(path, "normalizers"), i), out);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (*type == "Prepend") {
    absl::StatusOr<std::string> prepend = GetString(node, "prepend", path);
    if (!prepend.ok()) return prepend.status();
    out.push_back({NormalizerStep::Kind::kPrepend, *std::move(prepend), {}});
    return absl::OkStatus();
  }
  if (*type == "Replace") {
    absl::StatusOr<TextPattern> pattern = GetPattern(node, path);
    if (!pattern.ok()) return pattern.status();
    absl::StatusOr<std::string> content = GetString(node, "content", path);
    if (!content.ok()) return content.status();
    out.push_back({NormalizerStep::Kind::kReplace, *std::move(content), *std::move(pattern)});
    return absl::OkStatus();
  }
  if (*type == "NFC") {
    out.push_back({NormalizerStep::Kind::kNfc, {}, {}});
    return absl::OkStatus();
  }
  return Unsupported(path, *type);
}

absl::Status SpecReader::ReadPreTokenizer(const Json& node, std::string path,
                                          std::vector<PreTokenizerStep>& out) const {
  if (node.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = GetType(node, path);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    absl::StatusOr<const Json*> steps = GetArray(node, "pretokenizers", path);
    if (!steps.ok()) return steps.status();
    for (size_t i = 0; i < (*steps)->size(); ++i) {
      absl::Status s = ReadPreTokenizer((**steps)[i], Index(Sub(path, "pretokenizers"), i), out);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  PreTokenizerStep step;
  if (*type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    absl::StatusOr<bool> add = GetBool(node, "add_prefix_space", path, true);
    if (!add.ok()) return add.status();
    absl::StatusOr<bool> use_regex = GetBool(node, "use_regex", path, true);
    if (!use_regex.ok()) return use_regex.status();
    step.add_prefix_space = *add;
    step.use_regex = *use_regex;
    if (step.use_regex) {
      absl::StatusOr<std::unique_ptr<Regex>> regex = Regex::Compile(kGpt2SplitPattern);
      if (!regex.ok()) return regex.status();  // a constant pattern; cannot fail
      step.pattern.regex = std::move(*regex);
    }
  } else if (*type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    absl::StatusOr<TextPattern> pattern = GetPattern(node, path);
    if (!pattern.ok()) return pattern.status();
    step.pattern = *std::move(pattern);
    absl::StatusOr<std::string> behavior = GetString(node, "behavior", path);
    if (!behavior.ok()) return behavior.status();
    static constexpr std::pair<std::string_view, SplitBehavior> kBehaviors[] = {
        {"Removed", SplitBehavior::kRemoved},
        {"Isolated", SplitBehavior::kIsolated},
        {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
        {"MergedWithNext", SplitBehavior::kMergedWithNext},
        {"Contiguous", SplitBehavior::kContiguous}};
    bool known = false;
    for (const auto& [name, value] : kBehaviors) {
      if (*behavior == name) {
        step.behavior = value;
        known = true;
      }
    }
    if (!known) {
      return Error(Sub(path, "behavior"), "unknown split behavior ", QuoteForMessage(*behavior));
    }
    absl::StatusOr<bool> invert = GetBool(node, "invert", path, false);
    if (!invert.ok()) return invert.status();
    step.invert = *invert;
  } else if (*type == "Digits") {
    // Hugging Face cuts at char::is_numeric (Nd, Nl, No): each digit alone, or runs.
    step.kind = PreTokenizerStep::Kind::kSplit;
    absl::StatusOr<bool> individual = GetBool(node, "individual_digits", path, false);
    if (!individual.ok()) return individual.status();
    absl::StatusOr<std::unique_ptr<Regex>> regex = Regex::Compile(R"(\p{N})");
    if (!regex.ok()) return regex.status();  // a constant pattern; cannot fail
    step.pattern.regex = std::move(*regex);
    step.behavior = *individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  } else if (*type == "Metaspace") {
    step.kind = PreTokenizerStep::Kind::kMetaspace;
    absl::StatusOr<std::string> replacement = GetChar(node, "replacement", path, "\u2581");
    if (!replacement.ok()) return replacement.status();
    step.replacement = *std::move(replacement);
    absl::StatusOr<PrependScheme> scheme = GetPrependScheme(node, path);
    if (!scheme.ok()) return scheme.status();
    step.prepend_scheme = *scheme;
    absl::StatusOr<bool> split = GetBool(node, "split", path, true);
    if (!split.ok()) return split.status();
    step.split = *split;
    step.pattern.literal = step.replacement;  // where split cuts
  } else {
    return Unsupported(path, *type);
  }
  out.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status SpecReader::ReadDecoder(const Json& node, std::string path, bool& fused,
                                     DecoderSpec& out) const {
  absl::StatusOr<std::string> type = GetType(node, path);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    absl::StatusOr<const Json*> steps = GetArray(node, "decoders", path);
    if (!steps.ok()) return steps.status();
    for (size_t i = 0; i < (*steps)->size(); ++i) {
      absl::Status s = ReadDecoder((**steps)[i], Index(Sub(path, "decoders"), i), fused, out);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (*type == "Fuse") {
    fused = true;
    return absl::OkStatus();
  }
  DecoderStep step;
  if (*type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    absl::StatusOr<std::string> content = GetChar(node, "content", path, " ");
    if (!content.ok()) return content.status();
    step.content = *std::move(content);
    absl::StatusOr<int64_t> start = GetInt(node, "start", path, 0);
    if (!start.ok()) return start.status();
    absl::StatusOr<int64_t> stop = GetInt(node, "stop", path, 0);
    if (!stop.ok()) return stop.status();
    if (*start < 0 || *start > 1024 || *stop < 0 || *stop > 1024) {
      return Error(path, "start and stop must lie in [0, 1024], got ", *start, " and ", *stop);
    }
    step.strip_start = static_cast<int>(*start);
    step.strip_stop = static_cast<int>(*stop);
    if (fused) {
      // Stripping the end of the whole text would hold back every streamed space.
      if (step.strip_stop != 0)
        return Error(path, "a Strip with stop > 0 after Fuse is not supported");
      if (out.leading_strip_count > 0 && out.leading_strip != step.content) {
        return Error(path, "two Strips of different characters after Fuse are not supported");
      }
      out.leading_strip = step.content;
      out.leading_strip_count += step.strip_start;
      return absl::OkStatus();
    }
  } else if (fused) {
    return Error(path, "decoder '", *type, "' after 'Fuse' is not supported");
  } else if (*type == "ByteLevel") {
    step.kind = DecoderStep::Kind::kByteLevel;
  } else if (*type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (*type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    absl::StatusOr<TextPattern> pattern = GetPattern(node, path);
    if (!pattern.ok()) return pattern.status();
    step.pattern = *std::move(pattern);
    absl::StatusOr<std::string> content = GetString(node, "content", path);
    if (!content.ok()) return content.status();
    step.content = *std::move(content);
  } else if (*type == "Metaspace") {
    step.kind = DecoderStep::Kind::kMetaspace;
    absl::StatusOr<std::string> replacement = GetChar(node, "replacement", path, "\u2581");
    if (!replacement.ok()) return replacement.status();
    step.replacement = *std::move(replacement);
    absl::StatusOr<PrependScheme> scheme = GetPrependScheme(node, path);
    if (!scheme.ok()) return scheme.status();
    step.prepend_scheme = *scheme;
  } else {
    return Unsupported(path, *type);
  }
  out.per_token.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status SpecReader::ReadTemplate(const Json& node, std::string_view path,
                                      TokenizerSpec& out) const {
  absl::StatusOr<const Json*> single = GetArray(node, "single", path);
  if (!single.ok()) return single.status();
  const Json* special = Get(node, "special_tokens");
  std::vector<std::pair<std::string, TokenId>> prefix, suffix;
  bool seen_sequence = false;
  for (size_t i = 0; i < (*single)->size(); ++i) {
    const Json& piece = (**single)[i];
    const std::string piece_path = Index(Sub(path, "single"), i);
    if (piece.is_object() && piece.contains("Sequence")) {
      absl::StatusOr<std::string> id = GetString(piece["Sequence"], "id", piece_path + ".Sequence");
      if (!id.ok()) return id.status();
      if (*id != "A") {
        return Error(piece_path, "the single template may only use sequence 'A', not ",
                     QuoteForMessage(*id));
      }
      if (seen_sequence) return Error(piece_path, "the single template uses sequence 'A' twice");
      seen_sequence = true;
      continue;
    }
    if (!piece.is_object() || !piece.contains("SpecialToken") ||
        !piece["SpecialToken"].is_object()) {
      return Error(piece_path, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
    absl::StatusOr<std::string> name =
        GetString(piece["SpecialToken"], "id", piece_path + ".SpecialToken");
    if (!name.ok()) return name.status();
    if (special == nullptr || !special->is_object() || !special->contains(*name)) {
      return Error(piece_path, "special token ", QuoteForMessage(*name),
                   " is not in special_tokens");
    }
    const std::string entry_path = Sub(Sub(path, "special_tokens"), *name);
    absl::StatusOr<const Json*> ids = GetArray((*special)[*name], "ids", entry_path);
    if (!ids.ok()) return ids.status();
    for (size_t k = 0; k < (*ids)->size(); ++k) {
      std::optional<int64_t> id = IntegerValue((**ids)[k]);
      if (!id || *id < 0 || *id > kMaxTokenId) {
        return Error(Index(Sub(entry_path, "ids"), k), "expected an id in [0, ", kMaxTokenId, "]");
      }
      (seen_sequence ? suffix : prefix).emplace_back(*name, static_cast<TokenId>(*id));
    }
  }
  if (!seen_sequence) return Error(Sub(path, "single"), "the template never uses sequence 'A'");
  // Processors in a Sequence apply in turn, each around the result of the one before.
  prefix.insert(prefix.end(), out.template_prefix.begin(), out.template_prefix.end());
  out.template_prefix = std::move(prefix);
  out.template_suffix.insert(out.template_suffix.end(), suffix.begin(), suffix.end());
  return absl::OkStatus();
}

absl::Status SpecReader::ReadPostProcessor(const Json& node, std::string path,
                                           TokenizerSpec& out) const {
  if (node.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = GetType(node, path);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    absl::StatusOr<const Json*> steps = GetArray(node, "processors", path);
    if (!steps.ok()) return steps.status();
    for (size_t i = 0; i < (*steps)->size(); ++i) {
      absl::Status s = ReadPostProcessor((**steps)[i], Index(Sub(path, "processors"), i), out);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (*type == "ByteLevel") return absl::OkStatus();  // it only trims offsets
  if (*type == "TemplateProcessing") return ReadTemplate(node, path, out);
  return Unsupported(path, *type);
}

absl::StatusOr<TokenizerSpec> SpecReader::Read(const Json& root) {
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        StrCatStd(source_, ": expected a JSON object at the top level, got ", TypeName(root)));
  }
  TokenizerSpec spec;
  auto model = root.find("model");
  if (model == root.end() || model->is_null()) {
    return absl::InvalidArgumentError(StrCatStd(source_, ": \"model\" is missing"));
  }
  absl::Status s = ReadModel(*model, spec.model);
  if (!s.ok()) return s;
  // A missing component is the same as null.
  auto field = [&root](std::string_view key) -> const Json& {
    static const Json* const kNull = new Json(nullptr);
    auto it = root.find(key);
    return it == root.end() ? *kNull : *it;
  };
  if (s = ReadAddedTokens(field("added_tokens"), spec.added_tokens); !s.ok()) return s;
  if (s = ReadNormalizer(field("normalizer"), "normalizer", spec.normalizer); !s.ok()) return s;
  if (s = ReadPreTokenizer(field("pre_tokenizer"), "pre_tokenizer", spec.pre_tokenizer); !s.ok()) {
    return s;
  }
  if (s = ReadPostProcessor(field("post_processor"), "post_processor", spec); !s.ok()) return s;
  if (field("decoder").is_null()) {
    spec.decoder.join_with_space = true;
  } else {
    bool fused = false;
    if (s = ReadDecoder(field("decoder"), "decoder", fused, spec.decoder); !s.ok()) return s;
  }
  // "truncation" and "padding" shape batches for training; the server sets its own limits.
  return spec;
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseTokenizerJson(std::string_view json,
                                                 std::string_view source_name) {
  Json root;
  try {
    root = Json::parse(json.begin(), json.end());
  } catch (const Json::exception& e) {
    std::string_view what = e.what();
    // Drop the "[json.exception.parse_error.101] " prefix.
    if (size_t bracket = what.find("] "); bracket != std::string_view::npos) {
      what.remove_prefix(bracket + 2);
    }
    return absl::InvalidArgumentError(StrCatStd(source_name, ": invalid JSON: ", what));
  }
  return SpecReader(source_name).Read(root);
}

}  // namespace prefixd
