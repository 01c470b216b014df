/**
 * Helpers of `scripts/bench.ts`: a private redis-server, latency statistics, a closed-loop load
 * generator, fast population of big histories in the library's key layout, and INFO parsing.
 */
import { Redis } from 'ioredis';
import { coalesceWrites } from '../lib/coalesce.js';
import { keyNames } from '../lib/layout.js';
import { encodeSeqNo } from '../lib/seqno.js';
import { RedisServer } from '../spec/support/redis-server.js';

/**
 * Starts `redis-server` on the first free port of `[first, last]`, without persistence, on
 * loopback, and waits until it answers. It is killed at exit, also on a crash or Ctrl-C.
 */
export async function startServer(first: number, last: number): Promise<RedisServer> {
  const server = await RedisServer.startInRange(first, last, { args: ['--loglevel', 'warning'] });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    // Exiting runs the exit hook that kills every server this process started.
    process.once(signal, () => process.exit(130));
  }
  return server;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Throughput and latency of one measured cell. */
export interface Stats {
  readonly ops: number;
  readonly seconds: number;
  /** Calls completed per second. */
  readonly opsPerSec: number;
  /** Latency percentiles, in microseconds. */
  readonly p50us: number;
  readonly p99us: number;
  readonly maxUs: number;
  /** Client CPU (user + system of this process) per call, in microseconds. */
  readonly cpuUsPerOp: number;
  /** Time inside Redis per call (INFO commandstats), in microseconds, when asked for. */
  readonly serverUsPerOp?: number;
}

/** One thing to measure in a group: `call(i)` gets consecutive indexes over warm-up and rounds. */
export interface Case {
  readonly name: string;
  readonly call: (i: number) => Promise<unknown>;
  /** Calls measured in all (split over the rounds). */
  readonly calls: number;
  /** Unmeasured calls first. */
  readonly warmup: number;
  /** A Redis command whose INFO commandstats time is attributed to this case. */
  readonly serverCommand?: string;
}

/**
 * Measures several cases at `inFlight` calls outstanding each (a closed loop: a worker starts its
 * next call when its last one settles), interleaved: `rounds` rounds in which every case runs a
 * slice of its calls, the order rotating each round. Cases so share the machine's noise (this
 * machine is shared), and their ratios are much steadier than back-to-back runs would give.
 * Indexes are handed out in order, so calls reach the connection in index order. `beforeSlice`
 * runs before each timed slice (the bench collects garbage there, so that no case pays for the
 * garbage of the one before it).
 */
export async function measureGroup(
  inFlight: number,
  cases: readonly Case[],
  rounds: number,
  serverStats?: (command: string) => Promise<{ calls: number; usec: number }>,
  onRound?: (round: number) => void,
  beforeSlice?: () => void,
): Promise<Map<string, Stats>> {
  const state = cases.map((c) => ({
    latencies: new Float64Array(c.calls), done: 0, next: 0, ms: 0, cpu: 0, serverCalls: 0, serverUsec: 0,
  }));
  for (const [i, c] of cases.entries()) {
    const s = state[i]!;
    await closedLoop(inFlight, c.warmup, (j) => c.call(s.next + j), null, 0);
    s.next += c.warmup;
  }
  for (let round = 0; round < rounds; round++) {
    onRound?.(round);
    for (let j = 0; j < cases.length; j++) {
      const index = (round + j) % cases.length;
      const c = cases[index]!;
      const s = state[index]!;
      const slice = Math.round(((round + 1) * c.calls) / rounds) - s.done;
      if (slice <= 0) continue;
      const before = c.serverCommand && serverStats ? await serverStats(c.serverCommand) : undefined;
      beforeSlice?.();
      const cpu = process.cpuUsage();
      const started = performance.now();
      const base = s.next;
      await closedLoop(inFlight, slice, (k) => c.call(base + k), s.latencies, s.done);
      s.ms += performance.now() - started;
      const used = process.cpuUsage(cpu);
      s.cpu += used.user + used.system;
      if (before !== undefined) {
        const after = await serverStats!(c.serverCommand!);
        s.serverCalls += after.calls - before.calls;
        s.serverUsec += after.usec - before.usec;
      }
      s.next += slice;
      s.done += slice;
    }
  }
  const results = new Map<string, Stats>();
  for (const [i, c] of cases.entries()) {
    const s = state[i]!;
    s.latencies.sort();
    results.set(c.name, {
      ops: c.calls,
      seconds: s.ms / 1000,
      opsPerSec: c.calls / (s.ms / 1000),
      p50us: percentile(s.latencies, 0.5) * 1000,
      p99us: percentile(s.latencies, 0.99) * 1000,
      maxUs: (s.latencies[c.calls - 1] ?? 0) * 1000,
      cpuUsPerOp: s.cpu / c.calls,
      ...(c.serverCommand ? { serverUsPerOp: s.serverCalls > 0 ? s.serverUsec / s.serverCalls : NaN } : {}),
    });
  }
  return results;
}

async function closedLoop(
  inFlight: number,
  total: number,
  call: (i: number) => Promise<unknown>,
  latencies: Float64Array | null,
  offset: number,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const started = performance.now();
      await call(i);
      if (latencies !== null) latencies[offset + i] = performance.now() - started;
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, worker));
}

/**
 * Wraps calls on `client` so that their writes are coalesced the way the library coalesces the
 * writes of the connections it owns (lib/batching.ts): a baseline with the library's transport.
 */
export function coalescing(client: Redis): <T>(call: () => Promise<T>) => Promise<T> {
  return (call) => {
    coalesceWrites(client);
    return call();
  };
}

/** The `q` quantile of sorted values (nearest rank). */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * Writes versions `first .. first+count-1` of `key` straight into the library's layout (see
 * lib/layout.ts): seqnos into the versions sorted set at score 0, payloads into the data hash,
 * the key into its bucket's registry. Pipelined in chunks, much faster than compare-and-set.
 */
export async function populate(
  raw: Redis, prefix: string, key: string, first: bigint, count: number, payload: Buffer,
): Promise<void> {
  const names = keyNames(prefix, key);
  const chunk = 1000;
  let pipeline = raw.pipeline();
  let queued = 0;
  for (let from = 0; from < count; from += chunk) {
    const n = Math.min(chunk, count - from);
    const members: (string | number)[] = [];
    const fields: (string | Buffer)[] = [];
    for (let j = 0; j < n; j++) {
      const seqno = encodeSeqNo(first + BigInt(from + j));
      members.push(0, seqno);
      fields.push(seqno, payload);
    }
    pipeline.zadd(names.versions, ...members);
    pipeline.hset(names.data, ...fields);
    if (++queued === 16) {
      await execOrThrow(pipeline);
      pipeline = raw.pipeline();
      queued = 0;
    }
  }
  pipeline.sadd(names.registry, names.member);
  await execOrThrow(pipeline);
}

/** Registers `keys` in their buckets' registries only (all that listKeys reads). */
export async function registerKeys(raw: Redis, prefix: string, keys: Iterable<string>): Promise<void> {
  let pipeline = raw.pipeline();
  let queued = 0;
  for (const key of keys) {
    const names = keyNames(prefix, key);
    pipeline.sadd(names.registry, names.member);
    if (++queued === 5000) {
      await execOrThrow(pipeline);
      pipeline = raw.pipeline();
      queued = 0;
    }
  }
  await execOrThrow(pipeline);
}

async function execOrThrow(pipeline: ReturnType<Redis['pipeline']>): Promise<void> {
  const results = (await pipeline.exec()) ?? [];
  for (const [err] of results) if (err) throw err;
}

/** Deletes every key under a prefix with SCAN + UNLINK (never FLUSHALL: the server may be shared). */
export { deletePrefix } from '../spec/support/backends.js';

/** One INFO section as name → value. */
export async function info(raw: Redis, section: string): Promise<Map<string, string>> {
  const text = await raw.info(section);
  const map = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) map.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return map;
}

/** `used_memory` in bytes, after letting lazy frees settle. */
export async function usedMemory(raw: Redis): Promise<number> {
  await sleep(50);
  return Number((await info(raw, 'memory')).get('used_memory'));
}

/** Server-side calls and microseconds of one command so far (INFO commandstats). */
export async function commandStats(raw: Redis, command: string): Promise<{ calls: number; usec: number }> {
  const line = (await info(raw, 'commandstats')).get(`cmdstat_${command}`);
  if (line === undefined) return { calls: 0, usec: 0 };
  const fields = Object.fromEntries(line.split(',').map((pair) => pair.split('=') as [string, string]));
  return { calls: Number(fields.calls ?? 0), usec: Number(fields.usec ?? 0) };
}

/** Formats a table with right-aligned columns but the first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Human number: 12,345 or 1.23. */
export function num(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A ratio as `1.23x`. */
export function ratio(value: number, base: number): string {
  if (!Number.isFinite(value) || !Number.isFinite(base) || base === 0) return '-';
  return `${(value / base).toFixed(2)}x`;
}
