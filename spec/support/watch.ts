/**
 * The shared watch suite: what `watch` promises, run on any backend (ioredis-mock, a real Redis,
 * a Cluster), with pub/sub and with polling. Plus helpers the fault specs use to follow many
 * watches and check them against what was committed.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError } from '../../lib/index.js';
import type { RedisConsensus, RedisConsensusOptions, VersionedData } from '../../lib/index.js';
import { keyNames } from '../../lib/layout.js';
import type { Backend } from './backends.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Commits `count` versions after the current head, one at a time; returns the final seqno. */
export async function commitNext(consensus: RedisConsensus, key: string, count: number): Promise<bigint> {
  let head = (await consensus.head(key))?.seqno ?? null;
  for (let i = 0; i < count; i++) {
    const next = head === null ? 0n : head + 1n;
    assert.is(await consensus.compareAndSet(key, head, { seqno: next, data: bytes(`${key}@${next}`) }), CaSResult.Committed);
    head = next;
  }
  return head!;
}

/** A watch being followed: every head it yielded, and how it ended. */
export interface Followed {
  readonly key: string;
  readonly seen: VersionedData[];
  /** Settles when the loop finishes: undefined, or the error it threw. */
  readonly done: Promise<unknown>;
  /** Whether the loop has finished. */
  finished: boolean;
  /** Resolves once the watch has yielded a head with seqno >= `seqno`. */
  reached(seqno: bigint, timeoutMs: number): Promise<void>;
}

/** Runs `for await (const head of consensus.watch(key, ...))` in the background, recording. */
export function follow(consensus: RedisConsensus, key: string, signal?: AbortSignal, consumeMs = 0): Followed {
  const seen: VersionedData[] = [];
  const waiters: Array<() => void> = [];
  const followed: Followed = {
    key, seen, finished: false,
    done: Promise.resolve(),
    async reached(seqno, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while ((seen.at(-1)?.seqno ?? -1n) < seqno) {
        if (Date.now() > deadline) {
          throw new Error(`watch of ${key} did not reach seqno ${seqno} in ${timeoutMs} ms; ` +
            `last seen ${seen.at(-1)?.seqno ?? 'nothing'}`);
        }
        await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), sleep(50)]);
      }
    },
  };
  (followed as { done: Promise<unknown> }).done = (async () => {
    try {
      for await (const head of consensus.watch(key, { signal })) {
        seen.push(head);
        for (const wake of waiters.splice(0)) wake();
        if (consumeMs > 0) await sleep(consumeMs);
      }
      return undefined;
    } catch (err) {
      return err;
    } finally {
      followed.finished = true;
    }
  })();
  return followed;
}

/** Asserts a watch's heads strictly increase and each carries the data committed with it. */
export function assertWellFormed(followed: Followed): void {
  for (let i = 0; i < followed.seen.length; i++) {
    const head = followed.seen[i]!;
    if (i > 0) {
      assert.ok(head.seqno > followed.seen[i - 1]!.seqno,
        `${followed.key}: seqno ${head.seqno} yielded after ${followed.seen[i - 1]!.seqno}`);
    }
    assert.is(Buffer.from(head.data).toString('utf8'), `${followed.key}@${head.seqno}`, `${followed.key}: data of ${head.seqno}`);
  }
}

/** Registers the watch suite on `backend`; `options` choose the mode (pub/sub or polling). */
export function watchSuite(backend: Backend, label: string, options: RedisConsensusOptions): void {
  const test = suite(`watch on ${backend.name} (${label})`);
  const timeout = 5000;

  test('the first value is the current head; then every newer head, strictly increasing, ending at the final head', async () => {
    const store = await backend.store(options);
    const writer = await backend.peer(store);
    try {
      await commitNext(writer, 'k', 3);
      const watched = follow(store.consensus, 'k');
      await watched.reached(2n, timeout);
      assert.is(watched.seen[0]!.seqno, 2n, 'the first value is the head at the start');
      for (let i = 0; i < 20; i++) {
        await commitNext(writer, 'k', 1);
        if (i % 5 === 0) await sleep(5);
      }
      await watched.reached(22n, timeout);
      assert.is(watched.seen.at(-1)!.seqno, 22n);
      assertWellFormed(watched);
      assert.ok(watched.seen.length >= 2, 'saw heads after the first');
    } finally {
      await writer.close();
      await store.dispose();
    }
  });

  test('a key with no data yields nothing until its first commit, then that commit', async () => {
    const store = await backend.store(options);
    try {
      const watched = follow(store.consensus, 'empty');
      await sleep(200);
      assert.equal(watched.seen, []);
      await commitNext(store.consensus, 'empty', 1);
      await watched.reached(0n, timeout);
      assert.equal(watched.seen.map((head) => head.seqno), [0n]);
    } finally {
      await store.dispose();
    }
  });

  test('a slow consumer gets the latest head, not a backlog', async () => {
    const store = await backend.store(options);
    try {
      await commitNext(store.consensus, 'slow', 1);
      const watched = follow(store.consensus, 'slow', undefined, 400);
      await watched.reached(0n, timeout);
      await commitNext(store.consensus, 'slow', 30);
      await watched.reached(30n, timeout);
      assertWellFormed(watched);
      assert.ok(watched.seen.length <= 4, `yielded ${watched.seen.length} heads for 30 commits while consuming slowly`);
    } finally {
      await store.dispose();
    }
  });

  test('commits to other keys of the same bucket wake nothing up', async () => {
    const store = await backend.store(options);
    try {
      const bucket = keyNames(store.prefix, 'a').heads;
      const sibling = Array.from({ length: 5000 }, (_, i) => `b${i}`).find((key) => keyNames(store.prefix, key).heads === bucket)!;
      assert.ok(sibling !== undefined, 'found a key in the same bucket');
      await commitNext(store.consensus, 'a', 1);
      const watched = follow(store.consensus, 'a');
      await watched.reached(0n, timeout);
      await commitNext(store.consensus, sibling, 10);
      await sleep(100);
      assert.equal(watched.seen.map((head) => head.seqno), [0n]);
    } finally {
      await store.dispose();
    }
  });

  test('aborting the signal ends the loop, also while it waits', async () => {
    const store = await backend.store(options);
    try {
      await commitNext(store.consensus, 'k', 1);
      const ac = new AbortController();
      const watched = follow(store.consensus, 'k', ac.signal);
      await watched.reached(0n, timeout);
      ac.abort();
      assert.is(await watched.done, undefined);
      const already = follow(store.consensus, 'k', ac.signal);
      assert.is(await already.done, undefined);
      assert.equal(already.seen, [], 'an aborted signal yields nothing');
    } finally {
      await store.dispose();
    }
  });

  test('break ends the watch and a new one starts from the current head', async () => {
    const store = await backend.store(options);
    try {
      await commitNext(store.consensus, 'k', 2);
      for await (const head of store.consensus.watch('k')) {
        assert.is(head.seqno, 1n);
        break;
      }
      await commitNext(store.consensus, 'k', 1);
      for await (const head of store.consensus.watch('k')) {
        assert.is(head.seqno, 2n);
        break;
      }
    } finally {
      await store.dispose();
    }
  });

  test('close() of the store ends every watch', async () => {
    const store = await backend.store(options);
    const watches = ['x', 'y', 'z'].map((key) => follow(store.consensus, key));
    await commitNext(store.consensus, 'x', 1);
    await watches[0]!.reached(0n, timeout);
    await store.dispose();
    const ends = await Promise.race([Promise.all(watches.map((watched) => watched.done)), sleep(3000).then(() => 'hung')]);
    assert.equal(ends, [undefined, undefined, undefined]);
    const late = follow(store.consensus, 'x');
    assert.is(await late.done, undefined);
    assert.equal(late.seen, [], 'a watch on a closed store yields nothing');
  });

  test('invalid arguments throw before anything is read', async () => {
    const store = await backend.store(options);
    try {
      assert.throws(() => store.consensus.watch(5 as unknown as string), TypeError);
      assert.throws(() => store.consensus.watch('k', { signal: {} as AbortSignal }), TypeError);
    } finally {
      await store.dispose();
    }
  });

  test('many watches of one key see the same heads', async () => {
    const store = await backend.store(options);
    try {
      const watches = Array.from({ length: 10 }, () => follow(store.consensus, 'shared'));
      await commitNext(store.consensus, 'shared', 5);
      for (const watched of watches) {
        await watched.reached(4n, timeout);
        assertWellFormed(watched);
      }
      assert.ok(watches.every((watched) => watched.seen.at(-1)!.seqno === 4n));
    } finally {
      await store.dispose();
    }
  });

  test.run();
}

/** Writers appending `<key>@<seqno>` under faults: failures are counted, never thrown. */
export interface WriteLoad {
  readonly outcomes: { committed: number; mismatch: number; failed: number; codes: Record<string, number> };
  /** Resolves once `count` more commits have been acknowledged. */
  commitsAfter(count: number, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export function writeLoad(consensus: RedisConsensus, keys: readonly string[], workers: number, signal?: AbortSignal): WriteLoad {
  const outcomes = { committed: 0, mismatch: 0, failed: 0, codes: {} as Record<string, number> };
  let stopping = false;
  const loop = async (worker: number): Promise<void> => {
    // The signal too: a spec that fails before `stop()` must not leave writers running (the test
    // process would never exit).
    for (let step = 0; !stopping && signal?.aborted !== true; step++) {
      const key = keys[(worker * 7 + step * 13) % keys.length]!;
      try {
        const head = (await consensus.head(key))?.seqno ?? null;
        const next = head === null ? 0n : head + 1n;
        const result = await consensus.compareAndSet(key, head, { seqno: next, data: bytes(`${key}@${next}`) });
        if (result === CaSResult.Committed) outcomes.committed++;
        else outcomes.mismatch++;
      } catch (err) {
        outcomes.failed++;
        // By code, for the messages of a failing spec (a store-reset is not a transient fault).
        const code = err instanceof ExternalError ? err.code : 'other';
        outcomes.codes[code] = (outcomes.codes[code] ?? 0) + 1;
        await sleep(20);
      }
    }
  };
  const running = Array.from({ length: workers }, (_, worker) => loop(worker));
  return {
    outcomes,
    async commitsAfter(count, timeoutMs) {
      const target = outcomes.committed + count;
      const deadline = Date.now() + timeoutMs;
      while (outcomes.committed < target) {
        if (Date.now() > deadline) throw new Error(`fewer than ${count} commits in ${timeoutMs} ms`);
        await sleep(20);
      }
    },
    async stop() {
      stopping = true;
      await Promise.all(running);
    },
  };
}

/**
 * After the writers stopped: reads each key's final head (retrying through a fault's tail) and
 * waits until every watch has yielded it; returns how long that took. Each watch must also be
 * well formed (strictly increasing, each head with its own data).
 */
export async function converged(reader: RedisConsensus, watches: readonly Followed[], boundMs: number): Promise<number> {
  const started = Date.now();
  const finals = new Map<string, bigint>();
  for (const key of new Set(watches.map((watched) => watched.key))) {
    for (let attempt = 0; ; attempt++) {
      try {
        finals.set(key, (await reader.head(key))!.seqno);
        break;
      } catch (err) {
        if (attempt > 50) throw err;
        await sleep(100);
      }
    }
  }
  for (const watched of watches) await watched.reached(finals.get(watched.key)!, Math.max(0, started + boundMs - Date.now()));
  for (const watched of watches) {
    assertWellFormed(watched);
    assert.is(watched.seen.at(-1)!.seqno, finals.get(watched.key));
    assert.is(watched.finished, false, `the watch of ${watched.key} ended: ${String(watched.finished)}`);
  }
  return Date.now() - started;
}

/**
 * For faults that may lose acknowledged commits (a failover to a replica that had not yet
 * received them): waits, with the writers still running, until every key's head is past the
 * highest seqno any of its watches yielded. A watch that yielded a head the failover lost yields
 * nothing until its key passes that seqno again (its heads never go backwards), so only then is
 * "every watch reaches the final head" a fair question. Returns how many keys were, when first
 * asked, below the highest seqno one of their watches had yielded (lost, not yet written again).
 */
export async function outrun(reader: RedisConsensus, watches: readonly Followed[], timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Map<string, bigint>();
  for (const watched of watches) {
    const last = watched.seen.at(-1)?.seqno ?? -1n;
    if (last > (seen.get(watched.key) ?? -1n)) seen.set(watched.key, last);
  }
  let rewound: number | undefined;
  let lastError = '';
  for (;;) {
    let behind = 0;
    let below = 0;
    for (const [key, highest] of seen) {
      let head: bigint | undefined;
      try {
        head = (await reader.head(key))?.seqno ?? -1n;
      } catch (err) {
        // The fault's tail: asked again below.
        lastError = String(err);
      }
      if (head === undefined || head <= highest) behind++;
      if (head !== undefined && head < highest) below++;
    }
    rewound ??= below;
    if (behind === 0) return rewound;
    if (Date.now() > deadline) throw new Error(`${behind} keys still not past what their watches saw after ${timeoutMs} ms` +
      (lastError === '' ? '' : ` (last read error: ${lastError})`));
    await sleep(50);
  }
}
