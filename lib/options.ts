/**
 * Settings: the defaults of every option, and a store's options checked and merged with them once,
 * in the constructor.
 */
import { checkDurability, checkPrefix, checkRetry, checkTimeout, checkWatch } from './arguments.js';
import { DEFAULT_PREFIX } from './layout.js';
import type { DurabilityOptions, Observer, RedisConsensusOptions, RetryOptions, WatchOptions } from './types.js';

/** How long one call may take, retries included, unless the options say otherwise. */
export const DEFAULT_TIMEOUT_MS = 5000;

/** Retries of failures known not to have run, unless the options say otherwise. */
export const DEFAULT_RETRY: Readonly<Required<RetryOptions>> = { attempts: 5, minDelayMs: 10, maxDelayMs: 500 };

/** How watches learn of new heads, unless the options say otherwise. */
export const DEFAULT_WATCH: Readonly<Required<WatchOptions>> = {
  mode: 'pubsub', pollIntervalMs: 1000, maxOutageMs: 30_000, announce: true,
};

/** A store's settings, checked and complete. */
export interface Settings {
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly retry: Required<RetryOptions>;
  readonly durability: Required<DurabilityOptions> | undefined;
  readonly observer: Observer | undefined;
  readonly watch: Required<WatchOptions>;
}

/** @throws TypeError or RangeError for invalid options. */
export function resolveOptions(options: RedisConsensusOptions): Settings {
  return {
    prefix: checkPrefix(options.prefix ?? DEFAULT_PREFIX),
    timeoutMs: checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs'),
    retry: checkRetry({ ...DEFAULT_RETRY, ...options.retry }),
    durability: checkDurability(options.durability),
    observer: options.observer,
    watch: checkWatch({ ...DEFAULT_WATCH, ...options.watch }),
  };
}
