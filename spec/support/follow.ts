/**
 * Helpers for `follow` specs: a follower run in the background that records what it yielded, and
 * the check that it yielded exactly a key's committed history.
 */
import * as assert from 'uvu/assert';
import { SCAN_ALL } from '../../lib/index.js';
import type { FollowOptions, RedisConsensus, VersionedData } from '../../lib/index.js';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A follower being recorded. */
export interface Recorded {
  readonly key: string;
  readonly seen: VersionedData[];
  /** Settles when the loop finishes: undefined, or the error it threw. */
  readonly done: Promise<unknown>;
  /** Resolves once a version with seqno >= `seqno` was yielded; rejects after `timeoutMs`. */
  reached(seqno: bigint, timeoutMs: number): Promise<void>;
}

/**
 * Runs `for await (const v of consensus.follow(key, options))` in the background. `each` runs
 * after each version is recorded (a slow consumer sleeps there).
 */
export function record(
  consensus: RedisConsensus, key: string, options: FollowOptions = {}, each?: (version: VersionedData) => Promise<void>,
): Recorded {
  const seen: VersionedData[] = [];
  const done = (async () => {
    try {
      for await (const version of consensus.follow(key, options)) {
        seen.push(version);
        await each?.(version);
      }
      return undefined;
    } catch (err) {
      return err;
    }
  })();
  let finished = false;
  void done.then(() => {
    finished = true;
  });
  return {
    key, seen, done,
    async reached(seqno, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while ((seen.at(-1)?.seqno ?? -1n) < seqno) {
        if (finished) throw new Error(`the follower of ${key} ended at ${seen.at(-1)?.seqno ?? 'nothing'}: ${String(await done)}`);
        if (Date.now() > deadline) {
          throw new Error(`the follower of ${key} did not reach ${seqno} in ${timeoutMs} ms; last ${seen.at(-1)?.seqno ?? 'nothing'}`);
        }
        await sleep(10);
      }
    },
  };
}

/** `seqno:data` of each version, for comparing sequences in one assertion. */
export function lines(versions: readonly VersionedData[]): string[] {
  return versions.map((version) => `${version.seqno}:${Buffer.from(version.data).toString('latin1')}`);
}

/**
 * Asserts `recorded` yielded exactly the key's stored history from `from` (read with `reader`,
 * retrying through a fault's tail): same seqnos, same data, in order, none twice, none missing.
 */
export async function assertExactly(reader: RedisConsensus, recorded: Recorded, from = 0n, timeoutMs = 10_000): Promise<number> {
  let history: VersionedData[] | undefined;
  for (let attempt = 0; history === undefined; attempt++) {
    try {
      history = await reader.scan(recorded.key, from, SCAN_ALL);
    } catch (err) {
      if (attempt > 50) throw err;
      await sleep(100);
    }
  }
  if (history.length > 0) await recorded.reached(history.at(-1)!.seqno, timeoutMs);
  assert.equal(lines(recorded.seen), lines(history), `the follower of ${recorded.key} yielded exactly its history`);
  return history.length;
}
