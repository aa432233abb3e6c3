// NFC as UAX #15 defines it: full canonical decomposition, canonical ordering of
// combining marks, then canonical composition. tokenizer/unicode_nfc_data.inc holds the
// tables; it is written by this script (Python 3, whose unicodedata sets the version):
//
//   import unicodedata as u
//   ccc, dec = [], []
//   for cp in range(0x110000):
//     c = u.combining(chr(cp))
//     if c and ccc and ccc[-1][1] == cp - 1 and ccc[-1][2] == c: ccc[-1][1] = cp
//     elif c: ccc.append([cp, cp, c])
//     d = u.decomposition(chr(cp))
//     if d and not d.startswith('<'):
//       p = [int(x, 16) for x in d.split()] + [0]
//       dec.append((cp, p[0], p[1], int(p[1] != 0 and u.normalize('NFC', chr(cp)) == chr(cp))))
//   # then print ccc as {first, last, class} and dec as {cp, first, second, composes}
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
