/**
 * Leases: expiring ownership of a consensus key, with the seqno that began each tenure as its
 * fencing token (docs/leases.md has the design and the guarantees). Every change of ownership is
 * one call of `lua/lease-5.lua`, a compare-and-set on the key's head that reads the server's clock
 * in the same atomic step; this module keeps the holder's side: when it stops believing it owns
 * the lease (`expiry - margin` on its own monotonic clock, from the moment it sent the call that
 * began or last renewed the tenure), renewing, hearing a takeover through `watch`, and the waiters'
 * side: waiting on the watch and the known expiry, never polling faster than the renewal interval.
 */
import { setMaxListeners } from 'node:events';
import { checkTimeout } from './arguments.js';
import { ExternalError } from './errors.js';
import type { KeyNames } from './layout.js';
import { checkLeaseOptions, freshOwnerId, LeaseLostError, parseLeaseRecord } from './lease-record.js';
import type { LeaseLossReason, LeaseOptions, LeaseSettings, LeaseState } from './lease-record.js';
import { LEASE_BUSY, LEASE_DONE, LEASE_LAPSED, LEASE_MISMATCH, LEASE_NOT_A_LEASE } from './scripts.js';
import type { LeaseReply, Wire } from './scripts.js';
import { decodeSeqNo, encodeSeqNo } from './seqno.js';
import type { SeqNo } from './seqno.js';
import type { VersionedData } from './types.js';

/** What the leases of one store use. */
export interface LeaseHost {
  /** One call of `lease-5.lua`: `args` are op, expected, next, owner, ttlMs, name. */
  call(names: KeyNames, args: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<LeaseReply>;
  /** The key's heads as they commit (`RedisConsensus.watch`). */
  watch(key: string, signal: AbortSignal): AsyncIterable<VersionedData>;
}

/** Delay between attempts after a failed call: doubles from the first, up to the last. */
const RETRY_MIN_MS = 20;
const RETRY_MAX_MS = 500;
/** How many failed calls `tryAcquireLease` makes before it gives up (so an unknown outcome is resolved). */
const TRY_FAILURES = 3;
/** How many heads a store remembers (the expectation of a key's first attempt). */
const REMEMBERED_HEADS = 1024;

/** Codes of failures that another attempt cannot help. */
const FINAL_CODES = new Set(['store-reset', 'closed', 'permission', 'aborted', 'eviction-policy', 'wrong-database']);

function isStoreReset(err: unknown): boolean {
  return err instanceof ExternalError && err.code === 'store-reset';
}

function isRetryable(err: unknown): boolean {
  return err instanceof ExternalError && !FINAL_CODES.has(err.code);
}

function text(wire: Wire): string {
  return typeof wire === 'string' ? wire : wire.toString('latin1');
}

function nextOf(head: string): string {
  return head === '' ? encodeSeqNo(0n) : encodeSeqNo(decodeSeqNo(head) + 1n);
}

/** The script's arguments after the keys: op, expected, next, owner, ttlMs, name. */
function argsOf(op: string, expected: string, next: string, owner: string, settings: LeaseSettings): string[] {
  return [op, expected, next, owner, String(settings.ttlMs), settings.name];
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
          const lease = new Lease(this.host, key, names, settings, owner, token, next, sentAt, (ended) => this.live.delete(ended));
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

/**
 * A held lease on a key: renewed in the background until it is released or lost. The holder may act
 * as the owner only while `held` is true, and should pass `token` to whatever the lease protects.
 */
export class Lease {
  /** The fencing token: the seqno of the version that began this tenure. Strictly greater than every earlier holder's. */
  readonly token: SeqNo;
  private readonly controller = new AbortController();
  /** Until when (performance.now) this holder believes it owns the lease: sent + ttl - margin. */
  private validUntil: number;
  /** The seqno of this holder's latest version of the key, and of a renewal in flight. */
  private last: string;
  private pending: string | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private ending: Promise<boolean> | undefined;

  /** @internal Made by `Leases.acquire`. */
  constructor(
    private readonly host: LeaseHost, readonly key: string, private readonly names: KeyNames,
    private readonly settings: LeaseSettings, private readonly owner: string, token: SeqNo, last: string, sentAt: number,
    private readonly onEnd: (lease: Lease) => void,
  ) {
    this.token = token;
    this.last = last;
    this.validUntil = sentAt + settings.ttlMs - settings.marginMs;
    setMaxListeners(0, this.controller.signal);
    if (!this.held) {
      this.lose('expired');
      return;
    }
    this.armExpiry();
    this.scheduleRenew(sentAt + settings.renewIntervalMs - performance.now());
    void this.listen();
  }

  /** The holder's label, as written in the lease record. */
  get name(): string {
    return this.settings.name;
  }

  /**
   * Aborts, with a `LeaseLostError` as its reason, as soon as this holder learns it must stop acting
   * as the owner: released, expired by its own clock, taken over, the key rolled back, the store
   * reset or closed. Events run when the process gets to them: a paused process checks `held`.
   */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * Whether this holder may act as the owner now: not lost, and its own monotonic clock before
   * `expiry - margin` (measured from when it sent the call that began or last renewed the tenure).
   * Checked synchronously, so it is right even in a process that was paused and has not yet run
   * the timers that would abort `signal`.
   */
  get held(): boolean {
    return !this.controller.signal.aborted && performance.now() < this.validUntil;
  }

  /** Milliseconds this holder may still act as the owner without a renewal (0 once not held). */
  get remainingMs(): number {
    return this.held ? this.validUntil - performance.now() : 0;
  }

  /**
   * Stops renewing and gives the lease up: a compare-and-set on this holder's latest version, so a
   * holder that already lost the lease changes nothing. `signal` aborts (reason `released`) before
   * the release is sent. Idempotent.
   *
   * @returns true when this call released the lease; false when it had been lost already.
   * @throws ExternalError when Redis could not be asked (the lease then expires after its ttl).
   */
  release(): Promise<boolean> {
    return this.end('released');
  }

  /** @internal Releases, with `reason` as the signal's reason (`close()` uses `closed`). */
  end(reason: LeaseLossReason): Promise<boolean> {
    this.ending ??= (async () => {
      clearTimeout(this.renewTimer);
      await this.renewing;
      this.lose(reason);
      const reply = await this.host.call(this.names,
        argsOf('release', this.last, nextOf(this.last), this.owner, this.settings), this.settings.timeoutMs);
      return reply[0] === LEASE_DONE;
    })();
    return this.ending;
  }

  private lose(reason: LeaseLossReason, cause?: unknown): void {
    if (this.controller.signal.aborted) return;
    clearTimeout(this.renewTimer);
    clearTimeout(this.expiryTimer);
    this.controller.abort(new LeaseLostError(reason, this.key, this.token, { cause }));
    this.onEnd(this);
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      if (this.held) this.armExpiry();
      else this.lose('expired');
    }, Math.max(0, this.validUntil - performance.now()));
  }

  private scheduleRenew(delayMs: number): void {
    clearTimeout(this.renewTimer);
    if (this.controller.signal.aborted || this.ending !== undefined) return;
    this.renewTimer = setTimeout(() => {
      this.renewing = this.renew().finally(() => {
        this.renewing = undefined;
      });
    }, Math.max(0, delayMs));
  }

  private async renew(): Promise<void> {
    if (this.controller.signal.aborted) return;
    if (!this.held) {
      this.lose('expired');
      return;
    }
    const next = nextOf(this.last);
    this.pending = next;
    const sentAt = performance.now();
    let reply: LeaseReply;
    try {
      reply = await this.host.call(this.names, argsOf('renew', this.last, next, this.owner, this.settings),
        Math.max(1, Math.min(this.settings.timeoutMs, this.validUntil - sentAt)));
    } catch (err) {
      if (isStoreReset(err)) this.lose('store-reset', err);
      // Another attempt, soon: one whose predecessor committed unseen learns it from the mismatch.
      else this.scheduleRenew(Math.min(RETRY_MAX_MS, this.settings.renewIntervalMs / 4));
      return;
    } finally {
      this.pending = undefined;
    }
    if (this.controller.signal.aborted) return;
    if (reply[0] === LEASE_DONE) {
      this.last = next;
      this.validUntil = Math.max(this.validUntil, sentAt + this.settings.ttlMs - this.settings.marginMs);
      this.armExpiry();
      this.scheduleRenew(sentAt + this.settings.renewIntervalMs - performance.now());
    } else if (reply[0] === LEASE_MISMATCH) {
      if (reply.length === 1) {
        this.lose('store-reset');
        return;
      }
      const head = text(reply[1] as Wire);
      const record = parseLeaseRecord(reply[2] as Wire);
      if (head > this.last && this.isMine(record)) {
        // A renewal whose reply was lost committed: renew again from it (its send time is unknown,
        // so the belief is not extended by it).
        this.last = head;
        this.scheduleRenew(0);
      } else {
        this.lose(head < this.last ? 'rollback' : 'taken');
      }
    } else {
      this.lose(reply[0] === LEASE_LAPSED ? 'expired' : 'taken');
    }
  }

  private isMine(record: ReturnType<typeof parseLeaseRecord>): boolean {
    return record !== null && record.state === 'held' && record.owner === this.owner && record.token === this.token;
  }

  /** Hears other writers at once: any version after this holder's own that it did not write. */
  private async listen(): Promise<void> {
    try {
      for await (const head of this.host.watch(this.key, this.controller.signal)) {
        const seqno = encodeSeqNo(head.seqno);
        if (seqno <= this.last || seqno === this.pending || this.isMine(parseLeaseRecord(head.data))) continue;
        this.lose('taken');
        return;
      }
    } catch (err) {
      // Other failures end only the watch: renewals and the local expiry still decide.
      if (isStoreReset(err)) this.lose('store-reset', err);
    }
  }
}
