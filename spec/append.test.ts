/**
 * `append` beyond the contract suite: single flight inside one store, round trips counted on the
 * wire, unknown outcomes resolved (a reply lost after the script ran, on ioredis-mock and through
 * the fault proxy on a private redis-server), backoff after repeated lost races, and a
 * linearizability run: 32 writers in 4 processes on 4 keys while CLIENT KILL cuts every
 * connection every 40 ms.
 *
 * The real-Redis parts use a private redis-server on a free port of 7620-7659 (CLIENT KILL must
 * not reach anyone else's connections). About 15 s.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { CaSResult, countingObserver, ExternalError, RedisConsensus, SCAN_ALL } from '../lib/index.js';
import type { VersionedData } from '../lib/index.js';
import { backends, freshPrefix, REQUIRE_REDIS } from './support/backends.js';
import { FaultProxy } from './support/fault-proxy.js';
import { RedisServer, redisServerAvailable } from './support/redis-server.js';
import { checkHistory, runWorkload } from './support/workload.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

let mockPort = 41_700;

/** A mock store whose compare-and-set script is wrapped by `wrap` (the script itself still runs). */
function mockStore(wrap: (run: () => Promise<unknown>, call: number) => Promise<unknown>): RedisConsensus {
  const client = new RedisMock({ port: mockPort++ });
  const consensus = new RedisConsensus(client, { prefix: freshPrefix('append'), timeoutMs: 500 });
  const methods = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = methods.redisConsensus_compareAndSet_v1!;
  let calls = 0;
  methods.redisConsensus_compareAndSet_v1 = (...args: unknown[]) => wrap(() => original.apply(client, args), ++calls);
  return consensus;
}

const flight = suite('single flight');

for (const backend of await backends()) {
  flight(`concurrent appends to one key from one store commit consecutive seqnos, one round trip each (${backend.name})`, async () => {
    const observer = countingObserver();
    const store = await backend.store({ observer });
    try {
      const seen: Array<bigint | null> = [];
      const n = 24;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => store.consensus.append('k', (head) => {
        seen.push(head?.seqno ?? null);
        return bytes(`w${i} on ${head?.seqno ?? 'nothing'}`);
      })));
      // Turns are taken in call order, each on the head the one before committed.
      assert.equal(results.map((r) => r.head?.seqno), Array.from({ length: n }, (_, i) => BigInt(i)));
      assert.equal(seen, [null, ...Array.from({ length: n - 1 }, (_, i) => BigInt(i))]);
      assert.ok(results.every((r) => r.attempts === 1));
      const all = await store.consensus.scan('k', 0n, SCAN_ALL);
      assert.equal(all.map((v) => v.data.toString()), results.map((r) => r.head!.data.toString()));
      // One head read for the first (nothing remembered yet), then one script call per append.
      assert.is(observer.counts.head.started, 1);
      assert.is(observer.counts.compareAndSet.started, n);
      assert.is(observer.counts.compareAndSet.mismatch, 0);
      assert.ok(observer.counts.append.waitedMs > 0, 'later appends waited for their turn');
    } finally {
      await store.dispose();
    }
  });
}

flight('appends to different keys do not wait for each other', async () => {
  const store = mockStore((run) => run());
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => {
    release = resolve;
  });
  const slow = store.append('a', async () => {
    await blocked;
    return bytes('slow');
  });
  const other = await store.append('b', () => bytes('fast'));
  assert.is(other.head?.seqno, 0n);
  release();
  assert.is((await slow).head?.seqno, 0n);
  await store.close();
});

flight('an update that throws rejects its append only; the next append on the key goes on', async () => {
  const store = mockStore((run) => run());
  const failing = store.append('k', () => {
    throw new Error('cannot render');
  });
  const next = store.append('k', () => bytes('ok'));
  await failing.then(() => assert.unreachable(), (err: Error) => assert.is(err.message, 'cannot render'));
  assert.is((await next).head?.seqno, 0n);
  await store.close();
});

flight('timeoutMs bounds an update that never settles: determinate, code timeout, nothing written, and the next append goes on', async () => {
  const store = mockStore((run) => run());
  try {
    const started = performance.now();
    const hung = store.append('k', () => new Promise<Uint8Array>(() => {}), { timeoutMs: 150 });
    const next = store.append('k', () => bytes('next'), { timeoutMs: 2000 });
    const err = await hung.then(() => undefined, (e: unknown) => e);
    assert.instance(err, ExternalError);
    assert.is((err as ExternalError).determinate, true);
    assert.is((err as ExternalError).code, 'timeout');
    assert.match((err as Error).message, /timeoutMs \(150 ms\) reached after 0 attempts, 0 lost races, in \d+ ms, while update was running; nothing was written/);
    assert.ok(performance.now() - started < 1500, 'rejected at its bound, not later');
    assert.is((await next).head?.seqno, 0n, 'the key\'s queue moved on: the next append committed seqno 0');
    assert.equal((await store.scan('k', 0n, SCAN_ALL)).map((v) => v.data.toString()), ['next']);
  } finally {
    await store.close();
  }
});

flight('timeoutMs reached while waiting for an earlier append is code timeout', async () => {
  const store = mockStore((run) => run());
  let release!: () => void;
  const slow = store.append('k', () => new Promise<Uint8Array>((resolve) => {
    release = () => resolve(bytes('slow'));
  }), { timeoutMs: 5000 });
  const err = await store.append('k', () => bytes('late'), { timeoutMs: 50 }).then(() => undefined, (e: unknown) => e);
  assert.instance(err, ExternalError);
  assert.is((err as ExternalError).code, 'timeout');
  assert.is((err as ExternalError).determinate, true);
  release();
  assert.is((await slow).head?.seqno, 0n);
  await store.close();
});

flight.run();

const unknown = suite('unknown outcomes');

unknown('a reply lost after the script ran is resolved by the resend: committed once, update run once (ioredis-mock)', async () => {
  const store = mockStore(async (run, call) => {
    const reply = await run();
    if (call === 2) throw new Error('connection reset after the script ran');
    return reply;
  });
  try {
    await store.append('k', () => bytes('first'));
    let updates = 0;
    const appended = await store.append('k', () => {
      updates++;
      return bytes('second');
    });
    assert.equal(appended, { committed: true, head: { seqno: 1n, data: bytes('second') }, attempts: 2 });
    assert.is(updates, 1);
    assert.equal((await store.scan('k', 0n, SCAN_ALL)).map((v) => v.data.toString()), ['first', 'second']);
  } finally {
    await store.close();
  }
});

unknown('an outcome that stays unknown until the bound is an indeterminate ExternalError naming the seqno', async () => {
  // Nothing runs, but every call fails as if after it was sent.
  const store = mockStore(async () => {
    throw new Error('connection reset');
  });
  try {
    const err = await store.append('k', () => bytes('x'), { maxAttempts: 3 }).then(() => undefined, (e: unknown) => e);
    assert.instance(err, ExternalError);
    assert.is((err as ExternalError).determinate, false);
    assert.match((err as Error).message, /^indeterminate: append to "k": SeqNo\(0\) may or may not have committed \(maxAttempts \(3\) reached/);
    assert.is((err as ExternalError).code, 'attempts-exhausted');
    assert.is(await store.head('k'), null);
  } finally {
    await store.close();
  }
});

unknown('a lost reply whose version another writer replaced is not claimed', async () => {
  // The first attempt never runs but fails as sent; meanwhile a peer takes seqno 1.
  const store = mockStore(async (run, call) => {
    if (call === 2) {
      await peer.compareAndSet('k', 0n, { seqno: 1n, data: bytes('peer') });
      throw new Error('connection reset');
    }
    return run();
  });
  const peer = new RedisConsensus(new RedisMock({ port: mockPort - 1 }), { prefix: store.prefix });
  try {
    await store.append('k', () => bytes('first'));
    const heads: Array<bigint | null> = [];
    const appended = await store.append('k', (head) => {
      heads.push(head?.seqno ?? null);
      return bytes(`mine on ${head?.seqno}`);
    });
    assert.is(appended.head?.seqno, 2n);
    assert.equal(heads, [0n, 1n]);
    assert.equal((await store.scan('k', 0n, SCAN_ALL)).map((v) => v.data.toString()), ['first', 'peer', 'mine on 1']);
  } finally {
    await peer.close();
    await store.close();
  }
});

unknown.run();

const backoff = suite('backoff');

/** The gaps between the attempts of an append that loses every race, with Math.random fixed. */
async function gapsWhenLosing(random: number): Promise<number[]> {
  const store = mockStore((run) => run());
  const peer = new RedisConsensus(new RedisMock({ port: mockPort - 1 }), { prefix: store.prefix });
  const realRandom = Math.random;
  try {
    const times: number[] = [];
    Math.random = () => random;
    const err = await store.append('k', async (head) => {
      times.push(performance.now());
      const seqno = head === null ? 0n : head.seqno + 1n;
      await peer.compareAndSet('k', head?.seqno ?? null, { seqno, data: bytes(`peer ${seqno}`) });
      return bytes('mine');
    }, { maxAttempts: 5, backoff: { minDelayMs: 40, maxDelayMs: 160 } }).then(() => undefined, (e: unknown) => e);
    Math.random = realRandom;
    assert.instance(err, ExternalError);
    assert.is((err as ExternalError).determinate, true);
    assert.match((err as Error).message, /maxAttempts \(5\)/);
    assert.is((err as ExternalError).code, 'attempts-exhausted');
    return times.slice(1).map((t, i) => t - times[i]!);
  } finally {
    Math.random = realRandom;
    await peer.close();
    await store.close();
  }
}

backoff('the first lost race retries at once; later ones in a row wait, longer each time, with jitter', async () => {
  // Ceilings 0, 40, 80, 160 ms; each wait is half the ceiling plus the jitter's share of the other
  // half. Only lower bounds and orderings are asserted: a loaded machine only makes gaps longer.
  const least = await gapsWhenLosing(0);
  const shown = least.map(Math.round).join(', ');
  assert.ok(least[1]! >= 19 && least[2]! >= 39 && least[3]! >= 79, `backed off at least half the ceiling: ${shown} ms`);
  assert.ok(least[0]! < least[1]!, `the first retry went at once, before the first wait: ${shown} ms`);
  assert.ok(least[3]! > least[1]!, `the wait grows with each loss in a row: ${shown} ms`);
  const most = await gapsWhenLosing(0.999);
  assert.ok(most[3]! >= 159, `the jitter adds up to the other half of the ceiling: ${most.map(Math.round).join(', ')} ms`);
});

backoff.run();

const real = suite('on a private redis-server');
const available = redisServerAvailable();
if (!available && REQUIRE_REDIS) throw new Error('REQUIRE_REDIS=1 but redis-server is not on PATH');
let server: RedisServer;
let proxy: FaultProxy;

real.before(async () => {
  server = await RedisServer.startInRange(7620, 7659, { args: ['--loglevel', 'warning'] });
  proxy = await FaultProxy.start(0, { port: server.port });
});

real.after(async () => {
  await proxy?.close();
  await server?.stop();
});

real('uncontended appends are one request each on the wire, after one read', async () => {
  const consensus = await RedisConsensus.connect(proxy.url, { prefix: freshPrefix('append') });
  const key = `wire-${process.pid}-${Date.now()}`;
  proxy.count(key);
  try {
    for (let i = 0; i < 10; i++) await consensus.append(key, (head) => bytes(`v${head === null ? 0n : head.seqno + 1n}`));
    assert.is(proxy.seen(key), 1 + 10);
    assert.is((await consensus.head(key))?.seqno, 9n);
  } finally {
    await consensus.close();
  }
});

real('a reply cut after the script ran: the append resolves it and commits exactly once', async () => {
  const consensus = await RedisConsensus.connect(proxy.url, { prefix: freshPrefix('append'), timeoutMs: 2000 });
  try {
    await consensus.append('k', () => bytes('first'));
    const payload = `cut-${process.pid}-${Date.now()}`;
    proxy.count(payload);
    const cut = proxy.cutAfter(payload);
    let updates = 0;
    const appended = await consensus.append('k', () => {
      updates++;
      return bytes(payload);
    });
    await cut;
    assert.is(proxy.seen(payload), 2, 'sent twice');
    assert.is(updates, 1);
    assert.equal(appended, { committed: true, head: { seqno: 1n, data: bytes(payload) }, attempts: 2 });
    const all = await consensus.scan('k', 0n, SCAN_ALL);
    assert.equal(all.map((v) => v.data.toString()), ['first', payload], 'applied once');
  } finally {
    await consensus.close();
  }
});

real('32 writers in 4 processes on 4 keys under CLIENT KILL every 40 ms: every token once, no gaps, linearizable', async () => {
  const prefix = freshPrefix('append-lin');
  const killer = new Redis(server.url);
  killer.on('error', () => {});
  let killing = true;
  let killed = 0;
  const kills = (async () => {
    // Kills start once the worker processes are up and connected (connecting is not under test).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    while (killing) {
      await new Promise((resolve) => setTimeout(resolve, 40));
      killed += Number(await killer.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes').catch(() => 0));
    }
  })();
  const run = await runWorkload({
    url: server.url, prefix, clients: 16, writersPerClient: 2, keys: 4, processes: 4, durationMs: 3000, minRunMs: 2500, mode: 'append',
  }).finally(async () => {
    killing = false;
    await kills;
  });
  const reader = await RedisConsensus.connect(server.url, { prefix });
  try {
    const report = checkHistory(run.history);
    const appends = run.history.filter((o) => o.op === 'compareAndSet');
    const committed = appends.filter((o) => o.result === CaSResult.Committed);
    const unsure = appends.filter((o) => o.error === 'indeterminate');
    console.log(`  append under CLIENT KILL: ${killed} connections killed; ${run.history.length} operations, ${committed.length} appends committed, ` +
      `${unsure.length} indeterminate, ${appends.filter((o) => o.error === 'determinate').length} determinate; ` +
      `${report.violations.length} violations`);
    assert.ok(killed > 0, 'connections were killed');
    assert.ok(committed.length > 200, `only ${committed.length} appends committed`);
    assert.equal(report.violations, [], report.violations.join('\n'));
    assert.is(report.linearizable, true);
    const stored = new Map<string, bigint>();
    for (const key of ['k0', 'k1', 'k2', 'k3']) {
      const versions: VersionedData[] = await reader.scan(key, 0n, SCAN_ALL);
      versions.forEach((version, i) => {
        assert.is(version.seqno, BigInt(i), `${key}: no gaps`);
        const token = version.data.toString('hex');
        assert.not.ok(stored.has(token), `${key}: a token stored twice`);
        stored.set(token, version.seqno);
      });
    }
    for (const o of committed) assert.is(stored.get(o.next.data), o.next.seqno, 'a committed append is stored at its seqno');
    const tokens = new Set(appends.map((o) => o.next.data));
    for (const token of stored.keys()) assert.ok(tokens.has(token), 'every stored version is an append that was made');
    assert.is(stored.size - committed.length <= unsure.length, true, 'only indeterminate appends may have landed unreported');
  } finally {
    await reader.close();
    killer.disconnect();
  }
});

if (available) real.run();
