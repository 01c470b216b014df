import { Cluster, Redis } from 'ioredis';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import { safeClusterOptions } from './cluster.js';
import { determinate, indeterminate } from './errors.js';
import { BUCKETS, checkPrefix, DEFAULT_PREFIX, keyNames, keyOfMember, registryOf } from './layout.js';
import type { KeyNames } from './layout.js';
import { DEFAULT_RETRY, Link, openClient, redactUrl, SAFE_WRITE_OPTIONS } from './link.js';
import type { RedisClient, RetryOptions, WriteMark } from './link.js';
import { COMMANDS, defineScripts } from './scripts.js';
import type { ScriptName } from './scripts.js';
import {
  decodeSeqNo, describe, encodeSeqNo, formatSeqNo, SCAN_ALL, toLimit, toSeqNo,
} from './seqno.js';
import type { SeqNo } from './seqno.js';

/** One version of a key: a seqno and its bytes. Outputs carry `data` as a `Buffer`. */
export interface VersionedData {
  /** Its sequence number. */
  readonly seqno: SeqNo;
  /** Its bytes: any length, any byte values. */
  readonly data: Uint8Array;
}

/** Input seqnos may also be non-negative safe-integer numbers. */
export type SeqNoInput = SeqNo | number;

/** What `compareAndSet` may pass as the next version. */
export interface VersionedDataInput {
  /** Its sequence number: a bigint, or a non-negative safe-integer number. */
  readonly seqno: SeqNoInput;
  /** Its bytes: any length, any byte values. */
  readonly data: Uint8Array;
}

/** The outcome of a `compareAndSet`. A mismatch is a normal result, never an error. */
export const CaSResult = {
  /** `next` was appended: the key's head is now `next.seqno`. */
  Committed: 'Committed',
  /** The head was not `expected`; nothing changed. */
  ExpectationMismatch: 'ExpectationMismatch',
} as const;
// eslint-disable-next-line @typescript-eslint/no-redeclare -- a constant and its type, one name
export type CaSResult = (typeof CaSResult)[keyof typeof CaSResult];

/** The operations, as named in metrics. */
export type OperationName = 'head' | 'compareAndSet' | 'scan' | 'truncate' | 'listKeys';

/** What an observer learns when an operation ends. */
export interface OperationEvent {
  /** Which operation ended. */
  readonly operation: OperationName;
  /**
   * `ok`, `mismatch` (compareAndSet's ExpectationMismatch), `determinate` or `indeterminate`
   * (an ExternalError of that kind). Invalid arguments never reach Redis and are not reported.
   */
  readonly outcome: 'ok' | 'mismatch' | 'determinate' | 'indeterminate';
  /** Wall time from call to settlement, in milliseconds. */
  readonly durationMs: number;
  /** Payload bytes sent (compareAndSet). */
  readonly bytesWritten: number;
  /** Payload bytes received (head, scan). */
  readonly bytesRead: number;
  /** Versions deleted (truncate) or returned (head, scan); keys yielded (listKeys). */
  readonly count: number;
}

/** Hooks for metrics; see `prometheusObserver` for ready wiring. Keep them cheap: they run inline. */
export interface Observer {
  /** Called when an operation starts (after its arguments were checked). */
  started?(operation: OperationName): void;
  /** Called when an operation settles. */
  finished?(event: OperationEvent): void;
}

/** Wait for replicas to acknowledge each write before reporting it. */
export interface DurabilityOptions {
  /** How many replicas must acknowledge each write (Redis `WAIT`). */
  readonly replicas: number;
  /** How long to wait for them, in ms. Default 1000. */
  readonly timeoutMs?: number;
}

/** Settings of a `RedisConsensus`; every field is optional. */
export interface RedisConsensusOptions {
  /** Prefix of every Redis key of this store. No `{` or `}`. Default `'consensus'`. */
  prefix?: string;
  /**
   * How long one call may take, retries included, in ms. A write with no reply by then fails
   * with an indeterminate ExternalError. Default 5000. Each call can override it.
   */
  timeoutMs?: number;
  /** Retries of failures known not to have run (reads, and writes Redis refused). */
  retry?: RetryOptions;
  /**
   * After each write that changed something, wait for this many replicas to acknowledge it; a
   * write that falls short fails with an indeterminate ExternalError (it committed on the
   * primary, but a failover may lose it). Off by default.
   */
  durability?: DurabilityOptions;
  /** Metrics hooks. */
  observer?: Observer;
}

/** Per-call settings. */
export interface CallOptions {
  /** Overrides the store's `timeoutMs` for this call. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_URL = 'redis://127.0.0.1:6379';
/** Largest LIMIT passed to a script as digits; ioredis-mock's Lua integers are 32-bit. */
const LIMIT_AS_DIGITS_BELOW = 2n ** 31n;

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
  private readonly durability: Required<DurabilityOptions> | undefined;
  private readonly observer: Observer | undefined;
  /** Redis key names of recently used keys (building them per call measurably slowed calls). */
  private readonly recentNames = new Map<string, KeyNames>();

  /**
   * Wraps a client: ioredis `Redis` or `Cluster`, or ioredis-mock. The client stays the caller's:
   * `close()` does not quit it. If it would re-send commands after a reconnect (ioredis's
   * default), writes go over one extra connection made with `client.duplicate()` and
   * `autoResendUnfulfilledCommands: false`, which `close()` does quit.
   *
   * @throws TypeError or RangeError for invalid options.
   */
  constructor(client: RedisClient, options: RedisConsensusOptions = {}) {
    this.prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs');
    this.durability = checkDurability(options.durability);
    this.observer = options.observer;
    const retry = { ...DEFAULT_RETRY, ...options.retry };
    if (!Number.isInteger(retry.attempts) || retry.attempts < 1) {
      throw new RangeError(`retry.attempts must be an integer >= 1; got ${retry.attempts}`);
    }
    const owns = ownedClients.has(client);
    ownedClients.delete(client);
    this.link = new Link(client, owns, retry);
    defineScripts(this.link.reader);
    defineScripts(this.link.writer);
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
    const owned = client as unknown as RedisClient;
    ownedClients.add(owned);
    try {
      return new RedisConsensus(owned, options);
    } catch (err) {
      ownedClients.delete(owned);
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
    const names = this.names(key);
    const timeoutMs = this.callTimeout(options);
    return this.observe('head', async () => {
      const reply = await this.script<[SeqNoWire, PayloadWire] | []>('head', false, timeoutMs, names.versions, names.data);
      if (reply.length === 0) return { result: null };
      const data = toBuffer(reply[1]);
      return { result: { seqno: decodeSeqNo(reply[0]), data }, bytesRead: data.length, count: 1 };
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
    const names = this.names(key);
    if (expected === undefined) {
      throw new TypeError('expected must be a seqno or null; got undefined');
    }
    const expectedSeqNo = expected === null ? null : toSeqNo(expected, 'expected');
    if (typeof next !== 'object' || next === null) {
      throw new TypeError(`next must be an object { seqno, data }; got ${describe(next)}`);
    }
    const nextSeqNo = toSeqNo(next.seqno, 'next.seqno');
    if (!(next.data instanceof Uint8Array)) {
      throw new TypeError(`next.data must be a Uint8Array (or Buffer); got ${describe(next.data)}`);
    }
    if (expectedSeqNo !== null && nextSeqNo <= expectedSeqNo) {
      throw new RangeError('new seqno must be strictly greater than expected. ' +
        `Got new: ${formatSeqNo(nextSeqNo)} expected: ${formatSeqNo(expectedSeqNo)}`);
    }
    const payload = Buffer.isBuffer(next.data)
      ? next.data
      : Buffer.from(next.data.buffer, next.data.byteOffset, next.data.byteLength);
    const timeoutMs = this.callTimeout(options);
    return this.observe('compareAndSet', async () => {
      const mark = this.durability === undefined ? undefined : this.link.writeMark(names.versions);
      const committed = await this.script<number>('compareAndSet', true, timeoutMs,
        names.versions, names.data, names.registry,
        expectedSeqNo === null ? '' : encodeSeqNo(expectedSeqNo), encodeSeqNo(nextSeqNo), payload,
        names.member);
      if (committed === 1) {
        await this.awaitReplicas('compareAndSet', names.versions, mark);
        return { result: CaSResult.Committed, bytesWritten: payload.length, count: 1 };
      }
      return { result: CaSResult.ExpectationMismatch, outcome: 'mismatch' };
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
    const names = this.names(key);
    const fromSeqNo = toSeqNo(from, 'from');
    const count = toLimit(limit);
    const timeoutMs = this.callTimeout(options);
    return this.observe('scan', async () => {
      if (count === 0n) return { result: [] };
      const limitArg = count < LIMIT_AS_DIGITS_BELOW ? count.toString() : '-1';
      const reply = await this.script<[SeqNoWire[], ...PayloadWire[][]] | []>('scan', false, timeoutMs,
        names.versions, names.data, encodeSeqNo(fromSeqNo), limitArg);
      if (reply.length === 0) return { result: [] };
      const [seqnos = [], ...chunks] = reply;
      const payloads = chunks.flat();
      let bytesRead = 0;
      const result = seqnos.map((seqno, i) => {
        const data = toBuffer(payloads[i]);
        bytesRead += data.length;
        return { seqno: decodeSeqNo(seqno), data };
      });
      return { result, bytesRead, count: result.length };
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
    const names = this.names(key);
    const upper = toSeqNo(seqno, 'seqno');
    const timeoutMs = this.callTimeout(options);
    return this.observe('truncate', async () => {
      const mark = this.durability === undefined ? undefined : this.link.writeMark(names.versions);
      const deleted = await this.script<number>('truncate', true, timeoutMs, names.versions, names.data,
        encodeSeqNo(upper));
      if (deleted === -1) {
        throw determinate(`upper bound too high for truncate: ${formatSeqNo(upper)} (the key has no data)`);
      }
      if (deleted === -2) throw determinate(`upper bound too high for truncate: ${formatSeqNo(upper)}`);
      if (deleted > 0) await this.awaitReplicas('truncate', names.versions, mark);
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
    const started = performance.now();
    safely(() => this.observer?.started?.('listKeys'));
    let yielded = 0;
    let outcome: OperationEvent['outcome'] = 'ok';
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
      outcome = 'determinate';
      throw err;
    } finally {
      safely(() => this.observer?.finished?.({
        operation: 'listKeys', outcome, durationMs: performance.now() - started,
        bytesWritten: 0, bytesRead: 0, count: yielded,
      }));
    }
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
   * Stops this instance. Quits the clients it created (by `connect`, or the extra write
   * connection); never a client it was given. Calls made afterwards fail as determinate.
   */
  async close(): Promise<void> {
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

  private names(key: unknown): KeyNames {
    if (typeof key !== 'string') throw new TypeError(`key must be a string; got ${describe(key)}`);
    let names = this.recentNames.get(key);
    if (names === undefined) {
      names = keyNames(this.prefix, key);
      if (key.length <= NAMES_CACHE_KEY_LENGTH) {
        // Bounded: a worker's working set of keys fits; a scan over many keys just recomputes.
        if (this.recentNames.size >= NAMES_CACHE_SIZE) this.recentNames.clear();
        this.recentNames.set(key, names);
      }
    }
    return names;
  }

  private callTimeout(options: CallOptions | undefined): number {
    if (options === undefined || options.timeoutMs === undefined) return this.timeoutMs;
    return checkTimeout(options.timeoutMs, 'options.timeoutMs');
  }

  /** Runs a script; binary-safe replies come from the `...Buffer` variant where there is one. */
  private script<T>(name: ScriptName, isWrite: boolean, timeoutMs: number, ...args: (string | Buffer)[]): Promise<T> {
    const command = COMMANDS[name];
    return this.link.run(isWrite, name, timeoutMs, (client) => {
      const methods = client as unknown as Record<string, (...a: (string | Buffer)[]) => Promise<T>>;
      // ioredis decodes plain replies as UTF-8, which corrupts binary payloads; ioredis-mock has
      // no ...Buffer variants and already hands binary values back as Buffers.
      const method = methods[command.buffer] ?? methods[command.name]!;
      return method.apply(client, args);
    });
  }

  private async awaitReplicas(what: string, routingKey: string, mark: WriteMark | undefined): Promise<void> {
    if (this.durability === undefined) return;
    const { replicas, timeoutMs } = this.durability;
    const acknowledged = await this.link.waitForReplicas(what, routingKey, replicas, timeoutMs, mark);
    if (acknowledged < replicas) {
      throw indeterminate(
        `${what} committed on the primary but only ${acknowledged} of ${replicas} replicas ` +
        `acknowledged it within ${timeoutMs} ms; a failover may lose it`);
    }
  }

  private observe<T>(
    operation: OperationName,
    body: () => Promise<{ result: T; outcome?: 'ok' | 'mismatch'; bytesWritten?: number; bytesRead?: number; count?: number }>,
  ): Promise<T> {
    const observer = this.observer;
    // Without an observer, no async frame of its own: this is every call's path.
    if (observer === undefined) return body().then((done) => done.result);
    return this.observed(observer, operation, body);
  }

  private async observed<T>(
    observer: Observer,
    operation: OperationName,
    body: () => Promise<{ result: T; outcome?: 'ok' | 'mismatch'; bytesWritten?: number; bytesRead?: number; count?: number }>,
  ): Promise<T> {
    const started = performance.now();
    safely(() => observer.started?.(operation));
    let done: Awaited<ReturnType<typeof body>>;
    try {
      done = await body();
    } catch (err) {
      safely(() => observer.finished?.({
        operation,
        outcome: (err as { determinate?: boolean }).determinate === false ? 'indeterminate' : 'determinate',
        durationMs: performance.now() - started, bytesWritten: 0, bytesRead: 0, count: 0,
      }));
      throw err;
    }
    safely(() => observer.finished?.({
      operation, outcome: done.outcome ?? 'ok', durationMs: performance.now() - started,
      bytesWritten: done.bytesWritten ?? 0, bytesRead: done.bytesRead ?? 0, count: done.count ?? 0,
    }));
    return done.result;
  }
}

/**
 * Runs an observer hook. A hook that throws must not turn a committed write into a rejection,
 * nor report one operation twice: its error is dropped, and surfaces as a process warning.
 */
function safely(hook: () => void): void {
  try {
    hook();
  } catch (err) {
    process.emitWarning(`redis-consensus: an observer hook threw: ${(err as Error)?.message ?? String(err)}`);
  }
}

type SeqNoWire = string | Buffer;
type PayloadWire = string | Buffer;

/** How many registry buckets `listKeys` walks at once. */
const LIST_WINDOW = 16;

/** How many keys' Redis key names a RedisConsensus remembers, and the longest key it remembers. */
const NAMES_CACHE_SIZE = 1024;
const NAMES_CACHE_KEY_LENGTH = 256;

/** Clients made by `connect`, handed to the constructor as owned. */
const ownedClients = new WeakSet<RedisClient>();

function toBuffer(payload: PayloadWire | undefined): Buffer {
  if (payload === undefined) return Buffer.alloc(0);
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
}

function checkTimeout(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds; got ${String(value)}`);
  }
  return value;
}

function checkDurability(durability: DurabilityOptions | undefined): Required<DurabilityOptions> | undefined {
  if (durability === undefined) return undefined;
  const { replicas, timeoutMs = 1000 } = durability;
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new RangeError(`durability.replicas must be a non-negative integer; got ${replicas}`);
  }
  return { replicas, timeoutMs: checkTimeout(timeoutMs, 'durability.timeoutMs') };
}


