/**
 * The bench's `append` section: `append` against the README's two-round-trip loop (head, then
 * compareAndSet, re-reading on a mismatch), in the same run, interleaved so both share the
 * machine's noise: (a) one writer on a key, (b) 32 writers on one key in one process (one store),
 * (c) 8 processes with one writer each on one key.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { CaSResult } from '../lib/index.js';
import type { RedisConsensus } from '../lib/index.js';
import { measureGroup, percentile } from './bench-support.js';
import type { Stats } from './bench-support.js';

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
    const child = fork(new URL('./bench-append-worker.js', import.meta.url), [url, prefix], { stdio: 'inherit' });
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
