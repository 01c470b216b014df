/**
 * Lease bench (issue 22), on a redis-server of its own (ports 7316-7319), so that its command
 * counts are its own:
 * - uncontended acquire and release latency, as ratios to a compareAndSet round trip measured in the
 *   same run, interleaved with them;
 * - handover latency: from the holder calling release() to the waiter's acquireLease resolving;
 *   and how long after an expiry a waiter takes an expired lease (its wake-up at the expiry);
 * - Redis commands per held lease per second while idle (renewals, and the holder's watch reading
 *   the head after each), with the default ttl; and per idle waiter. Both as round trips (script
 *   calls) and as commands Redis processes (INFO's count, which includes those inside scripts).
 *
 * Run: `npm run bench -- --only lease` (`--quick` for fewer samples).
 */
import { Redis } from 'ioredis';
import { RedisConsensus } from '../../lib/index.js';
import type { Lease } from '../../lib/index.js';
import { deletePrefix, num, percentile, ratio, sleep, startServer, table } from '../bench-support.js';

function stats(samples: number[]): { p50: number; p99: number } {
  const sorted = Float64Array.from(samples).sort();
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

/** Commands processed (those inside scripts included), and script calls (round trips). */
async function counts(raw: Redis): Promise<{ commands: number; scripts: number }> {
  const text = await raw.info('all');
  const commands = Number(/total_commands_processed:(\d+)/.exec(text)?.[1] ?? 0);
  let scripts = 0;
  for (const match of text.matchAll(/cmdstat_(?:evalsha|eval|evalsha_ro|eval_ro):calls=(\d+)/g)) scripts += Number(match[1]);
  return { commands, scripts };
}

export async function run(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const server = await startServer(7316, 7319);
  const url = `redis://127.0.0.1:${server.port}`;
  const raw = new Redis(url);
  const prefix = `bench-lease-${process.pid}`;
  const a = await RedisConsensus.connect(url, { prefix });
  const b = await RedisConsensus.connect(url, { prefix });
  try {
    // Uncontended: acquire, release and a compareAndSet, interleaved, µs per call.
    const rounds = quick ? 200 : 1000;
    const acquire: number[] = [];
    const release: number[] = [];
    const cas: number[] = [];
    await a.compareAndSet('cas', null, { seqno: 0n, data: Buffer.from('x') });
    for (let i = 0; i < rounds + 50; i++) {
      let started = performance.now();
      await a.compareAndSet('cas', BigInt(i), { seqno: BigInt(i + 1), data: Buffer.from('x') });
      const casUs = (performance.now() - started) * 1000;
      started = performance.now();
      const lease = await a.acquireLease('uncontended', { ttlMs: 10_000 });
      const acquireUs = (performance.now() - started) * 1000;
      started = performance.now();
      await lease.release();
      const releaseUs = (performance.now() - started) * 1000;
      if (i >= 50) {
        cas.push(casUs);
        acquire.push(acquireUs);
        release.push(releaseUs);
      }
    }
    const base = stats(cas);
    const rows = ([['compareAndSet', cas], ['acquireLease', acquire], ['release', release]] as const).map(([name, samples]) => {
      const s = stats([...samples]);
      return [name, num(s.p50, 1), num(s.p99, 1), ratio(s.p50, base.p50)];
    });
    console.log('## Leases: uncontended (µs per call)');
    console.log(table(['call', 'p50 µs', 'p99 µs', 'p50 / compareAndSet'], rows));
    console.log();

    // Handover on release: B waits, A releases.
    const handovers: number[] = [];
    for (let i = 0; i < (quick ? 20 : 100); i++) {
      const held = await a.acquireLease('handover', { ttlMs: 10_000 });
      const waiting = b.acquireLease('handover', { ttlMs: 10_000 });
      await sleep(5);
      const started = performance.now();
      await held.release();
      const next: Lease = await waiting;
      handovers.push(performance.now() - started);
      await next.release();
    }
    // Takeover after expiry: A's holder stops renewing (its store closes without release: a crash
    // is simulated by a lease whose renewals are never sent: renewIntervalMs near the ttl).
    const late: number[] = [];
    const ttlMs = 200;
    for (let i = 0; i < (quick ? 5 : 20); i++) {
      const crashed = await RedisConsensus.connect(url, { prefix });
      const held = await crashed.acquireLease('expiry', { ttlMs, marginMs: 1, renewIntervalMs: ttlMs - 2 });
      const acquiredAt = performance.now();
      // Cut its connection before it renews: the lease then expires on the server.
      (crashed as unknown as { link: { writer: { disconnect(): void } } }).link.writer.disconnect();
      const next = await b.acquireLease('expiry', { ttlMs: 10_000 });
      late.push(performance.now() - acquiredAt - ttlMs);
      await next.release();
      await crashed.close().catch(() => undefined);
      void held;
    }
    const hand = stats(handovers);
    const exp = stats(late);
    console.log('## Leases: handover (ms)');
    console.log(table(['handover', 'p50 ms', 'p99 ms'], [
      ['release() to the waiter holding it', num(hand.p50, 2), num(hand.p99, 2)],
      [`expiry to the waiter holding it (ttl ${ttlMs} ms, measured from the holder's acquire)`, num(exp.p50, 2), num(exp.p99, 2)],
    ]));
    console.log();

    // Idle cost: leases held with the default ttl (10 s: a renewal every 3.3 s), then waiters.
    const seconds = quick ? 10 : 20;
    const count = 10;
    const idle = async (what: string, setUp: () => Promise<() => Promise<void>>): Promise<string[]> => {
      const tearDown = await setUp();
      await sleep(500);
      const before = await counts(raw);
      await sleep(seconds * 1000);
      const after = await counts(raw);
      await tearDown();
      // One INFO call is the bench's own.
      return [what, num((after.scripts - before.scripts) / count / seconds, 3),
        num((after.commands - before.commands - 1) / count / seconds, 2)];
    };
    const holders = await idle('held lease (renewals + the holder\'s watch)', async () => {
      const leases = await Promise.all(Array.from({ length: count }, (_, i) => a.acquireLease(`idle-${i}`)));
      return async () => {
        await Promise.all(leases.map((lease) => lease.release()));
      };
    });
    const waiters = await idle('waiter, lease held by another (queue refresh + heads heard)', async () => {
      const leases = await Promise.all(Array.from({ length: count }, (_, i) => a.acquireLease(`wait-${i}`)));
      const stop = new AbortController();
      const waits = Array.from({ length: count }, (_, i) => b.acquireLease(`wait-${i}`, { signal: stop.signal }).catch(() => undefined));
      return async () => {
        stop.abort();
        await Promise.all(waits);
        await Promise.all(leases.map((lease) => lease.release()));
      };
    });
    console.log(`## Leases: Redis commands per lease per second while idle (default ttl 10 s, ${count} leases, ${seconds} s)`);
    console.log(table(['state', 'round trips/s each', 'commands/s each (inside scripts too)'], [holders, waiters]));
    console.log('(waiter row: holders and waiters together, per pair)');
    console.log();
  } finally {
    await a.close();
    await b.close();
    await deletePrefix(raw, prefix).catch(() => undefined);
    raw.disconnect();
    await server.stop();
  }
}
