// NFC as UAX #15 defines it: full canonical decomposition, canonical ordering of
// combining marks, then canonical composition.
//
// The data is Unicode 9.0.0's, not the current version's: Hugging Face tokenizers
// normalizes with the unicode-normalization-alignments crate, whose tables are 9.0.0's, so
// a mark added since (U+0898..U+089F, U+1AC1.., U+1DF6..) is a starter there (combining
// class 0): it blocks composition and is not reordered; a composite added since (U+11938
// DIVES AKURU VOWEL SIGN O) is not composed. Models were trained on that reading.
// tokenizer/unicode_nfc_data.inc holds the tables; this script (Python 3) writes it from
// Debian's unicode-data package (any version since 9.0.0: data of characters that already
// existed never changes), keeping the characters of Unicode 9.0.0 or older:
//
//   ucd = '/usr/share/unicode/'
//   def ranges(name, prop=None):
//     for line in open(ucd + name):
//       f = [x.strip() for x in line.split('#')[0].split(';')]
//       if len(f) < 2 or (prop and f[1] != prop): continue
//       lo, _, hi = f[0].partition('..')
//       yield int(lo, 16), int(hi or lo, 16), f[1]
//   old = set()
//   for lo, hi, age in ranges('DerivedAge.txt'):
//     if tuple(map(int, age.split('.'))) <= (9, 0): old.update(range(lo, hi + 1))
//   excluded = set()
//   for lo, hi, _ in ranges('DerivedNormalizationProps.txt', 'Full_Composition_Exclusion'):
//     excluded.update(range(lo, hi + 1))
//   ccc, dec = [], []
//   for line in open(ucd + 'UnicodeData.txt'):
//     f = line.split(';')
//     cp, c, d = int(f[0], 16), int(f[3]), f[5]
//     if cp not in old: continue
//     if c and ccc and ccc[-1][1] == cp - 1 and ccc[-1][2] == c: ccc[-1][1] = cp
//     elif c: ccc.append([cp, cp, c])
//     if d and not d.startswith('<'):
//       p = [int(x, 16) for x in d.split()] + [0]
//       dec.append((cp, p[0], p[1], int(p[1] != 0 and cp not in excluded)))
//   def emit(items):
//     line = '   '
//     for item in items:
//       if len(line) + 1 + len(item) > 100: print(line); line = '   '
//       line += ' ' + item
//     print(line)
//   print('// Canonical combining classes other than 0: {first, last, class}, sorted.')
//   print('constexpr CombiningClassRange kCombiningClasses[] = {')
//   emit(['{0x%X, 0x%X, %d},' % tuple(r) for r in ccc])
//   print('};')
//   print()
//   print('// Canonical decompositions (one level; Hangul syllables are algorithmic):')
//   print('// {code point, first, second or 0, whether NFC composes first + second back}.')
//   print('constexpr Decomposition kDecompositions[] = {')
//   emit(['{0x%X, 0x%X, 0x%X, %d},' % r for r in dec])
//   print('};')
//   # then put the comment at the top of unicode_nfc_data.inc back above its output
#include "tokenizer/unicode_nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tokenizer/tokenizer_utf8.h"

namespace prefixd {
namespace {

struct CombiningClassRange {
  char32_t first;
  char32_t last;
  uint8_t combining_class;
};

struct Decomposition {
  char32_t code_point;
  char32_t first;
  char32_t second;  // 0 for a singleton
  bool composes;    // a primary composite: NFC composes first + second into it
};

#include "tokenizer/unicode_nfc_data.inc"

// Hangul syllables decompose and compose by arithmetic (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Below this no character has a decomposition that NFC keeps decomposed or a nonzero
// combining class, so text made only of such characters is already NFC.
constexpr char32_t kFirstInteresting = 0x300;

// An invalid byte b is carried through as kInvalidBase + b: a starter that never composes.
constexpr char32_t kInvalidBase = 0x110000;

int CombiningClass(char32_t c) {
  if (c < kFirstInteresting || c >= kInvalidBase) return 0;
  auto it = std::upper_bound(std::begin(kCombiningClasses), std::end(kCombiningClasses), c,
                             [](char32_t v, const CombiningClassRange& r) { return v < r.first; });
  if (it == std::begin(kCombiningClasses)) return 0;
  --it;
  return c <= it->last ? it->combining_class : 0;
}

const Decomposition* FindDecomposition(char32_t c) {
  auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), c,
                             [](const Decomposition& d, char32_t v) { return d.code_point < v; });
  return it != std::end(kDecompositions) && it->code_point == c ? &*it : nullptr;
}

void Decompose(char32_t c, std::vector<char32_t>& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* d = c < 0xC0 || c >= kInvalidBase ? nullptr : FindDecomposition(c);
  if (d == nullptr) {
    out.push_back(c);
    return;
  }
  Decompose(d->first, out);  // depth is bounded by the data: at most 4 levels
  if (d->second != 0) Decompose(d->second, out);
}

const absl::flat_hash_map<uint64_t, char32_t>& Compositions() {
  static const auto* table = [] {
    auto* t = new absl::flat_hash_map<uint64_t, char32_t>();
    for (const Decomposition& d : kDecompositions) {
      if (d.composes) t->emplace((uint64_t{d.first} << 32) | d.second, d.code_point);
    }
    return t;
  }();
  return *table;
}

// The primary composite of a + b, or 0.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto& table = Compositions();
  auto it = table.find((uint64_t{a} << 32) | b);
  return it == table.end() ? 0 : it->second;
}

}  // namespace

std::string NfcNormalize(std::string_view text) {
  bool simple = true;
  for (size_t pos = 0; pos < text.size() && simple;) {
    const Utf8Char c = DecodeUtf8(text, pos);
    simple = !c.valid || c.code_point < kFirstInteresting;
    pos += c.length;
  }
  if (simple) return std::string(text);

  std::vector<char32_t> chars;
  chars.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Char c = DecodeUtf8(text, pos);
    Decompose(c.valid ? c.code_point : kInvalidBase + static_cast<uint8_t>(text[pos]), chars);
    pos += c.length;
  }
  // Canonical ordering: a stable sort of each run of combining marks by class.
  for (size_t i = 0; i < chars.size();) {
    if (CombiningClass(chars[i]) == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < chars.size() && CombiningClass(chars[end]) != 0) ++end;
    std::stable_sort(chars.begin() + i, chars.begin() + end,
                     [](char32_t a, char32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = end;
  }
  // Canonical composition (UAX #15's reference algorithm).
  // chars is not empty: the text held a character >= kFirstInteresting.
  size_t kept = 1;
  size_t starter = 0;
  // A leading mark has no starter before it to compose with.
  int last_class = CombiningClass(chars[0]) == 0 ? 0 : 256;
  for (size_t i = 1; i < chars.size(); ++i) {
    const char32_t c = chars[i];
    const int c_class = CombiningClass(c);
    const char32_t composite = Compose(chars[starter], c);
    if (composite != 0 && (last_class < c_class || last_class == 0)) {
      chars[starter] = composite;
      continue;
    }
    if (c_class == 0) starter = kept;
    last_class = c_class;
    chars[kept++] = c;
  }
  chars.resize(kept);

  std::string out;
  out.reserve(text.size());
  for (char32_t c : chars) {
    if (c >= kInvalidBase) {
      out += static_cast<char>(c - kInvalidBase);
    } else {
      AppendUtf8(c, out);
    }
  }
  return out;
}

}  // namespace prefixd
