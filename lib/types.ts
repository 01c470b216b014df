/**
 * The public types: what callers pass in and get back. No behaviour lives here.
 */
import type { SeqNo } from './seqno.js';

/** One version of a key, as the store returns it: a seqno and its bytes. */
export interface VersionedData {
  /** Its sequence number. */
  readonly seqno: SeqNo;
  /** Its bytes: any length, any byte values. A `Buffer` (so a `Uint8Array` too). */
  readonly data: Buffer;
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
/** `'Committed' | 'ExpectationMismatch'`: a constant and its type share one name. */
export type CaSResult = (typeof CaSResult)[keyof typeof CaSResult];

/** Every operation, as named in metrics. */
export const OPERATIONS = [
  'head', 'compareAndSet', 'scan', 'truncate', 'listKeys', 'append', 'acquireLease', 'renewLease', 'releaseLease', 'readLease',
] as const;

/** The operations, as named in metrics. */
export type OperationName = (typeof OPERATIONS)[number];

/** How an operation ended, as observers see it. */
export type Outcome = 'ok' | 'mismatch' | 'determinate' | 'indeterminate';

/** What an observer learns when an operation ends. */
export interface OperationEvent {
  /** Which operation ended. */
  readonly operation: OperationName;
  /**
   * `ok`, `mismatch` (compareAndSet's ExpectationMismatch; a lease renewal or release that found
   * the lease lost), `determinate` or `indeterminate` (an ExternalError of that kind; any other
   * error, such as an acquireLease's aborted wait, is `determinate`). Invalid arguments never reach
   * Redis and are not reported.
   */
  readonly outcome: Outcome;
  /** Wall time from call to settlement, in milliseconds. */
  readonly durationMs: number;
  /** Payload bytes sent (compareAndSet). */
  readonly bytesWritten: number;
  /** Payload bytes received (head, scan, readLease). */
  readonly bytesRead: number;
  /**
   * Versions deleted (truncate), returned (head, scan, readLease) or committed (compareAndSet,
   * append); keys yielded (listKeys); leases acquired, renewed or released (0 for a
   * tryAcquireLease that got null, or a release of a lease lost already).
   */
  readonly count: number;
  /**
   * Compare-and-set script calls the operation made: 1 for compareAndSet, 1 or more for append
   * (0 when its `update` stopped before writing); lease script calls (1 or more for acquireLease,
   * 1 for renewLease and releaseLease); 0 for the others.
   */
  readonly attempts: number;
  /**
   * ExpectationMismatch replies among those attempts: 1 for a compareAndSet that mismatched; for
   * append, the races it lost (and retried) before it committed, stopped or gave up; for
   * acquireLease, calls that met another head than expected; 1 for a renewal or release that found
   * the lease lost.
   */
  readonly mismatches: number;
  /**
   * Time spent waiting rather than talking to Redis, in ms (included in `durationMs`): append's
   * turn behind earlier appends to the same key from this store, and its backoff after lost
   * races; acquireLease's time queued and backing off. 0 for the others.
   */
  readonly waitedMs: number;
}

/** Something about the server a store found risky, without failing (see `Observer.warning`). */
export interface StoreWarning {
  /**
   * `min-replicas-to-write`: `durability` is set but a primary accepts writes with no replica
   * connected, so a partition or pause can lose the commits other processes read meanwhile.
   */
  readonly code: 'min-replicas-to-write';
  readonly message: string;
}

/** Hooks for metrics; see `prometheusObserver` for ready wiring. Keep them cheap: they run inline. */
export interface Observer {
  /** Called when an operation starts (after its arguments were checked). */
  started?(operation: OperationName): void;
  /** Called when an operation settles. */
  finished?(event: OperationEvent): void;
  /** Called when `connect`, `connectCluster` or `check()` finds a risky server setting (see `StoreWarning`). */
  warning?(warning: StoreWarning): void;
}

/** Wait for replicas to acknowledge each write before reporting it. */
export interface DurabilityOptions {
  /** How many replicas must acknowledge each write (Redis `WAIT`). */
  readonly replicas: number;
  /** How long to wait for them, in ms. Default 1000. */
  readonly timeoutMs?: number;
}

/** Bounded retries, with exponential backoff and jitter, of failures known not to have run. */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 5; 1 disables retries. */
  attempts?: number;
  /** Delay before the first retry, in ms. Default 10. */
  minDelayMs?: number;
  /** Longest delay between attempts, in ms. Default 500. */
  maxDelayMs?: number;
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
  /** Defaults of every `append` of this store, and how many heads it remembers. */
  append?: AppendOptions & {
    /**
     * How many keys' last seen heads (payloads included) `append` remembers, least recently used
     * first out. Default 1000. 0 turns the memory off: every append starts with a read.
     */
    rememberHeads?: number;
  };
  /**
   * The largest `next.data` that `compareAndSet` sends, in bytes; a larger one is a RangeError
   * before anything is sent. Default 16 MiB (Redis's own limit is 512 MiB; see docs/deployment.md
   * for what large payloads cost).
   */
  maxPayloadBytes?: number;
  /**
   * The longest key accepted, in UTF-8 bytes; a longer one is a RangeError before anything is
   * sent. Default 64 KiB (a key is sent, stored and announced whole with every call; see
   * docs/deployment.md).
   */
  maxKeyBytes?: number;
  /**
   * What `connect`, `connectCluster` and `check()` do when the server's `maxmemory-policy` may
   * evict the store's keys (`allkeys-*`): `'refuse'` (default) rejects with an ExternalError (code
   * `eviction-policy`); `'warn'` emits a process warning and goes on.
   */
  evictionPolicy?: 'refuse' | 'warn';
  /** How `watch` learns of new heads, and whether commits are announced for watchers. */
  watch?: WatchOptions;
}

/** How `watch` learns of new heads. The defaults suit nearly everyone. */
export interface WatchOptions {
  /**
   * `'pubsub'` (default): every watch of the store shares one subscriber connection (one per
   * shard on a Cluster) and re-reads a key's head only when a commit to it is announced, so idle
   * watches cost Redis nothing. `'poll'`: each watch reads its key's head every `pollIntervalMs`
   * (one `head` per watch per interval), for servers or proxies without pub/sub.
   */
  mode?: 'pubsub' | 'poll';
  /**
   * Milliseconds between head reads when polling, and while a pub/sub watch's subscription is
   * down (reconnecting, failing over). Default 1000.
   */
  pollIntervalMs?: number;
  /**
   * How long a watch keeps retrying when the head cannot be read before it ends with that
   * ExternalError, in ms. Default 30000.
   */
  maxOutageMs?: number;
  /**
   * Whether `compareAndSet` announces each commit (`PUBLISH`, or `SPUBLISH` on a Cluster) for
   * pub/sub watchers in any process. Default true. Turn it off only if no process ever watches
   * with pub/sub: their watches would not hear this store's commits.
   */
  announce?: boolean;
  /**
   * The largest payload, in bytes, that a commit's announcement carries with it, so that watches
   * and followers have the version without reading it (docs/follow.md). Larger versions are
   * announced without their data, and read. Default 4096; 0 never carries data.
   */
  carryMaxBytes?: number;
  /**
   * Whether a commit whose announcement carries its data is also announced in the form of earlier
   * versions of this library (`<seqno><member>`), which their watches need to hear it. Default
   * true: the cost is a second PUBLISH per commit. Turn it off once no process runs a version
   * older than the one that added `carryMaxBytes`.
   */
  legacyAnnouncements?: boolean;
}

/** Settings of one `follow`. */
export interface FollowOptions {
  /**
   * The lowest seqno wanted: every version with a seqno >= `from` is yielded. Omitted: from the
   * key's oldest stored version. To resume after the version last applied, pass its seqno + 1.
   */
  from?: SeqNoInput;
  /** Ends the follow (its loop finishes normally) when aborted. */
  signal?: AbortSignal;
  /** How many versions one read brings at most (and how many wait in memory). Default 256. */
  pageSize?: number;
}

/** Settings of one `watch`. */
export interface WatchCallOptions {
  /** Ends the watch (its loop finishes normally) when aborted. */
  signal?: AbortSignal;
}

/** Per-call settings. */
export interface CallOptions {
  /** Overrides the store's `timeoutMs` for this call. */
  timeoutMs?: number;
  /**
   * Gives up when it aborts: before the request is sent, or for a read, the call fails
   * determinate (code `aborted`); a write already sent fails indeterminate, as on a timeout.
   */
  signal?: AbortSignal;
}

/**
 * Settings of `connect` / `connectCluster`: the store's, and a signal for the connecting. Connecting
 * (and the checks made at connect) must finish within the store's `timeoutMs`.
 */
export interface ConnectOptions extends RedisConsensusOptions {
  /** Gives up connecting when it aborts (determinate, code `aborted`); no connection is left. */
  signal?: AbortSignal;
}

/** What `compareAndSetWithHead` returns: the result, and the head that goes with it. */
export interface CompareAndSetOutcome {
  /** `Committed` or `ExpectationMismatch`, exactly as `compareAndSet` would have returned. */
  readonly result: CaSResult;
  /**
   * On `Committed`, the version just committed (`next`). On `ExpectationMismatch`, the head that
   * caused the mismatch, read in the same atomic step (seqno and data), or `null` when the key
   * has no data.
   */
  readonly head: VersionedData | null;
}

/** What `acknowledgeStoreReset` found as it replaced every bucket's epoch marker. */
export interface StoreResetAcknowledgement {
  /** How many buckets it wrote a fresh marker into: all of the store's (1,024). */
  readonly buckets: number;
  /** Buckets marked reset: a writer there had found the marker it knew gone or replaced. */
  readonly reset: number;
  /** Buckets marked rolled back: a writer there had found commits it had seen gone. */
  readonly rolledBack: number;
  /** Buckets without a marker: never written, or reset with no process noticing yet. */
  readonly unmarked: number;
}

/**
 * What `append` calls to make the next version: given the key's head (`null` for a key with no
 * data), the payload of the version to put on top of it, or `undefined` to stop without writing.
 * It may be called more than once per append (once per attempt, each time with the head that
 * attempt is made on), so it must not have effects outside its return value; it may be async.
 */
export type AppendUpdate = (head: VersionedData | null) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/** Backoff after repeated lost races, with jitter. */
export interface AppendBackoff {
  /** Longest delay after the second loss in a row, in ms; it doubles with each loss after. Default 1. */
  minDelayMs?: number;
  /** Longest delay between attempts, in ms. Default 50. */
  maxDelayMs?: number;
}

/** Bounds of one `append`; store-wide defaults go in `RedisConsensusOptions.append`. */
export interface AppendOptions {
  /** Compare-and-set attempts in all (the first included). Default 100. */
  maxAttempts?: number;
  /**
   * How long the whole append may take, in ms: its wait behind earlier appends to the same key
   * from this store, every attempt, every backoff. Default 10000.
   */
  timeoutMs?: number;
  /** Backoff after the second and later lost races in a row. The first loss retries at once. */
  backoff?: AppendBackoff;
}

/** What `append` did. */
export type AppendResult =
  | {
    /** `update` returned a payload and it committed. */
    readonly committed: true;
    /** The version committed: `seqno` is the previous head's plus 1 (0 on a key with no data). */
    readonly head: VersionedData;
    /** Compare-and-set attempts made (1 when nobody raced it and the head was known). */
    readonly attempts: number;
  }
  | {
    /** `update` returned `undefined`: nothing was written. */
    readonly committed: false;
    /** The head `update` was given when it stopped. */
    readonly head: VersionedData | null;
    /** Compare-and-set attempts made before `update` stopped (lost races). */
    readonly attempts: number;
  };
