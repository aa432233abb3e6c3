// A conversation's token ids from prefixd equal transformers' apply_chat_template(...,
// tokenize=True) for the same model folder: the template rendered by python3-jinja2 under
// transformers' settings (hf_chat_render.py), then encoded by Hugging Face `tokenizers`
// (the Rust library, through @anush008/tokenizers) WITHOUT adding special tokens, as
// transformers does; against prefixd's `POST /tokenize` on a live server (the rendered
// `prompt` and its `tokens`), the very path a chat request takes.
//
//   node chat_tokens.mjs --prefixd PATH --model-dir DIR --renderer hf_chat_render.py
//                        [--work-dir DIR]
//
// It also checks the BOS rule: the ids start with exactly one BOS, and encoding the same
// text with add_special_tokens=true (the classic bug) would give two, so a server that
// added special tokens again would fail here.
//
// Exit status: 0 passed, 1 failed, 77 skipped, saying why (npm or python3-jinja2 missing,
// the registry unreachable).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { npmCi } from '../../npm_ci.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SKIP = 77;

function skip(why) {
  console.log(`chat_tokens: SKIPPED: ${why}`);
  process.exit(SKIP);
}

function fail(why) {
  console.error(`chat_tokens: FAIL: ${why}`);
  process.exitCode = 1;
}

function parseArgs(argv) {
  const args = { prefixd: '', modelDir: '', renderer: '',
                 workDir: path.join(os.tmpdir(), 'prefixd-hf-parity') };
  for (let i = 0; i < argv.length; ++i) {
    const value = () => argv[++i] ?? usage(`${argv[i - 1]} needs a value`);
    switch (argv[i]) {
      case '--prefixd': args.prefixd = path.resolve(value()); break;
      case '--model-dir': args.modelDir = path.resolve(value()); break;
      case '--renderer': args.renderer = path.resolve(value()); break;
      case '--work-dir': args.workDir = path.resolve(value()); break;
      default: usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!args.prefixd || !args.modelDir || !args.renderer) {
    usage('--prefixd, --model-dir and --renderer are required');
  }
  return args;
}

function usage(message) {
  console.error(`chat_tokens: ${message}\nusage: node chat_tokens.mjs --prefixd PATH ` +
                '--model-dir DIR --renderer hf_chat_render.py [--work-dir DIR]');
  process.exit(2);
}

// Conversations that exercise the template and the tokenizer: a system prompt, several
// turns, Unicode, whitespace at the edges, text that spells a special token, no
// generation prompt.
const CASES = [
  { messages: [{ role: 'user', content: 'Hello!' }], add_generation_prompt: true },
  { messages: [{ role: 'system', content: 'You are a terse assistant. Answer in one line.' },
               { role: 'user', content: 'What is the capital of France?' }],
    add_generation_prompt: true },
  { messages: [{ role: 'system', content: 'Be kind.' },
               { role: 'user', content: 'Hi there' },
               { role: 'assistant', content: 'Hello! How can I help?' },
               { role: 'user', content: '  Two spaces before, a tab after\t' }],
    add_generation_prompt: true },
  { messages: [{ role: 'user', content: 'Ünïcödé: 日本語, emoji 🙂👍🏽, Ελληνικά, ﬁ ligature, e\u0301' }],
    add_generation_prompt: true },
  { messages: [{ role: 'user', content: 'Line one\n\nLine three\r\n   indented' }],
    add_generation_prompt: false },
  { messages: [{ role: 'user', content: 'Literal <|eot_id|> and <|begin_of_text|> inside' }],
    add_generation_prompt: true },
  { messages: [{ role: 'user', content: '' }], add_generation_prompt: true },
];

function render(renderer, modelDir) {
  const r = spawnSync('/usr/bin/python3', [renderer, modelDir],
                      { input: JSON.stringify(CASES), encoding: 'utf8', timeout: 60e3 });
  if (r.status === SKIP) skip(`python3-jinja2: ${r.stdout.trim()}`);
  if (r.error || r.status !== 0) {
    console.error(r.stderr);
    throw new Error(`hf_chat_render.py failed (${r.error?.message ?? r.status})`);
  }
  return JSON.parse(r.stdout);
}

async function startServer(binary, modelDir) {
  const child = spawn(binary, [
    `--model=${modelDir}`, '--listen=127.0.0.1:0', '--http_listen=', '--openai_listen=127.0.0.1:0',
    '--kv_cache_tokens=4096', '--log_level=off',
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  let url = '';
  for await (const line of readline.createInterface({ input: child.stdout })) {
    const match = line.match(/^prefixd: OpenAI-compatible API on (\S+)\/v1$/);
    if (match) url = match[1];
    if (line.startsWith('prefixd: listening on')) break;
  }
  child.stdout.resume();
  if (!url) throw new Error('prefixd printed no OpenAI-compatible API line');
  return { child, exited, url };
}

function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  npmCi(HERE, args.workDir, 'chat_tokens', skip);
  const require = createRequire(path.join(args.workDir, 'package.json'));
  const hf = require('@anush008/tokenizers');
  const tokenizer = hf.Tokenizer.fromFile(path.join(args.modelDir, 'tokenizer.json'));
  const config = JSON.parse(fs.readFileSync(path.join(args.modelDir, 'tokenizer_config.json')));
  const bosText = typeof config.bos_token === 'string' ? config.bos_token : config.bos_token?.content;
  const bos = tokenizer.tokenToId(bosText);
  const rendered = render(args.renderer, args.modelDir);
  const server = await startServer(args.prefixd, args.modelDir);
  try {
    for (let i = 0; i < CASES.length; ++i) {
      const what = `case ${i} (${JSON.stringify(CASES[i].messages).slice(0, 60)}…)`;
      if (rendered[i].error) {
        fail(`${what}: python3-jinja2 raised ${rendered[i].error}`);
        continue;
      }
      const response = await fetch(`${server.url}/tokenize`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(CASES[i]),
      });
      const body = await response.json();
      if (response.status !== 200) {
        fail(`${what}: /tokenize answered ${response.status} ${JSON.stringify(body)}`);
        continue;
      }
      const text = rendered[i].text;
      if (body.prompt !== text) {
        fail(`${what}: rendered text differs\n  transformers: ${JSON.stringify(text)}\n` +
             `  prefixd:      ${JSON.stringify(body.prompt)}`);
        continue;
      }
      // apply_chat_template(tokenize=True): the rendered text, no special tokens added.
      const expected = Array.from((await encode(tokenizer, text, false)).getIds());
      if (!same(body.tokens, expected)) {
        fail(`${what}: token ids differ\n  transformers: ${expected}\n  prefixd:      ${body.tokens}`);
        continue;
      }
      // Exactly one BOS at the start (content that spells a special token becomes that
      // token further in, in transformers as here).
      if (body.tokens[0] !== bos || body.tokens[1] === bos) {
        fail(`${what}: starts ${body.tokens.slice(0, 3)}…, expected exactly one BOS (${bos})`);
        continue;
      }
      // The classic bug this guards against: special tokens added on top of the template's.
      const doubled = Array.from((await encode(tokenizer, text, true)).getIds());
      if (!(doubled[0] === bos && doubled[1] === bos) || same(doubled, expected)) {
        fail(`${what}: add_special_tokens=true did not double the BOS (${doubled.slice(0, 3)}); ` +
             'this check would not catch a double BOS');
        continue;
      }
      console.log(`ok: ${what}: ${expected.length} ids equal transformers', one BOS`);
    }
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
  if (process.exitCode) return;
  console.log(`chat_tokens: PASS (${CASES.length} conversations)`);
}

async function encode(tokenizer, text, addSpecialTokens) {
  return (await tokenizer.encodeBatch([text], { addSpecialTokens }))[0];
}

main().catch((e) => {
  console.error(`chat_tokens: FAIL: ${e.stack || e}`);
  process.exit(1);
});
