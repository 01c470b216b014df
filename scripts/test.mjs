#!/usr/bin/env node
/**
 * `npm test`'s runner: every spec file under c8 (90% line floor on lib/), its output passed
 * through as it comes, then the suites that could not run and why (each also says so in a
 * "SKIPPING" line as it goes), and last one summary line alone: `N passed, N failed, N skipped`.
 * Exits with uvu's or c8's failure.
 */
import { spawn } from 'node:child_process';
import { delimiter, join } from 'node:path';

const C8 = ['--check-coverage', '--lines', '90', '--all', '--src', 'build/lib', '--include', 'build/lib/**',
  '--reporter', 'text-summary', '--reporter', 'text'];
const pattern = process.argv[2] ?? '\\.test\\.js$';

// npm puts node_modules/.bin on the PATH; run directly (`node scripts/test.mjs`), this does.
const bin = join(new URL('..', import.meta.url).pathname, 'node_modules', '.bin');
const env = { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` };
const child = spawn('c8', [...C8, 'uvu', 'build/spec', pattern], { stdio: ['inherit', 'pipe', 'pipe'], env });
let seen = '';
child.stdout.on('data', (chunk) => { seen += chunk; process.stdout.write(chunk); });
child.stderr.on('data', (chunk) => { seen += chunk; process.stderr.write(chunk); });
const code = await new Promise((resolve) => child.on('close', (status, signal) => resolve(status ?? (signal ? 1 : 0))));

// uvu's totals, without the colours.
const plain = seen.replace(/\u001b\[[0-9;]*m/g, '');
const count = (label) => {
  const match = new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'm').exec(plain);
  return match === null ? undefined : Number(match[1]);
};
const total = count('Total');
const passed = count('Passed');
const skipped = count('Skipped');
const notRun = [...new Set(plain.split('\n').filter((line) => line.includes('!!! SKIPPING'))
  .map((line) => line.replace(/!!!/g, '').trim()))];
const coverageFailed = /ERROR: Coverage for .* does not meet/.test(plain);

let summary;
if (total === undefined || passed === undefined) {
  summary = `the test run did not finish (exit code ${code}): see the output above`;
} else {
  // The counts last and alone on their line, as CI reads them; what else there is to say first.
  const notes = [];
  if (coverageFailed) notes.push('line coverage of lib/ below 90%');
  for (const why of notRun) notes.push(`could not run: ${why}`);
  summary = [...notes, `${passed} passed, ${total - passed} failed, ${skipped ?? 0} skipped`].join('\n');
}
process.stdout.write(`\n${summary}\n`);
process.exit(code);
