/**
 * Leases (issue 22), in one process: the shared suite on ioredis-mock, a real Redis and Redis 5
 * (port 7815). Acquire, try, release, renewal past the ttl with a bounded history, takeover of an
 * expired lease by a higher token, loss heard at once (another writer, a store reset), a waiter
 * woken by a release and at the expiry, arrival order among waiters, exactly one winner per seqno,
 * bad input, lease commits counted by the epoch check, a try that replicas never acknowledge, the
 * observer's reports. With durability, on a primary and a replica this file starts (ports 7816,
 * 7817): a commit the replica did not acknowledge is not counted. Several processes, pauses and
 * kills are in lease-processes.test.ts.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, countingObserver, ExternalError, LeaseLostError, RedisConsensus, SCAN_ALL } from '../lib/index.js';
import type { Lease } from '../lib/index.js';
import { parseLeaseRecord } from '../lib/lease-record.js';
import { assertExternal, deletePrefix, freshPrefix, mockBackend, realRedisAvailable, redisBackend, rejection } from './support/backends.js';
import type { Backend, Store } from './support/backends.js';
import { aborted, copyLeaseKeys, deadHolder, restoreLeaseKeys, sleep } from './support/lease.js';
import { command, infoFields, redisServerAvailable, startServer, stopServers, until } from './support/cluster.js';
import { RedisServer } from './support/redis-server.js';
import { snapshot } from './support/snapshot.js';

interface Context {
  store: Store;
  consensus: RedisConsensus;
  peer: RedisConsensus;
}

/** The shared suite on `backend`; `stop` runs once it is done (a server this file started). */
function leaseSuite(backend: Backend, stop?: () => Promise<void>): void {
  const mock = backend.name === 'ioredis-mock';
  const name = backend.name;
  // A mock script call builds a Lua VM: tens of ms on a loaded machine, so the mock gets longer ttls.
  const TTL = mock ? 1000 : 300;
  const SHORT = mock ? 1500 : 150;
  const FAST = { ttlMs: TTL } as const;
  const test = suite<Context>(`lease (${name})`);
  test.before.each(async (context) => {
    context.store = await backend.store();
    context.consensus = context.store.consensus;
    context.peer = await backend.peer(context.store);
  });
  test.after.each(async ({ store, peer }) => {
    await peer.close();
    await store.dispose();
  });
  test.after(async () => {
    await backend.close();
    await stop?.();
  });

  test('acquire on a free key holds it with a token; try by another gets null; release frees it', async ({ consensus, peer }) => {
    // A long ttl: nothing here may expire, however slow a loaded machine runs the mock.
    const LONG = { ttlMs: 10_000 };
    const lease = await consensus.acquireLease('leader', { ...LONG, name: 'alpha' });
    assert.is(lease.held, true);
    assert.is(lease.signal.aborted, false);
    assert.is(lease.token, 0n);
    assert.is(lease.name, 'alpha');
    assert.ok(lease.remainingMs > 0 && lease.remainingMs <= 10_000);
    assert.is(await peer.tryAcquireLease('leader', LONG), null);
    const state = await peer.readLease('leader');
    assert.is(state?.held, true);
    assert.is(state?.record?.owner.length, 16);
    assert.is(state?.record?.name, 'alpha');
    assert.is(state?.record?.token, 0n);
    assert.ok(state!.remainingMs > 0 && state!.remainingMs <= 10_000, String(state?.remainingMs));
    assert.is(await lease.release(), true);
    assert.is(lease.held, false);
    assert.instance(lease.signal.reason, LeaseLostError);
    assert.is((lease.signal.reason as LeaseLostError).reason, 'released');
    assert.is(await lease.release(), true, 'idempotent');
    const freed = await peer.readLease('leader');
    assert.is(freed?.held, false);
    assert.is(freed?.record?.state, 'free');
    const next = await peer.tryAcquireLease('leader', FAST);
    assert.ok(next !== null);
    assert.ok(next.token > lease.token, `${next.token} > ${lease.token}`);
    await next.release();
  });

  test('renewal keeps the lease past its ttl, and a tenure keeps at most three versions', async ({ consensus, peer }) => {
    const lease = await consensus.acquireLease('renewed', { ttlMs: SHORT });
    await sleep(SHORT * 2.5);
    assert.is(lease.held, true, 'renewed in the background');
    assert.is(await peer.tryAcquireLease('renewed', { ttlMs: SHORT }), null);
    const history = await consensus.scan('renewed', 0, SCAN_ALL);
    assert.is(history.length, 2, 'the version that began the tenure and the last renewal');
    assert.is(history[0]!.seqno, lease.token);
    assert.ok(history[1]!.seqno >= 4n, `renewed several times: ${history[1]!.seqno}`);
    const records = history.map((version) => parseLeaseRecord(version.data));
    assert.ok(records.every((record) => record?.token === lease.token && record.state === 'held'));
    await lease.release();
    const audit = (await consensus.scan('renewed', 0, SCAN_ALL)).map((version) => parseLeaseRecord(version.data)?.state);
    assert.equal(audit, ['held', 'held', 'free']);
  });

  test('an expired lease is taken over with a higher token, by a waiter woken at the expiry', async ({ store, consensus }) => {
    // The dead holder's record is written by the server's clock between `before` and `after`.
    const before = performance.now();
    const dead = await deadHolder(consensus, store.raw, mock, 'job', TTL);
    const after = performance.now();
    if (performance.now() - before < TTL / 2) assert.is(await consensus.tryAcquireLease('job', FAST), null, 'not yet expired');
    const lease = await consensus.acquireLease('job', FAST);
    const taken = performance.now();
    assert.ok(lease.token > dead);
    assert.ok(taken - before >= TTL - 5, `taken ${taken - before} ms after the write of a ${TTL} ms lease`);
    assert.ok(taken - after < TTL + (mock ? 400 : 250), `taken within the ttl and a round trip: ${taken - after} ms`);
    await lease.release();
  });

  test('a waiter is woken by the release at once, not at the expiry', async ({ consensus, peer }) => {
    const holder = await consensus.acquireLease('handover', { ttlMs: 5000 });
    const waiting = peer.acquireLease('handover', { ttlMs: 5000 });
    await sleep(100);
    const released = performance.now();
    await holder.release();
    const next = await waiting;
    const handover = performance.now() - released;
    assert.ok(handover < 1000, `handover took ${handover} ms with a 5 s ttl`);
    assert.ok(next.token > holder.token);
    await next.release();
  });

  test('the holder hears at once that another writer took the key, and its release then changes nothing', async ({ consensus, peer }) => {
    const lease = await consensus.acquireLease('taken', { ttlMs: 5000 });
    const head = await peer.head('taken');
    assert.is(await peer.compareAndSet('taken', head!.seqno, { seqno: head!.seqno + 1n, data: Buffer.from('x') }), CaSResult.Committed);
    const reason = await aborted(lease.signal, 2000);
    assert.instance(reason, LeaseLostError);
    assert.is((reason as LeaseLostError).reason, 'taken');
    assert.is(lease.held, false);
    assert.is(await lease.release(), false);
    assert.equal((await peer.head('taken'))?.data, Buffer.from('x'), 'release wrote nothing');
  });

  test('the holder hears a store reset, and the lease is lost', async ({ store, consensus }) => {
    const lease = await consensus.acquireLease('reset', { ttlMs: SHORT });
    if (mock) await store.raw.flushall();
    else await deletePrefix(store.raw, store.prefix);
    const reason = await aborted(lease.signal, 2000);
    assert.is((reason as LeaseLostError).reason, 'store-reset');
    assert.is(lease.held, false);
  });

  test('waiters take the lease in arrival order', async ({ consensus, peer }) => {
    const holder = await consensus.acquireLease('queue', { ttlMs: 5000 });
    const order: string[] = [];
    const take = async (who: string, store: RedisConsensus): Promise<void> => {
      const lease = await store.acquireLease('queue', { ttlMs: 5000 });
      order.push(who);
      await sleep(30);
      await lease.release();
    };
    const first = take('first', peer);
    await sleep(80);
    const second = take('second', consensus);
    await sleep(80);
    const third = take('third', peer);
    await sleep(80);
    assert.is((await peer.readLease('queue'))?.waiting, 3);
    await holder.release();
    await Promise.all([first, second, third]);
    assert.equal(order, ['first', 'second', 'third']);
    // A try while others wait never jumps the queue; with no one waiting, it succeeds.
    const again = await consensus.tryAcquireLease('queue', FAST);
    assert.ok(again !== null);
    await again.release();
  });

  test('an aborted wait rejects with its reason and leaves the queue', async ({ consensus, peer }) => {
    const holder = await consensus.acquireLease('abort', { ttlMs: 5000 });
    const ac = new AbortController();
    const waiting = peer.acquireLease('abort', { ttlMs: 5000, signal: ac.signal });
    await sleep(100);
    assert.is((await peer.readLease('abort'))?.waiting, 1);
    ac.abort(new Error('gave up'));
    const err = await rejection(waiting);
    assert.is((err as Error).message, 'gave up');
    await sleep(50);
    assert.is((await peer.readLease('abort'))?.waiting, 0);
    await holder.release();
  });

  test('16 contenders on 4 stores take turns: never two acting as owner at once, tokens increase, all served', async ({ store, consensus, peer }) => {
    const stores = [consensus, peer, await backend.peer(store), await backend.peer(store)];
    const acted = new Map<bigint, { first: number; last: number }>();
    const served = new Set<number>();
    const stop = new AbortController();
    const contender = async (id: number): Promise<void> => {
      while (!stop.signal.aborted) {
        const lease = await stores[id % 4]!.acquireLease('turns', { ttlMs: TTL, signal: stop.signal }).catch(() => undefined);
        if (lease === undefined) return;
        served.add(id);
        const until = performance.now() + 5 + Math.random() * 10;
        for (;;) {
          const checked = performance.now();
          if (checked >= until || !lease.held) break;
          const interval = acted.get(lease.token) ?? { first: checked, last: checked };
          interval.last = checked;
          acted.set(lease.token, interval);
          await sleep(2);
        }
        await lease.release();
      }
    };
    const running = Array.from({ length: 16 }, (_, id) => contender(id));
    const deadline = performance.now() + (mock ? 20_000 : 5000);
    while (served.size < 16 && performance.now() < deadline) await sleep(50);
    stop.abort();
    await Promise.all(running);
    await Promise.all(stores.slice(2).map((extra) => extra.close()));
    assert.is(served.size, 16, 'every contender was served');
    const tenures = [...acted.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    for (let i = 1; i < tenures.length; i++) {
      const [earlier, before] = tenures[i - 1]!;
      const [later, after] = tenures[i]!;
      assert.ok(after.first > before.last, `token ${later} acted from ${after.first}, token ${earlier} until ${before.last}`);
    }
  });

  test('exactly one of many concurrent tries wins a free lease', async ({ consensus, peer }) => {
    const tries = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? consensus : peer).tryAcquireLease('race', FAST)));
    const winners = tries.filter((lease): lease is Lease => lease !== null);
    assert.is(winners.length, 1);
    await winners[0]!.release();
  });

  test('a holder that is not renewed in time stops considering itself the owner', async ({ consensus }) => {
    const lease = await consensus.acquireLease('lapse', { ttlMs: SHORT, marginMs: 20, renewIntervalMs: SHORT / 2 });
    assert.is(lease.held, true);
    // Block the event loop past the ttl: no renewal can run.
    const until = performance.now() + SHORT + 20;
    while (performance.now() < until) { /* a paused process */ }
    assert.is(lease.held, false, 'held is checked on the clock, before any timer runs');
    const reason = await aborted(lease.signal, 1000);
    assert.ok(['expired', 'taken'].includes((reason as LeaseLostError).reason));
  });

  test('bad options and non-lease keys are refused before anything is written', async ({ store, consensus }) => {
    const before = await snapshot(store.raw, store.prefix);
    for (const options of [{ ttlMs: 0 }, { ttlMs: 1.5 }, { ttlMs: 10 ** 9 }, { ttlMs: 100, marginMs: 100 },
      { ttlMs: 100, renewIntervalMs: 95 }, { ttlMs: 100, renewIntervalMs: 0 }, { timeoutMs: -1 }]) {
      assert.instance(await rejection(consensus.acquireLease('k', options)), RangeError, JSON.stringify(options));
    }
    assert.instance(await rejection(consensus.acquireLease('k', { name: 5 as unknown as string })), TypeError);
    assert.instance(await rejection(consensus.acquireLease(5 as unknown as string)), TypeError);
    assert.instance(await rejection(consensus.tryAcquireLease('k', { signal: 'x' as unknown as AbortSignal })), TypeError);
    assert.is(await snapshot(store.raw, store.prefix), before);
    await consensus.compareAndSet('plain', null, { seqno: 0, data: Buffer.from('not a lease') });
    assert.instance(await rejection(consensus.acquireLease('plain', FAST)), TypeError);
    assert.is((await consensus.head('plain'))?.seqno, 0n);
    assert.is((await consensus.readLease('plain'))?.record, null);
    assert.is(await consensus.readLease('nothing'), null);
  });

  test('close releases the store\'s leases', async ({ store, peer }) => {
    const other = await backend.peer(store);
    const lease = await other.acquireLease('closing', { ttlMs: 5000 });
    await other.close();
    assert.is((lease.signal.reason as LeaseLostError).reason, 'closed');
    assert.is((await peer.readLease('closing'))?.held, false);
  });

  test('lease commits count in the bucket\'s epoch marker: a release lost by a restore is refused as a rollback', async ({ store, consensus }) => {
    const lease = await consensus.acquireLease('counted', { ttlMs: 10_000 });
    const copy = await copyLeaseKeys(store.raw, store.prefix, 'counted');
    assert.is(await lease.release(), true);
    // A failover to a replica that had the acquire but not the release.
    await restoreLeaseKeys(store.raw, copy);
    const err = await rejection(consensus.head('counted'));
    assert.instance(err, ExternalError, String(err));
    assert.is((err as ExternalError).code, 'store-rollback', (err as Error).message);
    // Refused until an operator acknowledges it: a waiting acquire gives up rather than retry forever.
    const refused = await Promise.race([
      rejection(consensus.acquireLease('counted', { ttlMs: 10_000 })), sleep(5000).then(() => 'still trying after 5 s'),
    ]);
    assertExternal(refused, true, 'store-rollback');
  });

  test('a try whose commits no replica acknowledges gives up after 3 failed calls', async ({ store }) => {
    const observer = countingObserver();
    // No replica: every WAIT falls short (ioredis-mock has no WAIT: the same indeterminate error).
    const durable = await backend.peer(store, { durability: { replicas: 1, timeoutMs: 20 }, observer });
    try {
      const gaveUp = await Promise.race([
        rejection(durable.tryAcquireLease('unacknowledged', { ttlMs: 10_000 })),
        sleep(10_000).then(() => 'still trying after 10 s'),
      ]);
      assertExternal(gaveUp, false, 'replicas-short');
      // Each failed call committed on the primary; each resend met that commit as a mismatch first.
      const { acquireLease } = observer.counts;
      assert.equal([acquireLease.started, acquireLease.indeterminate, acquireLease.attempts, acquireLease.mismatches], [1, 1, 5, 2]);
    } finally {
      await durable.close();
    }
  });

  test('lease operations are reported to the observer: acquire, try, renewals, release, read', async ({ store }) => {
    const observer = countingObserver();
    const observed = await backend.peer(store, { observer });
    try {
      // A long ttl (nothing may expire on a loaded machine), renewed often.
      const renewIntervalMs = mock ? 300 : 50;
      const lease = await observed.acquireLease('observed', { ttlMs: 10_000, renewIntervalMs });
      assert.is(await observed.tryAcquireLease('observed', { ttlMs: 10_000 }), null);
      await sleep(renewIntervalMs * 3);
      const state = await observed.readLease('observed');
      assert.is(state?.held, true);
      assert.is(await lease.release(), true);
      assert.is(await lease.release(), true, 'idempotent: reported once');
      const { acquireLease, renewLease, releaseLease, readLease } = observer.counts;
      assert.equal([acquireLease.started, acquireLease.ok, acquireLease.count], [2, 2, 1], 'an acquire, and a try that got null');
      assert.ok(acquireLease.attempts >= 2, String(acquireLease.attempts));
      assert.ok(renewLease.ok >= 1 && renewLease.count === renewLease.ok, `${renewLease.ok} renewals`);
      assert.equal([releaseLease.started, releaseLease.ok, releaseLease.count], [1, 1, 1]);
      assert.equal([readLease.started, readLease.ok, readLease.count, readLease.bytesRead], [1, 1, 1, state!.head.data.length]);
    } finally {
      await observed.close();
    }
  });

  test.run();
}

// Every await before the first suite is defined: uvu starts running at the first pause after a
// suite's run(), and a suite defined after that runs alongside it (and prints a function's text).
const withRedis = await realRedisAvailable();
// Redis 5: the lease script must call redis.replicate_commands() before TIME and its writes.
const SERVERS_DIR = process.env.REDIS_SERVERS_DIR ?? fileURLToPath(new URL('../../../shared/servers', import.meta.url));
const redis5 = existsSync(SERVERS_DIR) ? readdirSync(SERVERS_DIR).find((name) => name.startsWith('redis-5')) : undefined;
if (redis5 === undefined) console.warn(`\n!!! SKIPPING the lease suite on Redis 5: none in ${SERVERS_DIR} !!!\n`);
const server5 = redis5 === undefined ? undefined
  : await RedisServer.start({ port: 7815, binary: join(SERVERS_DIR, redis5, 'redis-server') });
const replicated = redisServerAvailable() ? await startPrimaryAndReplica(7816, 7817) : undefined;

async function startPrimaryAndReplica(primary: number, replica: number): Promise<RedisServer[]> {
  const servers = [await startServer(primary), await startServer(replica, ['--replicaof', '127.0.0.1', String(primary)])];
  await until('the replica is in sync', 10_000, async () =>
    infoFields(String(await command(primary, 'INFO', 'replication'))).slave0?.includes('state=online') === true);
  return servers;
}

leaseSuite(mockBackend());
if (withRedis) leaseSuite(redisBackend());
if (server5 !== undefined) leaseSuite(redisBackend(`redis://127.0.0.1:${server5.port}`, redis5), () => server5.stop());
if (replicated !== undefined) durabilitySuite(replicated);

/** With durability, on a primary (7816) and a replica (7817) this file starts. */
function durabilitySuite(servers: RedisServer[]): void {
  const test = suite('lease: durability (a primary and a replica)');
  test.after(() => stopServers(servers));

  test('a commit that no replica acknowledged is not counted: losing it is no rollback', async () => {
    const url = `redis://127.0.0.1:${servers[0]!.port}`;
    const prefix = freshPrefix('lease-durable');
    const raw = new Redis(url);
    const durable = await RedisConsensus.connect(url, { prefix, durability: { replicas: 1, timeoutMs: 100 } });
    try {
      const lease = await durable.acquireLease('k', { ttlMs: 10_000 });
      const copy = await copyLeaseKeys(raw, prefix, 'k');
      servers[1]!.pause();
      try {
        assertExternal(await rejection(lease.release()), false, 'replicas-short');
      } finally {
        servers[1]!.resume();
      }
      // A failover to a replica that had the acquire but not the release.
      await restoreLeaseKeys(raw, copy);
      const state = await durable.readLease('k');
      assert.is(state?.held, true, 'read, not refused as a rollback');
      assert.is(state?.record?.token, lease.token);
    } finally {
      await durable.close();
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });

  test.run();
}
