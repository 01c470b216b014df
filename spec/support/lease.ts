/**
 * Helpers of the lease specs: a "dead holder" (a lease record committed as a plain compare-and-set,
 * with nobody renewing it), the server's clock as the lease script reads it, and waiting for a
 * signal.
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
