#include "tokenizer/tokenizer_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {
namespace {

struct CategoryRange {
  char32_t first;
  char32_t last;
  char category[3];  // a two-letter general category: "Lo", "Nd"
};

#include "tokenizer/unicode_category_data.inc"

// General category names as Oniguruma takes them in \p{...}, loosely matched (see
// LooseName), and PCRE2's name for each. "lc" is Lu, Ll and Lt.
constexpr std::pair<std::string_view, std::string_view> kCategoryNames[] = {
    {"l", "L"},
    {"letter", "L"},
    {"lc", "LC"},
    {"l&", "LC"},
    {"casedletter", "LC"},
    {"lu", "Lu"},
    {"uppercaseletter", "Lu"},
    {"ll", "Ll"},
    {"lowercaseletter", "Ll"},
    {"lt", "Lt"},
    {"titlecaseletter", "Lt"},
    {"lm", "Lm"},
    {"modifierletter", "Lm"},
    {"lo", "Lo"},
    {"otherletter", "Lo"},
    {"m", "M"},
    {"mark", "M"},
    {"combiningmark", "M"},
    {"mn", "Mn"},
    {"nonspacingmark", "Mn"},
    {"mc", "Mc"},
    {"spacingmark", "Mc"},
    {"me", "Me"},
    {"enclosingmark", "Me"},
    {"n", "N"},
    {"number", "N"},
    {"nd", "Nd"},
    {"decimalnumber", "Nd"},
    {"nl", "Nl"},
    {"letternumber", "Nl"},
    {"no", "No"},
    {"othernumber", "No"},
    {"p", "P"},
    {"punctuation", "P"},
    {"pc", "Pc"},
    {"connectorpunctuation", "Pc"},
    {"pd", "Pd"},
    {"dashpunctuation", "Pd"},
    {"ps", "Ps"},
    {"openpunctuation", "Ps"},
    {"pe", "Pe"},
    {"closepunctuation", "Pe"},
    {"pi", "Pi"},
    {"initialpunctuation", "Pi"},
    {"pf", "Pf"},
    {"finalpunctuation", "Pf"},
    {"po", "Po"},
    {"otherpunctuation", "Po"},
    {"s", "S"},
    {"symbol", "S"},
    {"sm", "Sm"},
    {"mathsymbol", "Sm"},
    {"sc", "Sc"},
    {"currencysymbol", "Sc"},
    {"sk", "Sk"},
    {"modifiersymbol", "Sk"},
    {"so", "So"},
    {"othersymbol", "So"},
    {"z", "Z"},
    {"separator", "Z"},
    {"zs", "Zs"},
    {"spaceseparator", "Zs"},
    {"zl", "Zl"},
    {"lineseparator", "Zl"},
    {"zp", "Zp"},
    {"paragraphseparator", "Zp"},
    {"c", "C"},
    {"other", "C"},
    {"cc", "Cc"},
    {"control", "Cc"},
    {"cf", "Cf"},
    {"format", "Cf"},
    {"cs", "Cs"},
    {"surrogate", "Cs"},
    {"co", "Co"},
    {"privateuse", "Co"},
    {"cn", "Cn"},
    {"unassigned", "Cn"},
};

// Property names compare without case, spaces, '_' and '-', in Oniguruma as in PCRE2.
std::string LooseName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != ' ' && c != '_' && c != '-') out += static_cast<char>(std::tolower(c));
  }
  return out;
}

std::optional<std::string_view> CategoryForName(std::string_view name) {
  const std::string loose = LooseName(name);
  for (const auto& [onig_name, pcre2_name] : kCategoryNames) {
    if (loose == onig_name) return pcre2_name;
  }
  return std::nullopt;
}

bool InCategory(const CategoryRange& r, std::string_view category) {
  if (category == "LC")
    return r.category[0] == 'L' &&
           std::string_view("ult").find(r.category[1]) != std::string_view::npos;
  if (category.size() == 1) return r.category[0] == category[0];
  return std::string_view(r.category, 2) == category;
}

// The characters of `category` that PCRE2 reads as unassigned, as class items.
std::string CategoryAdditions(std::string_view category) {
  std::string items;
  for (const CategoryRange& r : kNewCharacters) {
    if (!InCategory(r, category)) continue;
    absl::StrAppendFormat(&items, "\\x{%X}", static_cast<uint32_t>(r.first));
    if (r.last != r.first) absl::StrAppendFormat(&items, "-\\x{%X}", static_cast<uint32_t>(r.last));
  }
  return items;
}

// A set of characters in Oniguruma's reading: what PCRE2 reads alike, plus characters of
// Unicode 15-16 that PCRE2 reads as unassigned (Cn).
struct CharSet {
  std::string items;       // class items, for use between [ and ]
  std::string complement;  // one item for the complement of `items` inside a class
  std::string additions;   // class items: the Unicode 15-16 characters
};

CharSet Category(std::string_view category) {
  return {StrCatStd("\\p{", category, "}"), StrCatStd("\\P{", category, "}"),
          CategoryAdditions(category)};
}

// Oniguruma's \w: Alphabetic, marks, Nd and Pc (not PCRE2's [\p{L}\p{N}_]). Outside a
// class its Latin-1 table also counts U+00B2 U+00B3 U+00B9 U+00BC-U+00BE (the superscript
// digits and fractions) as word characters. PCRE2 has no complement of it for inside a
// class: there \W stays PCRE2's.
CharSet WordCharacters(bool in_class) {
  return {StrCatStd("\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}",
                    in_class ? "" : "\\xB2\\xB3\\xB9\\xBC-\\xBE"),
          "\\W",
          StrCatStd(CategoryAdditions("L"), CategoryAdditions("Nl"), CategoryAdditions("M"),
                    CategoryAdditions("Nd"), CategoryAdditions("Pc"))};
}

// Matching a list of ranges costs PCRE2 a test per range on every character; the new
// characters are all unassigned to PCRE2, so a \p{Cn} test (one table lookup) first keeps
// the ranges off the common path.
constexpr std::string_view kIfUnassigned = "(?=\\p{Cn})";

// The characters of `items` and `additions` (all others, if `negate`) as one atom.
std::string Atom(std::string_view items, bool negate, std::string_view additions) {
  const std::string set = StrCatStd(negate ? "[^" : "[", items, "]");
  if (additions.empty()) return set;
  if (negate) return StrCatStd("(?:(?!", kIfUnassigned, "[", additions, "])", set, ")");
  return StrCatStd("(?:", set, "|", kIfUnassigned, "[", additions, "])");
}

// What Oniguruma's escape `\<letter>` means, as a set; nullopt if PCRE2 reads it alike.
std::optional<CharSet> EscapeSet(char letter, bool in_class) {
  switch (std::tolower(letter)) {
    case 's':  // White_Space: not U+180E, which PCRE2's \s (via \h) includes
      return CharSet{"\\p{White_Space}", "\\P{White_Space}", ""};
    case 'd':
      return Category("Nd");
    case 'w':
      return WordCharacters(in_class);
    case 'h':  // a hex digit in Oniguruma's (Ruby) syntax, horizontal space in PCRE2's
      return CharSet{"\\p{AHex}", "\\P{AHex}", ""};
    default:
      return std::nullopt;
  }
}

// A [class] being translated: its items so far, and the additions its sets bring.
struct OpenClass {
  bool negated = false;
  std::string items;
  std::string additions;
};

// Writes `set` (its complement if `negate`) into the open class, or as an atom of its own.
void AppendSet(const CharSet& set, bool negate, OpenClass* open_class, std::string& out) {
  if (open_class == nullptr) {
    out += Atom(set.items, negate, set.additions);
  } else if (negate) {
    open_class->items += set.complement;  // without the additions: PCRE2 cannot remove them
  } else {
    open_class->items += set.items;
    open_class->additions += set.additions;
  }
}

// `pattern`, written for Oniguruma as Hugging Face runs it (Ruby syntax, Unicode 16
// tables), rewritten so that PCRE2 10.42 (Unicode 14) reads it alike; see tokenizer_regex.h.
std::string TranslateOnigurumaPattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size());
  std::optional<OpenClass> open_class;  // while inside [...]
  // Where text goes: the open class's items, or the pattern.
  auto sink = [&]() -> std::string& { return open_class ? open_class->items : out; };
  size_t i = 0;
  while (i < pattern.size()) {
    const char c = pattern[i];
    OpenClass* in_class = open_class ? &*open_class : nullptr;
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      if (e == 'Q') {  // \Q...\E: literal text
        const size_t end = pattern.find("\\E", i + 2);
        const size_t stop = end == std::string_view::npos ? pattern.size() : end + 2;
        sink().append(pattern.substr(i, stop - i));
        i = stop;
        continue;
      }
      if (e == 'p' || e == 'P') {
        // \p{Name}, \p{^Name}, \P{Name}; \pL (one letter) is left to PCRE2.
        const size_t close = pattern.find('}', i + 2);
        if (i + 2 < pattern.size() && pattern[i + 2] == '{' && close != std::string_view::npos) {
          std::string_view name = pattern.substr(i + 3, close - (i + 3));
          bool negate = e == 'P';
          if (!name.empty() && name[0] == '^') {
            negate = !negate;
            name.remove_prefix(1);
          }
          if (std::optional<std::string_view> category = CategoryForName(name)) {
            AppendSet(Category(*category), negate, in_class, out);
            i = close + 1;
            continue;
          }
        }
      } else if ((e == 'b' || e == 'B') && in_class == nullptr) {
        // A word boundary by Oniguruma's \w (inside a class \b is a backspace).
        const CharSet w = WordCharacters(false);
        const std::string word = Atom(w.items, false, w.additions);
        absl::StrAppend(&out, "(?:(?<=", word, ")", e == 'b' ? "(?!" : "(?=", word, ")|(?<!", word,
                        ")", e == 'b' ? "(?=" : "(?!", word, "))");
        i += 2;
        continue;
      } else if (std::optional<CharSet> set = EscapeSet(e, in_class != nullptr)) {
        AppendSet(*set, std::isupper(static_cast<unsigned char>(e)) != 0, in_class, out);
        i += 2;
        continue;
      }
      // Any other escape is copied as it is; \cX takes the next character along.
      const size_t length = e == 'c' && i + 2 < pattern.size() ? 3 : 2;
      sink().append(pattern.substr(i, length));
      i += length;
      continue;
    }
    if (in_class == nullptr && c == '[') {
      open_class.emplace();
      ++i;
      if (i < pattern.size() && pattern[i] == '^') {
        open_class->negated = true;
        ++i;
      }
      // A ']' first in the class is a literal.
      if (i < pattern.size() && pattern[i] == ']') open_class->items += pattern[i++];
      continue;
    }
    if (in_class != nullptr && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      const size_t end = pattern.find(":]", i + 2);  // a POSIX class, [:alpha:]
      if (end != std::string_view::npos) {
        in_class->items.append(pattern.substr(i, end + 2 - i));
        i = end + 2;
        continue;
      }
    }
    if (in_class != nullptr && c == ']') {
      out += Atom(in_class->items, in_class->negated, in_class->additions);
      open_class.reset();
      ++i;
      continue;
    }
    sink() += c;
    ++i;
  }
  if (open_class) {  // unterminated: leave the error to PCRE2
    absl::StrAppend(&out, open_class->negated ? "[^" : "[", open_class->items);
  }
  return out;
}

std::string ErrorMessage(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return StrCatStd("PCRE2 error ", code);
  }
  return reinterpret_cast<const char*>(buffer);
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

struct CompileContextDeleter {
  void operator()(pcre2_compile_context* context) const { pcre2_compile_context_free(context); }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern) {
  const std::string translated = TranslateOnigurumaPattern(pattern);
  std::unique_ptr<pcre2_compile_context, CompileContextDeleter> context(
      pcre2_compile_context_create(nullptr));
  if (context == nullptr) return absl::ResourceExhaustedError("PCRE2: out of memory");
  // Oniguruma's (Ruby's) ^ and $ match at every line start and end; a line ends at '\n'.
  pcre2_set_newline(context.get(), PCRE2_NEWLINE_LF);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  // MATCH_INVALID_UTF: subjects may hold invalid UTF-8, which then simply never matches.
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE, &error,
                    &error_offset, context.get());
  if (code == nullptr) {
    // The offset is in the translated pattern, which is the original one where the
    // original has no escape that TranslateOnigurumaPattern rewrites.
    return absl::InvalidArgumentError(
        StrCatStd("regex /", pattern, "/ does not compile: ", ErrorMessage(error), " at offset ",
                  error_offset, translated == pattern ? "" : " of /" + translated + "/"));
  }
  // JIT is an optimisation: where it is unavailable pcre2_match interprets the pattern.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return std::unique_ptr<Regex>(new Regex(std::string(pattern), code));
}

Regex::~Regex() { pcre2_code_free(code_); }

void Regex::ForEachMatch(std::string_view text,
                         absl::FunctionRef<void(size_t, size_t)> on_match) const {
  // One pair is enough: only the whole match is used, and a match with more capture
  // groups than pairs still succeeds (rc == 0).
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> data(pcre2_match_data_create(1, nullptr));
  if (data == nullptr) return;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NOTEMPTY, data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The interpreter keeps its backtracking state on the heap, not the JIT stack.
      rc = pcre2_match(code_, subject, text.size(), pos, PCRE2_NOTEMPTY | PCRE2_NO_JIT, data.get(),
                       nullptr);
    }
    if (rc < 0) return;  // PCRE2_ERROR_NOMATCH, or a resource limit
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end <= pos || begin >= end) return;  // cannot happen with NOTEMPTY; never loop
    on_match(begin, end);
    pos = end;
  }
}

}  // namespace prefixd
