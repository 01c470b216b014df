/**
 * Settings: the defaults of every option, and a store's options checked and merged with them once,
 * in the constructor.
 */
import {
  checkAppendOptions, checkCount, checkDurability, checkEvictionPolicyAction, checkMaxBytes, checkOptionsObject,
  checkPrefix, checkRetry, checkTimeout, checkWatch,
} from './arguments.js';
import type { AppendBounds } from './arguments.js';
import { DEFAULT_PREFIX } from './layout.js';
import type { DurabilityOptions, Observer, RedisConsensusOptions, RetryOptions, WatchOptions } from './types.js';

/** How long one call may take, retries included, unless the options say otherwise. */
export const DEFAULT_TIMEOUT_MS = 5000;

/** Retries of failures known not to have run, unless the options say otherwise. */
export const DEFAULT_RETRY: Readonly<Required<RetryOptions>> = { attempts: 5, minDelayMs: 10, maxDelayMs: 500 };

/**
 * Bounds of every append unless the store's or the call's options say otherwise: enough attempts
 * for dozens of processes racing on one key, and twice the default call timeout in all.
 */
export const DEFAULT_APPEND: AppendBounds = { maxAttempts: 100, timeoutMs: 10_000, backoff: { minDelayMs: 1, maxDelayMs: 50 } };

/** How many keys' last seen heads `append` remembers, unless the options say otherwise. */
export const DEFAULT_REMEMBER_HEADS = 1000;

/**
 * The largest payload `compareAndSet` sends, unless the options say otherwise: 16 MiB. Redis's own
 * limit (`proto-max-bulk-len`) is 512 MiB, and a payload near it takes the connection down; well
 * below it, Redis is single-threaded and a large payload blocks every other client while it is
 * read and copied into the hash (and, with durability, replicated). Measured on a shared 2-core
 * machine (docs/deployment.md): a commit took ~55 ms at 1 MiB, ~0.8 s at 16 MiB and ~2.1 s at
 * 64 MiB, the last close to the default 5 s timeout, past which a write is indeterminate. States
 * that large belong in blob storage, with their address here (as Materialize persist does).
 */
export const DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;

/**
 * The longest key `head`, `compareAndSet` and the others accept, in UTF-8 bytes, unless the options
 * say otherwise: 64 KiB. A key travels whole in every call, names two Redis keys, sits in its
 * bucket's registry and in every announcement of its commits; measured on Redis 7.0, a 64 MiB key
 * took 8 s to commit and blocked every other client for 3.6 s. Real keys are names, far below this.
 */
export const DEFAULT_MAX_KEY_BYTES = 64 * 1024;

/**
 * The largest payload a commit's announcement carries, unless the options say otherwise: 4 KiB.
 * Every subscriber of the bucket's channel receives it (also those watching other keys of the
 * bucket), so it stays small; larger versions are announced without their data and read.
 */
export const DEFAULT_CARRY_MAX_BYTES = 4096;

/** How watches learn of new heads, unless the options say otherwise. */
export const DEFAULT_WATCH: Readonly<Required<WatchOptions>> = {
  mode: 'pubsub', pollIntervalMs: 1000, maxOutageMs: 30_000, announce: true,
  carryMaxBytes: DEFAULT_CARRY_MAX_BYTES, legacyAnnouncements: true,
};

/** A store's settings, checked and complete. */
export interface Settings {
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly retry: Required<RetryOptions>;
  readonly durability: Required<DurabilityOptions> | undefined;
  readonly observer: Observer | undefined;
  readonly append: AppendBounds;
  readonly rememberHeads: number;
  readonly maxPayloadBytes: number;
  readonly maxKeyBytes: number;
  readonly evictionPolicy: 'refuse' | 'warn';
  readonly watch: Required<WatchOptions>;
}

/** @throws TypeError or RangeError for invalid options (not an object, or a field out of range). */
export function resolveOptions(given: RedisConsensusOptions | undefined): Settings {
  const options = checkOptionsObject<RedisConsensusOptions>(given, 'options') ?? {};
  checkOptionsObject(options.retry, 'options.retry');
  checkOptionsObject(options.watch, 'options.watch');
  checkOptionsObject(options.observer, 'options.observer');
  return {
    prefix: checkPrefix(options.prefix ?? DEFAULT_PREFIX),
    timeoutMs: checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs'),
    retry: checkRetry({ ...DEFAULT_RETRY, ...options.retry }),
    durability: checkDurability(options.durability),
    observer: options.observer,
    append: checkAppendOptions(options.append, DEFAULT_APPEND, 'append'),
    rememberHeads: checkCount(options.append?.rememberHeads ?? DEFAULT_REMEMBER_HEADS, 'append.rememberHeads'),
    maxPayloadBytes: checkMaxBytes(options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES, 'maxPayloadBytes'),
    maxKeyBytes: checkMaxBytes(options.maxKeyBytes ?? DEFAULT_MAX_KEY_BYTES, 'maxKeyBytes'),
    evictionPolicy: checkEvictionPolicyAction(options.evictionPolicy ?? 'refuse'),
    watch: checkWatch({ ...DEFAULT_WATCH, ...options.watch }),
  };
}
