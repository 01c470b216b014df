import { Cluster, Redis } from 'ioredis';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import { checkKey, checkSignal, checkTimeout, toExpected, toLimit, toNext, toSeqNo } from './arguments.js';
import { DEFAULT_URL, openClient, redactUrl, SAFE_WRITE_OPTIONS, safeClusterOptions } from './client.js';
import type { RedisClient } from './client.js';
import { Durability } from './durability.js';
import { BUCKETS, KeyNamesCache, keyOfMember, registryOf } from './layout.js';
import { Link } from './link.js';
import { begin, observe } from './observer.js';
import type { Reported } from './observer.js';
import { resolveOptions } from './options.js';
import {
  callScript, CAS_COMMITTED, decodeHead, decodeScan, decodeTruncate, defineScripts,
} from './scripts.js';
import type { CompareAndSetReply, HeadReply, ScanReply, ScriptArgs, ScriptName } from './scripts.js';
import { encodeSeqNo } from './seqno.js';
import { openSubscriber } from './subscriber.js';
import { CaSResult } from './types.js';
import type {
  CallOptions, Observer, RedisConsensusOptions, SeqNoInput, VersionedData, VersionedDataInput, WatchCallOptions,
} from './types.js';
import { Watches } from './watch.js';

/**
 * A consensus store on Redis: versioned binary data under string keys, appended to by
 * compare-and-set on sequence numbers. Safe to share between any number of processes.
 *
 * @example
 * ```ts
 * const consensus = await RedisConsensus.connect(process.env.REDIS_URL, { prefix: 'myapp' });
 * const head = await consensus.head('shard-1');
 * const next = { seqno: (head?.seqno ?? -1n) + 1n, data: Buffer.from('state') };
 * if ((await consensus.compareAndSet('shard-1', head?.seqno ?? null, next)) === CaSResult.Committed) {
 *   // we own seqno next.seqno
 * }
 * await consensus.close();
 * ```
 */
export class RedisConsensus {
  /** The prefix of every Redis key of this store. */
  readonly prefix: string;
  private readonly link: Link;
  private readonly timeoutMs: number;
  private readonly durability: Durability | undefined;
  private readonly observer: Observer | undefined;
  private readonly names: KeyNamesCache;
  private readonly watches: Watches;
  /** The command `compareAndSet` announces commits with: PUBLISH, SPUBLISH (Cluster), or none. */
  private readonly announce: '' | 'PUBLISH' | 'SPUBLISH';

  /**
   * Wraps a client: ioredis `Redis` or `Cluster` (5 or 6), ioredis-mock, or any client with the same
   * API. The client stays the caller's: `close()` does not quit it. If it would re-send commands
   * after a reconnect (ioredis's default), writes go over one extra connection made with
   * `client.duplicate()` and `autoResendUnfulfilledCommands: false`, which `close()` does quit.
   *
   * @throws TypeError or RangeError for invalid options.
   */
  constructor(client: RedisClient, options: RedisConsensusOptions = {}) {
    const settings = resolveOptions(options);
    this.prefix = settings.prefix;
    this.timeoutMs = settings.timeoutMs;
    this.observer = settings.observer;
    this.names = new KeyNamesCache(this.prefix);
    const owns = ownedClients.has(client);
    ownedClients.delete(client);
    this.link = new Link(client, owns, settings.retry);
    this.durability = settings.durability === undefined ? undefined : new Durability(this.link, settings.durability);
    defineScripts(this.link.reader);
    defineScripts(this.link.writer);
    this.announce = !settings.watch.announce ? '' : this.link.writer.isCluster === true ? 'SPUBLISH' : 'PUBLISH';
    this.watches = new Watches({
      head: (key) => this.head(key),
      openSubscriber: () => openSubscriber(this.link.reader),
    }, settings.watch);
  }

  /**
   * Connects to Redis at `url` (default `redis://127.0.0.1:6379`) with a client of its own,
   * configured never to re-send a write after a reconnect, and waits until it is ready.
   * `close()` quits that client. `redisOptions` go to ioredis's `Redis` as they are (e.g.
   * `connectTimeout`, `tls`, `retryStrategy`), apart from those safety settings.
   *
   * @throws ExternalError (determinate) when Redis cannot be reached.
   */
  static async connect(
    url: string = DEFAULT_URL,
    options: RedisConsensusOptions = {},
    redisOptions: RedisOptions = {},
  ): Promise<RedisConsensus> {
    const client = new Redis(url, { ...redisOptions, ...SAFE_WRITE_OPTIONS, lazyConnect: true });
    return RedisConsensus.adopt(await openClient(client, redactUrl(url)), options);
  }

  /**
   * Connects to a Redis Cluster through any of `nodes` with a Cluster client of its own, made never
   * to re-send a write (on its nodes, and after a node fails), and waits until it knows the slots.
   * `close()` quits that client. `clusterOptions` go to ioredis's `Cluster` as they are, apart from
   * those safety settings.
   *
   * @example
   * ```ts
   * const consensus = await RedisConsensus.connectCluster([{ host: '10.0.0.1', port: 7000 }], { prefix: 'myapp' });
   * ```
   * @throws ExternalError (determinate) when the cluster cannot be reached.
   */
  static async connectCluster(
    nodes: ClusterNode[],
    options: RedisConsensusOptions = {},
    clusterOptions: ClusterOptions = {},
  ): Promise<RedisConsensus> {
    const cluster = new Cluster(nodes, { ...safeClusterOptions(clusterOptions), lazyConnect: true });
    return RedisConsensus.adopt(await openClient(cluster, 'the Redis Cluster'), options);
  }

  /** Wraps a client that `connect` or `connectCluster` opened: the instance owns and closes it. */
  private static adopt(client: Redis | Cluster, options: RedisConsensusOptions): RedisConsensus {
    ownedClients.add(client);
    try {
      return new RedisConsensus(client, options);
    } catch (err) {
      ownedClients.delete(client);
      client.disconnect();
      throw err;
    }
  }

  /**
   * The version with the highest seqno, or `null` when the key has no data.
   *
   * @throws TypeError when `key` is not a string.
   * @throws ExternalError (determinate) when Redis could not be read.
   */
  async head(key: string, options?: CallOptions): Promise<VersionedData | null> {
    const names = this.names.get(checkKey(key));
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'head', async (): Promise<Reported<VersionedData | null>> => {
      const head = decodeHead(await this.script<HeadReply>('head', false, timeoutMs, [names.versions, names.data]));
      return head === null ? { result: null } : { result: head, bytesRead: head.data.length, count: 1 };
    });
  }

  /**
   * Appends `next` iff the key's head seqno is exactly `expected` (`null`: the key has no data).
   * Gaps are allowed. A mismatch changes nothing and never creates the key.
   *
   * @returns `CaSResult.Committed` or `CaSResult.ExpectationMismatch`.
   * @throws TypeError / RangeError for invalid arguments, including `next.seqno <= expected`;
   *   nothing is sent.
   * @throws ExternalError: `determinate: false` when the write was sent but its outcome is
   *   unknown (re-read to learn it); `determinate: true` when it certainly did not happen.
   */
  async compareAndSet(
    key: string,
    expected: SeqNoInput | null,
    next: VersionedDataInput,
    options?: CallOptions,
  ): Promise<CaSResult> {
    const names = this.names.get(checkKey(key));
    const expectedSeqNo = toExpected(expected);
    const { seqno, payload } = toNext(next, expectedSeqNo);
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'compareAndSet', async (): Promise<Reported<CaSResult>> => {
      const mark = this.durability?.mark(names.versions);
      const reply = await this.script<CompareAndSetReply>('compareAndSet', true, timeoutMs, [
        names.versions, names.data, names.registry, names.heads,
        expectedSeqNo === null ? '' : encodeSeqNo(expectedSeqNo), encodeSeqNo(seqno), payload, names.member, this.announce,
      ]);
      if (reply !== CAS_COMMITTED) return { result: CaSResult.ExpectationMismatch, outcome: 'mismatch' };
      if (mark !== undefined) await this.durability!.acknowledged('compareAndSet', names.versions, mark);
      return { result: CaSResult.Committed, bytesWritten: payload.length, count: 1 };
    });
  }

  /**
   * Up to `limit` versions with `seqno >= from`, ascending, as one consistent snapshot.
   * `limit` 0 gives `[]`; `SCAN_ALL` means every version.
   *
   * @throws TypeError / RangeError for invalid arguments.
   * @throws ExternalError (determinate) when Redis could not be read.
   */
  async scan(key: string, from: SeqNoInput, limit: number | bigint, options?: CallOptions): Promise<VersionedData[]> {
    const names = this.names.get(checkKey(key));
    const fromSeqNo = toSeqNo(from, 'from');
    const count = toLimit(limit);
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'scan', async (): Promise<Reported<VersionedData[]>> => {
      if (count === 0n) return { result: [] };
      const limitArg = count < LIMIT_AS_DIGITS_BELOW ? count.toString() : '-1';
      const versions = decodeScan(await this.script<ScanReply>('scan', false, timeoutMs,
        [names.versions, names.data, encodeSeqNo(fromSeqNo), limitArg]));
      let bytesRead = 0;
      for (const version of versions) bytesRead += version.data.length;
      return { result: versions, bytesRead, count: versions.length };
    });
  }

  /**
   * Deletes every version with a seqno below `seqno`, iff `seqno` is at most the head. The head
   * is never deleted. Idempotent.
   *
   * @returns how many versions were deleted.
   * @throws TypeError / RangeError for invalid arguments.
   * @throws ExternalError `determinate: true` when the key has no data or `seqno` is above the
   *   head (nothing deleted); otherwise as for `compareAndSet`.
   */
  async truncate(key: string, seqno: SeqNoInput, options?: CallOptions): Promise<number> {
    const names = this.names.get(checkKey(key));
    const upper = toSeqNo(seqno, 'seqno');
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'truncate', async (): Promise<Reported<number>> => {
      const mark = this.durability?.mark(names.versions);
      const deleted = decodeTruncate(await this.script<number>('truncate', true, timeoutMs,
        [names.versions, names.data, encodeSeqNo(upper)]), upper);
      if (deleted > 0 && mark !== undefined) await this.durability!.acknowledged('truncate', names.versions, mark);
      return { result: deleted, count: deleted };
    });
  }

  /**
   * Every key that has ever had a committed version, each exactly once, in no promised order.
   * Streamed: it walks the registry with SSCAN one bucket at a time, and remembers only the keys
   * of the buckets in hand (SSCAN may repeat an element; this iterator never does).
   *
   * @throws ExternalError (determinate) when Redis could not be read.
   */
  async *listKeys(options?: CallOptions): AsyncGenerator<string, void, undefined> {
    const timeoutMs = this.callTimeout(options);
    const observation = begin(this.observer, 'listKeys');
    let yielded = 0;
    let failed = false;
    try {
      for (let first = 0; first < BUCKETS; first += LIST_WINDOW) {
        const buckets = Array.from({ length: Math.min(LIST_WINDOW, BUCKETS - first) }, (_, i) => first + i);
        const members = await Promise.all(buckets.map((bucket) => this.registryMembers(bucket, timeoutMs)));
        for (const bucket of members) {
          for (const member of bucket) {
            yielded++;
            yield keyOfMember(member);
          }
        }
      }
    } catch (err) {
      failed = true;
      observation.fail(err);
      throw err;
    } finally {
      // Also when the caller stops early (`break`): what it took is reported.
      if (!failed) observation.finish({ count: yielded });
    }
  }

  /**
   * The key's heads as they commit: the current head first (read once the watch is subscribed,
   * so no commit in between is missed; nothing while the key has no data), then each newer head.
   * Seqnos strictly increase. A consumer slower than the commits gets the latest head when it
   * asks for the next, never a backlog. After any gap (reconnect, restart, failover, resharding,
   * a lost message) the head is read again, so every watch converges to the key's head.
   *
   * With pub/sub (the default) all watches of the store share one subscriber connection (one per
   * shard on a Cluster, `SSUBSCRIBE`, Redis >= 7) that this store owns and `close()` quits; a
   * watch costs Redis nothing while its key does not change, and one head read per commit it
   * hears of. With `watch: { mode: 'poll' }` each watch reads the head every `pollIntervalMs`.
   *
   * Ends normally when `options.signal` aborts, when the loop stops (`break`), or on `close()`.
   * @throws TypeError when `key` is not a string or `signal` is not an AbortSignal.
   * @throws ExternalError when the head could not be read for `watch.maxOutageMs` (the watch ends).
   * @example
   * ```ts
   * const ac = new AbortController();
   * for await (const head of consensus.watch('orders/shard-7', { signal: ac.signal })) {
   *   console.log(`head is now ${head.seqno}`);
   * }
   * ```
   */
  watch(key: string, options: WatchCallOptions = {}): AsyncGenerator<VersionedData, void, undefined> {
    const names = this.names.get(checkKey(key));
    return this.watches.watch(key, names, checkSignal(options.signal));
  }

  /**
   * A liveness check for health endpoints: one `PING` round trip over the connection that
   * carries reads (on a Cluster, to whichever node ioredis picks). Not reported to the observer.
   *
   * @returns the round-trip time in milliseconds.
   * @throws ExternalError (determinate) when Redis cannot be reached or does not answer in time.
   * @example
   * ```ts
   * const ms = await consensus.ping({ timeoutMs: 500 });
   * ```
   */
  async ping(options?: CallOptions): Promise<number> {
    const timeoutMs = this.callTimeout(options);
    const started = performance.now();
    await this.link.run(false, 'ping', timeoutMs, (client) => client.ping());
    return performance.now() - started;
  }

  /**
   * Stops this instance. Ends every watch and quits the clients it created (by `connect`, the
   * extra write connection, the subscriber connections of watches); never a client it was given. Calls made afterwards fail as determinate.
   */
  async close(): Promise<void> {
    await this.watches.close();
    await this.link.close();
  }

  private async registryMembers(bucket: number, timeoutMs: number): Promise<Set<string>> {
    const registry = registryOf(this.prefix, bucket);
    const members = new Set<string>();
    let cursor = '0';
    do {
      const [nextCursor, page] = await this.link.run(false, 'listKeys', timeoutMs,
        (client) => client.sscan(registry, cursor, 'COUNT', 1000));
      for (const member of page) members.add(member);
      cursor = nextCursor;
    } while (cursor !== '0');
    return members;
  }

  private callTimeout(options: CallOptions | undefined): number {
    if (options === undefined || options.timeoutMs === undefined) return this.timeoutMs;
    return checkTimeout(options.timeoutMs, 'options.timeoutMs');
  }

  private script<T>(script: ScriptName, isWrite: boolean, timeoutMs: number, args: ScriptArgs): Promise<T> {
    return this.link.run(isWrite, script, timeoutMs, (client) => callScript<T>(client, script, args));
  }
}

/** Largest LIMIT passed to a script as digits; ioredis-mock's Lua integers are 32-bit. */
const LIMIT_AS_DIGITS_BELOW = 2n ** 31n;

/** How many registry buckets `listKeys` walks at once. */
const LIST_WINDOW = 16;

/** Clients made by `connect`, handed to the constructor as owned. */
const ownedClients = new WeakSet<object>();
