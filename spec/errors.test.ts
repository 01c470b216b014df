/** The error model: what is determinate and what is not. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ReplyError } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { ExternalError, RedisConsensus } from '../lib/index.js';
import { knownNotRun, toExternal } from '../lib/errors.js';

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

test.run();
