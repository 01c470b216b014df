/** The demo (the README's main job) runs and its own end-of-run check passes. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { REDIS_URL, realRedisAvailable } from './support/backends.js';

const run = promisify(execFile);
const demo = fileURLToPath(new URL('../scripts/demo.js', import.meta.url));
const test = suite('demo');

test('on the in-memory mock, workers commit every append exactly once', async () => {
  const env = { ...process.env };
  delete env.REDIS_URL;
  const { stdout } = await run(process.execPath, [demo, '--workers', '4', '--appends', '25', '--keys', '2', '--keep', '4'], { env });
  assert.match(stdout, /done: 100 commits/);
  assert.match(stdout, /OK: every seqno committed exactly once/);
  assert.not.match(stdout, /FAIL/);
});

test('on a real Redis, worker processes commit every append exactly once', async () => {
  if (!(await realRedisAvailable())) return;
  const { stdout } = await run(process.execPath, [demo, '--workers', '4', '--appends', '50', '--keys', '2', '--keep', '4'],
    { env: { ...process.env, REDIS_URL } });
  assert.match(stdout, /one process per worker/);
  assert.match(stdout, /done: 200 commits/);
  assert.match(stdout, /OK: every seqno committed exactly once/);
});

test('a bad setting is refused with exit code 2', async () => {
  const err = await run(process.execPath, [demo, '--workers', 'many']).then(() => undefined, (e: { code: number; stderr: string }) => e);
  assert.is(err?.code, 2);
  assert.match(err!.stderr, /--workers must be a positive integer/);
});

test('npm run demo refuses a bad setting before building anything', async () => {
  const launcher = fileURLToPath(new URL('../../scripts/demo.mjs', import.meta.url));
  const started = Date.now();
  const err = await run(process.execPath, [launcher, '--keep', '0']).then(() => undefined, (e: { code: number; stdout: string; stderr: string }) => e);
  assert.is(err?.code, 2);
  assert.match(err!.stderr, /--keep must be a positive integer; got 0/);
  assert.not.match(err!.stdout, 'build-lua', 'no build ran');
  assert.ok(Date.now() - started < 5000, 'no build ran');
});

test('the demo says what it keeps, and its check holds it to that', async () => {
  const env = { ...process.env };
  delete env.REDIS_URL;
  const { stdout } = await run(process.execPath, [demo, '--workers', '2', '--appends', '30', '--keys', '1', '--keep', '5'], { env });
  assert.match(stdout, 'every 8th commit of a key truncates it to its last 5 versions, so a key keeps 5 to 12');
  const kept = Number(/head SeqNo\(59\), (\d+) versions kept/.exec(stdout)?.[1]);
  // 60 commits: the last truncation at seqno 56 kept 52..56, then 57..59 came: 8.
  assert.is(kept, 8, stdout);
  assert.match(stdout, 'counted from when every worker was ready');
});

test.run();
