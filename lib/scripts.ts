/**
 * The scripts: loading (defines each script of `lua/` on an ioredis client with `defineCommand`:
 * EVALSHA, with EVAL when Redis answers NOSCRIPT, e.g. after SCRIPT FLUSH or a restart), calling
 * them, and decoding their replies. The reply codes here mirror the `Output:` header of each
 * `.lua` file. The sources, `--- @include "..."` lines resolved, are inlined at build time
 * (`scripts/build-lua.mjs`), so importing the package reads no file.
 */
import type { RedisClient } from './client.js';
import type { Epochs } from './epoch.js';
import { determinate } from './errors.js';
import { LUA } from './generated/lua.js';
import { TRUNCATED } from './history.js';
import type { ScanPage } from './history.js';
import { decodeSeqNo, formatSeqNo } from './seqno.js';
import type { KeyNames } from './layout.js';
import type { SeqNo } from './seqno.js';
import type { VersionedData } from './types.js';

/** The scripts, by the name of their file in `lua/` (which ends in their number of keys); a name
 * missing from the generated sources is a type error. */
const FILES = {
  head: 'head-3',
  compareAndSet: 'compareAndSet-4',
  scan: 'scan-3',
  truncate: 'truncate-3',
  acknowledgeReset: 'acknowledgeReset-1',
  confirm: 'confirm-2',
  lease: 'lease-5',
  leaseRead: 'leaseRead-4',
} as const;

export type ScriptName = keyof typeof FILES;

/**
 * Each script's command names: `name`, unlikely to clash with the user's own `defineCommand`s on
 * a shared client, and the `...Buffer` variant ioredis adds. Built once: they are looked up on
 * every call.
 */
export const COMMANDS = Object.fromEntries(Object.keys(FILES).map((script) => {
  const name = `redisConsensus_${script}_v1`;
  return [script, { name, buffer: `${name}Buffer` }];
})) as Readonly<Record<ScriptName, { readonly name: string; readonly buffer: string }>>;

/** The source of every script, includes resolved. */
export const SCRIPTS: Readonly<Record<ScriptName, { lua: string; numberOfKeys: number }>> =
  Object.fromEntries(
    Object.entries(FILES).map(([script, file]) => [
      script,
      { lua: LUA[file], numberOfKeys: Number(file.slice(file.lastIndexOf('-') + 1)) },
    ]),
  ) as Record<ScriptName, { lua: string; numberOfKeys: number }>;

/** The part of an ioredis client (Redis, Cluster or ioredis-mock) that loading needs. */
export type ScriptHost = Pick<RedisClient, 'defineCommand'>;

const defined = new WeakSet<object>();

/** Defines every script on `client`, once per client. */
export function defineScripts(client: ScriptHost): void {
  if (defined.has(client)) return;
  for (const [script, definition] of Object.entries(SCRIPTS)) {
    client.defineCommand(COMMANDS[script as ScriptName].name, definition);
  }
  defined.add(client);
}

/** A script's arguments: KEYS then ARGV, as its header lists them. */
export type ScriptArgs = (string | Buffer)[];

/**
 * Calls a defined script on `client`. Binary-safe replies come from the `...Buffer` variant:
 * ioredis decodes plain replies as UTF-8, which corrupts binary payloads; ioredis-mock has no
 * `...Buffer` variants and already hands binary values back as Buffers.
 */
export function callScript<T>(client: RedisClient, script: ScriptName, args: ScriptArgs): Promise<T> {
  const command = COMMANDS[script];
  // Defined commands are properties that defineCommand added; the client's type cannot list them.
  const methods = client as unknown as Record<string, ((...a: ScriptArgs) => Promise<T>) | undefined>;
  const method = methods[command.buffer] ?? methods[command.name]!;
  return method.apply(client, args);
}

/** How a seqno or a payload comes back: a Buffer from Redis, a string or Buffer from the mock. */
export type Wire = string | Buffer;

/**
 * A stored payload as a Buffer. A seqno without its payload (Redis returns nil for the missing hash
 * field: the hash was evicted under an `allkeys-*` policy, or deleted by hand) is data loss, never a
 * version with empty data.
 *
 * @throws ExternalError (determinate, code `payload-missing`) naming the key and the seqno.
 */
function toPayload(payload: Wire | null | undefined, key: string, seqno: Wire): Buffer {
  if (payload === null || payload === undefined) {
    throw determinate('payload-missing', `the payload of ${JSON.stringify(key)} at ` +
      `${formatSeqNo(decodeSeqNo(seqno))} is missing from Redis although its seqno is stored; was the ` +
      'data evicted (maxmemory-policy allkeys-*) or deleted by hand?');
  }
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
}

/**
 * Every script but `acknowledgeReset-1.lua` checks the bucket's epoch marker
 * (`lua/includes/epoch.lua`): STORE_RESET or STORE_ROLLBACK when the check refused the call, or its
 * usual reply in an envelope `{EPOCH_ENVELOPE, marker, reply}` when the caller is to learn from the
 * bucket's marker.
 */
export const STORE_RESET = -3;
export const EPOCH_ENVELOPE = -4;
export const STORE_ROLLBACK = -5;
export type EpochReply<T> = T | typeof STORE_RESET | typeof STORE_ROLLBACK | [typeof EPOCH_ENVELOPE, Wire, T];

/**
 * The usual reply of a script that checks the epoch, the marker of an envelope learned by `epochs`;
 * `sent` is what the call was sent with.
 * @throws ExternalError (determinate, code `store-reset` or `store-rollback`) when the epoch check
 *   refused the call.
 */
export function openEpoch<T>(reply: EpochReply<T>, epochs: Epochs, names: KeyNames, sent: string, what: string): T {
  if (reply === STORE_RESET) throw epochs.refused(what, names, sent);
  if (reply === STORE_ROLLBACK) throw epochs.rolledBack(what, names, sent);
  if (Array.isArray(reply) && reply[0] === EPOCH_ENVELOPE) {
    const marker = reply[1] as Wire;
    epochs.learn(names.bucket, sent, typeof marker === 'string' ? marker : marker.toString('utf8'));
    return reply[2] as T;
  }
  return reply as T;
}

/** `head-3.lua`: `{}` or `{seqno, payload}` (payload nil when it is missing). */
export type HeadReply = [] | [Wire, Wire | null] | [Wire];

/** @throws ExternalError (`payload-missing`) for a head seqno without its payload. */
export function decodeHead(reply: HeadReply, key: string): VersionedData | null {
  if (reply.length === 0) return null;
  return { seqno: decodeSeqNo(reply[0]), data: toPayload(reply[1], key, reply[0]) };
}

/** `compareAndSet-4.lua`: whether it committed. */
export const CAS_COMMITTED = 1;
export const CAS_MISMATCH = 0;
export type CompareAndSetReply = typeof CAS_COMMITTED | typeof CAS_MISMATCH;

/**
 * `compareAndSet-4.lua` called with `withHead` = '1': committed, or the head that caused the
 * mismatch (`{}` when the key has no data) as `head-3.lua` returns it.
 */
export type CompareAndSetWithHeadReply = typeof CAS_COMMITTED | HeadReply;

/**
 * A commit's reply without an envelope: it counted itself on the marker the call was sent with (see
 * `Epochs.committed`).
 */
export function isPlainCommit(wire: unknown): boolean {
  return wire === CAS_COMMITTED;
}

/** A script's usual reply, out of its epoch envelope if it came in one (learning nothing: `openEpoch` does). */
function unwrapped(wire: unknown): unknown {
  return Array.isArray(wire) && wire[0] === EPOCH_ENVELOPE ? wire[2] : wire;
}

/** Whether a compareAndSet reply committed, in an epoch envelope or not. */
export function isCasCommit(wire: unknown): boolean {
  return unwrapped(wire) === CAS_COMMITTED;
}

/** `scan-3.lua`: `{}`, TRUNCATED, or the seqnos, the head, then the payloads in chunks. */
export const SCAN_TRUNCATED = -1;
export type ScanReply = [] | typeof SCAN_TRUNCATED | [Wire[], Wire, ...(Wire | null)[][]];

/**
 * One scan step: its versions and the key's head, `null` when nothing was in range, or TRUNCATED.
 * @throws ExternalError (`payload-missing`) for a seqno without its payload.
 */
export function decodeScan(reply: ScanReply, key: string): ScanPage | null | typeof TRUNCATED {
  if (reply === SCAN_TRUNCATED) return TRUNCATED;
  if (reply.length === 0) return null;
  const [seqnos, head, ...chunks] = reply as [Wire[], Wire, ...(Wire | null)[][]];
  const payloads = chunks.length === 1 ? chunks[0]! : chunks.flat();
  return {
    versions: seqnos.map((seqno, i) => ({ seqno: decodeSeqNo(seqno), data: toPayload(payloads[i], key, seqno) })),
    head: decodeSeqNo(head),
  };
}

/** `truncate-3.lua`: how many versions were deleted, or why nothing was. */
export const TRUNCATE_NO_DATA = -1;
export const TRUNCATE_ABOVE_HEAD = -2;

/**
 * How many versions a truncate to `upper` deleted.
 * @throws ExternalError (determinate) when the key has no data or `upper` is above its head.
 */
export function decodeTruncate(deleted: number, upper: SeqNo): number {
  if (deleted === TRUNCATE_NO_DATA) {
    throw determinate('truncate-above-head', `upper bound too high for truncate: ${formatSeqNo(upper)} (the key has no data)`);
  }
  if (deleted === TRUNCATE_ABOVE_HEAD) throw determinate('truncate-above-head', `upper bound too high for truncate: ${formatSeqNo(upper)}`);
  return deleted;
}

/** `acknowledgeReset-1.lua`: what the bucket's marker was before the acknowledgement replaced it. */
export const ACK_NO_MARKER = 0;
export const ACK_MARKER_IN_USE = 1;
export const ACK_WAS_RESET = 2;
export const ACK_WAS_ROLLED_BACK = 3;
export type AcknowledgeResetReply =
  typeof ACK_NO_MARKER | typeof ACK_MARKER_IN_USE | typeof ACK_WAS_RESET | typeof ACK_WAS_ROLLED_BACK;

/** `confirm-2.lua`: whether the version found is still stored (and a write made after it). */
export const CONFIRM_STORED = 1;
export type ConfirmReply = typeof CONFIRM_STORED | 0;

/**
 * `lease-5.lua`: its reply codes (the first element of its reply). Each lease operation's reply is
 * decoded in `lease-record.ts`, which knows the lease record written in the payload.
 */
export const LEASE_MISMATCH = 0;
export const LEASE_DONE = 1;
export const LEASE_BUSY = 2;
export const LEASE_NOT_A_LEASE = 3;
export const LEASE_LAPSED = 4;
export type LeaseReply =
  | [typeof LEASE_DONE, Wire] | [typeof LEASE_DONE]
  | [typeof LEASE_MISMATCH] | [typeof LEASE_MISMATCH, Wire, Wire | null]
  | [typeof LEASE_BUSY, number, number] | [typeof LEASE_NOT_A_LEASE] | [typeof LEASE_LAPSED];

/** `leaseRead-4.lua`: `{}` (no data) or the head, its payload, the ms its lease has left (-1: not held), the live waiters. */
export type LeaseReadReply = [] | [Wire, Wire | null, number, number];

/**
 * Whether a `lease-5.lua` reply, opened or still in its epoch envelope, is a commit (an acquire,
 * renewal or release appended a version): the call that made it learns the commit's count only
 * once replicas acknowledged it (`Operations.lease`).
 */
export function isLeaseCommit(wire: EpochReply<LeaseReply>): boolean {
  const reply = unwrapped(wire);
  return Array.isArray(reply) && reply[0] === LEASE_DONE && reply.length === 2;
}
