/**
 * Leases: expiring ownership of a consensus key, with the seqno that began each tenure as its
 * fencing token (docs/leases.md has the design and the guarantees). Every change of ownership is
 * one call of `lua/lease-5.lua`, a compare-and-set on the key's head that reads the server's clock
 * in the same atomic step. This module acquires (once, or waiting in the key's queue, woken by a
 * release heard through `watch` or at the known expiry, never polling faster than the renewal
 * interval), reads, and ends every lease on close; `lease-holder.ts` keeps a held lease.
 */
import { setMaxListeners } from 'node:events';
import { checkTimeout } from './arguments.js';
import { ExternalError } from './errors.js';
import type { KeyNames } from './layout.js';
import { Lease } from './lease-holder.js';
import { argsOf, checkLeaseOptions, freshOwnerId, nextOf, parseLeaseRecord, RETRY_MAX_MS, text } from './lease-record.js';
import type { LeaseHost, LeaseOptions, LeaseState } from './lease-record.js';
import { LEASE_BUSY, LEASE_DONE, LEASE_MISMATCH, LEASE_NOT_A_LEASE } from './scripts.js';
import type { LeaseReply, Wire } from './scripts.js';
import { decodeSeqNo, encodeSeqNo } from './seqno.js';
import type { VersionedData } from './types.js';

/** The first delay before another attempt after a failed call; it doubles up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 20;
/** How many failed calls `tryAcquireLease` makes before it gives up (so an unknown outcome is resolved). */
const TRY_FAILURES = 3;
/** How many heads a store remembers (the expectation of a key's first attempt). */
const REMEMBERED_HEADS = 1024;

/** Codes of failures that another attempt cannot help. */
const FINAL_CODES = new Set(['store-reset', 'closed', 'permission', 'aborted', 'eviction-policy', 'wrong-database']);

function isRetryable(err: unknown): boolean {
  return err instanceof ExternalError && !FINAL_CODES.has(err.code);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The leases of one store: acquiring, reading, and ending them all on close. */
export class Leases {
  private readonly live = new Set<Lease>();
  private readonly closed = new AbortController();
  /** The last head seen of each key's versions, for the expectation of the next first attempt. */
  private readonly heads = new Map<string, string>();

  constructor(private readonly host: LeaseHost, private readonly storeTimeoutMs: number) {
    setMaxListeners(0, this.closed.signal);
  }

  /**
   * Acquires the lease on `key`: once (`wait` false: `null` when it is held or others wait first),
   * or waiting, queued, until it is acquired or `options.signal` aborts.
   */
  async acquire(key: string, names: KeyNames, options: LeaseOptions | undefined, wait: boolean): Promise<Lease | null> {
    const settings = checkLeaseOptions(options, this.storeTimeoutMs);
    const stop = settings.signal === undefined ? this.closed.signal : AbortSignal.any([settings.signal, this.closed.signal]);
    const owner = freshOwnerId();
    let expected = this.heads.get(names.versions) ?? '';
    let failures = 0;
    let waiter: Waiter | undefined;
    let queued = false;
    try {
      for (;;) {
        stop.throwIfAborted();
        const next = nextOf(expected);
        const sentAt = performance.now();
        let reply: LeaseReply;
        try {
          reply = await this.host.call(names, argsOf(wait ? 'acquire' : 'try', expected, next, owner, settings),
            settings.timeoutMs, stop);
        } catch (err) {
          stop.throwIfAborted();
          // An acquire whose outcome is unknown is sent again: if it committed, the script finds this
          // owner holding the lease and renews it, so the outcome is learned.
          failures++;
          if (!isRetryable(err) || (!wait && failures >= TRY_FAILURES)) throw err;
          await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures, 10)), stop);
          continue;
        }
        failures = 0;
        if (reply[0] === LEASE_DONE) {
          this.remember(names, next);
          const token = decodeSeqNo(reply[1] as Wire);
          const lease = new Lease(this.host, key, names, settings, owner, token, next, sentAt, (ended) => this.live.delete(ended),
            (head) => this.remember(names, head));
          this.live.add(lease);
          queued = false;
          return lease;
        }
        if (reply[0] === LEASE_MISMATCH) {
          expected = reply.length > 1 ? text(reply[1] as Wire) : '';
          this.remember(names, expected);
          continue;
        }
        if (reply[0] === LEASE_NOT_A_LEASE) {
          throw new TypeError(`the head of ${JSON.stringify(key)} is not a lease record: the key holds other data`);
        }
        if (reply[0] !== LEASE_BUSY) throw new Error(`unexpected lease reply ${String(reply[0])}`);
        if (!wait) return null;
        queued = true;
        waiter ??= new Waiter(this.host, key, stop);
        // Woken by a release heard on the watch, at the known expiry, or to stay in the queue.
        await waiter.wait(Math.min(reply[1] as number, settings.renewIntervalMs), stop);
        expected = waiter.latest ?? expected;
      }
    } finally {
      waiter?.close();
      if (queued) {
        // Leaving is a courtesy: a waiter not seen for its ttlMs is dropped anyway.
        this.host.call(names, argsOf('leave', '', '', owner, settings), settings.timeoutMs).catch(() => undefined);
      }
    }
  }

  /** The lease on `key` as the server sees it now, or `null` when the key has no data. */
  async read(names: KeyNames, timeoutMs: number | undefined): Promise<LeaseState | null> {
    const deadline = timeoutMs === undefined ? this.storeTimeoutMs : checkTimeout(timeoutMs, 'options.timeoutMs');
    const reply = await this.host.call(names, ['read', '', '', '', '0', ''], deadline);
    if (reply.length === 0) return null;
    const [seqno, payload, remaining, waiting] = reply as [Wire, Wire | null, number, number];
    const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload ?? Buffer.alloc(0);
    return {
      head: { seqno: decodeSeqNo(seqno), data }, record: parseLeaseRecord(data),
      held: remaining >= 0, remainingMs: Math.max(0, remaining), waiting,
    };
  }

  /** Ends every lease (released, best effort) and every wait, as the store closes. */
  async close(): Promise<void> {
    this.closed.abort(new ExternalError(true, 'the store was closed', { code: 'closed' }));
    await Promise.allSettled([...this.live].map((lease) => lease.end('closed')));
  }

  private remember(names: KeyNames, head: string): void {
    if (this.heads.size >= REMEMBERED_HEADS && !this.heads.has(names.versions)) this.heads.clear();
    this.heads.set(names.versions, head);
  }
}

/**
 * One waiter's ear on the key: the latest head heard, and a wake-up when the lease may have come
 * free (a version that is not a held lease: a release, or other data).
 */
class Waiter {
  latest: string | undefined;
  private readonly ended = new AbortController();
  private fired = false;
  private wake: (() => void) | undefined;

  constructor(host: LeaseHost, key: string, stop: AbortSignal) {
    const signal = AbortSignal.any([stop, this.ended.signal]);
    void this.listen(host.watch(key, signal));
  }

  /** Waits `ms`, or until woken; rejects with `stop`'s reason when it aborts. */
  async wait(ms: number, stop: AbortSignal): Promise<void> {
    if (this.fired) {
      this.fired = false;
      return;
    }
    const woken = new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    const timeout = new AbortController();
    try {
      await Promise.race([woken, sleep(ms, AbortSignal.any([stop, timeout.signal]))]);
    } finally {
      timeout.abort();
      this.wake = undefined;
      this.fired = false;
    }
    stop.throwIfAborted();
  }

  close(): void {
    this.ended.abort();
  }

  private async listen(heads: AsyncIterable<VersionedData>): Promise<void> {
    try {
      for await (const head of heads) {
        this.latest = encodeSeqNo(head.seqno);
        if (parseLeaseRecord(head.data)?.state !== 'held') this.fire();
      }
    } catch {
      // The next attempt meets the failure itself (a store reset, an outage).
      this.fire();
    }
  }

  private fire(): void {
    this.fired = true;
    this.wake?.();
  }
}

