/**
 * `follow`: every version from a seqno, in order, each once, resumable; truncation and store
 * resets reported; and the announcements that carry the data (for follow and watch). The shared
 * suite runs on ioredis-mock and a real Redis, with pub/sub and with polling; then, on a real
 * Redis, followers against contending writers. Faults (kills, restart, Sentinel, Cluster) are in
 * follow-faults.test.ts.
 */
import { setMaxListeners } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import { CaSResult, ExternalError, RedisConsensus, TruncatedError } from '../lib/index.js';
import type { OperationEvent, RedisConsensusOptions, VersionedData } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { carriedHeader, carriedNotice, NoticeReader } from '../lib/notice.js';
import { encodeSeqNo } from '../lib/seqno.js';
import { deletePrefix, freshPrefix, mockBackend, realRedisAvailable, redisBackend, REDIS_URL } from './support/backends.js';
import type { Backend, Store } from './support/backends.js';
import { assertExactly, lines, record } from './support/follow.js';
import { follow as watchOf, sleep, writeLoad } from './support/watch.js';

const POLL = { watch: { mode: 'poll', pollIntervalMs: 25 } } as const;
const TIMEOUT = 5000;

/** Commits `data` at each of `seqnos` in turn (gaps allowed), on top of the current head. */
async function commitAt(consensus: RedisConsensus, key: string, seqnos: readonly number[], data = (seqno: number) => `${key}@${seqno}`): Promise<void> {
  let head = (await consensus.head(key))?.seqno ?? null;
  for (const seqno of seqnos) {
    const result = await consensus.compareAndSet(key, head, { seqno: BigInt(seqno), data: Buffer.from(data(seqno), 'latin1') });
    assert.is(result, CaSResult.Committed, `commit ${seqno}`);
    head = BigInt(seqno);
  }
}

const range = (first: number, last: number): number[] => Array.from({ length: last - first + 1 }, (_, i) => first + i);

/** An observer that counts the operations of a store, by name. */
function counting(): { counts: Map<string, number>; events: OperationEvent[]; observer: RedisConsensusOptions['observer'] } {
  const counts = new Map<string, number>();
  const events: OperationEvent[] = [];
  return {
    counts, events,
    observer: {
      finished(event) {
        counts.set(event.operation, (counts.get(event.operation) ?? 0) + 1);
        events.push(event);
      },
    },
  };
}

/** Deletes everything a store holds, as a reset would (the mock's data set is the store's own). */
async function wipe(backend: Backend, store: Store): Promise<void> {
  if (backend.name === 'ioredis-mock') await store.raw.flushall();
  else await deletePrefix(store.raw, store.prefix);
}

function followSuite(backend: Backend, label: string, options: RedisConsensusOptions, pubsub: boolean): void {
  const test = suite(`follow on ${backend.name} (${label})`);

  test('from 0: every stored version in order (gaps in seqnos included), then each new one, each exactly once', async () => {
    const store = await backend.store(options);
    const writer = await backend.peer(store);
    try {
      await commitAt(writer, 'k', [0, 1, 2, 5, 6]);
      const followed = record(store.consensus, 'k', { from: 0 });
      await followed.reached(6n, TIMEOUT);
      await commitAt(writer, 'k', [7, 10, ...range(11, 30)]);
      await followed.reached(30n, TIMEOUT);
      await sleep(50);
      assert.equal(followed.seen.map((version) => Number(version.seqno)), [0, 1, 2, 5, 6, 7, 10, ...range(11, 30)]);
      await assertExactly(writer, followed);
    } finally {
      await writer.close();
      await store.dispose();
    }
  });

  test('from a seqno in the middle; without from, from the oldest stored version (after a truncation)', async () => {
    const store = await backend.store(options);
    try {
      await commitAt(store.consensus, 'k', range(0, 9));
      const middle = record(store.consensus, 'k', { from: 4n });
      await middle.reached(9n, TIMEOUT);
      assert.is(await store.consensus.truncate('k', 5), 5);
      const oldest = record(store.consensus, 'k');
      await oldest.reached(9n, TIMEOUT);
      await commitAt(store.consensus, 'k', [10]);
      await middle.reached(10n, TIMEOUT);
      await oldest.reached(10n, TIMEOUT);
      assert.equal(middle.seen.map((version) => Number(version.seqno)), range(4, 10));
      assert.equal(oldest.seen.map((version) => Number(version.seqno)), range(5, 10));
      assert.equal(lines(oldest.seen), range(5, 10).map((seqno) => `${seqno}:k@${seqno}`));
    } finally {
      await store.dispose();
    }
  });

  test('resumes from a saved seqno: stopped and started again three times, no gap and no repeat', async () => {
    const store = await backend.store(options);
    const writer = await backend.peer(store);
    try {
      const applied: VersionedData[] = [];
      let saved: bigint | undefined;
      for (let round = 0; round < 3; round++) {
        await commitAt(writer, 'log', range(round * 10, round * 10 + 9));
        for await (const version of store.consensus.follow('log', { from: saved === undefined ? 0n : saved + 1n })) {
          applied.push(version);
          saved = version.seqno;
          if (version.seqno === BigInt(round * 10 + 6)) break;
        }
      }
      for await (const version of store.consensus.follow('log', { from: saved! + 1n })) {
        applied.push(version);
        if (version.seqno === 29n) break;
      }
      assert.equal(lines(applied), range(0, 29).map((seqno) => `${seqno}:log@${seqno}`));
    } finally {
      await writer.close();
      await store.dispose();
    }
  });

  test('a consumer slower than the writer gets every version, read in pages of at most pageSize', async () => {
    const { events, observer } = counting();
    const store = await backend.store({ ...options, observer });
    const writer = await backend.peer(store);
    try {
      await commitAt(writer, 'slow', range(0, 39));
      const followed = record(store.consensus, 'slow', { from: 0, pageSize: 5 }, () => sleep(2));
      await commitAt(writer, 'slow', range(40, 79));
      await followed.reached(79n, 20_000);
      await assertExactly(writer, followed);
      const scans = events.filter((event) => event.operation === 'scan');
      assert.ok(scans.length >= 16, `${scans.length} reads`);
      assert.ok(scans.every((event) => event.count <= 5), `every read brought at most 5: ${scans.map((event) => event.count)}`);
    } finally {
      await writer.close();
      await store.dispose();
    }
  });

  test('versions truncated before they were read end it with a TruncatedError naming the first missing seqno', async () => {
    const store = await backend.store(options);
    try {
      await commitAt(store.consensus, 'k', range(0, 9));
      await store.consensus.truncate('k', 5);
      const early = record(store.consensus, 'k', { from: 0 });
      const err = await early.done;
      assert.instance(err, TruncatedError);
      assert.instance(err, ExternalError);
      const truncated = err as TruncatedError;
      assert.is(truncated.code, 'truncated');
      assert.is(truncated.determinate, true);
      assert.is(truncated.firstMissing, 0n);
      assert.is(truncated.nextStored, 5n);
      assert.match(truncated.message, /SeqNo\(0\)/);
      assert.equal(early.seen, []);
      // While following: the versions after the one in hand are truncated before they are read.
      await commitAt(store.consensus, 't', range(0, 9));
      const midway = record(store.consensus, 't', { from: 0, pageSize: 2 }, async (version) => {
        if (version.seqno === 1n) await store.consensus.truncate('t', 8);
      });
      const later = await midway.done as TruncatedError;
      assert.instance(later, TruncatedError);
      assert.equal([later.firstMissing, later.nextStored], [2n, 8n]);
      assert.equal(midway.seen.map((version) => version.seqno), [0n, 1n]);
    } finally {
      await store.dispose();
    }
  });

  test('a gap the writers left is no truncation while a version below it is stored; once none is, it cannot be told apart', async () => {
    const store = await backend.store(options);
    try {
      await commitAt(store.consensus, 'g', [0, 5, 6]);
      const across = record(store.consensus, 'g', { from: 3 });
      await across.reached(6n, TIMEOUT);
      assert.equal(across.seen.map((version) => version.seqno), [5n, 6n]);
      await store.consensus.truncate('g', 5);
      const ambiguous = await record(store.consensus, 'g', { from: 3 }).done as TruncatedError;
      assert.instance(ambiguous, TruncatedError);
      assert.equal([ambiguous.firstMissing, ambiguous.nextStored], [3n, 5n]);
      const exact = record(store.consensus, 'g', { from: 5 });
      await exact.reached(6n, TIMEOUT);
      await commitAt(store.consensus, 'g', [9]);
      await across.reached(9n, TIMEOUT);
      await exact.reached(9n, TIMEOUT);
      assert.equal(exact.seen.map((version) => version.seqno), [5n, 6n, 9n]);
      assert.equal(across.seen.map((version) => version.seqno), [5n, 6n, 9n]);
    } finally {
      await store.dispose();
    }
  });

  test('a store reset under it ends it with store-reset, after exactly what was committed before', async () => {
    const store = await backend.store(options);
    try {
      await commitAt(store.consensus, 'r', range(0, 2));
      const followed = record(store.consensus, 'r', { from: 0 });
      await followed.reached(2n, TIMEOUT);
      await wipe(backend, store);
      // A process started after the reset writes the key again from 0: its commits must not be
      // taken for the next versions of the history the follower knew.
      const fresh = await backend.peer(store);
      try {
        await commitAt(fresh, 'r', range(0, 5));
        const ended = await Promise.race([followed.done, sleep(TIMEOUT).then(() => 'still running')]);
        assert.instance(ended, ExternalError, String(ended));
        assert.is((ended as ExternalError).code, 'store-reset');
        assert.equal(followed.seen.map((version) => version.seqno), [0n, 1n, 2n]);
      } finally {
        await fresh.close();
      }
    } finally {
      await store.dispose();
    }
  });

  test('abort, break and close() end it; bad arguments throw before anything is read', async () => {
    const store = await backend.store(options);
    try {
      await commitAt(store.consensus, 'k', [0, 1]);
      const ac = new AbortController();
      const aborted = record(store.consensus, 'k', { from: 0, signal: ac.signal });
      await aborted.reached(1n, TIMEOUT);
      ac.abort();
      assert.is(await aborted.done, undefined);
      assert.is(await record(store.consensus, 'k', { signal: ac.signal }).done, undefined, 'an aborted signal yields nothing');
      for await (const version of store.consensus.follow('k', { from: 1 })) {
        assert.is(version.seqno, 1n);
        break;
      }
      const open = record(store.consensus, 'k', { from: 0 });
      await open.reached(1n, TIMEOUT);
      const bad: Array<[() => unknown, typeof TypeError | typeof RangeError]> = [
        [() => store.consensus.follow(5 as unknown as string), TypeError],
        [() => store.consensus.follow('k', { from: -1 }), RangeError],
        [() => store.consensus.follow('k', { from: 1.5 }), RangeError],
        [() => store.consensus.follow('k', { from: '3' as unknown as number }), TypeError],
        [() => store.consensus.follow('k', { pageSize: 0 }), RangeError],
        [() => store.consensus.follow('k', { pageSize: 10_001 }), RangeError],
        [() => store.consensus.follow('k', { signal: {} as AbortSignal }), TypeError],
        [() => store.consensus.follow('k', null as unknown as object), TypeError],
      ];
      for (const [call, kind] of bad) assert.throws(call, (err: unknown) => err instanceof kind, String(call));
      await store.consensus.close();
      assert.is(await Promise.race([open.done, sleep(3000).then(() => 'hung')]), undefined, 'close() ended it');
      assert.is(await record(store.consensus, 'k').done, undefined, 'a follow on a closed store yields nothing');
    } finally {
      await store.dispose();
    }
  });

  if (pubsub) {
    test('carried announcements: once caught up, follow and watch take commits without a read; larger payloads are read; binary data intact', async () => {
      const { counts, observer } = counting();
      const store = await backend.store({ ...options, observer });
      const writer = await backend.peer(store);
      const large = await backend.peer(store, { watch: { carryMaxBytes: 8 } });
      const ac = new AbortController();
      try {
        const binary = (seqno: number): string => String.fromCharCode(0, 255, 254, 0x22, 0x2b, seqno % 256, 10, 13);
        await commitAt(writer, 'c', [0]);
        await large.head('c');
        const followed = record(store.consensus, 'c', { from: 0 });
        const watched = watchOf(store.consensus, 'c', ac.signal);
        await followed.reached(0n, TIMEOUT);
        await watched.reached(0n, TIMEOUT);
        await sleep(50);
        counts.clear();
        for (const seqno of range(1, 20)) {
          await commitAt(writer, 'c', [seqno], binary);
          await followed.reached(BigInt(seqno), TIMEOUT);
          await watched.reached(BigInt(seqno), TIMEOUT);
        }
        assert.is(counts.get('scan') ?? 0, 0, 'follow read nothing for 20 carried commits');
        assert.is(counts.get('head') ?? 0, 0, 'watch read nothing for 20 carried commits');
        // 9 bytes: above the writer's carryMaxBytes of 8, announced plain, so both read.
        for (const seqno of range(21, 25)) {
          await commitAt(large, 'c', [seqno], (n) => `${binary(n)}!`);
          await followed.reached(BigInt(seqno), TIMEOUT);
          await watched.reached(BigInt(seqno), TIMEOUT);
        }
        assert.ok((counts.get('scan') ?? 0) >= 5, `follow read for each plain announcement (${counts.get('scan')})`);
        assert.ok((counts.get('head') ?? 0) >= 5, `watch read for each plain announcement (${counts.get('head')})`);
        await assertExactly(writer, followed);
        assert.equal(lines(watched.seen.slice(1, 21)), lines(followed.seen.slice(1, 21)), 'the watch saw every carried commit, bytes intact');
      } finally {
        ac.abort();
        await writer.close();
        await large.close();
        await store.dispose();
      }
    });

    test('watch: a reset under it still ends it with store-reset, though the new history\'s announcements carry data', async () => {
      const store = await backend.store(options);
      const ac = new AbortController();
      try {
        await commitAt(store.consensus, 'w', range(0, 2));
        const watched = watchOf(store.consensus, 'w', ac.signal);
        await watched.reached(2n, TIMEOUT);
        await wipe(backend, store);
        const fresh = await backend.peer(store);
        try {
          await commitAt(fresh, 'w', range(0, 5));
          const ended = await Promise.race([watched.done, sleep(TIMEOUT).then(() => 'still running')]);
          assert.instance(ended, ExternalError, String(ended));
          assert.is((ended as ExternalError).code, 'store-reset');
          assert.equal(watched.seen.map((head) => head.seqno), [2n]);
        } finally {
          await fresh.close();
        }
      } finally {
        ac.abort();
        await store.dispose();
      }
    });

    test('a chained announcement is taken only after the version in hand: one that skips a version makes it read', async () => {
      const { counts, observer } = counting();
      const store = await backend.store({ ...options, observer });
      const writer = await backend.peer(store);
      const quiet = await backend.peer(store, { watch: { announce: false } });
      try {
        await commitAt(writer, 'q', [0]);
        const followed = record(store.consensus, 'q', { from: 0 });
        await followed.reached(0n, TIMEOUT);
        await sleep(50);
        counts.clear();
        // 1 is not announced at all; 2's announcement names 1 as its previous: not chained to 0.
        await commitAt(quiet, 'q', [1]);
        await commitAt(writer, 'q', [2]);
        await followed.reached(2n, TIMEOUT);
        assert.equal(followed.seen.map((version) => version.seqno), [0n, 1n, 2n]);
        assert.ok((counts.get('scan') ?? 0) >= 1, 'it read');
      } finally {
        await writer.close();
        await quiet.close();
        await store.dispose();
      }
    });
  }

  test.run();
}

const notices = suite('announcements (notice.ts)');

notices('a carried notice reads back; other keys, plain notices and malformed messages are told apart', () => {
  const whole = (seqno: string, expected: string, marker: string, member: string, data: Buffer): Buffer =>
    carriedNotice(carriedHeader(seqno, expected, marker, member)!, data);
  const k = JSON.stringify('k');
  const payload = Buffer.from([0, 255, 0x22, 0x2b, 10]);
  const notice = whole(encodeSeqNo(7n), encodeSeqNo(5n), 'first:abc', k, payload)!;
  const reader = new NoticeReader(k);
  assert.equal(reader.read(notice), { seqno: encodeSeqNo(7n), previous: encodeSeqNo(5n), marker: 'first:abc', data: payload });
  assert.equal(reader.read(whole(encodeSeqNo(0n), '', 'first:abc', k, Buffer.alloc(0))),
    { seqno: encodeSeqNo(0n), previous: null, marker: 'first:abc', data: Buffer.alloc(0) });
  assert.equal(reader.read(Buffer.from(`${encodeSeqNo(3n)}${k}`)), { seqno: encodeSeqNo(3n) }, 'the plain form');
  // Another key whose member starts like this one's: JSON strings are prefix-free.
  const other = JSON.stringify('k"x');
  assert.is(reader.read(whole(encodeSeqNo(7n), encodeSeqNo(5n), 'first:abc', other, payload)), undefined);
  assert.is(reader.read(Buffer.from(`${encodeSeqNo(3n)}${other}`)), undefined);
  assert.is(new NoticeReader(other).read(notice), undefined);
  for (const bad of ['', encodeSeqNo(3n), `${encodeSeqNo(3n)}+`, `${encodeSeqNo(3n)}+${encodeSeqNo(2n)}9`,
    `${encodeSeqNo(3n)}+${encodeSeqNo(2n)}xx${k}`, `${encodeSeqNo(3n)}+${encodeSeqNo(2n)}99first:abc${k}`]) {
    assert.is(reader.read(Buffer.from(bad)), undefined, JSON.stringify(bad));
  }
  // No marker known, or one that cannot be named in two digits: the plain form is used instead.
  assert.is(carriedHeader(encodeSeqNo(1n), encodeSeqNo(0n), '', k), undefined);
  assert.is(carriedHeader(encodeSeqNo(1n), encodeSeqNo(0n), 'x'.repeat(100), k), undefined);
});

// Awaited before any suite is queued: run alone, uvu starts a run of its queue for each `run()`
// after an await, and the runs started before walk the same queue (suites ran twice at once).
const real = await realRedisAvailable();

notices.run();

followSuite(mockBackend(), 'pub/sub', {}, true);
followSuite(mockBackend(), 'polling', POLL, false);
if (real) {
  followSuite(redisBackend(), 'pub/sub', {}, true);
  followSuite(redisBackend(), 'polling', POLL, false);
  realOnly();
}

function realOnly(): void {
  const test = suite('follow on a real Redis');

  test('40 followers of 8 keys, 12 contending writers for 3 s: each yielded exactly its key\'s history', async () => {
    const prefix = freshPrefix('follow-load');
    const following = await RedisConsensus.connect(REDIS_URL, { prefix });
    const writers = await RedisConsensus.connect(REDIS_URL, { prefix });
    const raw = new Redis(REDIS_URL);
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    try {
      const keys = Array.from({ length: 8 }, (_, i) => `load-${i}`);
      const followers = Array.from({ length: 40 }, (_, i) => record(following, keys[i % keys.length]!, { from: 0, signal: ac.signal, pageSize: 16 }));
      const load = writeLoad(writers, keys, 12, ac.signal);
      await sleep(3000);
      await load.stop();
      let versions = 0;
      for (const followed of followers) versions += await assertExactly(writers, followed);
      console.log(`[follow] 40 followers, 12 writers for 3 s: ${JSON.stringify(load.outcomes)}, ${versions} versions yielded in all`);
      assert.ok(load.outcomes.committed > 100, 'the writers made progress');
    } finally {
      ac.abort();
      await following.close();
      await writers.close();
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });

  test('an old watcher (it compares what follows the seqno with its member) hears every commit while legacyAnnouncements is on', async () => {
    const prefix = freshPrefix('legacy');
    const consensus = await RedisConsensus.connect(REDIS_URL, { prefix });
    const listener = new Redis(REDIS_URL);
    const raw = new Redis(REDIS_URL);
    try {
      const names = keyNames(prefix, 'k');
      const heardByOld: string[] = [];
      listener.on('message', (_channel: string, message: string) => {
        // Exactly the parse of watch.ts before carried announcements.
        if (message.length <= 19 || message.slice(19) !== names.member) return;
        heardByOld.push(message.slice(0, 19));
      });
      await listener.subscribe(names.heads);
      await commitAt(consensus, 'k', range(0, 9));
      await sleep(50);
      assert.equal(heardByOld, range(0, 9).map((seqno) => encodeSeqNo(BigInt(seqno))));
    } finally {
      listener.disconnect();
      await consensus.close();
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });

  test.run();
}
