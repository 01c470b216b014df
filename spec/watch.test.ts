/**
 * `watch`: the shared suite on ioredis-mock and a real Redis, with pub/sub and with polling, and on
 * a Cluster this file starts (pub/sub); then, on real Redis, what only a server shows: the
 * announcement itself, one subscriber connection per store, no commands while nothing changes, and
 * 1,000 watches following 16 writers; and clients made with ioredis's `keyPrefix` (mock, Redis,
 * Cluster).
 */
import { setMaxListeners } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Cluster, Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { ExternalError, RedisConsensus } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { keySlot } from '../lib/cluster.js';
import { encodeSeqNo } from '../lib/seqno.js';
import { deletePrefix, freshPrefix, mockBackend, realRedisAvailable, redisBackend, REDIS_URL } from './support/backends.js';
import {
  clusterAvailable, clusterBackend, command, deleteClusterPrefix, infoFields, ready, slotOwners, startClusterInRange,
} from './support/cluster.js';
import type { TestCluster } from './support/cluster.js';
import { RedisServer, redisServerAvailable } from './support/redis-server.js';
import { assertWellFormed, commitNext, follow, sleep, watchSuite } from './support/watch.js';

const POLL = { watch: { mode: 'poll', pollIntervalMs: 25 } } as const;
/** Polling so rare that a watch which reaches a head in time was woken by its announcement. */
const ANNOUNCED_ONLY = { watch: { pollIntervalMs: 600_000 } } as const;

// Every await before the first suite is queued: run alone (`node build/spec/watch.test.js`), uvu
// starts a run of its queue after each `run()` that follows an await, and runs started earlier
// walk the same queue, so suites ran two and three times at once, and the first run to finish
// stopped the cluster under the others (the Cluster cases failed with "Connection is closed").
const real = await realRedisAvailable();
// A cluster of this file's own, on free ports in 20000-30000; stopped by the last suite.
const cluster = await clusterAvailable() ? await startClusterInRange(20000, 30000) : undefined;
watchSuite(mockBackend(), 'pub/sub', {});
watchSuite(mockBackend(), 'polling', POLL);
if (real) {
  watchSuite(redisBackend(), 'pub/sub', {});
  watchSuite(redisBackend(), 'polling', POLL);
  redisOnly();
}
keyPrefixSuite(real);
if (cluster !== undefined) {
  watchSuite(clusterBackend(cluster), 'pub/sub', ANNOUNCED_ONLY);
  clusterKeyPrefixSuite(cluster);
}

/** Subscribers of each channel, as Redis counts them. */
async function subscribers(raw: Redis, channels: string[]): Promise<number[]> {
  const reply = await raw.call('PUBSUB', 'NUMSUB', ...channels) as Array<string | number>;
  return channels.map((_, i) => Number(reply[2 * i + 1]));
}

const options = suite('watch options');

options('bad watch options are refused in the constructor', () => {
  const client = new RedisMock({ port: 39777 });
  const bad: Array<[object, typeof RangeError | typeof TypeError]> = [
    [{ mode: 'push' }, RangeError], [{ pollIntervalMs: 0 }, RangeError], [{ maxOutageMs: -1 }, RangeError],
    [{ announce: 'yes' }, TypeError], [{ carryMaxBytes: -1 }, RangeError], [{ carryMaxBytes: 1.5 }, RangeError],
    [{ legacyAnnouncements: 'yes' }, TypeError],
  ];
  for (const [watch, kind] of bad) {
    assert.throws(() => new RedisConsensus(client, { watch } as ConstructorParameters<typeof RedisConsensus>[1]), kind);
  }
});

options.run();

function redisOnly(): void {
  const test = suite('watch on a real Redis');

  test('a watch whose Redis stays away longer than maxOutageMs ends with an ExternalError', async () => {
    if (!redisServerAvailable()) return;
    const server = await RedisServer.startInRange(20000, 30000);
    const consensus = await RedisConsensus.connect(server.url, {
      prefix: freshPrefix('outage'), timeoutMs: 200, watch: { pollIntervalMs: 50, maxOutageMs: 1000 },
    });
    try {
      await commitNext(consensus, 'k', 1);
      const watched = follow(consensus, 'k');
      await watched.reached(0n, 5000);
      const crashedAt = Date.now();
      await server.crash();
      const ended = await Promise.race([watched.done, sleep(10_000).then(() => 'still running')]);
      assert.instance(ended, ExternalError, String(ended));
      const ms = Date.now() - crashedAt;
      assert.ok(ms >= 1000 && ms < 5000, `ended ${ms} ms after the crash`);
    } finally {
      await consensus.close();
      await server.stop();
    }
  });

  test('a commit is announced on its bucket channel carrying its data, then as seqno then member; carryMaxBytes, legacyAnnouncements; a mismatch and announce: false announce nothing', async () => {
    const prefix = freshPrefix('announce');
    const consensus = await RedisConsensus.connect(REDIS_URL, { prefix });
    const quiet = await RedisConsensus.connect(REDIS_URL, { prefix, watch: { announce: false } });
    const modern = await RedisConsensus.connect(REDIS_URL, { prefix, watch: { legacyAnnouncements: false } });
    const small = await RedisConsensus.connect(REDIS_URL, { prefix, watch: { carryMaxBytes: 3 } });
    const listener = new Redis(REDIS_URL);
    const raw = new Redis(REDIS_URL);
    try {
      const names = keyNames(prefix, 'k');
      const heard: string[] = [];
      listener.on('message', (channel: string, message: string) => {
        if (channel === names.heads) heard.push(message);
      });
      await listener.subscribe(names.heads);
      await commitNext(consensus, 'k', 2);
      assert.is(await consensus.compareAndSet('k', 0, { seqno: 5, data: Buffer.from('no') }), 'ExpectationMismatch');
      await commitNext(quiet, 'k', 1);
      await commitNext(consensus, 'k', 1);
      await commitNext(modern, 'k', 1);
      // With carryMaxBytes 3, a 3-byte payload is carried and a 4-byte one is not.
      assert.is(await small.compareAndSet('k', 4, { seqno: 5, data: Buffer.from('k@5') }), 'Committed');
      assert.is(await small.compareAndSet('k', 5, { seqno: 7, data: Buffer.from('k@7!') }), 'Committed');
      await sleep(50);
      const plain = (seqno: number): string => `${encodeSeqNo(BigInt(seqno))}"k"`;
      // Announcements name the marker's epoch id, the part before its commit count.
      const marker = String(await raw.get(names.epoch)).split('|')[0]!;
      const carried = (seqno: number, previous: number | null): string =>
        `${encodeSeqNo(BigInt(seqno))}+${previous === null ? ' '.repeat(19) : encodeSeqNo(BigInt(previous))}` +
        `${marker.length}${marker}"k"k@${seqno}`;
      // 0: a first commit names no previous; 2: announce false; 4: no legacy form; 7: a payload
      // above carryMaxBytes. The script names the epoch, so a store that knows none carries too.
      assert.equal(heard, [carried(0, null), plain(0), carried(1, 0), plain(1), carried(3, 2), plain(3), carried(4, 3),
        carried(5, 4), plain(5), plain(7)]);
    } finally {
      listener.disconnect();
      await consensus.close();
      await quiet.close();
      await modern.close();
      await small.close();
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });

  test('watches share one subscription per channel; abort, break and close unsubscribe', async () => {
    const prefix = freshPrefix('shared');
    const consensus = await RedisConsensus.connect(REDIS_URL, { prefix });
    const raw = new Redis(REDIS_URL);
    try {
      const keys = ['a', 'b', 'c'];
      const channels = keys.map((key) => keyNames(prefix, key).heads);
      const ac = new AbortController();
      const watches = keys.flatMap((key) => [follow(consensus, key, ac.signal), follow(consensus, key, ac.signal)]);
      for (const key of keys) await commitNext(consensus, key, 1);
      for (const watched of watches) await watched.reached(0n, 5000);
      assert.equal(await subscribers(raw, channels), [1, 1, 1]);
      const clients = String(await raw.client('LIST')).split('\n').filter((line) => / sub=[1-9]/.test(line));
      assert.ok(clients.length >= 1);
      ac.abort();
      await Promise.all(watches.map((watched) => watched.done));
      await sleep(50);
      assert.equal(await subscribers(raw, channels), [0, 0, 0], 'abort unsubscribed');
      for await (const head of consensus.watch('a')) {
        assert.is(head.seqno, 0n);
        assert.equal(await subscribers(raw, [channels[0]!]), [1]);
        break;
      }
      await sleep(50);
      assert.equal(await subscribers(raw, [channels[0]!]), [0], 'break unsubscribed');
      const open = follow(consensus, 'b');
      await open.reached(0n, 5000);
      await consensus.close();
      await open.done;
      await sleep(50);
      assert.equal(await subscribers(raw, [channels[1]!]), [0], 'close unsubscribed');
    } finally {
      await consensus.close();
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });

  test('1,000 idle watches cost Redis no commands; polling costs one head per watch per interval', async () => {
    if (!redisServerAvailable()) return;
    // A password: other processes looking for a free port PING servers they find, and a command
    // refused for want of AUTH is not counted (commandstats' rejected_calls, not calls).
    const server = await RedisServer.startInRange(20000, 30000);
    const admin = new Redis(server.url);
    await admin.config('SET', 'requirepass', 'idle-watches');
    admin.disconnect();
    const url = server.url.replace('redis://', 'redis://:idle-watches@');
    const raw = new Redis(url);
    try {
      const measure = async (options: ConstructorParameters<typeof RedisConsensus>[1]): Promise<{ commands: number; scripts: number }> => {
        const consensus = await RedisConsensus.connect(url, options);
        const ac = new AbortController();
        setMaxListeners(0, ac.signal);
        try {
          const keys = Array.from({ length: 1000 }, (_, i) => `idle-${i}`);
          for (const key of keys) await commitNext(consensus, key, 1);
          const watches = keys.map((key) => follow(consensus, key, ac.signal));
          for (const watched of watches) await watched.reached(0n, 10_000);
          await sleep(300);
          const before = infoFields(await raw.info('all'));
          await sleep(2000);
          const after = infoFields(await raw.info('all'));
          // Commands that ran (refused ones are not `calls`), but for this measure's own INFO and
          // failed AUTHs (a stranger's); a script's inner commands count too. Heads run as
          // EVALSHA_RO on Redis >= 7, as EVALSHA before.
          const calls = (fields: Record<string, string>, which: (command: string) => boolean): number => Object.entries(fields)
            .filter(([field]) => field.startsWith('cmdstat_') && which(field.slice('cmdstat_'.length)))
            .reduce((sum, [field, stats]) => sum + Number(/calls=(\d+)/.exec(stats)?.[1] ?? 0) -
              (field === 'cmdstat_auth' ? Number(/failed_calls=(\d+)/.exec(stats)?.[1] ?? 0) : 0), 0);
          const commands = (fields: Record<string, string>): number => calls(fields, (command) => command !== 'info');
          const scripts = (fields: Record<string, string>): number => calls(fields, (command) => command.startsWith('evalsha'));
          return { commands: (commands(after) - commands(before)) / 2, scripts: (scripts(after) - scripts(before)) / 2 };
        } finally {
          ac.abort();
          await consensus.close();
        }
      };
      const pubsub = await measure({ prefix: freshPrefix('idle') });
      const polling = await measure({ prefix: freshPrefix('idle-poll'), watch: { mode: 'poll', pollIntervalMs: 1000 } });
      console.log(`[watch] 1,000 idle watches: pub/sub ${pubsub.commands} commands/s; polling every 1 s ` +
        `${polling.scripts} head scripts/s = ${polling.commands} commands/s (with the commands inside the scripts)`);
      assert.equal(pubsub, { commands: 0, scripts: 0 });
      assert.ok(polling.scripts >= 800 && polling.scripts <= 1200, `polling ran ${polling.scripts} head scripts/s`);
    } finally {
      raw.disconnect();
      await server.stop();
    }
  });

  test('1,000 watches over 100 keys follow 16 writers for 5 s: strictly increasing, only committed heads, each ends at its final head', async () => {
    const prefix = freshPrefix('load');
    const watching = await RedisConsensus.connect(REDIS_URL, { prefix });
    const writers = await RedisConsensus.connect(REDIS_URL, { prefix });
    const raw = new Redis(REDIS_URL);
    const ac = new AbortController();
    try {
      setMaxListeners(0, ac.signal);
      const keys = Array.from({ length: 100 }, (_, i) => `load-${i}`);
      const watches = Array.from({ length: 1000 }, (_, i) => follow(watching, keys[i % keys.length]!, ac.signal));
      let stopping = false;
      let commits = 0;
      const writer = async (w: number): Promise<void> => {
        for (let step = 0; !stopping; step++) {
          const key = keys[(w * 7 + step * 13) % keys.length]!;
          const head = (await writers.head(key))?.seqno ?? null;
          const next = head === null ? 0n : head + 1n;
          const result = await writers.compareAndSet(key, head, { seqno: next, data: Buffer.from(`${key}@${next}`) });
          if (result === 'Committed') commits++;
        }
      };
      const running = Array.from({ length: 16 }, (_, w) => writer(w));
      await sleep(5000);
      stopping = true;
      await Promise.all(running);
      const stoppedAt = Date.now();
      const finals = new Map<string, bigint>();
      for (const key of keys) finals.set(key, (await writers.head(key))!.seqno);
      for (const watched of watches) await watched.reached(finals.get(watched.key)!, 10_000);
      const convergedMs = Date.now() - stoppedAt;
      const histories = new Map<string, Map<bigint, string>>();
      for (const key of keys) {
        histories.set(key, new Map((await writers.scan(key, 0, 1_000_000)).map((version) =>
          [version.seqno, Buffer.from(version.data).toString('utf8')])));
      }
      let yielded = 0;
      for (const watched of watches) {
        assertWellFormed(watched);
        assert.is(watched.seen.at(-1)!.seqno, finals.get(watched.key), `${watched.key} ends at its final head`);
        for (const head of watched.seen) {
          assert.is(histories.get(watched.key)!.get(head.seqno), Buffer.from(head.data).toString('utf8'),
            `${watched.key}@${head.seqno} was committed`);
        }
        yielded += watched.seen.length;
      }
      console.log(`[watch] 1,000 watches over 100 keys, 16 writers for 5 s: ${commits} commits, ${yielded} heads yielded, ` +
        `all at their final head ${convergedMs} ms after the writers stopped`);
      assert.ok(commits > 100, 'the writers made progress');
    } finally {
      ac.abort();
      await watching.close();
      await writers.close();
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });

  test.run();
}

/**
 * Commits seqno 0 to `k`, follows it, then commits `more` versions: the watch must yield the head
 * at 0 and then reach seqno `more`, well formed. `meanwhile` runs once the watch is at 0.
 */
async function hearsCommits(consensus: RedisConsensus, more: number, meanwhile?: () => Promise<void>): Promise<void> {
  await commitNext(consensus, 'k', 1);
  const watched = follow(consensus, 'k');
  await watched.reached(0n, 5000);
  await meanwhile?.();
  await commitNext(consensus, 'k', more);
  await watched.reached(BigInt(more), 2000);
  assertWellFormed(watched);
}

/**
 * A client made with ioredis's `keyPrefix`: ioredis puts the prefix before the scripts' KEYS, but
 * not before the heads channel, which is an argument; the library adds it there itself, so that
 * the announcements reach the watches and channels are namespaced like keys.
 */
function keyPrefixSuite(real: boolean): void {
  const test = suite('watch on a client with an ioredis keyPrefix');

  test('ioredis-mock: the watch hears each commit', async () => {
    const keyPrefix = `${freshPrefix('kp')}:`;
    const client = new RedisMock({ port: 39778, keyPrefix });
    const consensus = new RedisConsensus(client, { prefix: 'p', ...ANNOUNCED_ONLY });
    try {
      await hearsCommits(consensus, 3);
      assert.ok(await new RedisMock({ port: 39778 }).exists(`${keyPrefix}${keyNames('p', 'k').versions}`), 'the keys carry the keyPrefix');
    } finally {
      await consensus.close();
    }
  });

  test('a keyPrefix that is not text is refused in the constructor', () => {
    const client = new RedisMock({ port: 39779, keyPrefix: Buffer.from([0xff, 0xfe]) as unknown as string });
    assert.throws(() => new RedisConsensus(client), (err: unknown) => err instanceof TypeError && /keyPrefix/.test(err.message));
    const text = new RedisMock({ port: 39779, keyPrefix: Buffer.from('app:') as unknown as string });
    assert.not.throws(() => new RedisConsensus(text));
  });

  if (real) {
    test('real Redis: commits are announced on the keyPrefixed channel, the only one subscribed, and the watch hears them', async () => {
      const keyPrefix = `${freshPrefix('kp')}:`;
      const prefix = 'p';
      const client = new Redis(REDIS_URL, { keyPrefix });
      const consensus = new RedisConsensus(client, { prefix, ...ANNOUNCED_ONLY });
      const listener = new Redis(REDIS_URL);
      const raw = new Redis(REDIS_URL);
      try {
        const bare = keyNames(prefix, 'k').heads;
        const heard: string[] = [];
        listener.on('message', (channel: string, message: string) => heard.push(`${channel} ${message}`));
        await listener.subscribe(keyPrefix + bare, bare);
        await hearsCommits(consensus, 2, async () => {
          assert.equal(await subscribers(raw, [keyPrefix + bare, bare]), [2, 1], 'the watch subscribed the keyPrefixed channel only');
        });
        // The watch may reach the head before this other connection has delivered the last message.
        for (let waited = 0; heard.length < 6 && waited < 2000; waited += 10) await sleep(10);
        // Every commit carries its data (a first one names no previous), then the plain form.
        // Announcements name the marker's epoch id, the part before its commit count.
        const marker = String(await raw.get(`${keyPrefix}${keyNames(prefix, 'k').epoch}`)).split('|')[0]!;
        assert.equal(heard, [0, 1, 2].flatMap((seqno) => [
          `${keyPrefix}${bare} ${encodeSeqNo(BigInt(seqno))}+${seqno === 0 ? ' '.repeat(19) : encodeSeqNo(BigInt(seqno - 1))}` +
            `${marker.length}${marker}"k"k@${seqno}`,
          `${keyPrefix}${bare} ${encodeSeqNo(BigInt(seqno))}"k"`,
        ]));
        assert.is(await raw.exists(`${keyPrefix}${keyNames(prefix, 'k').versions}`), 1, 'the keys carry the keyPrefix');
      } finally {
        listener.disconnect();
        await consensus.close();
        client.disconnect();
        await deletePrefix(raw, `${keyPrefix}${prefix}`);
        raw.disconnect();
      }
    });
  }

  test.run();
}

/** The same on a Cluster, whose keyPrefix is a Cluster option or one of its `redisOptions`. */
function clusterKeyPrefixSuite(cluster: TestCluster): void {
  const test = suite('watch on a Cluster client with an ioredis keyPrefix');
  test.after(() => cluster.stop());

  const cases: Array<[string, (keyPrefix: string) => ConstructorParameters<typeof Cluster>[1]]> = [
    ['the Cluster option keyPrefix', (keyPrefix) => ({ keyPrefix })],
    ['redisOptions.keyPrefix', (keyPrefix) => ({ redisOptions: { keyPrefix } })],
  ];
  for (const [label, options] of cases) {
    test(`${label}: the watch hears each commit, over SSUBSCRIBE of the keyPrefixed channel on its slot's primary`, async () => {
      const keyPrefix = `${freshPrefix('kp')}:`;
      const prefix = 'p';
      const client = cluster.client(options(keyPrefix));
      const consensus = new RedisConsensus(client, { prefix, ...ANNOUNCED_ONLY });
      try {
        await hearsCommits(consensus, 2);
        const channel = keyPrefix + keyNames(prefix, 'k').heads;
        const owner = slotOwners(await cluster.topology()).get(keySlot(channel))!;
        const [, count] = await command(owner.port, 'PUBSUB', 'SHARDNUMSUB', channel) as [string, number];
        assert.is(Number(count), 1, `${channel} is subscribed on its primary`);
        assert.is(Number(await command(owner.port, 'EXISTS', `${keyPrefix}${keyNames(prefix, 'k').versions}`)), 1,
          'the keys carry the keyPrefix');
      } finally {
        await consensus.close();
        client.disconnect();
        const cleaner = cluster.client();
        await ready(cleaner);
        await deleteClusterPrefix(cleaner, `${keyPrefix}${prefix}`);
        cleaner.disconnect();
      }
    });
  }

  test.run();
}
