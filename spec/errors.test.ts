/** The error model: what is determinate and what is not. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis, ReplyError } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { ExternalError, RedisConsensus } from '../lib/index.js';
import { knownNotRun, toExternal } from '../lib/errors.js';
import { realRedisAvailable, REDIS_URL, rejection, REQUIRE_REDIS } from './support/backends.js';
import { shown } from './support/shown.js';

test('ExternalError states its kind in its type and its message, and keeps the cause', () => {
  const cause = new Error('socket hang up');
  const err = new ExternalError(false, 'compareAndSet failed', { cause });
  assert.instance(err, Error);
  assert.is(err.name, 'ExternalError');
  assert.is(err.determinate, false);
  assert.is(err.message, 'indeterminate: compareAndSet failed');
  assert.is(err.cause, cause);
  assert.is(new ExternalError(true, 'x').message, 'determinate: x');
});

test('Redis refusals that happen before a command runs are known not to have run', () => {
  for (const message of ['NOSCRIPT No matching script', 'OOM command not allowed', 'READONLY You can\'t write',
    'BUSY Redis is busy', 'LOADING Redis is loading', 'MOVED 3999 127.0.0.1:6381', 'TRYAGAIN Multiple keys',
    'CLUSTERDOWN The cluster is down', 'CROSSSLOT Keys in request']) {
    assert.ok(knownNotRun(new ReplyError(message)), message);
    assert.is(toExternal(new ReplyError(message), true, 'w').determinate, true, message);
  }
  assert.ok(knownNotRun(new Error("Stream isn't writeable and enableOfflineQueue options is false")));
});

test('a write that failed after it was sent is indeterminate; a failed read is determinate', () => {
  const lost = new Error('Connection is closed.');
  assert.is(toExternal(lost, true, 'compareAndSet').determinate, false);
  assert.match(toExternal(lost, true, 'compareAndSet').message, /^indeterminate: compareAndSet failed after it was sent: Connection is closed\./);
  assert.is(toExternal(lost, false, 'head').determinate, true);
  assert.is(toExternal(new ReplyError('ERR user_script:12: something'), true, 'truncate').determinate, false);
  assert.is(toExternal('a string', false, 'scan').message, 'determinate: scan failed: a string');
  const already = new ExternalError(true, 'x');
  assert.is(toExternal(already, true, 'y'), already);
});

test('the final ExternalError says how many attempts were made, as a field', async () => {
  const client = new RedisMock({ port: 39_702 });
  const consensus = new RedisConsensus(client, { retry: { attempts: 3, minDelayMs: 1, maxDelayMs: 2 } });
  let sent = 0;
  // After the scripts are defined: every script call is refused as Redis refuses while loading its data set: known not to have run.
  Object.assign(client, {
    redisConsensus_compareAndSet_v1: () => {
      sent++;
      return Promise.reject(new ReplyError('LOADING Redis is loading the dataset in memory'));
    },
  });
  const err = await consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }).catch((e: unknown) => e);
  assert.instance(err, ExternalError);
  assert.is((err as ExternalError).determinate, true);
  assert.is((err as ExternalError).attempts, 3);
  assert.is(sent, 3);
  assert.match((err as ExternalError).message, /gave up after 3 attempts/);
  await consensus.close();
});



test('an ExternalError never carries the password of an AUTH or HELLO in its cause, at any depth', () => {
  const auth = Object.assign(new ReplyError('WRONGPASS invalid username-password pair'), {
    command: { name: 'auth', args: ['bob', 'hunter2-secret'] },
  });
  const hello = Object.assign(new ReplyError('NOPROTO unsupported protocol version'), {
    command: { name: 'HELLO', args: ['3', 'AUTH', 'bob', 'hunter2-secret'] },
  });
  const wrapped = new Error('outer', { cause: hello });
  for (const cause of [auth, hello, wrapped]) {
    const err = toExternal(cause, true, 'connect');
    assert.not.match(shown(err), 'hunter2-secret');
    // Still the same kind of error, with what it said.
    let inner: unknown = err.cause;
    while ((inner as Error).cause !== undefined) inner = (inner as Error).cause;
    assert.instance(inner, ReplyError);
    assert.match((inner as Error).message, /WRONGPASS|NOPROTO/);
    assert.equal((inner as { command: { args: string[] } }).command.args.length, (cause === auth ? 2 : 4));
  }
  // Causes with no credentials are kept as they are (an abort reason stays the caller's).
  const plain = new ReplyError('ERR something');
  assert.is(toExternal(plain, false, 'head').cause, plain);
});

test('no error of a failed connect shows the password, from the URL, redisOptions or an ACL user (real Redis)', async () => {
  if (!(await realRedisAvailable())) {
    if (REQUIRE_REDIS) throw new Error(`REQUIRE_REDIS=1 but Redis at ${REDIS_URL} is unreachable`);
    console.warn(`\n!!! SKIPPING the password redaction test: no Redis at ${REDIS_URL}. !!!\n`);
    return;
  }
  const secret = 'Pw-0f-n0-one-7e1';
  const { hostname, port } = new URL(REDIS_URL);
  const where = `${hostname}:${port || 6379}`;
  const attempts: Array<[string, () => Promise<unknown>]> = [
    ['ACL user in the URL', () => RedisConsensus.connect(`redis://nobody-${process.pid}:${secret}@${where}`, { timeoutMs: 2000 })],
    ['ACL user in redisOptions', () => RedisConsensus.connect(`redis://${where}`, { timeoutMs: 2000 }, { username: `nobody-${process.pid}`, password: secret })],
    ['password in the query', () => RedisConsensus.connect(`redis://${where}/?username=nobody-${process.pid}&password=${secret}`, { timeoutMs: 2000 })],
    ['unreachable, password in the URL', () => RedisConsensus.connect(`redis://:${secret}@127.0.0.1:7702`, { timeoutMs: 300 })],
  ];
  for (const [description, attempt] of attempts) {
    const err = await rejection(attempt());
    assert.instance(err, ExternalError, description);
    assert.not.match(shown(err), secret, description);
  }
  // A client passed in, failing its AUTH: the calls' errors do not show it either.
  const client = new Redis(REDIS_URL, { username: `nobody-${process.pid}`, password: secret, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  const consensus = new RedisConsensus(client, { timeoutMs: 500 });
  try {
    const err = await rejection(consensus.head('k'));
    assert.instance(err, ExternalError);
    assert.not.match(shown(err), secret);
  } finally {
    await consensus.close();
    client.disconnect();
  }
});

test('docs/errors.md has one row for every ExternalErrorCode, and no other', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const source = readFileSync(join(root, 'lib', 'errors.ts'), 'utf8');
  const union = /export type ExternalErrorCode =([^;]+);/.exec(source)![1]!;
  const codes = [...union.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!).sort();
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
  const rows = [...doc.matchAll(/^\| `([a-z-]+)` \|/gm)].map((m) => m[1]!).sort();
  assert.ok(codes.length >= 15, codes.join(', '));
  assert.equal(rows, codes);
});

test.run();
