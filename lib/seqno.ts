/**
 * Sequence numbers: validation of what callers pass in and the one encoding used on the wire.
 *
 * A seqno is stored as a fixed-width, zero-padded 19-digit decimal string. Fixed width makes
 * byte order equal numeric order, so a sorted set can order seqnos lexicographically at score 0
 * and Lua can compare two of them with `<`. A score (a double) or a Lua number would round values
 * above 2^53, and ioredis-mock's Lua has 32-bit integers, so no seqno is ever a number anywhere
 * between this module and Redis.
 */

/** A sequence number: an integer in `[0, SEQNO_MAX]`. Outputs are always `bigint`. */
export type SeqNo = bigint;

/** The largest sequence number, `2^63 - 1`. */
export const SEQNO_MAX: SeqNo = 9223372036854775807n;

/** A `scan` limit meaning "every version": `2^63 - 1`. */
export const SCAN_ALL: bigint = SEQNO_MAX;

const WIDTH = 19;

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

/** The wire form of a seqno: 19 digits, zero-padded. */
export function encodeSeqNo(seqno: SeqNo): string {
  return seqno.toString().padStart(WIDTH, '0');
}

/** Reads a seqno back from a script reply (a string from ioredis-mock, a Buffer from Redis). */
export function decodeSeqNo(wire: string | Buffer): SeqNo {
  return BigInt(typeof wire === 'string' ? wire : wire.toString('latin1'));
}

/** How seqnos appear in messages, matching the seed's `SeqNo(5)`. */
export function formatSeqNo(seqno: SeqNo): string {
  return `SeqNo(${seqno})`;
}

/** A short description of a value's type for TypeError messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}
