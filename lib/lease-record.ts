/**
 * What a lease is on the wire: its options checked and defaulted, the lease record that
 * `lua/lease-5.lua` writes as a version's payload (`rcl1|state|token|sec|usec|ttlMs|owner|name`),
 * the public types describing a lease, and the small helpers `lease.ts` and `lease-holder.ts` share.
 */
import { randomBytes } from 'node:crypto';
import { checkSignal, checkTimeout } from './arguments.js';
import { ExternalError } from './errors.js';
import type { KeyNames } from './layout.js';
import type { Observation } from './observer.js';
import type { LeaseReadReply, LeaseReply, Wire } from './scripts.js';
import { decodeSeqNo, encodeSeqNo } from './seqno.js';
import type { SeqNo } from './seqno.js';
import type { OperationName, VersionedData } from './types.js';

/** Options of `acquireLease` / `tryAcquireLease`. */
export interface LeaseOptions {
  /**
   * How long the lease lasts after each acquire or renewal, by the Redis server's clock
   * (milliseconds, an integer in [10, 86400000]). Default 10000.
   */
  readonly ttlMs?: number;
  /** How often the holder renews (milliseconds). Default a third of `ttlMs`. Must be below `ttlMs - marginMs`. */
  readonly renewIntervalMs?: number;
  /**
   * How much earlier than the server's expiry the holder stops considering itself the owner
   * (milliseconds): covers the holder's and the server's clocks running at different rates, and
   * the time to act on a loss. Default a tenth of `ttlMs`.
   */
  readonly marginMs?: number;
  /** A label written into the lease record (shown by `readLease` and the CLI). Default ''. */
  readonly name?: string;
  /** Stops waiting to acquire (`acquireLease` rejects with the signal's reason); no effect once held. */
  readonly signal?: AbortSignal;
  /** The deadline of each Redis call the lease makes. Default the store's `timeoutMs`. */
  readonly timeoutMs?: number;
}

/** A lease's settings, checked and complete. */
export interface LeaseSettings {
  readonly ttlMs: number;
  readonly renewIntervalMs: number;
  readonly marginMs: number;
  readonly name: string;
  readonly signal: AbortSignal | undefined;
  readonly timeoutMs: number;
}

export const DEFAULT_LEASE_TTL_MS = 10_000;
const MIN_TTL_MS = 10;
const MAX_TTL_MS = 86_400_000;

/** @throws TypeError / RangeError for invalid options (nothing is sent). */
export function checkLeaseOptions(options: LeaseOptions | undefined, storeTimeoutMs: number): LeaseSettings {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new TypeError(`lease options must be an object; got ${String(options)}`);
  }
  const ttlMs = options?.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs < MIN_TTL_MS || ttlMs > MAX_TTL_MS) {
    throw new RangeError(`lease ttlMs must be an integer number of milliseconds in [${MIN_TTL_MS}, ${MAX_TTL_MS}]; got ${String(ttlMs)}`);
  }
  const marginMs = options?.marginMs ?? ttlMs / 10;
  if (typeof marginMs !== 'number' || !Number.isFinite(marginMs) || marginMs < 0 || marginMs >= ttlMs) {
    throw new RangeError(`lease marginMs must be a number of milliseconds in [0, ttlMs); got ${String(marginMs)}`);
  }
  const renewIntervalMs = options?.renewIntervalMs ?? ttlMs / 3;
  if (typeof renewIntervalMs !== 'number' || !Number.isFinite(renewIntervalMs) || renewIntervalMs <= 0 ||
      renewIntervalMs >= ttlMs - marginMs) {
    throw new RangeError('lease renewIntervalMs must be a positive number of milliseconds below ttlMs - marginMs ' +
      `(${ttlMs - marginMs}); got ${String(renewIntervalMs)}`);
  }
  const name = options?.name ?? '';
  if (typeof name !== 'string') throw new TypeError(`lease name must be a string; got ${typeof name}`);
  return {
    ttlMs, marginMs, renewIntervalMs, name,
    signal: checkSignal(options?.signal),
    timeoutMs: options?.timeoutMs === undefined ? storeTimeoutMs : checkTimeout(options.timeoutMs, 'lease timeoutMs'),
  };
}

/** What the leases of one store use of its operations (`Operations` has them). */
export interface LeaseOperations {
  /** One call of `lease-5.lua`: `args` are op, expected, next, owner, ttlMs, name. */
  lease(names: KeyNames, args: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<LeaseReply>;
  /** One call of `leaseRead-4.lua`. */
  leaseRead(names: KeyNames, timeoutMs: number): Promise<LeaseReadReply>;
  /** Starts reporting one lease operation to the store's observer. */
  observation(operation: LeaseOperationName): Observation;
}

/** The lease operations as the observer names them. */
export type LeaseOperationName = Extract<OperationName, 'acquireLease' | 'renewLease' | 'releaseLease' | 'readLease'>;

/** What the leases of one store use: its operations, and its watches. */
export interface LeaseHost extends LeaseOperations {
  /** The key's heads as they commit (`RedisConsensus.watch`). */
  watch(key: string, signal: AbortSignal): AsyncIterable<VersionedData>;
}

/** The longest delay before another attempt after a failed call. */
export const RETRY_MAX_MS = 500;

export function isStoreReset(err: unknown): boolean {
  return err instanceof ExternalError && err.code === 'store-reset';
}

/** Whether the epoch check refused a call as rolled back (the bucket stays refused until acknowledged). */
export function isStoreRollback(err: unknown): boolean {
  return err instanceof ExternalError && err.code === 'store-rollback';
}

/** A seqno or payload of a reply as text. */
export function text(wire: Wire): string {
  return typeof wire === 'string' ? wire : wire.toString('latin1');
}

/** The seqno after `head` (19 digits; '' is "no data", so 0). */
export function nextOf(head: string): string {
  return head === '' ? encodeSeqNo(0n) : encodeSeqNo(decodeSeqNo(head) + 1n);
}

/** The script's arguments after the keys: op, expected, next, owner, ttlMs, name. */
export function argsOf(op: string, expected: string, next: string, owner: string, settings: LeaseSettings): string[] {
  return [op, expected, next, owner, String(settings.ttlMs), settings.name];
}

/** A fresh random id for a holder or waiter (64 bits, as hex: never '|' or a space). */
export function freshOwnerId(): string {
  return randomBytes(8).toString('hex');
}

/** A lease record, as one version of the key holds it. */
export interface LeaseRecord {
  /** `held` from an acquire or renewal, `free` once released. */
  readonly state: 'held' | 'free';
  /** The fencing token of the tenure: the seqno of the version that began it. */
  readonly token: SeqNo;
  /** When this version was written, by the Redis server's clock. */
  readonly writtenAt: Date;
  /** The lease's time to live from `writtenAt` (server clock). */
  readonly ttlMs: number;
  /** The holder's random id (one per acquired lease). */
  readonly owner: string;
  /** The holder's label. */
  readonly name: string;
}

const RECORD = /^rcl1\|(held|free)\|(\d{19})\|(\d+)\|(\d+)\|(\d+)\|([^|]*)\|/s;

/** The lease record in a version's payload, or `null` when the payload is not one. */
export function parseLeaseRecord(data: Buffer | string): LeaseRecord | null {
  const text = typeof data === 'string' ? data : data.toString('utf8');
  const match = RECORD.exec(text);
  if (match === null) return null;
  const [whole, state, token, sec, usec, ttl, owner] = match as unknown as [string, 'held' | 'free', string, string, string, string, string];
  return {
    state, token: BigInt(token), writtenAt: new Date(Number(sec) * 1000 + Math.floor(Number(usec) / 1000)),
    ttlMs: Number(ttl), owner, name: text.slice(whole.length),
  };
}

/** A key's lease as `readLease` reports it. */
export interface LeaseState {
  /** The key's head, whose payload is the record. */
  readonly head: VersionedData;
  /** The record, or `null` when the head is not a lease record. */
  readonly record: LeaseRecord | null;
  /** Whether the lease is held now, by the server's clock. */
  readonly held: boolean;
  /** Milliseconds until it expires by the server's clock (0 when not held). */
  readonly remainingMs: number;
  /** How many waiters are queued for it. */
  readonly waiting: number;
}

/** Why a holder lost its lease: the `reason` of `LeaseLostError`. */
export type LeaseLossReason =
  | 'released' // this holder released it
  | 'expired' // not renewed in time (by the holder's own clock, `expiry - margin`)
  | 'taken' // another version appeared on the key: taken over after expiry, or written by someone else
  | 'rollback' // the key went back to an older version, or the store refused a renewal as rolled back (a failover lost writes)
  | 'store-reset' // the store was reset under the holder
  | 'closed'; // the store was closed

/** The `reason` of a lease's aborted `signal`: why the holder may no longer act as the owner. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';

  constructor(readonly reason: LeaseLossReason, readonly key: string, readonly token: SeqNo, options?: { cause?: unknown }) {
    super(`lease on ${JSON.stringify(key)} (token ${token}) lost: ${reason}`, options);
  }
}
