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
export const OPERATIONS = ['head', 'compareAndSet', 'scan', 'truncate', 'listKeys'] as const;

/** The operations, as named in metrics. */
export type OperationName = (typeof OPERATIONS)[number];

/** How an operation ended, as observers see it. */
export type Outcome = 'ok' | 'mismatch' | 'determinate' | 'indeterminate';

/** What an observer learns when an operation ends. */
export interface OperationEvent {
  /** Which operation ended. */
  readonly operation: OperationName;
  /**
   * `ok`, `mismatch` (compareAndSet's ExpectationMismatch), `determinate` or `indeterminate`
   * (an ExternalError of that kind). Invalid arguments never reach Redis and are not reported.
   */
  readonly outcome: Outcome;
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
}
