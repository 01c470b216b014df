/**
 * The watch family (`--only watch`): how soon a watcher learns of a commit, what idle watches cost
 * Redis, and what the announcement adds to a compare-and-set.
 */
import { setMaxListeners } from 'node:events';
import { RedisConsensus } from '../../lib/index.js';
import { commandStats, deletePrefix, info, measureGroup, num, percentile, ratio, sleep, table } from '../bench-support.js';
import type { Case, Stats } from '../bench-support.js';
import { counters, MOCK, PAYLOAD, progress, QUICK, report, ROUNDS, RUN_PREFIX, say, sharedRig, WARMUP } from './context.js';
import type { Rig } from './context.js';

export async function run(_argv: string[]): Promise<void> {
  const r = await sharedRig();
  report.watch = await watchBench(r, RUN_PREFIX);
}

/** Latency percentiles of samples in ms. */
function latency(samples: number[]): { p50ms: number; p99ms: number; n: number } {
  const sorted = Float64Array.from(samples).sort();
  return { p50ms: percentile(sorted, 0.5), p99ms: percentile(sorted, 0.99), n: samples.length };
}

/**
 * Watch: how soon a watcher learns of a commit (pub/sub vs a 100 ms head() poll loop vs one round
 * trip), what 1,000 idle watches cost Redis (pub/sub vs polling every 100 ms), and what the
 * announcement adds to a compare-and-set (with vs without, and with a watcher listening).
 */
async function watchBench(r: Rig, prefix: string): Promise<Record<string, unknown>> {
  if (MOCK) return {};
  const space = `${prefix}-watch`;
  const results: Record<string, unknown> = {};
  const writer = await r.consensus(space);
  const watcher = await r.consensus(space);
  const poller = await RedisConsensus.connect(r.url!, { prefix: space, watch: { mode: 'poll', pollIntervalMs: 100 } });
  const commits = QUICK ? 100 : 400;
  // Commit -> watcher: from the writer's call to the watch yielding that head.
  const measureLatency = async (consensus: RedisConsensus, key: string, count: number, gapMs: number): Promise<number[]> => {
    const samples: number[] = [];
    const sent = new Map<bigint, number>();
    const ac = new AbortController();
    let expected: bigint | null = null;
    const watching = (async () => {
      for await (const head of consensus.watch(key, { signal: ac.signal })) {
        const at = sent.get(head.seqno);
        if (at !== undefined) samples.push(performance.now() - at);
        if (head.seqno === BigInt(count - 1)) return;
      }
    })();
    await sleep(100);
    for (let i = 0; i < count; i++) {
      progress(`watch latency (${key}): commit ${i + 1}/${count}`);
      const seqno = BigInt(i);
      sent.set(seqno, performance.now());
      await writer.compareAndSet(key, expected, { seqno, data: PAYLOAD });
      expected = seqno;
      await sleep(Math.random() * gapMs);
    }
    await watching;
    ac.abort();
    return samples;
  };
  const pings: number[] = [];
  for (let i = 0; i < 200; i++) {
    const started = performance.now();
    await r.raw.ping();
    pings.push(performance.now() - started);
  }
  const pubsub = latency(await measureLatency(watcher, 'latency-pubsub', commits, 20));
  const polled = latency(await measureLatency(poller, 'latency-poll', QUICK ? 40 : 100, 150));
  const roundTrip = latency(pings);
  results.latency = { pubsub, poll100ms: polled, ping: roundTrip };
  say('## watch: commit -> watcher latency (from the compareAndSet call to the watch yielding it)');
  say();
  say(table(['how', 'samples', 'p50 ms', 'p99 ms'], [
    ['watch (pub/sub)', String(pubsub.n), num(pubsub.p50ms, 2), num(pubsub.p99ms, 2)],
    ['watch polling head() every 100 ms', String(polled.n), num(polled.p50ms, 2), num(polled.p99ms, 2)],
    ['one round trip (PING)', String(roundTrip.n), num(roundTrip.p50ms, 2), num(roundTrip.p99ms, 2)],
  ]));
  say();

  // 1,000 idle watches: commands Redis runs per second while nothing changes.
  const idle = async (consensus: RedisConsensus, label: string): Promise<{ commandsPerSec: number; scriptsPerSec: number }> => {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const keys = Array.from({ length: 1000 }, (_, i) => `idle-${label}-${i}`);
    await Promise.all(keys.map((key) => writer.compareAndSet(key, null, { seqno: 0, data: PAYLOAD })));
    let started = 0;
    const loops = keys.map(async (key) => {
      for await (const head of consensus.watch(key, { signal: ac.signal })) if (head.seqno === 0n) started++;
    });
    while (started < keys.length) await sleep(20);
    await sleep(500);
    progress(`1,000 idle watches (${label})`);
    const before = await info(r.raw, 'all');
    await sleep(3000);
    const after = await info(r.raw, 'all');
    ac.abort();
    await Promise.all(loops);
    const evalsha = (fields: Map<string, string>): number => Number(/calls=(\d+)/.exec(fields.get('cmdstat_evalsha') ?? '')?.[1] ?? 0);
    return {
      // The first INFO counts in `after`; commands inside scripts count too.
      commandsPerSec: (Number(after.get('total_commands_processed')) - Number(before.get('total_commands_processed')) - 1) / 3,
      scriptsPerSec: (evalsha(after) - evalsha(before)) / 3,
    };
  };
  const idlePubsub = await idle(watcher, 'pubsub');
  const idlePoll = await idle(poller, 'poll');
  results.idle = { pubsub: idlePubsub, poll100ms: idlePoll, shared: r.server === null };
  say('## watch: Redis commands per second with 1,000 idle watches (INFO stats deltas over 3 s)');
  if (r.server === null) say('(REDIS_URL is shared: other clients\' commands count too)');
  say();
  say(table(['how', 'commands/s', 'of which head scripts/s'], [
    ['watch (pub/sub)', num(idlePubsub.commandsPerSec), num(idlePubsub.scriptsPerSec)],
    ['watch polling every 100 ms', num(idlePoll.commandsPerSec), num(idlePoll.scriptsPerSec)],
  ]));
  say();

  // The announcement's cost: compareAndSet with it, without it, and with a watcher listening.
  const quiet = await RedisConsensus.connect(r.url!, { prefix: space, watch: { announce: false } });
  const keys = 64;
  const next = { announced: counters(keys), quiet: counters(keys), heard: counters(keys) };
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const heardLoops = Array.from({ length: keys }, async (_, k) => {
    for await (const head of watcher.watch(`cas-heard-${k}`, { signal: ac.signal })) void head;
  });
  const cas = (consensus: RedisConsensus, label: keyof typeof next) => async (i: number): Promise<unknown> => {
    const k = i % keys;
    const seqno = next[label][k]!;
    next[label][k] = seqno + 1n;
    return consensus.compareAndSet(`cas-${label}-${k}`, seqno === 0n ? null : seqno - 1n, { seqno, data: PAYLOAD });
  };
  const cells: Record<string, unknown>[] = [];
  for (const inFlight of [1, 64]) {
    const calls = QUICK ? 4000 : 20000;
    const cases: Case[] = [
      { name: 'compareAndSet, announced', serverCommand: 'evalsha', calls, warmup: WARMUP, call: cas(writer, 'announced') },
      { name: 'compareAndSet, announce: false', serverCommand: 'evalsha', calls, warmup: WARMUP, call: cas(quiet, 'quiet') },
      { name: 'compareAndSet, announced, 1 watcher per key (in this process)', serverCommand: 'evalsha', calls, warmup: WARMUP, call: cas(writer, 'heard') },
    ];
    const measured = await measureGroup(inFlight, cases, ROUNDS, (command) => commandStats(r.raw, command),
      (round) => progress(`compareAndSet with and without announcement, ${inFlight} in flight: round ${round + 1}/${ROUNDS}`));
    for (const c of cases) cells.push({ name: c.name, inFlight, ...measured.get(c.name)! });
  }
  ac.abort();
  await Promise.all(heardLoops);
  results.announcement = cells;
  say('## watch: what the announcement adds to compareAndSet (64 keys, 1 KiB, interleaved rounds)');
  say();
  const base = (inFlight: number): Stats =>
    cells.find((cell) => cell.name === 'compareAndSet, announce: false' && cell.inFlight === inFlight) as unknown as Stats;
  say(table(['call', 'in flight', 'ops/s', 'p50 us', 'p99 us', 'server us', 'ops vs no announcement'], cells.map((cell) => {
    const stats = cell as unknown as Stats & { name: string; inFlight: number };
    return [stats.name, String(stats.inFlight), num(stats.opsPerSec), num(stats.p50us), num(stats.p99us),
      num(stats.serverUsPerOp ?? NaN, 1), ratio(stats.opsPerSec, base(stats.inFlight).opsPerSec)];
  })));
  say();
  await Promise.all([writer.close(), watcher.close(), poller.close(), quiet.close()]);
  await deletePrefix(r.raw, space);
  return results;
}
