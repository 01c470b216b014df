/**
 * Edges (issue #11, part A): never hang, never guess. Connect and close deadlines, errors with
 * stable codes that say whether retrying can help, payload limits, eviction, a wrong database,
 * abort signals and debug logging. Disruptive cases run on a private redis-server.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReplyError } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { ExternalError, RedisConsensus } from '../lib/index.js';
import type { ExternalErrorCode } from '../lib/index.js';
import { codeOf, toExternal } from '../lib/errors.js';

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return undefined;
}

/** Asserts an ExternalError of that kind and code, and returns it. */
function assertExternal(err: unknown, determinate: boolean, code: ExternalErrorCode): ExternalError {
  assert.instance(err, ExternalError, `expected an ExternalError, got ${String(err)}`);
  const external = err as ExternalError;
  assert.is(external.code, code, external.message);
  assert.is(external.determinate, determinate, external.message);
  return external;
}

/** A mock store whose script `name` always fails with `error`; counts the attempts. */
function refusingStore(port: number, script: string, error: () => Error): { consensus: RedisConsensus; sent: () => number } {
  const client = new RedisMock({ port });
  const consensus = new RedisConsensus(client, { retry: { attempts: 5, minDelayMs: 1, maxDelayMs: 2 } });
  let sent = 0;
  Object.assign(client, {
    [`redisConsensus_${script}_v1`]: () => {
      sent++;
      return Promise.reject(error());
    },
  });
  return { consensus, sent: () => sent };
}

const codes = suite('edges: error codes');

codes('every ExternalError carries a stable code; Redis replies map to codes', () => {
  assert.is(new ExternalError(true, 'x').code, 'redis-error');
  assert.is(codeOf(new ReplyError('NOPERM this user has no permissions to access one of the keys')), 'permission');
  assert.is(codeOf(new ReplyError('WRONGPASS invalid username-password pair')), 'permission');
  assert.is(codeOf(new ReplyError('NOAUTH Authentication required.')), 'permission');
  assert.is(codeOf(new ReplyError("OOM command not allowed when used memory > 'maxmemory'. script: 1f, on @user_script:1.")), 'out-of-memory');
  assert.is(codeOf(new ReplyError('LOADING Redis is loading the dataset in memory')), 'unavailable');
  assert.is(codeOf(new ReplyError("ERR The user executing the script can't run this command or subcommand script: 14d, on @user_script:1.")), 'permission');
  assert.is(codeOf(new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value')), 'redis-error');
  assert.is(codeOf(new Error('Connection is closed.')), 'connection-lost');
  assert.is(toExternal(new Error('Connection is closed.'), true, 'w').code, 'connection-lost');
});

codes('a NOPERM or an OOM from Redis is determinate, with its code, and is not retried', async () => {
  const cases: Array<[string, () => Error, ExternalErrorCode]> = [
    ['NOPERM', () => new ReplyError('NOPERM this user has no permissions to access one of the keys used as arguments'), 'permission'],
    ['OOM', () => new ReplyError("OOM command not allowed when used memory > 'maxmemory'. script: 3341e, on @user_script:1."), 'out-of-memory'],
    ['NOAUTH', () => new ReplyError('NOAUTH Authentication required.'), 'permission'],
  ];
  let port = 39_801;
  for (const [name, error, code] of cases) {
    const { consensus, sent } = refusingStore(port++, 'compareAndSet', error);
    const err = await rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }));
    const external = assertExternal(err, true, code);
    assert.is(sent(), 1, `${name} was sent ${sent()} times`);
    assert.is(external.attempts, 1);
    await consensus.close();
  }
});

codes('an ACL denial inside a script may follow a write: indeterminate, code permission, not retried', async () => {
  const { consensus, sent } = refusingStore(39_811, 'compareAndSet',
    () => new ReplyError("ERR The user executing the script can't run this command or subcommand script: 14d, on @user_script:1."));
  const err = await rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }));
  assertExternal(err, false, 'permission');
  assert.is(sent(), 1);
  await consensus.close();
});

codes('retried refusals keep their code; a closed store says closed; truncate above head says so', async () => {
  const { consensus, sent } = refusingStore(39_812, 'head', () => new ReplyError('LOADING Redis is loading'));
  const err = assertExternal(await rejection(consensus.head('k')), true, 'unavailable');
  assert.is(sent(), 5);
  assert.match(err.message, /gave up after 5 attempts/);
  await consensus.close();
  assertExternal(await rejection(consensus.head('k')), true, 'closed');
  const store = new RedisConsensus(new RedisMock({ port: 39_813 }));
  assertExternal(await rejection(store.truncate('k', 3)), true, 'truncate-above-head');
  await store.close();
});

codes.run();
