#!/usr/bin/env node
/**
 * `npm run demo`: checks the demo's arguments first, so that a typo fails at once rather than
 * after the build, then builds (`npm run build:test`) and runs build/scripts/demo.js with them.
 * The options and their defaults are in scripts/demo-options.json, which the demo reads too.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url);
const defaults = JSON.parse(readFileSync(new URL('scripts/demo-options.json', root), 'utf8'));
const argv = process.argv.slice(2);
const usage = `usage: npm run demo -- ${Object.entries(defaults).map(([name, value]) => `[--${name} N]`).join(' ')}
  --workers N   workers appending at once (default ${defaults.workers}); with REDIS_URL, one process each
  --keys N      keys they share (default ${defaults.keys})
  --appends N   appends per worker (default ${defaults.appends})
  --keep N      versions each key keeps: every 8th commit truncates to the last N (default ${defaults.keep})`;
let values;
try {
  ({ values } = parseArgs({
    args: argv, options: { ...Object.fromEntries(Object.keys(defaults).map((name) => [name, { type: 'string' }])), help: { type: 'boolean', short: 'h' } },
  }));
} catch (err) {
  console.error(`${err.message}\n${usage}`);
  process.exit(2);
}
if (values.help) {
  console.log(usage);
  process.exit(0);
}
for (const name of Object.keys(defaults)) {
  const text = values[name];
  if (text !== undefined && !(/^\d+$/.test(text) && Number(text) >= 1 && Number.isSafeInteger(Number(text)))) {
    console.error(`--${name} must be a positive integer; got ${text}\n${usage}`);
    process.exit(2);
  }
}
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const built = spawnSync(npm, ['run', '--silent', 'build:test'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
if (built.status !== 0) process.exit(built.status ?? 1);
const demo = spawnSync(process.execPath, [new URL('build/scripts/demo.js', root).pathname, ...argv], { stdio: 'inherit' });
process.exit(demo.status ?? 1);
