/**
 * Sequence numbers: their range and the one encoding used on the wire (argument checks are in
 * `arguments.ts`).
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

/** The width of a seqno on the wire, in characters. */
export const SEQNO_WIDTH = 19;

/** The wire form of a seqno: 19 digits, zero-padded. */
export function encodeSeqNo(seqno: SeqNo): string {
  return seqno.toString().padStart(SEQNO_WIDTH, '0');
}

/** Reads a seqno back from a script reply (a string from ioredis-mock, a Buffer from Redis). */
export function decodeSeqNo(wire: string | Buffer): SeqNo {
  return BigInt(typeof wire === 'string' ? wire : wire.toString('latin1'));
}

/** How seqnos appear in messages, matching the seed's `SeqNo(5)`. */
export function formatSeqNo(seqno: SeqNo): string {
  return `SeqNo(${seqno})`;
}
