/**
 * Edges (issue #11, part A): never hang, never guess. Connect and close deadlines, errors with
 * stable codes that say whether retrying can help, payload limits, eviction, a wrong database,
 * abort signals and debug logging. Disruptive cases run on a private redis-server.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis, ReplyError } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { CaSResult, ExternalError, RedisConsensus } from '../lib/index.js';
import type { ExternalErrorCode } from '../lib/index.js';
import { codeOf, toExternal } from '../lib/errors.js';
import { KeyNamesCache } from '../lib/layout.js';
import { assertExternal, deletePrefix, freshPrefix, realRedisAvailable, REDIS_URL, rejection, REQUIRE_REDIS } from './support/backends.js';
import { RedisServer, redisServerAvailable } from './support/redis-server.js';
import { captureWarnings } from './support/warnings.js';

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

// Every await before the first suite runs: run alone (`node build/spec/<file>.js`), uvu starts at the
// first pause after a suite's run() and re-runs the queued suites for each later one.
const realRedis = await realRedisAvailable();

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

/** A server that accepts TCP connections and never answers. */
async function blackHole(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Runs an ES module in a child Node, returns its stdout, exit code, and wall time to exit. */
async function runChild(source: string, env: NodeJS.ProcessEnv = {}, limitMs = 15000): Promise<{ out: string; err: string; code: number | null; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); });
  const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const [code] = await once(child, 'exit') as [number | null];
  clearTimeout(killer);
  // Without colour codes (the test runner may force colours on its children).
  return { out, err: err.replace(/\x1b\[[0-9;]*m/g, ''), code, ms: Date.now() - started };
}

const LIB = new URL('../lib/index.js', import.meta.url).href;

const hangs = suite('edges: never hang');

hangs('connect() to a server that never answers rejects as a determinate timeout within timeoutMs, and lets the process exit', async () => {
  const hole = await blackHole();
  try {
    const { out, err, code, ms } = await runChild(`
      import { RedisConsensus } from ${JSON.stringify(LIB)};
      const started = Date.now();
      try {
        await RedisConsensus.connect(${JSON.stringify(hole.url)}, { timeoutMs: 1000 }, { connectTimeout: 10000 });
        console.log(JSON.stringify({ connected: true }));
      } catch (e) {
        console.log(JSON.stringify({ name: e.name, code: e.code, determinate: e.determinate, ms: Date.now() - started, message: e.message }));
      }
      // No process.exit: the child must end by itself, with nothing left holding it open.
    `);
    assert.is(code, 0, err);
    const result = JSON.parse(out.trim()) as { name: string; code: string; determinate: boolean; ms: number; message: string };
    assert.is(result.name, 'ExternalError');
    assert.is(result.code, 'timeout');
    assert.is(result.determinate, true);
    assert.ok(result.ms >= 950 && result.ms < 1600, `rejected after ${result.ms} ms`);
    assert.match(result.message, /no answer within 1000 ms/);
    // Node's start-up plus the 1 s deadline: nothing kept it alive afterwards.
    assert.ok(ms < 4000, `the child took ${ms} ms to exit`);
  } finally {
    await hole.close();
  }
});

hangs('connectCluster() to a node that never answers rejects within timeoutMs', async () => {
  const hole = await blackHole();
  try {
    const port = Number(new URL(hole.url).port);
    const started = Date.now();
    const err = await rejection(RedisConsensus.connectCluster([{ host: '127.0.0.1', port }], { timeoutMs: 1000 }));
    assertExternal(err, true, 'timeout');
    assert.ok(Date.now() - started < 1600, `${Date.now() - started} ms`);
  } finally {
    await hole.close();
  }
});

hangs('connect() honours an AbortSignal', async () => {
  const hole = await blackHole();
  try {
    const started = Date.now();
    const err = await rejection(RedisConsensus.connect(hole.url, { timeoutMs: 5000, signal: AbortSignal.timeout(200) }));
    assertExternal(err, true, 'aborted');
    assert.ok(Date.now() - started < 1000);
    const already = await rejection(RedisConsensus.connect(hole.url, { signal: AbortSignal.abort() }));
    assertExternal(already, true, 'aborted');
  } finally {
    await hole.close();
  }
});

const serverAvailable = redisServerAvailable();
if (!serverAvailable && REQUIRE_REDIS) throw new Error('REQUIRE_REDIS=1 but redis-server is not on PATH');

if (serverAvailable) {
  let server: RedisServer;
  hangs.before(async () => {
    server = await RedisServer.startInRange(31_000, 31_999);
  });
  hangs.after(async () => {
    server.resume();
    await server.stop();
  });

  hangs('connect() to a SIGSTOPped redis-server rejects within timeoutMs', async () => {
    server.pause();
    try {
      const started = Date.now();
      const err = await rejection(RedisConsensus.connect(server.url, { timeoutMs: 1000 }));
      assertExternal(err, true, 'timeout');
      assert.ok(Date.now() - started < 1600, `${Date.now() - started} ms`);
    } finally {
      server.resume();
    }
  });

  hangs('close() settles within a bound while Redis is stalled, and fails what was in flight', async () => {
    const consensus = await RedisConsensus.connect(server.url, { prefix: 'edges-close', timeoutMs: 30_000 });
    server.pause();
    try {
      const write = rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }));
      const read = rejection(consensus.head('k'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const started = Date.now();
      await consensus.close();
      const closeMs = Date.now() - started;
      assert.ok(closeMs < 1500, `close() took ${closeMs} ms`);
      assertExternal(await write, false, 'closed');
      assertExternal(await read, true, 'closed');
      assert.ok(Date.now() - started < 1600);
    } finally {
      server.resume();
    }
  });

  hangs('close() releases calls waiting for a reconnect: determinate, closed', async () => {
    const consensus = await RedisConsensus.connect(server.url, { prefix: 'edges-close', timeoutMs: 30_000 });
    await server.crash();
    try {
      const waiting = rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      await consensus.close();
      assertExternal(await waiting, true, 'closed');
      assert.ok(Date.now() - started < 1500, `${Date.now() - started} ms`);
    } finally {
      await server.start();
    }
  });
}

hangs.run();

const places = suite('edges: wrong place, wrong class of error');

places('a payload above maxPayloadBytes is a RangeError and is never sent', async () => {
  const client = new RedisMock({ port: 39_821 });
  const consensus = new RedisConsensus(client, { maxPayloadBytes: 10 });
  let sent = 0;
  const original = (client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>).redisConsensus_compareAndSet_v1!;
  Object.assign(client, { redisConsensus_compareAndSet_v1: (...args: unknown[]) => { sent++; return original.apply(client, args); } });
  const err = await rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.alloc(11) }));
  assert.instance(err, RangeError);
  assert.match((err as Error).message, /11 bytes, above maxPayloadBytes \(10\)/);
  assert.is(sent, 0);
  assert.is(await consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.alloc(10) }), CaSResult.Committed);
  assert.is(sent, 1);
  await consensus.close();
  const byDefault = new RedisConsensus(new RedisMock({ port: 39_822 }));
  assert.instance(await rejection(byDefault.compareAndSet('k', null, { seqno: 0, data: new Uint8Array(16 * 1024 * 1024 + 1) })), RangeError);
  await byDefault.close();
  assert.throws(() => new RedisConsensus(new RedisMock({ port: 39_823 }), { maxPayloadBytes: 0 }), RangeError);
  assert.throws(() => new RedisConsensus(new RedisMock({ port: 39_823 }), { evictionPolicy: 'maybe' as 'warn' }), RangeError);
});

places('redis://host/abc is a RangeError before connecting', async () => {
  const err = await rejection(RedisConsensus.connect('redis://127.0.0.1:1/abc', { timeoutMs: 500 }));
  assert.instance(err, RangeError);
  assert.match((err as Error).message, /database .* non-negative integer; got something else \(not shown/);
});

if (serverAvailable) {
  let server: RedisServer;
  let admin: Redis;
  places.before(async () => {
    server = await RedisServer.startInRange(32_000, 32_999);
    admin = new Redis(server.url);
  });
  places.after(async () => {
    admin.disconnect();
    await server.stop();
  });

  places('a database out of range is a determinate error at connect, not writes to database 0', async () => {
    const err = await rejection(RedisConsensus.connect(`${server.url}/99`, { timeoutMs: 2000 }));
    const external = assertExternal(err, true, 'wrong-database');
    assert.match(external.message, /has no database 99/);
    const consensus = await RedisConsensus.connect(`${server.url}/3`, { prefix: 'edges-db' });
    try {
      await consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') });
      const db3 = new Redis(`${server.url}/3`);
      assert.ok((await db3.keys('edges-db:*')).length > 0);
      assert.is((await admin.keys('edges-db:*')).length, 0, 'nothing in database 0');
      db3.disconnect();
    } finally {
      await consensus.close();
    }
  });

  places('an allkeys-* eviction policy is refused at connect, or only warned about; volatile-* and noeviction pass', async () => {
    try {
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
      const err = assertExternal(await rejection(RedisConsensus.connect(server.url, { timeoutMs: 2000 })), true, 'eviction-policy');
      assert.match(err.message, /maxmemory-policy allkeys-lru/);
      const captured = captureWarnings(/maxmemory-policy allkeys-lru/);
      try {
        const warned = await RedisConsensus.connect(server.url, { evictionPolicy: 'warn' });
        await new Promise((resolve) => setImmediate(resolve));
        assert.ok(captured.warnings.some((warning) => /allkeys-lru/.test(warning.message)), 'a warning was emitted');
        await warned.close();
      } finally {
        await captured.stop();
      }
      // A client passed in is checked by check().
      const client = new Redis(server.url, { autoResendUnfulfilledCommands: false });
      const wrapped = new RedisConsensus(client);
      assertExternal(await rejection(wrapped.check()), true, 'eviction-policy');
      await wrapped.close();
      client.disconnect();
      for (const policy of ['volatile-lru', 'noeviction']) {
        await admin.config('SET', 'maxmemory-policy', policy);
        const consensus = await RedisConsensus.connect(server.url);
        await consensus.check();
        await consensus.close();
      }
    } finally {
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });

  places('a seqno whose payload was evicted is a payload-missing ExternalError naming key and seqno, never a TypeError', async () => {
    const prefix = 'edges-missing';
    const consensus = await RedisConsensus.connect(server.url, { prefix });
    try {
      await consensus.compareAndSet('shard', null, { seqno: 0, data: Buffer.from('a') });
      await consensus.compareAndSet('shard', 0, { seqno: 1, data: Buffer.from('b') });
      const data = new KeyNamesCache(prefix).get('shard').data;
      await admin.hdel(data, '0000000000000000001');
      const head = assertExternal(await rejection(consensus.head('shard')), true, 'payload-missing');
      assert.match(head.message, /"shard" at SeqNo\(1\) is missing/);
      const scan = assertExternal(await rejection(consensus.scan('shard', 0, 10)), true, 'payload-missing');
      assert.match(scan.message, /SeqNo\(1\)/);
      assert.is((await consensus.scan('shard', 0, 1))[0]?.data.toString(), 'a');
    } finally {
      await consensus.close();
    }
  });
}

places.run();

const signals = suite('edges: AbortSignal');

signals('aborted before sending: determinate, nothing sent', async () => {
  const { consensus, sent } = refusingStore(39_831, 'compareAndSet', () => new Error('must not be sent'));
  const signal = AbortSignal.abort();
  assertExternal(await rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }, { signal })), true, 'aborted');
  assertExternal(await rejection(consensus.head('k', { signal })), true, 'aborted');
  assertExternal(await rejection(consensus.ping({ signal })), true, 'aborted');
  assert.is(sent(), 0);
  await consensus.close();
});

signals('a write aborted after it was sent is indeterminate; an aborted read is determinate', async () => {
  const client = new RedisMock({ port: 39_832 });
  const consensus = new RedisConsensus(client, { timeoutMs: 10_000 });
  Object.assign(client, {
    redisConsensus_compareAndSet_v1: () => new Promise(() => {}),
    redisConsensus_head_v1: () => new Promise(() => {}),
  });
  const controller = new AbortController();
  const write = rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }, { signal: controller.signal }));
  const read = rejection(consensus.head('k', { signal: controller.signal }));
  const started = Date.now();
  setTimeout(() => controller.abort(), 50);
  const written = assertExternal(await write, false, 'aborted');
  assert.match(written.message, /may or may not have been applied/);
  assertExternal(await read, true, 'aborted');
  assert.ok(Date.now() - started < 1000);
  await consensus.close();
});

signals('an abort during a retry backoff ends the call at once, determinate', async () => {
  const client = new RedisMock({ port: 39_833 });
  const consensus = new RedisConsensus(client, { retry: { attempts: 5, minDelayMs: 2000, maxDelayMs: 2000 } });
  Object.assign(client, { redisConsensus_head_v1: () => Promise.reject(new ReplyError('LOADING Redis is loading')) });
  const started = Date.now();
  const err = assertExternal(await rejection(consensus.head('k', { signal: AbortSignal.timeout(100) })), true, 'aborted');
  assert.is(err.attempts, 1);
  assert.ok(Date.now() - started < 800, `${Date.now() - started} ms`);
  await consensus.close();
});

signals.run();

const shared = suite('edges: the extra write connection');

if (realRedis) {
  const writerOf = (consensus: RedisConsensus): Redis => (consensus as unknown as { link: { writer: Redis } }).link.writer;
  const ended = async (client: Redis): Promise<string> => {
    if (client.status !== 'end') await Promise.race([once(client, 'end'), new Promise((resolve) => setTimeout(resolve, 2000))]);
    return client.status;
  };

  shared('50 stores on one client share one write connection, add no listener each, and the last close() quits it', async () => {
    const name = `rc-edges-shared-${process.pid}`;
    const client = new Redis(REDIS_URL, { connectionName: name });
    const prefix = freshPrefix('edges');
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => { warnings.push(warning.name); };
    process.on('warning', onWarning);
    const stores = Array.from({ length: 50 }, () => new RedisConsensus(client, { prefix }));
    try {
      const writer = writerOf(stores[0]!);
      assert.is.not(writer, client);
      assert.ok(stores.every((store) => writerOf(store) === writer));
      const results = await Promise.all(stores.map((store, i) => store.compareAndSet(`k${i}`, null, { seqno: 0, data: Buffer.from('x') })));
      assert.ok(results.every((result) => result === CaSResult.Committed));
      const list = String(await client.client('LIST'));
      assert.is(list.split('\n').filter((line) => line.includes(`name=${name} `)).length, 2, 'the client and one write connection');
      assert.ok(client.listenerCount('close') <= 2, `${client.listenerCount('close')} close listeners`);
      assert.ok(writer.listenerCount('close') <= 2, `${writer.listenerCount('close')} close listeners on the writer`);
      await new Promise((resolve) => setImmediate(resolve));
      assert.not.ok(warnings.includes('MaxListenersExceededWarning'));
      for (const store of stores.slice(1)) await store.close();
      assert.is(writer.status, 'ready', 'still used by one store');
      assert.is(await stores[0]!.compareAndSet('k0', 0, { seqno: 1, data: Buffer.from('y') }), CaSResult.Committed);
      await stores[0]!.close();
      assert.is(await ended(writer), 'end');
      assert.is(client.status, 'ready');
    } finally {
      process.off('warning', onWarning);
      await Promise.all(stores.map((store) => store.close()));
      await deletePrefix(client, prefix);
      await client.quit();
    }
  });

  shared('the write connection ends when the caller quits their client without close()', async () => {
    const client = new Redis(REDIS_URL);
    const consensus = new RedisConsensus(client, { prefix: freshPrefix('edges') });
    const writer = writerOf(consensus);
    await consensus.head('k');
    await client.quit();
    assert.is(await ended(writer), 'end');
    // A write now fails determinate: the connection is gone, nothing was sent.
    assertExternal(await rejection(consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') })), true, 'unavailable');
    await consensus.close();
  });
}

shared.run();

const debugging = suite('edges: NODE_DEBUG=redis-consensus');

debugging('logs retries and indeterminate decisions to stderr, and nothing without NODE_DEBUG', async () => {
  const source = `
    import { ReplyError } from 'ioredis';
    import RedisMock from 'ioredis-mock';
    import { RedisConsensus } from ${JSON.stringify(LIB)};
    const client = new RedisMock({ port: 39_841 });
    const consensus = new RedisConsensus(client, { retry: { attempts: 2, minDelayMs: 1, maxDelayMs: 1 } });
    Object.assign(client, {
      redisConsensus_head_v1: () => Promise.reject(new ReplyError('LOADING Redis is loading')),
      redisConsensus_compareAndSet_v1: () => Promise.reject(new Error('Connection is closed.')),
    });
    await consensus.head('k').catch(() => {});
    await consensus.compareAndSet('k', null, { seqno: 0, data: Buffer.from('x') }).catch(() => {});
    await consensus.close();
  `;
  const on = await runChild(source, { NODE_DEBUG: 'redis-consensus' });
  assert.is(on.code, 0, on.err);
  assert.match(on.err, /REDIS-CONSENSUS \d+: retry head: attempt 1 failed \(unavailable\)/);
  assert.match(on.err, /REDIS-CONSENSUS \d+: indeterminate \(connection-lost\): indeterminate: compareAndSet failed after it was sent/);
  const off = await runChild(source, { NODE_DEBUG: '' });
  assert.is(off.code, 0, off.err);
  assert.not.match(off.err, /REDIS-CONSENSUS/);
});

debugging.run();
