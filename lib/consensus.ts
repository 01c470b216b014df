import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { Appender } from './append.js';
import { checkCallOptions } from './arguments.js';
import { DEFAULT_URL, keyPrefixOf } from './client.js';
import type { RedisClient } from './client.js';
import { checkClusterArguments, checkConnectArguments, openCluster, openRedis } from './connect.js';
import { checkFollowOptions, Follows } from './follow.js';
import { Durability } from './durability.js';
import { KeyNamesCache } from './layout.js';
import { Leases } from './lease.js';
import type { Lease } from './lease-holder.js';
import type { LeaseOptions, LeaseState } from './lease-record.js';
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
 * const committed = await consensus.compareAndSet('shard-1', null, { seqno: 0n, data: Buffer.from('state') });
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
  private readonly leases: Leases;
  private readonly follows: Follows;

  /**
   * Wraps a client: ioredis `Redis` or `Cluster` (5 or 6), ioredis-mock, or any client with the same
   * API. The client stays the caller's: `close()` does not quit it. If it would re-send commands
   * after a reconnect (ioredis's default), writes go over one extra connection made with
   * `client.duplicate()` and `autoResendUnfulfilledCommands: false`, which `close()` does quit.
   *
   * @throws TypeError or RangeError for invalid options (`options` not an object included).
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
      maxKeyBytes: settings.maxKeyBytes, evictionPolicy: settings.evictionPolicy,
      durability: settings.durability === undefined ? undefined : new Durability(link, settings.durability),
      announce: !settings.watch.announce ? '' : link.writer.isCluster === true ? 'SPUBLISH' : 'PUBLISH',
      carryMaxBytes: settings.watch.carryMaxBytes, legacyAnnouncements: settings.watch.legacyAnnouncements,
    });
    this.appender = new Appender(this, settings.append, settings.rememberHeads, settings.observer,
      (key, seqno, options) => this.operations.confirm(key, seqno, options));
    this.watches = new Watches({
      head: (key) => this.head(key),
      openSubscriber: () => openSubscriber(this.link.reader),
      knownEpoch: (names) => this.operations.knownEpoch(names),
    }, settings.watch);
    this.follows = new Follows({
      scan: (key, from, limit) => this.scan(key, from, limit),
      subscriber: () => this.watches.openSubscriber(),
      knownEpoch: (names) => this.operations.knownEpoch(names),
    }, settings.watch);
    this.leases = new Leases(this.operations, (key, signal) => this.watch(key, { signal }), settings.timeoutMs);
  }

  /**
   * Connects to Redis at `url` (default `redis://127.0.0.1:6379`; only `undefined` means it, an
   * empty string is an error) with a client of its own, configured never to re-send a write after
   * a reconnect, and waits until it is ready; `close()` quits it. `redisOptions` go to ioredis as
   * they are, apart from those safety settings. No error, nor its `cause`, shows a password given.
   *
   * @throws TypeError / RangeError for invalid arguments: a URL ioredis cannot read (`%zz` in its
   *   password), a database index (path, `?db=`, `redisOptions.db`) that is not a non-negative
   *   integer; nothing is connected then.
   * @throws ExternalError (determinate) when Redis cannot be reached.
   */
  static async connect(
    url: string = DEFAULT_URL,
    options: ConnectOptions = {},
    redisOptions: RedisOptions = {},
  ): Promise<RedisConsensus> {
    checkConnectArguments(url, options, redisOptions);
    const settings = resolveOptions(options);
    const client = await openRedis(url, { ...settings, signal: options.signal }, redisOptions);
    return RedisConsensus.adopt(client, options);
  }

  /**
   * Connects to a Redis Cluster through any of `nodes` with a Cluster client of its own, made never
   * to re-send a write, and waits until it knows the slots; `close()` quits it. `clusterOptions` go
   * to ioredis's `Cluster` as they are, apart from those safety settings.
   *
   * @throws TypeError for `nodes` that is not a non-empty array, or invalid options.
   * @throws ExternalError (determinate) when the cluster cannot be reached.
   */
  static async connectCluster(
    nodes: ClusterNode[],
    options: ConnectOptions = {},
    clusterOptions: ClusterOptions = {},
  ): Promise<RedisConsensus> {
    checkClusterArguments(nodes, options, clusterOptions);
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
   * Every method checks its arguments before anything is sent or armed: a key that is not a string
   * or is longer than `maxKeyBytes`, options that are not an object, a `signal` that is not an
   * AbortSignal are TypeErrors / RangeErrors, and nothing is written. Errors: docs/errors.md.
   *
   * @throws TypeError when `key` is not a string, `options` not an object or its `signal` not an
   *   AbortSignal; RangeError when the key is longer than `maxKeyBytes`. Nothing is sent or armed.
   * @throws ExternalError (determinate) when Redis could not be read; code `store-reset` when the
   *   store was reset under this process, `store-rollback` when commits it had seen in the key's
   *   bucket are gone (a failover lost them; see `acknowledgeStoreReset`).
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
   *   code `store-reset` when the store was reset under this process, `store-rollback` when commits it
   *   had seen in the bucket are gone (see `acknowledgeStoreReset`).
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
   * mismatch, the head that caused it (`null`: no data), so a retry needs no `head()` first; on a
   * commit, `next` itself. Reported to observers as a `compareAndSet`; the plain `compareAndSet`
   * is cheaper when the head is not wanted.
   *
   * @example
   * ```ts
   * const { result, head } = await consensus.compareAndSetWithHead(key, expected, next);
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
   * retry loop, done once. `update(head)` gets the head (`null`: no data) and returns the next
   * payload, or `undefined` to stop without writing; the new seqno is the head's plus 1. `update`
   * runs once per attempt, with that attempt's head, so it must be a function of `head` alone.
   * One round trip when nothing races it (remembered heads); appends to one key from this store
   * take turns; lost races retry with jittered backoff; an unknown outcome is resolved by sending
   * the same version again, never by running `update` twice. Details: docs/contract.md#append.
   *
   * @param options `maxAttempts` (100), `timeoutMs` for the whole append, `update` and waiting
   *   included (10000), `backoff`; store-wide defaults in `RedisConsensusOptions.append`.
   * @returns `{ committed, head, attempts }`: `committed: false` when `update` stopped.
   * @throws TypeError / RangeError for invalid arguments, or what `update` throws (nothing written).
   * @throws ExternalError: determinate with code `timeout` / `attempts-exhausted` when a bound was
   *   reached, or when Redis failed, nothing written; indeterminate when a version was sent whose
   *   outcome could not be learned in the bounds (the message names its seqno: read it back).
   * @example
   * ```ts
   * const appended = await consensus.append('counter', (head) =>
   *   Buffer.from(String(Number(head?.data.toString() ?? '0') + 1)));
   * ```
   */
  append(key: string, update: AppendUpdate, options?: AppendOptions): Promise<AppendResult> {
    return this.appender.append(key, update, options);
  }

  /**
   * Up to `limit` versions with `seqno >= from`, ascending, as one consistent snapshot.
   * `limit` 0 gives `[]`; `SCAN_ALL` means every version.
   *
   * Read in bounded steps (at most 1,000 versions and 1 MiB of payloads per script call, each with
   * its own `timeoutMs`), so that a long history never blocks Redis for long; the steps read up to
   * the head the first one saw. A truncate between two steps that removes versions not read yet
   * makes the scan start over (the result is then the snapshot after that truncate). For a long
   * history whose versions need not all be in memory at once, use `scanStream`.
   *
   * @throws TypeError / RangeError for invalid arguments.
   * @throws ExternalError (determinate) when Redis could not be read; code `store-reset` as for `head`.
   */
  scan(key: string, from: SeqNoInput, limit: number | bigint, options?: CallOptions): Promise<VersionedData[]> {
    return this.operations.scan(key, from, limit, options);
  }

  /**
   * Every version with `seqno >= from`, ascending, streamed: `scan(key, from, SCAN_ALL)` read in
   * bounded steps (at most 1,000 versions and 1 MiB per script call, `timeoutMs` each) and handed
   * out as asked for, so memory holds one step. The snapshot of the key when the first step ran.
   *
   * @throws TypeError / RangeError for invalid arguments (on the first `next()`).
   * @throws ExternalError (determinate) code `scan-truncated` when a `truncate` removed versions
   *   not yet handed out; otherwise as `scan`.
   * @example
   * ```ts
   * for await (const version of consensus.scanStream('orders/shard-7', 0n)) apply(version);
   * ```
   */
  scanStream(key: string, from: SeqNoInput, options?: CallOptions): AsyncGenerator<VersionedData, void, undefined> {
    return this.operations.scanStream(key, from, options);
  }

  /**
   * Deletes every version with a seqno below `seqno`, iff `seqno` is at most the head. The head
   * is never deleted. Idempotent.
   *
   * Deletes in bounded steps (at most 2,000 versions per script call, oldest first, each with its
   * own `timeoutMs`), so that a long history never blocks Redis for long. A truncate that fails
   * part-way has deleted the oldest of those versions and no others; calling it again finishes.
   *
   * @returns how many versions were deleted.
   * @throws TypeError / RangeError for invalid arguments.
   * @throws ExternalError `determinate: true` when the key has no data or `seqno` is above the
   *   head (nothing deleted); otherwise as for `compareAndSet` (`store-reset` included), and
   *   `determinate: false` for any failure after a step deleted versions.
   */
  truncate(key: string, seqno: SeqNoInput, options?: CallOptions): Promise<number> {
    return this.operations.truncate(key, seqno, options);
  }

  /**
   * Every key that has ever had a committed version, each exactly once, in no promised order.
   * Streamed: it walks the registry with SSCAN, 16 of its 1,024 buckets at a time, and remembers
   * only the keys of the buckets in hand (SSCAN may repeat an element; this iterator never does):
   * about 1/64 of the keys (~1.7 MiB of heap at 1M keys).
   *
   * @throws TypeError at once when `options` is not an object or its `signal` not an AbortSignal.
   * @throws ExternalError (determinate) when Redis could not be read.
   */
  listKeys(options?: CallOptions): AsyncGenerator<string, void, undefined> {
    return this.operations.listKeys(checkCallOptions(options));
  }

  /**
   * The key's heads as they commit: the current head first (read once subscribed, so no commit in
   * between is missed), then each newer head; seqnos strictly increase, and a slow consumer gets
   * the latest head, never a backlog. After any gap (reconnect, failover, resharding) the head is
   * read again. All watches of the store share one subscriber connection; `watch: { mode: 'poll' }`
   * polls instead. Ends when `options.signal` aborts, on `break`, or on `close()`. docs/contract.md#watch.
   *
   * @throws TypeError / RangeError at once for an invalid key, options or signal.
   * @throws ExternalError when the head could not be read for `watch.maxOutageMs`, or at once with
   *   code `store-reset`, or `store-rollback` when a head it yielded was lost in a failover.
   * @example
   * ```ts
   * for await (const head of consensus.watch('orders/shard-7', { signal })) console.log(head.seqno);
   * ```
   */
  watch(key: string, options?: WatchCallOptions): AsyncGenerator<VersionedData, void, undefined> {
    const names = this.operations.namesOf(key);
    return this.watches.watch(key, names, checkCallOptions(options)?.signal);
  }

  /**
   * Acquires the lease on `key`, waiting in arrival order until it is free: ownership that expires
   * by the Redis server's clock unless renewed (in the background), with a fencing token
   * (docs/leases.md). Act as the owner only while `lease.held`; pass `lease.token` to the resource;
   * `lease.signal` aborts on a loss. Use the key for leases only; `close()` releases them.
   *
   * @throws TypeError / RangeError for invalid arguments, or a key holding other data; the reason
   *   of `options.signal`; ExternalError that retrying cannot help (`store-reset`, `store-rollback`,
   *   `closed`, ...).
   * @example
   * ```ts
   * const lease = await consensus.acquireLease('leader', { ttlMs: 5000 });
   * while (lease.held) await leadOnce({ fencingToken: lease.token, signal: lease.signal });
   * await lease.release();
   * ```
   */
  async acquireLease(key: string, options?: LeaseOptions): Promise<Lease> {
    return this.leases.acquire(key, this.operations.namesOf(key), options, true) as Promise<Lease>;
  }

  /** `acquireLease` once, never queued: `null` when held or others wait. @throws as `acquireLease`, or after 3 failed calls. */
  async tryAcquireLease(key: string, options?: LeaseOptions): Promise<Lease | null> {
    return this.leases.acquire(key, this.operations.namesOf(key), options, false);
  }

  /** The lease on `key` by the server's clock now (`null`: no data); writes nothing. @throws as `head`. */
  async readLease(key: string, options?: CallOptions): Promise<LeaseState | null> {
    return this.leases.read(this.operations.namesOf(key), options?.timeoutMs);
  }

  /**
   * Every version of the key from `options.from` (omitted: its oldest stored), ascending, each
   * exactly once, then each new one as it commits, until `signal` aborts, `break`, or `close()`:
   * read in pages of `pageSize` (256), memory bounded whatever its lag, resumed from the last
   * version in hand across reconnects and failovers. Resume with `from: lastApplied + 1n`. docs/follow.md.
   *
   * @throws TypeError / RangeError for an invalid key, `from`, `pageSize` or `signal` (nothing read).
   * @throws TruncatedError (code `truncated`) naming the first version truncated before it was read;
   *   ExternalError at once with `store-reset` / `store-rollback`, or after `watch.maxOutageMs`.
   * @example
   * ```ts
   * for await (const version of consensus.follow('orders/log', { from: saved + 1n })) await apply(version);
   * ```
   */
  follow(key: string, options: FollowOptions = {}): AsyncGenerator<VersionedData, void, undefined> {
    return this.follows.follow(key, this.operations.namesOf(key), checkFollowOptions(options));
  }

  /**
   * A liveness check for health endpoints: one `PING` round trip over the connection that carries
   * reads, not reported to the observer. Resolves to the round-trip time in ms.
   * @throws ExternalError (determinate) when Redis cannot be reached or does not answer in time.
   */
  ping(options?: CallOptions): Promise<number> {
    return this.operations.ping(options);
  }

  /**
   * Checks the server as `connect` does: refuses (with `evictionPolicy: 'warn'`, warns about) a
   * `maxmemory-policy` that may evict the store's keys. A client passed to the constructor is not
   * checked until this is called: call it once after constructing.
   *
   * @throws ExternalError (determinate, code `eviction-policy`) when the policy is refused, or as
   *   for a read when the server cannot be asked.
   */
  check(options?: CallOptions): Promise<void> {
    return this.operations.check(options);
  }

  /**
   * Acknowledges that the store's data was reset (Redis restarted without persistence, flushed,
   * keys deleted) or rolled back (a failover lost commits), so that writers go on from the data as
   * it now is. Until then every process that knew the lost history is refused with a determinate
   * `store-reset` / `store-rollback` error, and a write that meets one marks the bucket for every
   * process. This writes a fresh epoch marker into each of the 1,024 buckets, which every process
   * adopts on its next call (also `redis-consensus ack-reset`). Idempotent. What it can and cannot
   * detect: docs/deployment.md, "Store reset" and "Store rollback".
   *
   * @returns how many buckets there are, how many had been marked reset or rolled back, and how many
   *   had no marker.
   * @throws ExternalError when a marker could not be written (indeterminate); calling again is safe.
   * @example
   * ```ts
   * const { reset, rolledBack } = await consensus.acknowledgeStoreReset(); // once an operator decided
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
    await this.leases.close();
    this.follows.close();
    await this.watches.close();
    await this.link.close();
  }

}

/** Clients made by `connect`, handed to the constructor as owned. */
const ownedClients = new WeakSet<object>();
