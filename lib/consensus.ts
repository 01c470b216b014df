import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { Appender } from './append.js';
import { checkKey, checkSignal, checkTimeout, toExpected, toLimit, toNext, toSeqNo } from './arguments.js';
import type { NextVersion } from './arguments.js';
import { DEFAULT_URL, keyPrefixOf } from './client.js';
import type { RedisClient } from './client.js';
import { checkEvictionPolicy } from './checks.js';
import { openCluster, openRedis } from './connect.js';
import type { EvictionPolicyAction } from './checks.js';
import { Durability } from './durability.js';
import { Epochs, freshEpochId } from './epoch.js';
import { BUCKETS, epochOf, KeyNamesCache, keyOfMember } from './layout.js';
import type { KeyNames } from './layout.js';
import { Link } from './link.js';
import { begin, observe } from './observer.js';
import type { Reported } from './observer.js';
import { resolveOptions } from './options.js';
import {
  ACK_NO_MARKER, ACK_WAS_RESET, callScript, CAS_COMMITTED, CAS_WITH_HEAD, decodeHead, decodeScan, decodeTruncate,
  defineScripts, openEpoch,
} from './scripts.js';
import type {
  AcknowledgeResetReply, CompareAndSetWithHeadReply, EpochReply, HeadReply, ScanReply, ScriptArgs, ScriptName,
} from './scripts.js';
import { encodeSeqNo } from './seqno.js';
import { callReadScript, isReadScript } from './read-only.js';
import { registryMembers } from './registry.js';
import { openSubscriber } from './subscriber.js';
import { CaSResult } from './types.js';
import type {
  AppendOptions, AppendResult, AppendUpdate, CallOptions, CompareAndSetOutcome, ConnectOptions, Observer,
  RedisConsensusOptions, SeqNoInput, StoreResetAcknowledgement, VersionedData, VersionedDataInput, WatchCallOptions,
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
  private readonly appender: Appender;
  private readonly maxPayloadBytes: number;
  private readonly evictionPolicy: EvictionPolicyAction;
  private readonly watches: Watches;
  /** The epoch marker learned for each bucket, which every script call passes for its check. */
  private readonly epochs = new Epochs();
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
    this.names = new KeyNamesCache(this.prefix, keyPrefixOf(client));
    this.maxPayloadBytes = settings.maxPayloadBytes;
    this.evictionPolicy = settings.evictionPolicy;
    const owns = ownedClients.has(client);
    ownedClients.delete(client);
    this.link = new Link(client, owns, settings.retry);
    this.durability = settings.durability === undefined ? undefined : new Durability(this.link, settings.durability);
    defineScripts(this.link.reader);
    defineScripts(this.link.writer);
    this.appender = new Appender(this, settings.append, settings.rememberHeads, this.observer);
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
  async head(key: string, options?: CallOptions): Promise<VersionedData | null> {
    const names = this.names.get(checkKey(key));
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'head', async (): Promise<Reported<VersionedData | null>> => {
      const sent = this.epochs.known(names.bucket);
      const reply = await this.script<EpochReply<HeadReply>>('head', false, timeoutMs,
        [names.versions, names.data, names.epoch, sent], options?.signal);
      const head = decodeHead(openEpoch(reply, this.epochs, names, sent, 'head'), key);
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
   *   unknown (re-read to learn it); `determinate: true` when it certainly did not happen, e.g.
   *   code `store-reset` when the store was reset under this process (see `acknowledgeStoreReset`).
   */
  compareAndSet(
    key: string,
    expected: SeqNoInput | null,
    next: VersionedDataInput,
    options?: CallOptions,
  ): Promise<CaSResult> {
    return this.sendCompareAndSet(key, expected, next, options, false);
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
    return this.sendCompareAndSet(key, expected, next, options, true);
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
  async scan(key: string, from: SeqNoInput, limit: number | bigint, options?: CallOptions): Promise<VersionedData[]> {
    const names = this.names.get(checkKey(key));
    const fromSeqNo = toSeqNo(from, 'from');
    const count = toLimit(limit);
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'scan', async (): Promise<Reported<VersionedData[]>> => {
      if (count === 0n) return { result: [] };
      const limitArg = count < LIMIT_AS_DIGITS_BELOW ? count.toString() : '-1';
      const sent = this.epochs.known(names.bucket);
      const reply = await this.script<EpochReply<ScanReply>>('scan', false, timeoutMs,
        [names.versions, names.data, names.epoch, encodeSeqNo(fromSeqNo), limitArg, sent], options?.signal);
      const versions = decodeScan(openEpoch(reply, this.epochs, names, sent, 'scan'), key);
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
   *   head (nothing deleted); otherwise as for `compareAndSet` (`store-reset` included).
   */
  async truncate(key: string, seqno: SeqNoInput, options?: CallOptions): Promise<number> {
    const names = this.names.get(checkKey(key));
    const upper = toSeqNo(seqno, 'seqno');
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'truncate', async (): Promise<Reported<number>> => {
      const mark = this.durability?.mark(names.versions);
      const sent = this.epochs.known(names.bucket);
      const reply = await this.script<EpochReply<number>>('truncate', true, timeoutMs,
        [names.versions, names.data, names.epoch, encodeSeqNo(upper), sent, sent === '' ? freshEpochId() : ''], options?.signal);
      const deleted = decodeTruncate(openEpoch(reply, this.epochs, names, sent, 'truncate'), upper);
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
      for await (const member of registryMembers(this.link, this.prefix, timeoutMs, options?.signal)) {
        yielded++;
        yield keyOfMember(member);
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
    await this.link.run(false, 'ping', timeoutMs, (client) => client.ping(), options?.signal);
    return performance.now() - started;
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
  async check(options?: CallOptions): Promise<void> {
    const timeoutMs = this.callTimeout(options);
    await this.link.run(false, 'check', timeoutMs, (client) => checkEvictionPolicy(
      client.isCluster === true ? client.nodes?.('master') ?? [] : [client], this.evictionPolicy, 'the Redis server'), options?.signal);
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
  async acknowledgeStoreReset(options?: CallOptions): Promise<StoreResetAcknowledgement> {
    const timeoutMs = this.callTimeout(options);
    const id = freshEpochId();
    const acknowledgement = { buckets: BUCKETS, reset: 0, unmarked: 0 };
    // Several buckets at once: 1,024 round trips in turn take long on a remote Redis.
    for (let first = 0; first < BUCKETS; first += ACKNOWLEDGE_IN_FLIGHT) {
      const buckets = Array.from({ length: Math.min(ACKNOWLEDGE_IN_FLIGHT, BUCKETS - first) }, (_, i) => first + i);
      const replies = await Promise.all(buckets.map((bucket) => this.script<AcknowledgeResetReply>(
        'acknowledgeReset', true, timeoutMs, [epochOf(this.prefix, bucket), id], options?.signal)));
      for (const reply of replies) {
        if (reply === ACK_WAS_RESET) acknowledgement.reset++;
        else if (reply === ACK_NO_MARKER) acknowledgement.unmarked++;
      }
    }
    return acknowledgement;
  }

  /**
   * Stops this instance. Ends every watch and quits the clients it created (by `connect`, the
   * extra write connection, the subscriber connections of watches); never a client it was given.
   * Calls made afterwards fail as determinate.
   */
  async close(): Promise<void> {
    await this.watches.close();
    await this.link.close();
  }

  /**
   * Both compare-and-sets: one script. The plain one (`withHead` false) resolves to a CaSResult and
   * its mismatch carries no payload; `withHead` asks the script for the head with a mismatch.
   */
  private sendCompareAndSet(
    key: string, expected: SeqNoInput | null, next: VersionedDataInput, options: CallOptions | undefined, withHead: false,
  ): Promise<CaSResult>;
  private sendCompareAndSet(
    key: string, expected: SeqNoInput | null, next: VersionedDataInput, options: CallOptions | undefined, withHead: true,
  ): Promise<CompareAndSetOutcome>;
  private sendCompareAndSet(
    key: string, expected: SeqNoInput | null, next: VersionedDataInput, options: CallOptions | undefined, withHead: boolean,
  ): Promise<CaSResult | CompareAndSetOutcome> {
    // Not async, and no async closure: this is the hot path, and each async frame costs
    // promises and turns per call. Invalid arguments still reject, as from an async method.
    let names: KeyNames;
    let version: NextVersion;
    let timeoutMs: number;
    let args: ScriptArgs;
    let sent: string;
    try {
      names = this.names.get(checkKey(key));
      const expectedSeqNo = toExpected(expected);
      version = toNext(next, expectedSeqNo, this.maxPayloadBytes);
      timeoutMs = this.callTimeout(options);
      sent = this.epochs.known(names.bucket);
      args = [
        names.versions, names.data, names.registry, names.epoch,
        expectedSeqNo === null ? '' : encodeSeqNo(expectedSeqNo), encodeSeqNo(version.seqno), version.payload, names.member,
        names.heads, this.announce, sent, sent === '' ? freshEpochId() : '',
      ];
    } catch (err) {
      return Promise.reject(err);
    }
    if (withHead) args.push(CAS_WITH_HEAD);
    const { seqno, payload } = version;
    return observe(this.observer, 'compareAndSet', (): Promise<Reported<CaSResult | CompareAndSetOutcome>> => {
      const mark = this.durability?.mark(names.versions);
      return this.script<EpochReply<CompareAndSetWithHeadReply>>('compareAndSet', true, timeoutMs, args, options?.signal).then((wire) => {
        const reply = openEpoch(wire, this.epochs, names, sent, 'compareAndSet');
        if (reply !== CAS_COMMITTED) {
          if (!withHead) return MISMATCH;
          const head = decodeHead(reply as HeadReply, key);
          return {
            result: { result: CaSResult.ExpectationMismatch, head }, outcome: 'mismatch',
            bytesRead: head?.data.length ?? 0, count: head === null ? 0 : 1,
          };
        }
        const done: Reported<CaSResult | CompareAndSetOutcome> = {
          result: withHead ? { result: CaSResult.Committed, head: { seqno, data: payload } } : CaSResult.Committed,
          bytesWritten: payload.length, count: 1,
        };
        return mark === undefined ? done : this.durability!.acknowledged('compareAndSet', names.versions, mark).then(() => done);
      });
    });
  }

  private callTimeout(options: CallOptions | undefined): number {
    if (options === undefined || options.timeoutMs === undefined) return this.timeoutMs;
    return checkTimeout(options.timeoutMs, 'options.timeoutMs');
  }

  private script<T>(
    script: ScriptName, isWrite: boolean, timeoutMs: number, args: ScriptArgs, signal: AbortSignal | undefined,
  ): Promise<T> {
    return this.link.run(isWrite, script, timeoutMs, isReadScript(script)
      ? (client) => callReadScript<T>(client, script, args)
      : (client) => callScript<T>(client, script, args), signal);
  }
}

/** Largest LIMIT passed to a script as digits; ioredis-mock's Lua integers are 32-bit. */
const LIMIT_AS_DIGITS_BELOW = 2n ** 31n;

/** How many buckets `acknowledgeStoreReset` writes at once. */
const ACKNOWLEDGE_IN_FLIGHT = 64;

/** A plain compareAndSet's mismatch, as reported: the same object every time. */
const MISMATCH: Reported<CaSResult> = { result: CaSResult.ExpectationMismatch, outcome: 'mismatch' };

/** Clients made by `connect`, handed to the constructor as owned. */
const ownedClients = new WeakSet<object>();
