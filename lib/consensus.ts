import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { Appender } from './append.js';
import { checkSignal } from './arguments.js';
import { DEFAULT_URL, keyPrefixOf } from './client.js';
import type { RedisClient } from './client.js';
import { openCluster, openRedis } from './connect.js';
import { checkFollowOptions, Follows } from './follow.js';
import { Durability } from './durability.js';
import { KeyNamesCache } from './layout.js';
import { Link } from './link.js';
import { Operations } from './operations.js';
import { resolveOptions } from './options.js';
import { defineScripts } from './scripts.js';
import { openSubscriber } from './subscriber.js';
import type { CaSResult } from './types.js';
import type {
  AppendOptions, AppendResult, AppendUpdate, CallOptions, CompareAndSetOutcome, ConnectOptions,
  FollowOptions, RedisConsensusOptions, SeqNoInput, StoreResetAcknowledgement, VersionedData, VersionedDataInput,
  WatchCallOptions,
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
  /** The mechanics of every operation (operations.ts). */
  private readonly operations: Operations;
  private readonly appender: Appender;
  private readonly watches: Watches;
  private readonly follows: Follows;

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
    const owns = ownedClients.has(client);
    ownedClients.delete(client);
    const link = new Link(client, owns, settings.retry);
    this.link = link;
    defineScripts(link.reader);
    defineScripts(link.writer);
    this.operations = new Operations({
      prefix: this.prefix, link, names: new KeyNamesCache(this.prefix, keyPrefixOf(client)),
      timeoutMs: settings.timeoutMs, observer: settings.observer, maxPayloadBytes: settings.maxPayloadBytes,
      evictionPolicy: settings.evictionPolicy,
      durability: settings.durability === undefined ? undefined : new Durability(link, settings.durability),
      announce: !settings.watch.announce ? '' : link.writer.isCluster === true ? 'SPUBLISH' : 'PUBLISH',
      carryMaxBytes: settings.watch.carryMaxBytes, legacyAnnouncements: settings.watch.legacyAnnouncements,
    });
    this.appender = new Appender(this, settings.append, settings.rememberHeads, settings.observer);
    this.watches = new Watches({
      head: (key) => this.head(key),
      openSubscriber: () => openSubscriber(this.link.reader),
      knownEpoch: (names) => this.operations.knownEpoch(names),
    }, settings.watch);
    this.follows = new Follows({
      scan: (key, from, limit, signal) => this.scan(key, from, limit, { signal }),
      subscriber: () => this.watches.openSubscriber(),
      knownEpoch: (names) => this.operations.knownEpoch(names),
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
    options: ConnectOptions = {},
    redisOptions: RedisOptions = {},
  ): Promise<RedisConsensus> {
    const settings = resolveOptions(options);
    const client = await openRedis(url, { ...settings, signal: options.signal }, redisOptions);
    return RedisConsensus.adopt(client, options);
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
    options: ConnectOptions = {},
    clusterOptions: ClusterOptions = {},
  ): Promise<RedisConsensus> {
    const settings = resolveOptions(options);
    const cluster = await openCluster(nodes, { ...settings, signal: options.signal }, clusterOptions);
    return RedisConsensus.adopt(cluster, options);
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
   * @throws ExternalError (determinate) when Redis could not be read; code `store-reset` when the
   *   store was reset under this process (see `acknowledgeStoreReset`).
   */
  head(key: string, options?: CallOptions): Promise<VersionedData | null> {
    return this.operations.head(key, options);
  }

  /**
   * Appends `next` iff the key's head seqno is exactly `expected` (`null`: the key has no data).
   * Gaps are allowed. A mismatch changes nothing and never creates the key.
   *
   * @returns `CaSResult.Committed` or `CaSResult.ExpectationMismatch`.
   * @throws TypeError / RangeError for invalid arguments, including `next.seqno <= expected`;
   *   nothing is sent.
   * @throws ExternalError: `determinate: false` when the write was sent but its outcome is
   *   unknown (re-read to learn it); `determinate: true` when it certainly did not happen, e.g.
   *   code `store-reset` when the store was reset under this process (see `acknowledgeStoreReset`).
   */
  compareAndSet(
    key: string,
    expected: SeqNoInput | null,
    next: VersionedDataInput,
    options?: CallOptions,
  ): Promise<CaSResult> {
    return this.operations.compareAndSet(key, expected, next, options, false);
  }

  /**
   * `compareAndSet`, plus the head that goes with its result, in the same round trip: on a
   * mismatch, the head that caused it (seqno and data, read in the same atomic step; `null` when
   * the key has no data), so a retry needs no `head()` first; on a commit, `next` itself (its
   * `data` is the caller's bytes, not a copy). Reported to observers as a `compareAndSet`.
   * The plain `compareAndSet` stays the cheaper call when the head is not wanted: its mismatch
   * carries no payload.
   *
   * @example
   * ```ts
   * let head = await consensus.head(key);
   * for (;;) {
   *   const next = { seqno: head === null ? 0n : head.seqno + 1n, data: render(head) };
   *   const { result, head: current } = await consensus.compareAndSetWithHead(key, head?.seqno ?? null, next);
   *   if (result === CaSResult.Committed) break;
   *   head = current; // no second round trip
   * }
   * ```
   * @throws as `compareAndSet`.
   */
  compareAndSetWithHead(
    key: string,
    expected: SeqNoInput | null,
    next: VersionedDataInput,
    options?: CallOptions,
  ): Promise<CompareAndSetOutcome> {
    return this.operations.compareAndSet(key, expected, next, options, true);
  }

  /**
   * Appends the version `update` makes on top of the key's head: the read → compare-and-set →
   * retry loop, done once. `update(head)` gets the head (`null`: the key has no data) and returns
   * the next payload, or `undefined` to stop without writing; the new seqno is the head's plus 1
   * (0 on a key with no data). `update` runs once per attempt, each time with the head that
   * attempt is made on, so it must be a function of `head` alone (it may be async).
   *
   * - One round trip when nothing races it: the store remembers the last head it saw of each key
   *   (`append.rememberHeads`), and a mismatch brings the current head back with it.
   * - Appends to one key from this store take turns (single flight): each starts from the head
   *   the one before committed, so they never race each other.
   * - A race lost to another process is retried at once; from the second loss in a row on, after
   *   a jittered backoff.
   * - An attempt whose outcome is unknown (connection lost, no reply in time) is resolved before
   *   anything else: the same version is sent again, and the head its reply brings says whether
   *   the first one committed. `update` is never applied twice. Two writers whose payloads for the
   *   same seqno are byte-identical cannot be told apart: make payloads unique if that matters.
   *
   * @param options bounds of this append: `maxAttempts` (default 100), `timeoutMs` for the
   *   whole append, waiting for its turn included (default 10000), `backoff` (default
   *   `{ minDelayMs: 1, maxDelayMs: 50 }`); store-wide defaults in `RedisConsensusOptions.append`.
   * @returns `{ committed: true, head, attempts }` with the version committed, or
   *   `{ committed: false, head, attempts }` when `update` stopped (nothing written).
   * @throws TypeError / RangeError for invalid arguments, or what `update` throws (nothing written).
   * @throws ExternalError `determinate: true` when a bound was reached (the message names it:
   *   `maxAttempts` or `timeoutMs`) or Redis failed, and nothing was written;
   *   `determinate: false` when a version was sent whose outcome could not be learned within the
   *   bounds (the message names its seqno: read it back to learn whether it is yours).
   * @example
   * ```ts
   * const appended = await consensus.append('counter', (head) =>
   *   Buffer.from(String(Number(head?.data.toString() ?? '0') + 1)));
   * if (appended.committed) console.log(`counter is ${appended.head.data} at ${appended.head.seqno}`);
   * ```
   */
  append(key: string, update: AppendUpdate, options?: AppendOptions): Promise<AppendResult> {
    return this.appender.append(key, update, options);
  }

  /**
   * Up to `limit` versions with `seqno >= from`, ascending, as one consistent snapshot.
   * `limit` 0 gives `[]`; `SCAN_ALL` means every version.
   *
   * @throws TypeError / RangeError for invalid arguments.
   * @throws ExternalError (determinate) when Redis could not be read; code `store-reset` as for `head`.
   */
  scan(key: string, from: SeqNoInput, limit: number | bigint, options?: CallOptions): Promise<VersionedData[]> {
    return this.operations.scan(key, from, limit, options);
  }

  /**
   * Deletes every version with a seqno below `seqno`, iff `seqno` is at most the head. The head
   * is never deleted. Idempotent.
   *
   * @returns how many versions were deleted.
   * @throws TypeError / RangeError for invalid arguments.
   * @throws ExternalError `determinate: true` when the key has no data or `seqno` is above the
   *   head (nothing deleted); otherwise as for `compareAndSet` (`store-reset` included).
   */
  truncate(key: string, seqno: SeqNoInput, options?: CallOptions): Promise<number> {
    return this.operations.truncate(key, seqno, options);
  }

  /**
   * Every key that has ever had a committed version, each exactly once, in no promised order.
   * Streamed: it walks the registry with SSCAN one bucket at a time, and remembers only the keys
   * of the buckets in hand (SSCAN may repeat an element; this iterator never does).
   *
   * @throws ExternalError (determinate) when Redis could not be read.
   */
  listKeys(options?: CallOptions): AsyncGenerator<string, void, undefined> {
    return this.operations.listKeys(options);
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
   * @throws ExternalError when the head could not be read for `watch.maxOutageMs`, or at once
   *   with code `store-reset` when the store was reset under it (the watch ends).
   * @example
   * ```ts
   * const ac = new AbortController();
   * for await (const head of consensus.watch('orders/shard-7', { signal: ac.signal })) {
   *   console.log(`head is now ${head.seqno}`);
   * }
   * ```
   */
  watch(key: string, options: WatchCallOptions = {}): AsyncGenerator<VersionedData, void, undefined> {
    return this.watches.watch(key, this.operations.namesOf(key), checkSignal(options.signal));
  }

  /**
   * Every version of the key from `options.from` (omitted: its oldest stored), ascending, each
   * exactly once, then each new one as it commits, until `signal` aborts, `break`, or `close()`.
   * Unlike `watch`, nothing is skipped: it reads in pages of `pageSize` (default 256), memory
   * bounded whatever its lag, always on from the last version it has, so reconnects, restarts and
   * failovers neither skip nor repeat one. Resume with `from: lastApplied + 1n`. Versions truncated
   * before they were read (told from seqno gaps by the oldest stored seqno) end it with a
   * `TruncatedError` (code `truncated`) naming the first that may be missing. docs/follow.md.
   *
   * @throws TypeError / RangeError for an invalid key, `from`, `pageSize` or `signal` (nothing read).
   * @throws TruncatedError as above; ExternalError at once with code `store-reset` (or any other
   *   error retrying cannot mend), or when the key could not be read for `watch.maxOutageMs`.
   * @example
   * ```ts
   * const saved = await loadAppliedSeqno(); // bigint, or undefined before the first run
   * for await (const version of consensus.follow('orders/log', { from: saved === undefined ? 0n : saved + 1n })) {
   *   await apply(version.data);
   *   await saveAppliedSeqno(version.seqno);
   * }
   * ```
   */
  follow(key: string, options: FollowOptions = {}): AsyncGenerator<VersionedData, void, undefined> {
    return this.follows.follow(key, this.operations.namesOf(key), checkFollowOptions(options));
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
  ping(options?: CallOptions): Promise<number> {
    return this.operations.ping(options);
  }

  /**
   * Checks the server as `connect` does: refuses (or, with `evictionPolicy: 'warn'`, warns about) a
   * `maxmemory-policy` that may evict the store's keys (`allkeys-*`). `connect` and
   * `connectCluster` check by themselves; a client passed to the constructor is not checked until
   * this is called, so call it once after constructing.
   *
   * @throws ExternalError (determinate, code `eviction-policy`) when the policy is refused, or as
   *   for a read when the server cannot be asked.
   * @example
   * ```ts
   * const consensus = new RedisConsensus(client, { prefix: 'myapp' });
   * await consensus.check();
   * ```
   */
  check(options?: CallOptions): Promise<void> {
    return this.operations.check(options);
  }

  /**
   * Acknowledges that the store's data was reset (a Redis restarted without persistence, a flush,
   * its keys deleted), so that writers go on from the data as it now is.
   *
   * Each of the store's 1,024 buckets has an epoch marker, which its first commit writes and the
   * reset deletes with everything else. A process that used a bucket before the reset finds the
   * marker it knew gone, so its calls there fail with a determinate `ExternalError` of code
   * `store-reset` (nothing done) instead of committing seqnos from 0 again over the history it
   * believed settled; a write that meets the reset also marks the bucket reset, so that processes
   * started since are refused there too. They stay refused until this is called (here, or by
   * `redis-consensus ack-reset`): it writes a fresh marker into every bucket, which every process
   * adopts on its next call there, whatever marker it knew. Keys then read as they are now (a
   * key lost in the reset has no data, and its seqnos start over).
   *
   * A process started after the reset that writes in a bucket before any process that knew the old
   * marker has touched it cannot tell the empty store from a new one: that write commits. Idempotent;
   * on a store that was not reset it only replaces the markers. Acknowledge once the loss is
   * understood: it is what turns the loud failure back into writers starting over.
   *
   * @returns how many buckets there are, how many had been marked reset, and how many had no marker.
   * @throws ExternalError when a marker could not be written (indeterminate: it may have been).
   *   Calling it again is safe.
   * @example
   * ```ts
   * try {
   *   await consensus.compareAndSet(key, expected, next);
   * } catch (err) {
   *   if (err instanceof ExternalError && err.code === 'store-reset') {
   *     // Page an operator; once they have decided the data may start over:
   *     const { reset } = await consensus.acknowledgeStoreReset();
   *   }
   * }
   * ```
   */
  acknowledgeStoreReset(options?: CallOptions): Promise<StoreResetAcknowledgement> {
    return this.operations.acknowledgeStoreReset(options);
  }

  /**
   * Stops this instance. Ends every watch and quits the clients it created (by `connect`, the
   * extra write connection, the subscriber connections of watches); never a client it was given.
   * Calls made afterwards fail as determinate.
   */
  async close(): Promise<void> {
    this.follows.close();
    await this.watches.close();
    await this.link.close();
  }

}

/** Clients made by `connect`, handed to the constructor as owned. */
const ownedClients = new WeakSet<object>();
