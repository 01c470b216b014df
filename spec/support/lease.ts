/**
 * Helpers of the lease specs: a "dead holder" (a lease record committed as a plain compare-and-set,
 * with nobody renewing it), the server's clock as the lease script reads it, waiting for a signal,
 * and a copy of a lease key's Redis keys to put back later (a failover that lost what came since).
 */
import type { Redis } from 'ioredis';
import { CaSResult } from '../../lib/index.js';
import type { RedisConsensus } from '../../lib/index.js';
import { keyNames } from '../../lib/layout.js';
import { encodeSeqNo } from '../../lib/seqno.js';

/** The server's clock as `lease-5.lua` reads it: TIME on Redis, `Date.now()` on ioredis-mock. */
export async function serverTime(raw: Redis, mock: boolean): Promise<{ sec: string; usec: string }> {
  if (mock) {
    const ms = Date.now();
    return { sec: String(Math.floor(ms / 1000)), usec: String((ms % 1000) * 1000) };
  }
  const [sec, usec] = await raw.time();
  return { sec: String(sec), usec: String(usec) };
}

/**
 * Commits a held lease record for a holder that will never renew it (crashed right after its
 * acquire), written now by the server's clock, with `ttlMs`: a takeover must wait for it.
 * @returns its seqno (the dead holder's token).
 */
export async function deadHolder(consensus: RedisConsensus, raw: Redis, mock: boolean, key: string, ttlMs: number): Promise<bigint> {
  const head = await consensus.head(key);
  const seqno = head === null ? 0n : head.seqno + 1n;
  const { sec, usec } = await serverTime(raw, mock);
  const record = `rcl1|held|${encodeSeqNo(seqno)}|${sec}|${usec}|${ttlMs}|deadbeefdeadbeef|crashed`;
  const result = await consensus.compareAndSet(key, head?.seqno ?? null, { seqno, data: Buffer.from(record) });
  if (result !== CaSResult.Committed) throw new Error('deadHolder lost a race');
  // ioredis-mock hands a Buffer payload to Lua as userdata, which the lease script cannot read:
  // the record goes in again as a string, as the lease script itself writes it.
  if (mock) await raw.hset(keyNames(consensus.prefix, key).data, encodeSeqNo(seqno), record);
  return seqno;
}

/** Resolves when `signal` aborts (with its reason), or rejects after `timeoutMs`. */
export function aborted(signal: AbortSignal, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      resolve(signal.reason);
      return;
    }
    const timer = setTimeout(() => reject(new Error(`signal not aborted within ${timeoutMs} ms`)), timeoutMs);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    }, { once: true });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An older copy of a lease key's Redis keys (versions, data, the bucket's epoch marker, waiters). */
export type LeaseKeysCopy = Array<{ name: string; type: string; value: unknown }>;

export async function copyLeaseKeys(raw: Redis, prefix: string, key: string): Promise<LeaseKeysCopy> {
  const names = keyNames(prefix, key);
  const copy: LeaseKeysCopy = [];
  for (const name of [names.versions, names.data, names.epoch, names.waiters]) {
    const type = await raw.type(name);
    if (type === 'zset') copy.push({ name, type, value: await raw.zrange(name, 0, -1) });
    else if (type === 'hash') copy.push({ name, type, value: await raw.hgetall(name) });
    else if (type === 'string') copy.push({ name, type, value: await raw.get(name) });
    else copy.push({ name, type, value: undefined });
  }
  return copy;
}

/** Puts the keys back as `copy` had them: a failover or restore that lost what came since. */
export async function restoreLeaseKeys(raw: Redis, copy: LeaseKeysCopy): Promise<void> {
  for (const { name, type, value } of copy) {
    await raw.del(name);
    if (type === 'zset') for (const member of value as string[]) await raw.zadd(name, 0, member);
    else if (type === 'hash') for (const [field, data] of Object.entries(value as Record<string, string>)) await raw.hset(name, field, data);
    else if (type === 'string') await raw.set(name, value as string);
  }
}
