/**
 * Argument checks: every value a caller passes in, checked in one place before anything reaches
 * Redis. A bad argument is a TypeError (wrong type) or RangeError (right type, bad value), never
 * an ExternalError: retrying cannot help, and nothing was sent.
 */
import { formatSeqNo, SCAN_ALL, SEQNO_MAX } from './seqno.js';
import type { SeqNo } from './seqno.js';
import type {
  AppendBackoff, AppendOptions, DurabilityOptions, RetryOptions, SeqNoInput, VersionedDataInput, WatchOptions,
} from './types.js';

/** A short description of a value's type for TypeError messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/**
 * @throws TypeError when `key` is not a string (any string is a key, the empty one included).
 * @throws RangeError when its UTF-8 encoding is longer than `maxKeyBytes` (a key is sent, stored
 *   and announced whole, and a huge one blocks Redis for seconds).
 */
export function checkKey(key: unknown, maxKeyBytes = Infinity): string {
  if (typeof key !== 'string') throw new TypeError(`key must be a string; got ${describe(key)}`);
  // A UTF-8 byte is at least one UTF-16 unit and at most three: measure only when it may matter.
  if (key.length * 3 > maxKeyBytes) {
    const bytes = Buffer.byteLength(key, 'utf8');
    if (bytes > maxKeyBytes) {
      throw new RangeError(`key is ${bytes} bytes (UTF-8), above maxKeyBytes (${maxKeyBytes}); nothing was sent`);
    }
  }
  return key;
}

/**
 * Checks that an options argument is an object or undefined: a string or number there is a
 * mistake (a misplaced argument), not "no options".
 * @throws TypeError otherwise.
 */
export function checkOptionsObject<T extends object>(options: unknown, name: string): T | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${name} must be an object; got ${describe(options)}`);
  }
  return options as T;
}

/**
 * Checks a call's options (`{ timeoutMs, signal }`) before anything is armed: a signal that is not
 * an AbortSignal would otherwise fail only once a timer and a listener were set up.
 * @throws TypeError for options that are not an object or a signal that is not an AbortSignal.
 */
export function checkCallOptions<T extends { signal?: AbortSignal }>(options: T | undefined, name = 'options'): T | undefined {
  const checked = checkOptionsObject<T>(options, name);
  if (checked !== undefined) checkSignal(checked.signal, `${name}.signal`);
  return checked;
}

/**
 * Checks a seqno argument and returns it as a bigint.
 * @throws TypeError when it is neither a bigint nor a number.
 * @throws RangeError when it is negative, above SEQNO_MAX, fractional, NaN or an unsafe number.
 */
export function toSeqNo(value: unknown, name: string): SeqNo {
  if (typeof value === 'bigint') {
    if (value < 0n || value > SEQNO_MAX) {
      throw new RangeError(`${name} must be in [0, 2^63-1]; got ${value}n`);
    }
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `${name} must be a non-negative safe integer or a bigint in [0, 2^63-1]; got ${value}`,
      );
    }
    return BigInt(value);
  }
  throw new TypeError(`${name} must be a bigint or a number; got ${describe(value)}`);
}

/**
 * Checks a `scan` limit and returns it as a bigint in `[0, SCAN_ALL]`.
 * @throws TypeError when it is neither a bigint nor a number.
 * @throws RangeError when it is negative, fractional, NaN or above SCAN_ALL.
 */
export function toLimit(value: unknown): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > SCAN_ALL) {
      throw new RangeError(`limit must be in [0, SCAN_ALL]; got ${value}n`);
    }
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || BigInt(value) > SCAN_ALL) {
      throw new RangeError(`limit must be an integer in [0, SCAN_ALL]; got ${value}`);
    }
    return BigInt(value);
  }
  throw new TypeError(`limit must be a number or a bigint; got ${describe(value)}`);
}

/**
 * `expected` of a compare-and-set: a seqno, or `null` for "the key has no data". `undefined` is
 * refused: a forgotten argument must not silently mean "the key is empty".
 */
export function toExpected(expected: SeqNoInput | null | undefined): SeqNo | null {
  if (expected === undefined) throw new TypeError('expected must be a seqno or null; got undefined');
  return expected === null ? null : toSeqNo(expected, 'expected');
}

/** A checked `next` version, its payload as a Buffer over the caller's bytes (no copy). */
export interface NextVersion {
  readonly seqno: SeqNo;
  readonly payload: Buffer;
}

/**
 * Checks `next` of a compare-and-set against `expected`.
 * @throws TypeError for a wrong shape; RangeError when `next.seqno <= expected`.
 */
export function toNext(next: VersionedDataInput, expected: SeqNo | null, maxPayloadBytes: number): NextVersion {
  if (typeof next !== 'object' || next === null) {
    throw new TypeError(`next must be an object { seqno, data }; got ${describe(next)}`);
  }
  const seqno = toSeqNo(next.seqno, 'next.seqno');
  const data: unknown = next.data;
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`next.data must be a Uint8Array (or Buffer); got ${describe(data)}`);
  }
  if (data.byteLength > maxPayloadBytes) {
    throw new RangeError(`next.data is ${data.byteLength} bytes, above maxPayloadBytes (${maxPayloadBytes}); ` +
      'nothing was sent');
  }
  if (expected !== null && seqno <= expected) {
    throw new RangeError('new seqno must be strictly greater than expected. ' +
      `Got new: ${formatSeqNo(seqno)} expected: ${formatSeqNo(expected)}`);
  }
  const payload = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return { seqno, payload };
}

/**
 * Checks a store prefix. Braces are refused because the first `{...}` of a Redis key name is its
 * Cluster hash tag, and the layout's own tag must be that first one.
 */
export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string') {
    throw new TypeError(`prefix must be a string; got ${describe(prefix)}`);
  }
  if (prefix.length === 0 || /[{}]/.test(prefix)) {
    throw new RangeError(`prefix must be non-empty and contain no '{' or '}'; got ${JSON.stringify(prefix)}`);
  }
  return prefix;
}

/** @throws RangeError unless `value` is a positive, finite number of milliseconds. */
export function checkTimeout(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds; got ${String(value)}`);
  }
  return value;
}

/** @throws RangeError unless `value` is a positive safe integer of bytes. */
export function checkMaxBytes(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive integer; got ${String(value)}`);
  }
  return value;
}

/**
 * A database index (`redis://host/2`, `?db=2`, `redisOptions.db`): a non-negative integer, or its
 * digits. ioredis would turn anything else into `SELECT NaN` after connecting, in database 0.
 * @throws RangeError otherwise.
 */
export function checkDatabase(value: unknown, where: string, show = true): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value === 'string' && /^\d{1,9}$/.test(value)) return Number(value);
  const got = !show ? 'something else (not shown: a URL may hold a password)'
    : typeof value === 'string' ? JSON.stringify(value) : String(value);
  throw new RangeError(`the database index (${where}) must be a non-negative integer; got ${got}`);
}

/** @throws RangeError unless `value` is `'refuse'` or `'warn'`. */
export function checkEvictionPolicyAction(value: unknown): 'refuse' | 'warn' {
  if (value !== 'refuse' && value !== 'warn') {
    throw new RangeError(`evictionPolicy must be 'refuse' or 'warn'; got ${String(value)}`);
  }
  return value;
}

/** @throws RangeError for an attempt count below 1 or delays that are negative or out of order. */
export function checkRetry(retry: Required<RetryOptions>): Required<RetryOptions> {
  const { attempts, minDelayMs, maxDelayMs } = retry;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError(`retry.attempts must be an integer >= 1; got ${attempts}`);
  }
  for (const [name, value] of [['minDelayMs', minDelayMs], ['maxDelayMs', maxDelayMs]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`retry.${name} must be a non-negative number of milliseconds; got ${String(value)}`);
    }
  }
  if (maxDelayMs < minDelayMs) {
    throw new RangeError(`retry.maxDelayMs (${maxDelayMs}) must not be below retry.minDelayMs (${minDelayMs})`);
  }
  return retry;
}

/** @throws RangeError for a replica count that is not a non-negative integer, or a bad timeout. */
export function checkDurability(durability: DurabilityOptions | undefined): Required<DurabilityOptions> | undefined {
  const checked = checkOptionsObject<DurabilityOptions>(durability, 'durability');
  if (checked === undefined) return undefined;
  const { replicas, timeoutMs = 1000 } = checked;
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new RangeError(`durability.replicas must be a non-negative integer; got ${replicas}`);
  }
  return { replicas, timeoutMs: checkTimeout(timeoutMs, 'durability.timeoutMs') };
}

/** An append's bounds, checked and complete. */
export interface AppendBounds {
  readonly maxAttempts: number;
  readonly timeoutMs: number;
  readonly backoff: Required<AppendBackoff>;
}

/**
 * Merges `options` of an append over `defaults`, checking every field.
 * @throws TypeError / RangeError for a bad field.
 */
export function checkAppendOptions(options: AppendOptions | undefined, defaults: AppendBounds, name = 'options'): AppendBounds {
  if (checkOptionsObject(options, name) === undefined || options === undefined) return defaults;
  checkOptionsObject(options.backoff, `${name}.backoff`);
  const maxAttempts = options.maxAttempts ?? defaults.maxAttempts;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new RangeError(`${name}.maxAttempts must be an integer >= 1; got ${String(maxAttempts)}`);
  }
  const timeoutMs = checkTimeout(options.timeoutMs ?? defaults.timeoutMs, `${name}.timeoutMs`);
  const backoff = { ...defaults.backoff, ...options.backoff };
  for (const [field, value] of Object.entries(backoff)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`${name}.backoff.${field} must be a non-negative number of milliseconds; got ${String(value)}`);
    }
  }
  if (backoff.maxDelayMs < backoff.minDelayMs) {
    throw new RangeError(`${name}.backoff.maxDelayMs (${backoff.maxDelayMs}) must not be below ` +
      `${name}.backoff.minDelayMs (${backoff.minDelayMs})`);
  }
  return { maxAttempts, timeoutMs, backoff };
}

/** @throws RangeError unless `value` is a non-negative integer. */
export function checkCount(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer; got ${String(value)}`);
  }
  return value;
}

/** @throws TypeError / RangeError for a watch mode, interval, outage or announce flag out of range. */
export function checkWatch(watch: Required<WatchOptions>): Required<WatchOptions> {
  if (watch.mode !== 'pubsub' && watch.mode !== 'poll') {
    throw new RangeError(`watch.mode must be 'pubsub' or 'poll'; got ${describe(watch.mode)}`);
  }
  if (typeof watch.announce !== 'boolean') {
    throw new TypeError(`watch.announce must be a boolean; got ${describe(watch.announce)}`);
  }
  if (typeof watch.legacyAnnouncements !== 'boolean') {
    throw new TypeError(`watch.legacyAnnouncements must be a boolean; got ${describe(watch.legacyAnnouncements)}`);
  }
  checkTimeout(watch.pollIntervalMs, 'watch.pollIntervalMs');
  checkTimeout(watch.maxOutageMs, 'watch.maxOutageMs');
  checkCount(watch.carryMaxBytes, 'watch.carryMaxBytes');
  return watch;
}

/** @throws TypeError unless `signal` is undefined or an AbortSignal. */
export function checkSignal(signal: unknown, name = 'options.signal'): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`${name} must be an AbortSignal; got ${describe(signal)}`);
  }
  return signal;
}
