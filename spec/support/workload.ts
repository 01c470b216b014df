/**
 * A concurrent workload against RedisConsensus, recorded as a history, and the checks run on
 * that history: linearizability (./linearizability.ts) and the plainer invariants beside it
 * (no seqno committed twice, no acknowledged write lost, scans without holes or unknown data,
 * the head never truncated away).
 *
 * Each client is its own `RedisConsensus.connect(...)`, so its own connection. Clients can run in
 * this process or be spread over forked processes (`scripts/workload-worker.ts`); every process
 * stamps operations with `process.hrtime.bigint()` (CLOCK_MONOTONIC, one clock for the whole
 * machine) minus an epoch chosen by the parent, so their histories merge on one time line.
 */
import { fork } from 'node:child_process';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL } from '../../lib/index.js';
import type { VersionedData } from '../../lib/index.js';
import { checkLinearizable, describeOperation } from './linearizability.js';
import type { Failure, Operation, Verdict, Version } from './linearizability.js';

/** What to run. */
export interface WorkloadOptions {
  /** A real Redis (`redis://...`). Exactly one of `url` and `mockPort`. */
  readonly url?: string;
  /** An ioredis-mock data set (in this process only): every client opens `new RedisMock({ port })`. */
  readonly mockPort?: number;
  /** Key prefix of the store; use a fresh one and delete it afterwards. */
  readonly prefix: string;
  /** Clients (connections) in all. Default 32. */
  readonly clients?: number;
  /** Hot keys the clients fight over. Default 4. */
  readonly keys?: number;
  /** How long to run, in ms. Default 5000. */
  readonly durationMs?: number;
  /** Most operations per client (a client also stops at the deadline). Default unbounded. */
  readonly operationsPerClient?: number;
  /** Spread the clients over this many forked processes (real Redis only). Default 0: this process. */
  readonly processes?: number;
  /** The library's per-call timeout, ms. Default 2000. */
  readonly timeoutMs?: number;
  /**
   * Hand each store an ioredis client made with its defaults (`new RedisConsensus(new Redis(url))`)
   * instead of `RedisConsensus.connect`. Real Redis only.
   */
  readonly givenClients?: boolean;
  /**
   * What each client runs: `mixed` (default), the read-modify-write mix below; or `append`, where
   * each client runs `writersPerClient` concurrent loops of `append` (single flight inside one
   * store, races between stores), plus a few bare heads.
   */
  readonly mode?: 'mixed' | 'append';
  /** Concurrent append loops per client in `append` mode. Default 2. */
  readonly writersPerClient?: number;
  /**
   * `append` mode: each client runs at least this long after it is connected, however late its
   * process started (forked processes on a loaded machine can take seconds to load). Default 0.
   */
  readonly minRunMs?: number;
}

/** A history and what it took to make it. */
export interface WorkloadRun {
  readonly history: Operation[];
  readonly clients: number;
  readonly elapsedMs: number;
}

/** Process-independent description of one client's work, sent to worker processes. */
export interface ClientPlan {
  readonly url?: string;
  readonly mockPort?: number;
  readonly prefix: string;
  readonly client: number;
  readonly keys: number;
  /** Stop time, in ms after the epoch. */
  readonly stopAt: number;
  readonly operations: number;
  readonly timeoutMs: number;
  readonly givenClients: boolean;
  readonly mode: 'mixed' | 'append';
  readonly writersPerClient: number;
  readonly minRunMs: number;
  /** `process.hrtime.bigint()` of the parent at the start, as a decimal string. */
  readonly epoch: string;
}

/** Runs the workload and returns the merged history. */
export async function runWorkload(options: WorkloadOptions): Promise<WorkloadRun> {
  const clients = options.clients ?? 32;
  const processes = options.processes ?? 0;
  if (processes > 0 && options.url === undefined) throw new Error('processes need a real Redis url');
  if ((options.url === undefined) === (options.mockPort === undefined)) {
    throw new Error('give exactly one of url and mockPort');
  }
  const epoch = process.hrtime.bigint();
  const startedAt = performance.now();
  const plans: ClientPlan[] = Array.from({ length: clients }, (_, client) => ({
    ...(options.url === undefined ? {} : { url: options.url }),
    ...(options.mockPort === undefined ? {} : { mockPort: options.mockPort }),
    prefix: options.prefix,
    client,
    keys: options.keys ?? 4,
    stopAt: options.durationMs ?? 5000,
    operations: options.operationsPerClient ?? Number.MAX_SAFE_INTEGER,
    timeoutMs: options.timeoutMs ?? 2000,
    givenClients: options.givenClients ?? false,
    mode: options.mode ?? 'mixed',
    writersPerClient: options.writersPerClient ?? 2,
    minRunMs: options.minRunMs ?? 0,
    epoch: epoch.toString(),
  }));
  let histories: Operation[][];
  if (processes === 0) {
    histories = await runClients(plans);
  } else {
    const groups = Array.from({ length: processes }, (_, i) => plans.filter((plan) => plan.client % processes === i));
    histories = (await Promise.all(groups.filter((g) => g.length > 0).map(runInWorker))).flat();
  }
  return { history: histories.flat(), clients, elapsedMs: performance.now() - startedAt };
}

/** Connects every planned client, then runs them all at once. */
export async function runClients(plans: readonly ClientPlan[]): Promise<Operation[][]> {
  const given: Redis[] = [];
  const stores = await Promise.all(plans.map(async (plan) => {
    const options = { prefix: plan.prefix, timeoutMs: plan.timeoutMs };
    if (plan.url === undefined) {
      return new RedisConsensus(new RedisMock({ port: plan.mockPort }), options);
    }
    if (plan.givenClients) {
      // ioredis with its defaults (re-sends after reconnects): the library must split off writes.
      const client = new Redis(plan.url);
      client.on('error', () => {});
      given.push(client);
      return new RedisConsensus(client, options);
    }
    // A soak injects faults from the start, and a CLIENT KILL may meet a connection being made.
    for (let attempt = 1; ; attempt++) {
      try {
        return await RedisConsensus.connect(plan.url, options);
      } catch (err) {
        if (attempt >= 20) throw err;
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
    }
  }));
  try {
    return await Promise.all(plans.map((plan, i) =>
      (plan.mode === 'append' ? runAppendClient : runClient)(stores[i]!, plan)));
  } finally {
    await Promise.all(stores.map((store) => store.close()));
    for (const client of given) client.disconnect();
  }
}

function runInWorker(plans: ClientPlan[]): Promise<Operation[][]> {
  return new Promise((resolve, reject) => {
    const worker = fork(new URL('../../scripts/workload-worker.js', import.meta.url), [], { stdio: 'inherit' });
    // One message per client: a whole process's history as one JSON string could pass V8's
    // string length limit on a long soak.
    const histories: Operation[][] = [];
    worker.on('message', (message) => {
      histories.push(...parseHistories(message as string));
    });
    worker.on('error', reject);
    worker.on('exit', (code) => {
      if (code === 0 && histories.length === plans.length) resolve(histories);
      else reject(new Error(`workload worker exited with ${code} after sending ${histories.length} of ${plans.length} histories`));
    });
    worker.send(JSON.stringify(plans));
  });
}

const BIGINT_FIELDS = new Set(['seqno', 'expected', 'from', 'limit']);

/** Histories as JSON (bigints as decimal strings), for the trip between processes. */
export function stringifyHistories(histories: Operation[][]): string {
  return JSON.stringify(histories, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}

export function parseHistories(text: string): Operation[][] {
  return JSON.parse(text, (key, value: unknown) =>
    (BIGINT_FIELDS.has(key) && typeof value === 'string' ? BigInt(value) : value)) as Operation[][];
}

/**
 * One client: mostly read-modify-write (head, then compareAndSet on what it saw, re-reading and
 * retrying on a mismatch), plus scans, truncates, bare heads and compareAndSets on a stale
 * expectation. Every attempted write carries a payload nobody else writes (client id, counter,
 * and some non-UTF-8 bytes).
 */
async function runClient(consensus: RedisConsensus, plan: ClientPlan): Promise<Operation[]> {
  const epoch = BigInt(plan.epoch);
  const now = (): number => Number(process.hrtime.bigint() - epoch) / 1e6;
  const history: Operation[] = [];
  const known = new Map<string, bigint>();
  let counter = 0;
  let random = (plan.client + 1) * 2654435761 % 2 ** 32;
  /** A small deterministic generator per client (xorshift32): runs are repeatable in shape. */
  const rng = (): number => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 2 ** 32;
  };
  const below = (n: number): number => Math.floor(rng() * n);
  const lastSeen = (key: string): bigint => known.get(key) ?? 0n;

  async function record<T>(
    base: Call,
    call: () => Promise<T>,
    toResult: (value: T) => Operation['result'],
  ): Promise<T | undefined> {
    const start = now();
    try {
      const value = await call();
      history.push({ ...base, start, end: now(), result: toResult(value) } as Operation);
      return value;
    } catch (err) {
      if (!(err instanceof ExternalError)) throw err;
      const error: Failure = base.op === 'truncate' && err.message.includes('upper bound too high')
        ? 'upper-bound-too-high' : err.determinate ? 'determinate' : 'indeterminate';
      history.push({ ...base, start, end: now(), error } as Operation);
      return undefined;
    }
  }

  const head = async (key: string): Promise<VersionedData | null | undefined> => {
    const result = await record({ key, client: plan.client, op: 'head' }, () => consensus.head(key),
      (value) => (value === null ? null : toVersion(value)));
    if (result) known.set(key, result.seqno);
    return result;
  };
  const compareAndSet = (key: string, expected: bigint | null, seqno: bigint): Promise<CaSResult | undefined> => {
    const data = Buffer.concat([Buffer.from(`c${plan.client}.${counter++}`), Buffer.from([0, 0xff, counter & 0xff])]);
    return record({ key, client: plan.client, op: 'compareAndSet', expected, next: { seqno, data: data.toString('hex') } },
      () => consensus.compareAndSet(key, expected, { seqno, data }), (value) => value);
  };

  for (let done = 0; done < plan.operations && now() < plan.stopAt; done++) {
    const key = `k${below(plan.keys)}`;
    const dice = rng();
    if (dice < 0.55) {
      let current = await head(key);
      for (let attempt = 0; attempt < 3 && current !== undefined; attempt++) {
        const expected = current?.seqno ?? null;
        const gap = rng() < 0.2 ? BigInt(1 + below(3)) : 0n;
        const outcome = await compareAndSet(key, expected, (expected ?? -1n) + 1n + gap);
        if (outcome !== CaSResult.ExpectationMismatch) break;
        current = await head(key);
      }
    } else if (dice < 0.72) {
      const from = rng() < 0.3 ? 0n : maxZero(lastSeen(key) - BigInt(below(10)));
      const limit = rng() < 0.5 ? SCAN_ALL : BigInt(1 + below(8));
      await record({ key, client: plan.client, op: 'scan', from, limit }, () => consensus.scan(key, from, limit),
        (versions) => versions.map(toVersion));
    } else if (dice < 0.84) {
      const seqno = rng() < 0.1 ? lastSeen(key) + BigInt(1 + below(3)) : maxZero(lastSeen(key) - BigInt(below(12)));
      await record({ key, client: plan.client, op: 'truncate', seqno }, () => consensus.truncate(key, seqno),
        (deleted) => deleted);
    } else if (dice < 0.93) {
      await head(key);
    } else {
      const stale = lastSeen(key) - BigInt(1 + below(3));
      await compareAndSet(key, stale < 0n ? null : stale, lastSeen(key) + 1n);
    }
  }
  return history;
}

/**
 * One client in `append` mode: `writersPerClient` loops, each appending a payload nobody else
 * writes (a token) to a random key, and sometimes reading the head. A committed append is
 * recorded as the compare-and-set it amounts to: on top of the head its `update` last saw. So
 * is an indeterminate one (the version still unknown is the one made from that head); a
 * determinate failure wrote nothing. An `update` that saw a head other than the one just below
 * the seqno that committed is recorded as a violation (`update-saw-wrong-head`).
 */
async function runAppendClient(consensus: RedisConsensus, plan: ClientPlan): Promise<Operation[]> {
  const epoch = BigInt(plan.epoch);
  const now = (): number => Number(process.hrtime.bigint() - epoch) / 1e6;
  const history: Operation[] = [];
  let counter = 0;
  let random = (plan.client + 7) * 2654435761 % 2 ** 32;
  const rng = (): number => {
    random ^= random << 13;
    random ^= random >>> 17;
    random ^= random << 5;
    return (random >>> 0) / 2 ** 32;
  };
  const stopAt = Math.max(plan.stopAt, now() + plan.minRunMs);
  const writer = async (): Promise<void> => {
    while (now() < stopAt && counter < plan.operations) {
      const key = `k${Math.floor(rng() * plan.keys)}`;
      const start = now();
      if (rng() < 0.15) {
        try {
          const head = await consensus.head(key);
          history.push({ key, client: plan.client, op: 'head', start, end: now(), result: head === null ? null : toVersion(head) });
        } catch (err) {
          if (!(err instanceof ExternalError)) throw err;
        }
        continue;
      }
      const token = Buffer.concat([Buffer.from(`a${plan.client}.${counter++}`), Buffer.from([0, 0xff])]);
      let saw: VersionedData | null = null;
      const update = (head: VersionedData | null): Buffer => {
        saw = head;
        return token;
      };
      const base = (): { expected: bigint | null; next: Version } => {
        const seen = saw as VersionedData | null;
        return { expected: seen?.seqno ?? null, next: { seqno: seen === null ? 0n : seen.seqno + 1n, data: token.toString('hex') } };
      };
      try {
        const appended = await consensus.append(key, update);
        if (!appended.committed) throw new Error('update never stops here');
        const { expected, next } = base();
        if (next.seqno !== appended.head.seqno || appended.head.data.toString('hex') !== next.data) {
          throw new Error(`update-saw-wrong-head: committed ${appended.head.seqno}, update last saw ${expected}`);
        }
        history.push({ key, client: plan.client, op: 'compareAndSet', start, end: now(), expected, next, result: 'Committed' });
      } catch (err) {
        if (!(err instanceof ExternalError)) throw err;
        // A determinate failure is recorded too: the checker drops it (it wrote nothing).
        history.push({ key, client: plan.client, op: 'compareAndSet', start, end: now(), ...base(), error: err.determinate ? 'determinate' : 'indeterminate' });
      }
    }
  };
  await Promise.all(Array.from({ length: plan.writersPerClient }, writer));
  return history;
}

/** An operation before it ran: what was called, without timing or outcome. */
type Call = Operation extends infer O ? O extends Operation ? Omit<O, 'start' | 'end' | 'result' | 'error'> : never : never;

function maxZero(seqno: bigint): bigint {
  return seqno < 0n ? 0n : seqno;
}

function toVersion(version: VersionedData): Version {
  return { seqno: version.seqno, data: Buffer.from(version.data).toString('hex') };
}

/** What the checks found. */
export interface HistoryReport {
  /** Operations in the history, and how they ended. */
  readonly operations: number;
  readonly outcomes: Readonly<Record<string, number>>;
  /** Linearizability verdict (absent when not asked for). */
  readonly verdict?: Verdict;
  readonly linearizable?: boolean | 'inconclusive';
  /** Acknowledged Committed versions missing from a later scan although never truncated. */
  readonly lostWrites: number;
  /** Indeterminate compareAndSets, and how many of them were later read (so took effect). */
  readonly indeterminateWrites: { readonly total: number; readonly seenToTakeEffect: number };
  /** Every violation found, one line each (capped at 50). */
  readonly violations: string[];
}

/**
 * Checks a history: linearizability (unless `linearizability: false`) and the invariants
 * beside it, which give plainer messages and still work when the search is inconclusive.
 */
export function checkHistory(history: readonly Operation[], options: { linearizability?: boolean } = {}): HistoryReport {
  const violations: string[] = [];
  const outcomes: Record<string, number> = {};
  for (const o of history) {
    const outcome = `${o.op}:${o.error ?? (typeof o.result === 'string' ? o.result : 'ok')}`;
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  const byKey = new Map<string, Operation[]>();
  for (const o of history) {
    if (!byKey.has(o.key)) byKey.set(o.key, []);
    byKey.get(o.key)!.push(o);
  }
  let lostWrites = 0;
  const indeterminateWrites = { total: 0, seenToTakeEffect: 0 };
  for (const operations of byKey.values()) {
    const found = checkInvariants(operations, violations);
    lostWrites += found.lostWrites;
    indeterminateWrites.total += found.indeterminate;
    indeterminateWrites.seenToTakeEffect += found.indeterminateSeen;
  }
  let verdict: Verdict | undefined;
  if (options.linearizability !== false) {
    verdict = checkLinearizable(history);
    // Listed first: one line per key, where the plainer invariants may give thousands.
    violations.unshift(...verdict.keys.flatMap((key) => key.linearizable === true ? [] : [
      `${key.linearizable === false ? 'not linearizable' : 'linearizability inconclusive'} on key ` +
      `${JSON.stringify(key.key)}: ${key.explanation}`]));
  }
  return {
    operations: history.length, outcomes, lostWrites, indeterminateWrites,
    violations: violations.length > 50 ? [...violations.slice(0, 50), `... and ${violations.length - 50} more`] : violations,
    ...(verdict === undefined ? {} : { verdict, linearizable: verdict.linearizable }),
  };
}

type CasOperation = Extract<Operation, { op: 'compareAndSet' }>;
type TruncateOperation = Extract<Operation, { op: 'truncate' }>;

/** The invariants of one key's history; returns lost writes and the fate of indeterminate ones. */
function checkInvariants(
  operations: readonly Operation[],
  violations: string[],
): { lostWrites: number; indeterminate: number; indeterminateSeen: number } {
  const say = (text: string, o: Operation): void => {
    violations.push(`${text}: ${describeOperation(o)}`);
  };
  // Every write that may have happened, by its (unique) payload.
  const writers = new Map<string, CasOperation>();
  const committedSeqnos = new Map<bigint, CasOperation>();
  const acknowledged: CasOperation[] = [];
  for (const o of operations) {
    if (o.op !== 'compareAndSet' || o.error === 'determinate' || o.result === 'ExpectationMismatch') continue;
    writers.set(o.next.data, o);
    if (o.result !== 'Committed') continue;
    acknowledged.push(o);
    const twin = committedSeqnos.get(o.next.seqno);
    if (twin !== undefined) say(`seqno ${o.next.seqno} committed twice (also by ${describeOperation(twin)})`, o);
    committedSeqnos.set(o.next.seqno, o);
  }

  // Every version read is one that was written, with that seqno and those bytes.
  const seen = new Map<bigint, string>();
  const known = (version: Version, o: Operation): void => {
    const writer = writers.get(version.data);
    if (writer === undefined) say(`read ${version.seqno} with data nobody wrote`, o);
    else if (writer.next.seqno !== version.seqno) say(`read data written as seqno ${writer.next.seqno} under seqno ${version.seqno}`, o);
    const before = seen.get(version.seqno);
    if (before !== undefined && before !== version.data) say(`seqno ${version.seqno} read with two different payloads`, o);
    seen.set(version.seqno, version.data);
  };
  for (const o of operations) {
    if (o.error !== undefined) continue;
    if (o.op === 'head' && o.result) known(o.result, o);
    if (o.op !== 'scan') continue;
    const result = o.result!;
    result.forEach((version, i) => {
      known(version, o);
      const previous = result[i - 1];
      if (previous === undefined) return;
      // Each commit's `expected` is the head it replaced, so neighbours in a scan are linked.
      const writer = writers.get(version.data);
      if (writer !== undefined && writer.expected !== previous.seqno) {
        say(`hole in a scan between ${previous.seqno} and ${version.seqno} (written on top of ${writer.expected})`, o);
      }
    });
    if (BigInt(result.length) > o.limit) say('scan returned more than its limit', o);
  }

  // The key never becomes empty again once a commit was acknowledged.
  const firstAcknowledged = acknowledged.reduce((first, o) => Math.min(first, o.end), Infinity);
  for (const o of operations) {
    if (o.op === 'head' && o.error === undefined && o.result === null && o.start > firstAcknowledged) {
      say('the key read as empty after a commit was acknowledged', o);
    }
  }
  const maybes = [...writers.values()].filter((o) => o.error === 'indeterminate');
  const seenData = new Set(seen.values());
  return {
    lostWrites: countLostWrites(operations, acknowledged, say),
    indeterminate: maybes.length,
    indeterminateSeen: maybes.filter((o) => seenData.has(o.next.data)).length,
  };
}

/**
 * Acknowledged versions a scan should have returned: committed before the scan began, at or
 * above its `from`, below where its limit cut it short, and above every truncate that could have
 * run before it ended.
 */
function countLostWrites(
  operations: readonly Operation[],
  acknowledged: CasOperation[],
  say: (text: string, o: Operation) => void,
): number {
  const bySeqno = [...acknowledged].sort((a, b) => compareBig(a.next.seqno, b.next.seqno));
  const seqnos = bySeqno.map((o) => o.next.seqno);
  // Highest acknowledged seqno by a given time: no need to look above it.
  const byEnd = [...acknowledged].sort((a, b) => a.end - b.end);
  const ends = byEnd.map((o) => o.end);
  const highestAcknowledged = runningMax(byEnd.map((o) => o.next.seqno));
  // Highest seqno of any truncate (that may have run) started by a given time.
  const truncates = operations
    .filter((o): o is TruncateOperation => o.op === 'truncate' && (o.error === undefined || o.error === 'indeterminate'))
    .sort((a, b) => a.start - b.start);
  const truncateStarts = truncates.map((o) => o.start);
  const floors = runningMax(truncates.map((o) => o.seqno));
  const lost = new Set<bigint>();
  for (const o of operations) {
    if (o.op !== 'scan' || o.error !== undefined) continue;
    const result = o.result!;
    const returned = new Set(result.map((v) => v.seqno));
    const floor = floors[lastIndexBelow(truncateStarts, o.end)] ?? -1n;
    let upper = highestAcknowledged[lastIndexBelow(ends, o.start)] ?? -1n;
    if (BigInt(result.length) === o.limit) {
      const last = result[result.length - 1];
      if (last === undefined) continue;
      if (last.seqno < upper) upper = last.seqno;
    }
    for (let i = lowerBound(seqnos, o.from > floor ? o.from : floor); i < bySeqno.length; i++) {
      const commit = bySeqno[i]!;
      if (commit.next.seqno > upper) break;
      if (commit.end >= o.start || returned.has(commit.next.seqno)) continue;
      lost.add(commit.next.seqno);
      say(`acknowledged seqno ${commit.next.seqno} (${describeOperation(commit)}) missing from a later scan although not truncated`, o);
    }
  }
  return lost.size;
}

function runningMax(values: readonly bigint[]): bigint[] {
  const result: bigint[] = [];
  for (const value of values) {
    const previous = result[result.length - 1];
    result.push(previous !== undefined && previous > value ? previous : value);
  }
  return result;
}

function lastIndexBelow(sorted: readonly number[], time: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]! < time) low = middle + 1;
    else high = middle;
  }
  return low - 1;
}

function lowerBound(sorted: readonly bigint[], value: bigint): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
