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

test.run();
