/**
 * The sizes family (`npm run bench -- --only sizes`; in the default run): operations on big
 * histories, big truncates, many keys, and memory per version, with their targets. The
 * bounded-at-scale runs (1M versions and keys, 100k watches, another client's PING) are the
 * scale family, scripts/bench/scale.ts.
 */
import { encodeSeqNo } from '../../lib/seqno.js';
import {
  commandStats, deletePrefix, measureGroup, num, populate, ratio, registerKeys, sleep, table, usedMemory,
} from '../bench-support.js';
import type { Case } from '../bench-support.js';
import { gc, MOCK, PAYLOAD, progress, QUICK, report, ROUNDS, RUN_PREFIX, randomPayload, say, SECTIONS, sharedRig } from './context.js';
import type { Rig } from './context.js';

interface HistoryRow { versions: number; op: string; inFlight: number; p50us: number; p99us: number; opsPerSec: number }

async function historyScale(r: Rig, prefix: string): Promise<HistoryRow[]> {
  const rows: HistoryRow[] = [];
  const sizes = MOCK ? [100, 1000] : [100, 10000, 100000];
  const calls = MOCK ? 100 : QUICK ? 1000 : 5000;
  const space = `${prefix}-history`;
  const consensus = await r.consensus(space);
  for (const versions of sizes) {
    progress(`populating ${num(versions)} versions`);
    await populate(r.raw, space, `h${versions}`, 0n, versions, PAYLOAD);
  }
  for (const inFlight of [1, 16]) {
    const cases: Case[] = sizes.flatMap((versions) => {
      const key = `h${versions}`;
      const from = Math.max(0, versions - 100);
      return [
        { name: `head ${versions}`, calls, warmup: 50, call: () => consensus.head(key) },
        {
          name: `scan ${versions}`, calls: Math.ceil(calls / 5), warmup: 20, call: async () => {
            const got = await consensus.scan(key, from, 100);
            if (got.length !== 100) throw new Error(`scan returned ${got.length} versions`);
          },
        },
      ];
    });
    const results = await measureGroup(inFlight, cases, ROUNDS, undefined, (round) =>
      progress(`head/scan against history length, ${inFlight} in flight: round ${round + 1}/${ROUNDS}`));
    for (const op of ['head', 'scan']) {
      for (const versions of sizes) {
        const stats = results.get(`${op} ${versions}`)!;
        rows.push({
          versions, op: op === 'head' ? 'head' : 'scan(limit 100)', inFlight,
          p50us: stats.p50us, p99us: stats.p99us, opsPerSec: stats.opsPerSec,
        });
      }
    }
  }
  await deletePrefix(r.raw, space);
  await consensus.close();
  say('## head and scan(from, limit 100) against history length (1 key, 1 KiB payloads)');
  say();
  const base = (op: string, inFlight: number): HistoryRow | undefined =>
    rows.find((row) => row.versions === sizes[0] && row.op === op && row.inFlight === inFlight);
  say(table(['operation', 'versions', 'in flight', 'ops/s', 'p50 us', 'p99 us', `p50 x${sizes[0]}`], rows.map((row) => [
    row.op, num(row.versions), String(row.inFlight), num(row.opsPerSec), num(row.p50us), num(row.p99us),
    ratio(row.p50us, base(row.op, row.inFlight)?.p50us ?? NaN),
  ])));
  say();
  return rows;
}

interface TruncateRow { versions: number; ms: number; serverMs: number; worstPingMs: number; pingsDuring: number }

async function truncateScale(r: Rig, prefix: string): Promise<TruncateRow[]> {
  if (MOCK) return [];
  const rows: TruncateRow[] = [];
  const space = `${prefix}-truncate`;
  const consensus = await r.consensus(space);
  const probe = r.client();
  await probe.ping();
  const repeats = QUICK ? 1 : 3;
  for (const versions of [1000, 10000, 100000]) {
    for (let rep = 0; rep < repeats; rep++) {
      const key = `t${versions}-${rep}`;
      progress(`truncate of ${num(versions)} versions (${rep + 1}/${repeats}): populating`);
      await populate(r.raw, space, key, 0n, versions + 1, PAYLOAD);
      await sleep(100);
      // A PING loop on another connection: the longest wait it sees is how long Redis was blocked.
      let probing = true;
      let worst = 0;
      let pings = 0;
      let window: [number, number] = [0, 0];
      const pinger = (async () => {
        while (probing) {
          const started = performance.now();
          await probe.ping();
          const ended = performance.now();
          if (ended >= window[0] && window[0] > 0) {
            worst = Math.max(worst, ended - started);
            pings++;
          }
        }
      })();
      await sleep(20);
      const stats = await commandStats(r.raw, 'evalsha');
      progress(`truncate of ${num(versions)} versions (${rep + 1}/${repeats})`);
      const started = performance.now();
      window = [started, 0];
      const deleted = await consensus.truncate(key, versions);
      const ms = performance.now() - started;
      await sleep(30);
      probing = false;
      await pinger;
      const after = await commandStats(r.raw, 'evalsha');
      if (deleted !== versions) throw new Error(`truncate deleted ${deleted} of ${versions} versions`);
      rows.push({ versions, ms, serverMs: (after.usec - stats.usec) / 1000, worstPingMs: worst, pingsDuring: pings });
      await deletePrefix(r.raw, space);
    }
  }
  await consensus.close();
  await probe.quit();
  say('## truncate of a long history in one call (1 KiB payloads)');
  say('worst PING: the longest round trip of a PING loop on another connection meanwhile.');
  say();
  say(table(['versions deleted', 'duration ms', 'server ms', 'worst PING ms', 'PINGs'], rows.map((row) => [
    num(row.versions), num(row.ms, 1), num(row.serverMs, 1), num(row.worstPingMs, 1), String(row.pingsDuring),
  ])));
  say();
  return rows;
}

interface ListRow { keys: number; ms: number; baseHeapMB: number; peakHeapMB: number; peakRssMB: number }

async function listScale(r: Rig, prefix: string): Promise<ListRow[]> {
  const rows: ListRow[] = [];
  for (const count of MOCK ? [1000] : [10000, 100000]) {
    const space = `${prefix}-list${count}`;
    progress(`registering ${num(count)} keys`);
    await registerKeys(r.raw, space, Array.from({ length: count }, (_, i) => `key-${i}`));
    const consensus = await r.consensus(space);
    progress(`listKeys over ${num(count)} keys`);
    gc();
    const base = process.memoryUsage();
    let peakHeap = base.heapUsed;
    let peakRss = base.rss;
    const sample = (): void => {
      const now = process.memoryUsage();
      peakHeap = Math.max(peakHeap, now.heapUsed);
      peakRss = Math.max(peakRss, now.rss);
    };
    const sampler = setInterval(sample, 5);
    const started = performance.now();
    let listed = 0;
    for await (const key of consensus.listKeys()) {
      if (key.length > 0) listed++;
      if (listed % 500 === 0) sample();
    }
    const ms = performance.now() - started;
    clearInterval(sampler);
    sample();
    if (listed !== count) throw new Error(`listKeys yielded ${listed} of ${count} keys`);
    rows.push({ keys: count, ms, baseHeapMB: base.heapUsed / 2 ** 20, peakHeapMB: peakHeap / 2 ** 20, peakRssMB: peakRss / 2 ** 20 });
    await consensus.close();
    await deletePrefix(r.raw, space);
  }
  say('## listKeys over many keys (each listed exactly once)');
  say('heap: process.memoryUsage().heapUsed sampled during the iteration; the keys are consumed, not kept.');
  say();
  say(table(['keys', 'duration ms', 'keys/s', 'heap before MB', 'peak heap MB', 'growth MB'], rows.map((row) => [
    num(row.keys), num(row.ms), num(row.keys / (row.ms / 1000)), num(row.baseHeapMB, 1), num(row.peakHeapMB, 1),
    num(row.peakHeapMB - row.baseHeapMB, 1),
  ])));
  say();
  return rows;
}

interface MemoryRow { payload: number; shape: string; bytesPerVersion: number; overhead: number }

async function memoryScale(r: Rig, prefix: string): Promise<MemoryRow[]> {
  if (MOCK) return [];
  const rows: MemoryRow[] = [];
  const space = `${prefix}-memory`;
  const measureShape = async (fill: () => Promise<void>): Promise<number> => {
    const before = await usedMemory(r.raw);
    await fill();
    const after = await usedMemory(r.raw);
    await deletePrefix(r.raw, space);
    return after - before;
  };
  const long = 10000;
  const keys = 1000;
  for (const size of [16, 1024]) {
    const payload = randomPayload(size);
    progress(`memory per version, ${size} B payloads`);
    const longHistory = await measureShape(() => populate(r.raw, space, 'long', 0n, long, payload));
    const oneEach = await measureShape(async () => {
      for (let k = 0; k < keys; k++) await populate(r.raw, space, `k${k}`, 0n, 1, payload);
    });
    const elevenEach = await measureShape(async () => {
      for (let k = 0; k < keys; k++) await populate(r.raw, space, `k${k}`, 0n, 11, payload);
    });
    const hashOnly = await measureShape(async () => {
      const fields: (string | Buffer)[] = [];
      for (let i = 0; i < long; i++) fields.push(encodeSeqNo(BigInt(i)), payload);
      for (let i = 0; i < fields.length; i += 2000) await r.raw.hset(`${space}:floor`, ...fields.slice(i, i + 2000));
    });
    const add = (shape: string, bytes: number): void => {
      rows.push({ payload: size, shape, bytesPerVersion: bytes, overhead: bytes - size });
    };
    add(`one key, ${num(long)} versions (per version)`, longHistory / long);
    add(`${num(keys)} keys, 11 versions: each version after the first`, (elevenEach - oneEach) / (keys * 10));
    add(`${num(keys)} keys, 1 version: per key (first version incl.)`, oneEach / keys);
    add(`floor: one hash field per version, no index (${num(long)})`, hashOnly / long);
  }
  const config = await r.raw.config('GET', '*-max-listpack-*') as string[];
  say('## Redis memory per stored version (INFO memory used_memory deltas)');
  say(`server encodings config: ${config.join(' ')} (reported, not changed)`);
  say();
  say(table(['payload B', 'shape', 'bytes', 'bytes - payload'], rows.map((row) => [
    String(row.payload), row.shape, num(row.bytesPerVersion, 1), num(row.overhead, 1),
  ])));
  say();
  return rows;
}

interface Target { target: string; measured: string; pass: boolean }

/** The scale targets (the compare-and-set ones are scripts/bench/cas.ts's). */
function targets(history: readonly HistoryRow[], truncates: readonly TruncateRow[], memory: readonly MemoryRow[]): Target[] {
  const out: Target[] = [];
  for (const op of ['head', 'scan(limit 100)']) {
    const at = (versions: number): HistoryRow | undefined =>
      history.find((row) => row.op === op && row.versions === versions && row.inFlight === 1);
    const small = at(100);
    const big = at(100000);
    if (small && big) {
      out.push({
        target: `${op} p50 at 100,000 versions within 1.5x of 100 versions`,
        measured: `${num(big.p50us)} us vs ${num(small.p50us)} us = ${ratio(big.p50us, small.p50us)}`,
        pass: big.p50us <= 1.5 * small.p50us,
      });
    }
  }
  const big = truncates.filter((row) => row.versions === 100000);
  if (big.length > 0) {
    const worstMs = Math.max(...big.map((row) => row.ms));
    const worstPing = Math.max(...big.map((row) => row.worstPingMs));
    out.push({
      target: 'truncate of 100,000 versions < 100 ms',
      measured: `worst of ${big.length}: ${num(worstMs, 1)} ms (server ${num(Math.max(...big.map((row) => row.serverMs)), 1)} ms)`,
      pass: worstMs < 100,
    });
    out.push({
      target: 'no concurrent PING waits 100 ms or more meanwhile',
      measured: `worst PING ${num(worstPing, 1)} ms`,
      pass: worstPing < 100,
    });
  }
  for (const row of memory.filter((m) => !m.shape.startsWith('floor') && !m.shape.includes('per key'))) {
    out.push({
      target: `memory per version <= payload + 100 B (${row.payload} B payload, ${row.shape})`,
      measured: `${num(row.bytesPerVersion)} B = payload + ${num(row.overhead)} B`,
      pass: row.overhead <= 100,
    });
  }
  say('## Targets: scale');
  say();
  say(table(['', 'target', 'measured'], out.map((t) => [t.pass ? 'PASS' : 'MISS', t.target, t.measured])));
  say();
  return out;
}

/** The family's sections that `--only` asked for, on the bench's shared rig. */
export async function run(_argv: string[]): Promise<void> {
  const r = await sharedRig();
  const prefix = RUN_PREFIX;
  const history = SECTIONS.has('history') ? await historyScale(r, prefix) : [];
  report.history = history;
  const truncates = SECTIONS.has('truncate') ? await truncateScale(r, prefix) : [];
  report.truncate = truncates;
  report.listKeys = SECTIONS.has('listKeys') ? await listScale(r, prefix) : [];
  const memory = SECTIONS.has('memory') ? await memoryScale(r, prefix) : [];
  report.memory = memory;
  if (!MOCK && history.length + truncates.length + memory.length > 0) report.targets = targets(history, truncates, memory);
}
