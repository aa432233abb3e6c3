// The official OpenAI client library for Node (`openai` on npm) against a live prefixd, as
// a chatbot backend would use it.
//
//   node openai_sdk_test.mjs --prefixd PATH [--work-dir DIR]
//
// It installs the pinned package (package.json, package-lock.json beside this file) with
// `npm ci` into --work-dir (default: $TMPDIR/prefixd-openai-sdk), never into the source
// tree, then starts prefixd with a tokens file and its OpenAI port on a free port, and
// checks: the models list; chat completions streamed and not (greedy: the same text);
// completions from text and from token ids; stream_options.include_usage, with
// cached_tokens > 0 on the second call that shares a system prompt; errors surfaced as
// the SDK's typed errors (401 AuthenticationError, 400 BadRequestError, 404
// NotFoundError, 429 RateLimitError); and a clean drain on SIGTERM.
//
// Exit status: 0 passed, 1 failed, 77 skipped, saying why (npm missing, the registry
// unreachable, the install failed).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { npmCi } from '../../npm_ci.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SKIP = 77;
const TOKEN = 'sdk-tenant-secret-token-0001';
const SYSTEM = 'You are the support assistant of a bicycle shop. Answer briefly, politely, and ' +
               'only about bicycles, their parts and their repair.';

function parseArgs(argv) {
  const args = { prefixd: '', workDir: path.join(os.tmpdir(), 'prefixd-openai-sdk') };
  for (let i = 0; i < argv.length; ++i) {
    const value = () => {
      if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--prefixd': args.prefixd = path.resolve(value()); break;
      case '--work-dir': args.workDir = path.resolve(value()); break;
      default: usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!args.prefixd) usage('--prefixd PATH is required');
  return args;
}

function usage(message) {
  console.error(`openai_sdk_test: ${message}\n` +
                'usage: node openai_sdk_test.mjs --prefixd PATH [--work-dir DIR]');
  process.exit(2);
}

function skip(why) {
  console.log(`openai_sdk_test: SKIPPED: ${why}`);
  process.exit(SKIP);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// ---- the client library: npm ci into the work dir ----

function installClient(workDir) {
  npmCi(HERE, workDir, 'openai_sdk_test', skip);
}

// ---- the server ----

async function startServer(binary, workDir) {
  const tokens = path.join(workDir, 'tokens.json');
  fs.writeFileSync(tokens, JSON.stringify({ tenants: [{ name: 'sdk', tokens: [TOKEN] }] }));
  // One running and one queued request at most, so that a burst draws 429s.
  const child = spawn(binary, [
    '--listen=127.0.0.1:0', '--http_listen=', '--openai_listen=127.0.0.1:0',
    `--tokens_file=${tokens}`, '--kv_cache_tokens=65536', '--max_running_requests=1',
    '--max_queued_requests=1', '--shutdown_grace=5s', '--log_level=warn',
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let baseURL = '';
  for await (const line of readline.createInterface({ input: child.stdout })) {
    console.log(line);
    const match = line.match(/^prefixd: OpenAI-compatible API on (\S+)$/);
    if (match) baseURL = match[1];
    if (line.startsWith('prefixd: listening on')) break;
  }
  child.stdout.resume();  // keep draining
  check(baseURL !== '', 'prefixd printed no "OpenAI-compatible API on" line before listening');
  return { child, exited, baseURL };
}

// ---- the checks ----

async function run(OpenAI, baseURL) {
  const client = new OpenAI({ apiKey: TOKEN, baseURL, maxRetries: 0, timeout: 120e3 });

  const models = await client.models.list();
  check(models.data.length === 1, `models: ${JSON.stringify(models.data)}`);
  const model = models.data[0].id;
  check(models.data[0].max_model_len > 0, `model without max_model_len: ${JSON.stringify(models.data[0])}`);
  console.log(`ok: models.list -> ${model} (max_model_len ${models.data[0].max_model_len})`);

  const messages = [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'My chain squeaks.' }];
  const whole = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
  check(whole.object === 'chat.completion', `object ${whole.object}`);
  const choice = whole.choices[0];
  check(choice.message.role === 'assistant' && typeof choice.message.content === 'string',
        `message ${JSON.stringify(choice.message)}`);
  check(['stop', 'length'].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
  check(whole.usage.completion_tokens <= 8 && whole.usage.prompt_tokens > 0 &&
        whole.usage.total_tokens === whole.usage.prompt_tokens + whole.usage.completion_tokens,
        `usage ${JSON.stringify(whole.usage)}`);
  check(Number.isInteger(whole.usage.prompt_tokens_details?.cached_tokens),
        `cached_tokens missing: ${JSON.stringify(whole.usage)}`);
  console.log(`ok: chat.completions.create -> ${JSON.stringify(choice.message.content)}`);

  // Streamed, with usage; the system prompt is cached by now.
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 8, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let role = null;
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(role === 'assistant', `streamed role ${role}`);
  check(finish === choice.finish_reason, `streamed finish_reason ${finish}`);
  check(text === choice.message.content,
        `greedy streamed text ${JSON.stringify(text)} != ${JSON.stringify(choice.message.content)}`);
  check(usage !== null && usage.prompt_tokens_details.cached_tokens > 0,
        `second call with the same system prompt: usage ${JSON.stringify(usage)}`);
  console.log(`ok: streamed (${chunks} chunks), same text, cached_tokens ` +
              `${usage.prompt_tokens_details.cached_tokens} of ${usage.prompt_tokens}`);

  // Another user, the same system prompt: the shared prefix is served from the cache.
  const other = await client.chat.completions.create({
    model, max_tokens: 4, messages: [{ role: 'system', content: SYSTEM },
                                     { role: 'user', content: 'Which tyre pressure?' }],
  });
  check(other.usage.prompt_tokens_details.cached_tokens > 0,
        `another chat with the same system prompt: ${JSON.stringify(other.usage)}`);
  console.log(`ok: another chat reuses the system prompt (${other.usage.prompt_tokens_details.cached_tokens} cached)`);

  const completion = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0,
  });
  check(completion.object === 'text_completion' && typeof completion.choices[0].text === 'string',
        `completion ${JSON.stringify(completion)}`);
  const fromIds = await client.completions.create({ model, prompt: [1, 2, 3, 4], max_tokens: 3 });
  check(fromIds.usage.prompt_tokens === 4, `prompt of 4 ids: ${JSON.stringify(fromIds.usage)}`);
  const streamed = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, stream: true,
  });
  let streamedText = '';
  for await (const chunk of streamed) streamedText += chunk.choices[0]?.text ?? '';
  check(streamedText === completion.choices[0].text,
        `completions: streamed ${JSON.stringify(streamedText)} != ${JSON.stringify(completion.choices[0].text)}`);
  console.log(`ok: completions.create (text, token ids, streamed) -> ${JSON.stringify(completion.choices[0].text)}`);

  // Typed errors.
  async function expectError(type, status, call, what) {
    try {
      await call();
    } catch (e) {
      check(e instanceof type && e.status === status,
            `${what}: got ${e.constructor.name} ${e.status} ${e.message}, expected ${type.name} ${status}`);
      check(typeof e.error?.message === 'string', `${what}: error body ${JSON.stringify(e.error)}`);
      console.log(`ok: ${what} -> ${type.name} ${status}: ${e.error.message.slice(0, 90)}`);
      return;
    }
    throw new Error(`${what}: no error`);
  }
  const stranger = new OpenAI({ apiKey: 'not-a-token-of-this-server', baseURL, maxRetries: 0 });
  await expectError(OpenAI.AuthenticationError, 401,
                    () => stranger.chat.completions.create({ model, messages }), 'unknown API key');
  await expectError(OpenAI.BadRequestError, 400,
                    () => client.chat.completions.create({ model, messages, temperature: -2 }),
                    'temperature -2');
  await expectError(OpenAI.BadRequestError, 400,
                    () => client.chat.completions.create({ model, messages: [] }), 'no messages');
  await expectError(OpenAI.NotFoundError, 404,
                    () => client.chat.completions.create({ model: 'gpt-unknown', messages }),
                    'unknown model');

  // A burst above one running + one queued request: the rest get 429, and every accepted
  // request completes.
  const burst = await Promise.allSettled(Array.from({ length: 8 }, (_, i) =>
    client.chat.completions.create({
      model, messages: [{ role: 'user', content: `Count to ${i}` }], max_tokens: 64, ignore_eos: true,
    })));
  const limited = burst.filter((r) => r.status === 'rejected');
  check(limited.length > 0, 'a burst of 8 over a queue of 1 drew no 429');
  for (const r of limited) {
    check(r.reason instanceof OpenAI.RateLimitError && r.reason.status === 429,
          `burst: ${r.reason.constructor.name} ${r.reason.status} ${r.reason.message}`);
  }
  for (const r of burst.filter((x) => x.status === 'fulfilled')) {
    check(r.value.usage.completion_tokens === 64, `burst: ${JSON.stringify(r.value.usage)}`);
  }
  console.log(`ok: burst of 8 -> ${8 - limited.length} completed, ${limited.length} RateLimitError 429`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  installClient(args.workDir);
  const { default: OpenAI } =
    await import(pathToFileURL(path.join(args.workDir, 'node_modules', 'openai', 'index.mjs')).href);
  const server = await startServer(args.prefixd, args.workDir);
  let failure = null;
  try {
    await run(OpenAI, server.baseURL);
  } catch (e) {
    failure = e;
  }
  server.child.kill('SIGTERM');
  const { code, signal } = await server.exited;
  if (failure) {
    console.error(`openai_sdk_test: FAIL: ${failure.stack || failure}`);
    process.exit(1);
  }
  check(code === 0, `prefixd exited with ${code} (${signal}) after SIGTERM`);
  console.log('openai_sdk_test: PASS');
}

main().catch((e) => {
  console.error(`openai_sdk_test: FAIL: ${e.stack || e}`);
  process.exit(1);
});
