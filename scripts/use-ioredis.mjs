#!/usr/bin/env node
/**
 * Switches this checkout's ioredis to another major version, for testing: `npm run use-ioredis -- 6`
 * (or 5). Nothing is saved: package.json and package-lock.json keep ioredis 5, and `npm ci` goes
 * back to it. `--legacy-peer-deps` because ioredis-mock 8 declares the peer `ioredis ^5` only;
 * it runs on ioredis 6 all the same (the test suite checks that).
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const RANGES = { 5: '^5.11.1', 6: '^6.0.0' };
const major = process.argv[2];
if (!(major in RANGES)) {
  console.error(`usage: npm run use-ioredis -- <${Object.keys(RANGES).join('|')}>`);
  process.exit(2);
}
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
execFileSync(npm, ['install', '--no-save', '--legacy-peer-deps', '--no-audit', '--no-fund', `ioredis@${RANGES[major]}`],
  { stdio: 'inherit', shell: process.platform === 'win32' });
const { version } = createRequire(import.meta.url)('ioredis/package.json');
if (!version.startsWith(`${major}.`)) {
  console.error(`asked for ioredis ${major}, node_modules has ${version}`);
  process.exit(1);
}
console.log(`ioredis ${version}`);
