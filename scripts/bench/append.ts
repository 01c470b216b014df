/**
 * The append family (`--only append`): `append` against the README's two-round-trip loop (head,
 * then compareAndSet, re-reading on a mismatch), in the same run, interleaved so both share the
 * machine's noise: (a) one writer on a key, (b) 32 writers on one key in one process (one store),
 * (c) 8 processes with one writer each on one key (scripts/bench/append-worker.ts).
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { CaSResult } from '../../lib/index.js';
import type { RedisConsensus } from '../../lib/index.js';
import { deletePrefix, measureGroup, num, percentile, ratio, table } from '../bench-support.js';
import type { Stats } from '../bench-support.js';
import { MOCK, PAYLOAD, progress, QUICK, report, ROUNDS, RUN_PREFIX, say, sharedRig } from './context.js';
import type { Rig } from './context.js';

export async function run(_argv: string[]): Promise<void> {
  const r = await sharedRig();
  report.append = await appendSection(r, RUN_PREFIX);
}

/** The README's compare-and-set loop: read the head, compareAndSet head + 1, re-read on a mismatch. */
export async function readmeLoop(consensus: RedisConsensus, key: string, data: Uint8Array): Promise<bigint> {
  for (;;) {
    const head = await consensus.head(key);
    const next = { seqno: head === null ? 0n : head.seqno + 1n, data };
    if (await consensus.compareAndSet(key, head?.seqno ?? null, next) === CaSResult.Committed) return next.seqno;
  }
}

/** One scenario's figures: the loop's and append's. */
export interface AppendRow {
  readonly scenario: string;
  readonly loop: Stats;
  readonly append: Stats;
}

/** (a) and (b): in this process, through `consensus`, `calls` commits per case, `rounds` interleaved rounds. */
export async function appendInProcess(
  consensus: RedisConsensus, space: string, writers: number, calls: number, rounds: number, payload: Buffer,
  onRound: (text: string) => void,
): Promise<Stats[]> {
  const keys = { loop: `${space}-loop-${writers}`, append: `${space}-append-${writers}` };
  const results = await measureGroup(writers, [
    { name: 'loop', calls, warmup: Math.min(200, calls / 10), call: () => readmeLoop(consensus, keys.loop, payload) },
    { name: 'append', calls, warmup: Math.min(200, calls / 10), call: () => consensus.append(keys.append, () => payload) },
  ], rounds, undefined, (round) => onRound(`append vs loop, ${writers} writer(s) on one key: round ${round + 1}/${rounds}`));
  return [results.get('loop')!, results.get('append')!];
}

/** (c): `processes` worker processes, one writer each, on one key; rounds of `durationMs` alternate. */
export async function appendAcrossProcesses(
  url: string, prefix: string, processes: number, durationMs: number, rounds: number, onRound: (text: string) => void,
): Promise<Stats[]> {
  const workers: ChildProcess[] = [];
  const waits: Array<(message: { latencies?: number[] }) => void> = [];
  const next = (worker: number): Promise<{ latencies?: number[] }> => new Promise((resolve) => {
    waits[worker] = resolve;
  });
  for (let i = 0; i < processes; i++) {
    const child = fork(new URL('./append-worker.js', import.meta.url), [url, prefix], { stdio: 'inherit' });
    child.on('message', (message: { latencies?: number[] }) => waits[i]?.(message));
    workers.push(child);
  }
  try {
    await Promise.all(workers.map((_, i) => next(i)));
    const seen = { loop: [] as number[], append: [] as number[] };
    const time = { loop: 0, append: 0 };
    for (let round = 0; round < rounds * 2; round++) {
      const mode = round % 2 === 0 ? 'loop' : 'append';
      onRound(`append vs loop, ${processes} processes on one key: ${mode}, round ${Math.floor(round / 2) + 1}/${rounds}`);
      const key = `procs-${mode}`;
      const replies = workers.map((_, i) => next(i));
      workers.forEach((child) => child.send({ mode, key, durationMs }));
      for (const reply of await Promise.all(replies)) seen[mode].push(...(reply.latencies ?? []));
      time[mode] += durationMs;
    }
    return (['loop', 'append'] as const).map((mode) => {
      const sorted = Float64Array.from(seen[mode]).sort();
      return {
        ops: sorted.length, seconds: time[mode] / 1000, opsPerSec: sorted.length / (time[mode] / 1000),
        p50us: percentile(sorted, 0.5) * 1000, p99us: percentile(sorted, 0.99) * 1000,
        maxUs: (sorted[sorted.length - 1] ?? 0) * 1000, cpuUsPerOp: NaN,
      };
    });
  } finally {
    for (const child of workers) child.send({ stop: true });
    await Promise.all(workers.map((child) => new Promise((resolve) => child.once('exit', resolve))));
  }
}

/**
 * `append` against the README's loop (head, compareAndSet, re-read on a mismatch), same run,
 * interleaved: one writer on a key; 32 writers on one key in one process; 8 processes on one key.
 */
async function appendSection(r: Rig, prefix: string): Promise<AppendRow[]> {
  const space = `${prefix}-append`;
  const consensus = await r.consensus(space);
  const rows: AppendRow[] = [];
  const calls = MOCK ? 100 : QUICK ? 1500 : 4000;
  const [loop1, append1] = await appendInProcess(consensus, space, 1, calls, ROUNDS, PAYLOAD, progress);
  rows.push({ scenario: '(a) 1 writer on a key', loop: loop1!, append: append1! });
  const [loop32, append32] = await appendInProcess(consensus, space, 32, calls, ROUNDS, PAYLOAD, progress);
  rows.push({ scenario: '(b) 32 writers on one key, one process', loop: loop32!, append: append32! });
  if (!MOCK) {
    const [loopP, appendP] = await appendAcrossProcesses(r.url!, space, 8, QUICK ? 1000 : 2000, QUICK ? 2 : 4, progress);
    rows.push({ scenario: '(c) 8 processes x 1 writer on one key', loop: loopP!, append: appendP! });
  }
  await consensus.close();
  await deletePrefix(r.raw, space);
  const targetOf = [1.6, 5, 1.4];
  say('## append against the README loop (head + compareAndSet, re-read on mismatch), 1 KiB payloads');
  say('Commits per second and latency per commit (retries included), measured in the same run.');
  say();
  say(table(['scenario', 'loop commits/s', 'append commits/s', 'x loop', 'target', '', 'loop p50/p99 us', 'append p50/p99 us'],
    rows.map((row, i) => {
      const times = row.append.opsPerSec / row.loop.opsPerSec;
      return [row.scenario, num(row.loop.opsPerSec), num(row.append.opsPerSec), ratio(row.append.opsPerSec, row.loop.opsPerSec),
        `>= ${targetOf[i]}x`, MOCK ? '' : times >= targetOf[i]! ? 'PASS' : 'MISS',
        `${num(row.loop.p50us)} / ${num(row.loop.p99us)}`, `${num(row.append.p50us)} / ${num(row.append.p99us)}`];
    })));
  say();
  return rows;
}
