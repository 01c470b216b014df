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
import type { LeaseHost, LeaseOperations, LeaseOptions, LeaseState } from './lease-record.js';
import { LEASE_BUSY, LEASE_DONE, LEASE_MISMATCH, LEASE_NOT_A_LEASE } from './scripts.js';
import type { LeaseReply, Wire } from './scripts.js';
import { decodeSeqNo, encodeSeqNo } from './seqno.js';
import type { VersionedData } from './types.js';

/** The first delay before another attempt after a failed call; it doubles up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 20;
/**
 * How many failed calls `tryAcquireLease` makes in all before it gives up with the last one's error
 * (a resend resolves an unknown outcome; with replicas falling short, every resend renews a commit
 * that is never acknowledged, so only a bound on all of them ends the try).
 */
const TRY_FAILURES = 3;
/** How many heads a store remembers (the expectation of a key's first attempt). */
const REMEMBERED_HEADS = 1024;

/** Codes of failures that another attempt cannot help. */
const FINAL_CODES = new Set([
  'store-reset', 'store-rollback', 'closed', 'permission', 'aborted', 'eviction-policy', 'wrong-database',
]);

function isRetryable(err: unknown): boolean {
  return err instanceof ExternalError && !FINAL_CODES.has(err.code);
}

/** Awaits `waiting`, adding the time it took to `report.waitedMs`. */
async function timed(report: { waitedMs: number }, waiting: Promise<void>): Promise<void> {
  const started = performance.now();
  try {
    await waiting;
  } finally {
    report.waitedMs += performance.now() - started;
  }
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

  private readonly host: LeaseHost;

  constructor(operations: LeaseOperations, watch: LeaseHost['watch'], private readonly storeTimeoutMs: number) {
    this.host = {
      lease: (names, args, timeoutMs, signal) => operations.lease(names, args, timeoutMs, signal),
      leaseRead: (names, timeoutMs) => operations.leaseRead(names, timeoutMs),
      observation: (operation) => operations.observation(operation),
      watch,
    };
    setMaxListeners(0, this.closed.signal);
  }

  /**
   * Acquires the lease on `key`: once (`wait` false: `null` when it is held or others wait first),
   * or waiting, queued, until it is acquired or `options.signal` aborts.
   */
  async acquire(key: string, names: KeyNames, options: LeaseOptions | undefined, wait: boolean): Promise<Lease | null> {
    const settings = checkLeaseOptions(options, this.storeTimeoutMs);
    const stop = settings.signal === undefined ? this.closed.signal : AbortSignal.any([settings.signal, this.closed.signal]);
    const observation = this.host.observation('acquireLease');
    const report = { attempts: 0, mismatches: 0, waitedMs: 0 };
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
        report.attempts++;
        try {
          reply = await this.host.lease(names, argsOf(wait ? 'acquire' : 'try', expected, next, owner, settings),
            settings.timeoutMs, stop);
        } catch (err) {
          stop.throwIfAborted();
          // An acquire whose outcome is unknown is sent again: if it committed, the script finds this
          // owner holding the lease and renews it (after a mismatch that teaches the head), so the
          // outcome is learned. Failures are counted over the whole call: a reply in between (that
          // mismatch) does not start the count again, or a try would never end.
          failures++;
          if (!isRetryable(err) || (!wait && failures >= TRY_FAILURES)) throw err;
          await timed(report, sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures, 10)), stop));
          continue;
        }
        if (reply[0] === LEASE_DONE) {
          this.remember(names, next);
          const token = decodeSeqNo(reply[1] as Wire);
          const lease = new Lease(this.host, key, names, settings, owner, token, next, sentAt, (ended) => this.live.delete(ended),
            (head) => this.remember(names, head));
          this.live.add(lease);
          queued = false;
          observation.finish({ ...report, count: 1 });
          return lease;
        }
        if (reply[0] === LEASE_MISMATCH) {
          report.mismatches++;
          expected = reply.length > 1 ? text(reply[1] as Wire) : '';
          this.remember(names, expected);
          continue;
        }
        if (reply[0] === LEASE_NOT_A_LEASE) {
          throw new TypeError(`the head of ${JSON.stringify(key)} is not a lease record: the key holds other data`);
        }
        if (reply[0] !== LEASE_BUSY) throw new Error(`unexpected lease reply ${String(reply[0])}`);
        if (!wait) {
          observation.finish({ ...report, count: 0 });
          return null;
        }
        // Queued: the service the wait was for. Failures before it no longer lengthen the backoff.
        failures = 0;
        queued = true;
        waiter ??= new Waiter(this.host, key, stop);
        // Woken by a release heard on the watch, at the known expiry, or to stay in the queue.
        await timed(report, waiter.wait(Math.min(reply[1] as number, settings.renewIntervalMs), stop));
        expected = waiter.latest ?? expected;
      }
    } catch (err) {
      observation.fail(err, report);
      throw err;
    } finally {
      waiter?.close();
      if (queued) {
        // Leaving is a courtesy: a waiter not seen for its ttlMs is dropped anyway.
        this.host.lease(names, argsOf('leave', '', '', owner, settings), settings.timeoutMs).catch(() => undefined);
      }
    }
  }

  /** The lease on `key` as the server sees it now, or `null` when the key has no data. */
  async read(names: KeyNames, timeoutMs: number | undefined): Promise<LeaseState | null> {
    const deadline = timeoutMs === undefined ? this.storeTimeoutMs : checkTimeout(timeoutMs, 'options.timeoutMs');
    const observation = this.host.observation('readLease');
    let state: LeaseState | null;
    try {
      const reply = await this.host.leaseRead(names, deadline);
      if (reply.length === 0) {
        state = null;
      } else {
        const [seqno, payload, remaining, waiting] = reply;
        const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload ?? Buffer.alloc(0);
        state = {
          head: { seqno: decodeSeqNo(seqno), data }, record: parseLeaseRecord(data),
          held: remaining >= 0, remainingMs: Math.max(0, remaining), waiting,
        };
      }
    } catch (err) {
      observation.fail(err);
      throw err;
    }
    observation.finish(state === null ? {} : { count: 1, bytesRead: state.head.data.length });
    return state;
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

