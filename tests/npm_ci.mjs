// tests/npm_ci.mjs — the npm packages a test needs at test time, installed with `npm ci`
// from the package.json and package-lock.json beside the test into a work folder (never
// into the source tree), once per lock file.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// Installs `packageDir`'s pinned packages into `workDir` (skipped when the lock file has not
// changed since the last install). Calls `skip(why)` (which should exit) when npm is
// missing, the registry is unreachable, or the install fails.
export function npmCi(packageDir, workDir, label, skip) {
  fs.mkdirSync(workDir, { recursive: true });
  const lock = fs.readFileSync(path.join(packageDir, 'package-lock.json'));
  const stamp = path.join(workDir, 'node_modules', '.prefixd-lock-sha256');
  const hash = createHash('sha256').update(lock).digest('hex');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === hash) return;
  for (const f of ['package.json', 'package-lock.json']) {
    fs.copyFileSync(path.join(packageDir, f), path.join(workDir, f));
  }
  console.log(`${label}: npm ci in ${workDir}`);
  const npm = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'],
                        { cwd: workDir, encoding: 'utf8', timeout: 600e3 });
  if (npm.error && npm.error.code === 'ENOENT') skip('npm is not installed');
  if (npm.error || npm.status !== 0) {
    const log = `${npm.stderr || ''}${npm.error ? npm.error.message : ''}`.trim().split('\n');
    const unreachable = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH/;
    skip(`${unreachable.test(log.join('\n')) ? 'the npm registry is unreachable'
                                              : 'npm ci failed'}: ${log.slice(0, 4).join(' | ')}`);
  }
  fs.writeFileSync(stamp, hash);
}
