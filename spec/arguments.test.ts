/**
 * Bad input: every malformed call gets the error class the contract names, before any request
 * reaches Redis, and leaves the store exactly as it was.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import RedisMock from 'ioredis-mock';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL, SEQNO_MAX } from '../lib/index.js';
import { Redis } from 'ioredis';
import { backends, deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable, REQUIRE_REDIS } from './support/backends.js';
import { snapshot } from './support/snapshot.js';

type ErrorClass = typeof TypeError | typeof RangeError;
// The calls are deliberately ill-typed: `as never` lets them through the compiler.
type Call = [string, (consensus: RedisConsensus) => Promise<unknown>, ErrorClass];

const data = Buffer.from('payload');

const MALFORMED: Call[] = [
  ['head with a number key', (c) => c.head(1 as never), TypeError],
  ['head with an undefined key', (c) => c.head(undefined as never), TypeError],
  ['head with a null key', (c) => c.head(null as never), TypeError],
  ['head with a String object key', (c) => c.head(new String('k') as never), TypeError],
  ['head with a symbol key', (c) => c.head(Symbol('k') as never), TypeError],
  ['head with a negative timeout', (c) => c.head('k', { timeoutMs: -1 }), RangeError],
  ['compareAndSet with an object key', (c) => c.compareAndSet({} as never, 4n, { seqno: 5n, data }), TypeError],
  ['compareAndSet with expected undefined', (c) => c.compareAndSet('k', undefined as never, { seqno: 5n, data }), TypeError],
  ['compareAndSet with expected a string', (c) => c.compareAndSet('k', '4' as never, { seqno: 5n, data }), TypeError],
  ['compareAndSet with expected an object', (c) => c.compareAndSet('k', {} as never, { seqno: 5n, data }), TypeError],
  ['compareAndSet with expected -1', (c) => c.compareAndSet('k', -1, { seqno: 5n, data }), RangeError],
  ['compareAndSet with expected -1n', (c) => c.compareAndSet('k', -1n, { seqno: 5n, data }), RangeError],
  ['compareAndSet with expected 1.5', (c) => c.compareAndSet('k', 1.5, { seqno: 5n, data }), RangeError],
  ['compareAndSet with expected NaN', (c) => c.compareAndSet('k', Number.NaN, { seqno: 5n, data }), RangeError],
  ['compareAndSet with expected Infinity', (c) => c.compareAndSet('k', Infinity, { seqno: 5n, data }), RangeError],
  ['compareAndSet with expected an unsafe number', (c) => c.compareAndSet('k', 2 ** 53, { seqno: 2n ** 54n, data }), RangeError],
  ['compareAndSet with expected above 2^63-1', (c) => c.compareAndSet('k', SEQNO_MAX + 1n, { seqno: 5n, data }), RangeError],
  ['compareAndSet with next undefined', (c) => c.compareAndSet('k', 4n, undefined as never), TypeError],
  ['compareAndSet with next null', (c) => c.compareAndSet('k', 4n, null as never), TypeError],
  ['compareAndSet with next a number', (c) => c.compareAndSet('k', 4n, 5 as never), TypeError],
  ['compareAndSet with next missing seqno', (c) => c.compareAndSet('k', 4n, { data } as never), TypeError],
  ['compareAndSet with next missing data', (c) => c.compareAndSet('k', 4n, { seqno: 5n } as never), TypeError],
  ['compareAndSet with string data', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data: 'text' as never }), TypeError],
  ['compareAndSet with array data', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data: [1, 2] as never }), TypeError],
  ['compareAndSet with ArrayBuffer data', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data: new ArrayBuffer(2) as never }), TypeError],
  ['compareAndSet with Uint16Array data', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data: new Uint16Array(2) as never }), TypeError],
  ['compareAndSet with null data', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data: null as never }), TypeError],
  ['compareAndSet with next.seqno a string', (c) => c.compareAndSet('k', 4n, { seqno: '5' as never, data }), TypeError],
  ['compareAndSet with next.seqno -1', (c) => c.compareAndSet('k', null, { seqno: -1, data }), RangeError],
  ['compareAndSet with next.seqno 0.5', (c) => c.compareAndSet('k', null, { seqno: 0.5, data }), RangeError],
  ['compareAndSet with next.seqno NaN', (c) => c.compareAndSet('k', null, { seqno: Number.NaN, data }), RangeError],
  ['compareAndSet with next.seqno 2^63', (c) => c.compareAndSet('k', 4n, { seqno: 2n ** 63n, data }), RangeError],
  ['compareAndSet with next.seqno equal to expected', (c) => c.compareAndSet('k', 4n, { seqno: 4n, data }), RangeError],
  ['compareAndSet with next.seqno below expected', (c) => c.compareAndSet('k', 4n, { seqno: 3, data }), RangeError],
  ['compareAndSet with a zero timeout', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data }, { timeoutMs: 0 }), RangeError],
  ['scan with a null key', (c) => c.scan(null as never, 0n, 10), TypeError],
  ['scan with from undefined', (c) => c.scan('k', undefined as never, 10), TypeError],
  ['scan with from a string', (c) => c.scan('k', '0' as never, 10), TypeError],
  ['scan with from -1', (c) => c.scan('k', -1, 10), RangeError],
  ['scan with from 1.1', (c) => c.scan('k', 1.1, 10), RangeError],
  ['scan with from above 2^63-1', (c) => c.scan('k', SEQNO_MAX + 1n, 10), RangeError],
  ['scan with limit undefined', (c) => c.scan('k', 0n, undefined as never), TypeError],
  ['scan with limit a string', (c) => c.scan('k', 0n, '10' as never), TypeError],
  ['scan with limit null', (c) => c.scan('k', 0n, null as never), TypeError],
  ['scan with limit -1', (c) => c.scan('k', 0n, -1), RangeError],
  ['scan with limit -1n', (c) => c.scan('k', 0n, -1n), RangeError],
  ['scan with limit 1.5', (c) => c.scan('k', 0n, 1.5), RangeError],
  ['scan with limit NaN', (c) => c.scan('k', 0n, Number.NaN), RangeError],
  ['scan with limit Infinity', (c) => c.scan('k', 0n, Infinity), RangeError],
  ['scan with limit above SCAN_ALL', (c) => c.scan('k', 0n, SCAN_ALL + 1n), RangeError],
  ['scan with limit 2^63 as a number', (c) => c.scan('k', 0n, 2 ** 63), RangeError],
  ['truncate with an array key', (c) => c.truncate([] as never, 1n), TypeError],
  ['truncate with seqno undefined', (c) => c.truncate('k', undefined as never), TypeError],
  ['truncate with seqno a string', (c) => c.truncate('k', '3' as never), TypeError],
  ['truncate with seqno -5', (c) => c.truncate('k', -5), RangeError],
  ['truncate with seqno 3.3', (c) => c.truncate('k', 3.3), RangeError],
  ['truncate with seqno an unsafe number', (c) => c.truncate('k', 2 ** 60), RangeError],
  ['truncate with seqno above 2^63-1', (c) => c.truncate('k', SEQNO_MAX + 1n), RangeError],
  // Options that are not objects, and signals that are not AbortSignals (issue 18).
  ['head with options a string', (c) => c.head('k', 'x' as never), TypeError],
  ['head with options null', (c) => c.head('k', null as never), TypeError],
  ['head with a signal {}', (c) => c.head('k', { signal: {} as never }), TypeError],
  ['head with a signal a string', (c) => c.head('k', { signal: 'x' as never }), TypeError],
  ['head with a signal 5', (c) => c.head('k', { signal: 5 as never }), TypeError],
  ['compareAndSet with options 5', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data }, 5 as never), TypeError],
  ['compareAndSet with a signal {}', (c) => c.compareAndSet('k', 4n, { seqno: 5n, data }, { signal: {} as never }), TypeError],
  ['compareAndSetWithHead with a signal {}', (c) => c.compareAndSetWithHead('k', 4n, { seqno: 5n, data }, { signal: {} as never }), TypeError],
  ['scan with options an array', (c) => c.scan('k', 0n, 10, [] as never), TypeError],
  ['scan with a signal {}', (c) => c.scan('k', 0n, 10, { signal: {} as never }), TypeError],
  ['truncate with options "x"', (c) => c.truncate('k', 1n, 'x' as never), TypeError],
  ['truncate with a signal {}', (c) => c.truncate('k', 1n, { signal: {} as never }), TypeError],
  ['append with a signal-less options string', (c) => c.append('k', () => data, 'x' as never), TypeError],
  ['append with backoff 5', (c) => c.append('k', () => data, { backoff: 5 as never }), TypeError],
  ['listKeys with options "x"', async (c) => c.listKeys('x' as never).next(), TypeError],
  ['listKeys with a signal {}', async (c) => c.listKeys({ signal: {} as never }).next(), TypeError],
  ['watch with options 5', async (c) => c.watch('k', 5 as never).next(), TypeError],
  ['watch with options null', async (c) => c.watch('k', null as never).next(), TypeError],
  ['watch with a signal {}', async (c) => c.watch('k', { signal: {} as never }).next(), TypeError],
  ['ping with a signal {}', (c) => c.ping({ signal: {} as never }), TypeError],
  ['check with options "x"', (c) => c.check('x' as never), TypeError],
  ['acknowledgeStoreReset with options 5', (c) => c.acknowledgeStoreReset(5 as never), TypeError],
  ['acknowledgeStoreReset with a signal {}', (c) => c.acknowledgeStoreReset({ signal: {} as never }), TypeError],
  // Keys above maxKeyBytes (64 KiB by default), in UTF-8 bytes.
  ['head with a key of 64 KiB + 1 bytes', (c) => c.head('k'.repeat(64 * 1024 + 1)), RangeError],
  ['compareAndSet with a key of 1 MiB', (c) => c.compareAndSet('k'.repeat(1 << 20), null, { seqno: 0n, data }), RangeError],
  ['compareAndSet with a key of 21,846 three-byte characters', (c) => c.compareAndSet('€'.repeat(21_846), null, { seqno: 0n, data }), RangeError],
  ['append with a key of 64 KiB + 1 bytes', (c) => c.append('k'.repeat(64 * 1024 + 1), () => data), RangeError],
  ['truncate with a key of 64 KiB + 1 bytes', (c) => c.truncate('k'.repeat(64 * 1024 + 1), 0n), RangeError],
  ['scan with a key of 64 KiB + 1 bytes', (c) => c.scan('k'.repeat(64 * 1024 + 1), 0n, 1), RangeError],
  ['watch with a key of 64 KiB + 1 bytes', async (c) => c.watch('k'.repeat(64 * 1024 + 1)).next(), RangeError],
];

async function rejection(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  return undefined;
}

// Every await before the first suite runs: run alone (`node build/spec/<file>.js`), uvu starts at the
// first pause after a suite's run() and re-runs the queued suites for each later one.
const redisUp = await realRedisAvailable();
if (!redisUp && REQUIRE_REDIS) throw new Error(`REQUIRE_REDIS=1 but Redis at ${REDIS_URL} is unreachable`);
if (!redisUp) console.warn(`\n!!! SKIPPING the ?db= suite: no Redis at ${REDIS_URL}. Set REQUIRE_REDIS=1 to make this a failure. !!!\n`);
const allBackends = await backends();

for (const backend of allBackends) {
  const test = suite(`malformed calls on ${backend.name}`);

  test(`${MALFORMED.length} malformed calls each get the contract's error and change nothing`, async () => {
    const store = await backend.store();
    try {
      for (const key of ['k', '']) {
        await store.consensus.compareAndSet(key, null, { seqno: 3n, data });
        await store.consensus.compareAndSet(key, 3n, { seqno: 4n, data });
      }
      const before = await snapshot(store.raw, store.prefix);
      assert.ok(before.length > 0);
      for (const [description, call, expected] of MALFORMED) {
        const err = await rejection(() => call(store.consensus));
        assert.instance(err, expected, description);
        assert.not.instance(err, ExternalError, description);
        assert.is(await snapshot(store.raw, store.prefix), before, `${description} changed the store`);
      }
    } finally {
      await store.dispose();
    }
  });

  test('a key of exactly maxKeyBytes is a key: 64 KiB by default, in UTF-8 bytes', async () => {
    const store = await backend.store();
    try {
      const key = `${'€'.repeat(21_845)}k`;
      assert.is(Buffer.byteLength(key), 64 * 1024);
      assert.is(await store.consensus.compareAndSet(key, null, { seqno: 0n, data }), CaSResult.Committed);
      assert.is((await store.consensus.head(key))?.seqno, 0n);
    } finally {
      await store.dispose();
    }
    const small = await backend.store({ maxKeyBytes: 4 });
    try {
      assert.is(await small.consensus.compareAndSet('ükk', null, { seqno: 0n, data }), CaSResult.Committed);
      const err = await rejection(() => small.consensus.head('ü€k'));
      assert.instance(err, RangeError);
      assert.match((err as Error).message, /6 bytes \(UTF-8\), above maxKeyBytes \(4\)/);
    } finally {
      await small.dispose();
    }
  });

  test.after(() => backend.close());
  test.run();
}

const noRequests = suite('malformed calls never reach Redis');

noRequests('not one command is sent for any malformed call', async () => {
  const sent: string[] = [];
  let armed = false;
  // Counts every method call on the client once the store is built (scripts defined).
  const client = new Proxy(new RedisMock({ port: 39999 }), {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (armed) sent.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const consensus = new RedisConsensus(client, { prefix: 'no-requests' });
  armed = true;
  for (const [description, call] of MALFORMED) {
    await rejection(() => call(consensus));
    assert.equal(sent, [], description);
  }
  await consensus.head('k');
  assert.ok(sent.length > 0, 'the counting proxy sees a valid call');
});

noRequests('invalid constructor options are rejected', () => {
  const client = new RedisMock({ port: 39998 });
  assert.throws(() => new RedisConsensus(client, { prefix: 'a{b' }), RangeError);
  assert.throws(() => new RedisConsensus(client, { prefix: '' }), RangeError);
  assert.throws(() => new RedisConsensus(client, { prefix: 5 as never }), TypeError);
  assert.throws(() => new RedisConsensus(client, { timeoutMs: 0 }), RangeError);
  assert.throws(() => new RedisConsensus(client, { retry: { attempts: 0 } }), RangeError);
  assert.throws(() => new RedisConsensus(client, { retry: { minDelayMs: -1 } }), RangeError);
  assert.throws(() => new RedisConsensus(client, { retry: { maxDelayMs: Number.NaN } }), RangeError);
  assert.throws(() => new RedisConsensus(client, { retry: { minDelayMs: 100, maxDelayMs: 10 } }), /maxDelayMs \(10\) must not be below retry.minDelayMs \(100\)/);
  assert.throws(() => new RedisConsensus(client, { durability: { replicas: -1 } }), RangeError);
  assert.throws(() => new RedisConsensus(client, { durability: { replicas: 1, timeoutMs: Number.NaN } }), RangeError);
  // Options that are not objects are mistakes, not "no options" (issue 18).
  assert.throws(() => new RedisConsensus(client, 5 as never), /options must be an object; got number/);
  assert.throws(() => new RedisConsensus(client, 'x' as never), TypeError);
  assert.throws(() => new RedisConsensus(client, null as never), TypeError);
  for (const field of ['retry', 'watch', 'append', 'durability', 'observer']) {
    assert.throws(() => new RedisConsensus(client, { [field]: 5 } as never), TypeError, field);
  }
  assert.throws(() => new RedisConsensus(client, { maxKeyBytes: 0 }), RangeError);
  assert.throws(() => new RedisConsensus(client, { maxKeyBytes: 1.5 }), RangeError);
  assert.throws(() => new RedisConsensus(client, { maxKeyBytes: '5' as never }), RangeError);
});

noRequests('a signal that is not an AbortSignal leaves nothing armed: no timer fires later, nothing is uncaught', async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  const consensus = new RedisConsensus(new RedisMock({ port: 39997 }), { prefix: 'bad-signal' });
  try {
    for (const signal of [{}, 'x', 5, { addEventListener() {}, aborted: false }]) {
      const err = await rejection(() => consensus.head('k', { signal: signal as never, timeoutMs: 30 }));
      assert.instance(err, TypeError);
      assert.match((err as Error).message, /options\.signal must be an AbortSignal/);
    }
    // Past every deadline the calls would have armed.
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.equal(uncaught, []);
    assert.is(await consensus.head('k', { timeoutMs: 30 }), null);
  } finally {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    await consensus.close();
  }
});

noRequests.run();

const connecting = suite('connect and connectCluster: arguments checked before connecting');
/** Nothing listens here (this spec's port range, 7700-7719): a call that connected would time out. */
const NOWHERE = 'redis://127.0.0.1:7701';

connecting('a URL that is not a non-empty string, or options that are not objects, are TypeErrors at once', async () => {
  const calls: Array<[string, () => Promise<unknown>]> = [
    ["connect('')", () => RedisConsensus.connect('')],
    ['connect({})', () => RedisConsensus.connect({} as never)],
    ['connect(5)', () => RedisConsensus.connect(5 as never)],
    ['connect(null)', () => RedisConsensus.connect(null as never)],
    ['connect(url, 5)', () => RedisConsensus.connect(NOWHERE, 5 as never)],
    ['connect(url, null)', () => RedisConsensus.connect(NOWHERE, null as never)],
    ['connect(url, {}, "x")', () => RedisConsensus.connect(NOWHERE, {}, 'x' as never)],
    ['connect(url, { signal: {} })', () => RedisConsensus.connect(NOWHERE, { signal: {} as never })],
    ['connect(url, { retry: 5 })', () => RedisConsensus.connect(NOWHERE, { retry: 5 as never })],
    ['connectCluster([])', () => RedisConsensus.connectCluster([])],
    ['connectCluster("x")', () => RedisConsensus.connectCluster('x' as never)],
    ['connectCluster(nodes, "x")', () => RedisConsensus.connectCluster([{ host: '127.0.0.1', port: 7701 }], 'x' as never)],
    ['connectCluster(nodes, {}, 5)', () => RedisConsensus.connectCluster([{ host: '127.0.0.1', port: 7701 }], {}, 5 as never)],
    ['connectCluster(nodes, { signal: "x" })', () => RedisConsensus.connectCluster([{ host: '127.0.0.1', port: 7701 }], { signal: 'x' as never })],
  ];
  for (const [description, call] of calls) {
    const started = performance.now();
    const err = await rejection(call);
    assert.instance(err, TypeError, description);
    assert.ok(performance.now() - started < 500, `${description} answered at once`);
  }
});

connecting('a database index that is not a non-negative integer, from the path, ?db= or redisOptions.db, is a RangeError', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown): void => {
    unhandled.push(err);
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['/abc', () => RedisConsensus.connect(`${NOWHERE}/abc`)],
      ['/-1', () => RedisConsensus.connect(`${NOWHERE}/-1`)],
      ['/1.5', () => RedisConsensus.connect(`${NOWHERE}/1.5`)],
      ['?db=abc', () => RedisConsensus.connect(`${NOWHERE}/?db=abc`)],
      ['?db= (empty)', () => RedisConsensus.connect(`${NOWHERE}?db=`)],
      ['?db=-1', () => RedisConsensus.connect(`${NOWHERE}/?db=-1`)],
      ['host:port?db=x', () => RedisConsensus.connect('127.0.0.1:7701?db=x')],
      ['/2?db=abc (overridden, still checked)', () => RedisConsensus.connect(`${NOWHERE}/2?db=abc`)],
      ['db: -1', () => RedisConsensus.connect(NOWHERE, {}, { db: -1 })],
      ['db: 1.5', () => RedisConsensus.connect(NOWHERE, {}, { db: 1.5 })],
      ['db: NaN', () => RedisConsensus.connect(NOWHERE, {}, { db: Number.NaN })],
      ["db: 'abc'", () => RedisConsensus.connect(NOWHERE, {}, { db: 'abc' as never })],
    ];
    for (const [description, call] of calls) {
      const err = await rejection(call);
      assert.instance(err, RangeError, description);
      assert.match((err as Error).message, /database index .* must be a non-negative integer/, description);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

connecting("'%zz' in a URL's password is a RangeError that does not show the password", async () => {
  for (const url of ['redis://:s3cret%zz@127.0.0.1:7701', 'redis://user:s3cret%zz@127.0.0.1:7701', 'redis://us%zzer:s3cret@127.0.0.1:7701']) {
    const err = await rejection(() => RedisConsensus.connect(url));
    assert.instance(err, RangeError, url);
    assert.match((err as Error).message, /not valid percent-encoding/);
    assert.not.match(`${(err as Error).stack} ${JSON.stringify(err)}`, /s3cret/);
  }
  const unparseable = await rejection(() => RedisConsensus.connect('redis://:s3cret@[::1'));
  assert.instance(unparseable, RangeError);
  assert.not.match(`${(unparseable as Error).stack}`, /s3cret/);
  // Another scheme: ioredis would read it as a host named `http` and a socket path holding the password.
  const otherScheme = await rejection(() => RedisConsensus.connect('http://:s3cret@127.0.0.1:7701'));
  assert.instance(otherScheme, RangeError);
  assert.match((otherScheme as Error).message, /must start with redis:\/\/ or rediss:\/\/; got "http:\/\/"/);
  // A path that is no database index is not shown: it may be a misplaced password.
  const path = await rejection(() => RedisConsensus.connect('redis://:s3cret@127.0.0.1:7701/s3cret'));
  assert.instance(path, RangeError);
  assert.not.match(`${(path as Error).stack}`, /s3cret/);
});

connecting.run();

const databases = suite('connect: the database from ?db= on a real Redis');

databases('?db=1 writes to database 1, as the path /1 does; database 0 is untouched', async () => {
  if (!redisUp) return;
  const prefix = freshPrefix('db');
  const raw = new Redis(REDIS_URL, { db: 1 });
  const raw0 = new Redis(REDIS_URL);
  try {
    const viaQuery = await RedisConsensus.connect(`${REDIS_URL}/?db=1`, { prefix });
    assert.is(await viaQuery.compareAndSet('k', null, { seqno: 0n, data }), CaSResult.Committed);
    await viaQuery.close();
    const viaPath = await RedisConsensus.connect(`${REDIS_URL}/1`, { prefix });
    assert.is((await viaPath.head('k'))?.seqno, 0n);
    await viaPath.close();
    assert.ok((await raw.keys(`${prefix}:*`)).length > 0, 'written to database 1');
    assert.equal(await raw0.keys(`${prefix}:*`), [], 'nothing in database 0');
  } finally {
    await deletePrefix(raw, prefix);
    await deletePrefix(raw0, prefix);
    raw.disconnect();
    raw0.disconnect();
  }
});

databases.run();
