/**
 * A held lease (docs/leases.md): the holder's side. It believes it owns the lease until
 * `expiry - margin` on its own monotonic clock, from the moment it sent the call that began or last
 * renewed the tenure; it renews in the background, hears other writers through `watch` at once, and
 * releases with a compare-and-set on its own latest version.
 */
import { setMaxListeners } from 'node:events';
import type { KeyNames } from './layout.js';
import { argsOf, isStoreReset, isStoreRollback, LeaseLostError, nextOf, parseLeaseRecord, RETRY_MAX_MS, text } from './lease-record.js';
import type { LeaseHost, LeaseLossReason, LeaseSettings } from './lease-record.js';
import { LEASE_DONE, LEASE_LAPSED, LEASE_MISMATCH } from './scripts.js';
import type { LeaseReply, Wire } from './scripts.js';
import { encodeSeqNo } from './seqno.js';
import type { SeqNo } from './seqno.js';

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
    /** Learns each version this holder wrote: the expectation of the store's next acquire of the key. */
    private readonly remember: (head: string) => void,
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
      const observation = this.host.observation('releaseLease');
      let reply: LeaseReply;
      try {
        reply = await this.host.lease(this.names,
          argsOf('release', this.last, nextOf(this.last), this.owner, this.settings), this.settings.timeoutMs);
      } catch (err) {
        observation.fail(err, { attempts: 1 });
        throw err;
      }
      if (reply[0] !== LEASE_DONE) {
        // Lost already: the release changed nothing.
        observation.finish({ outcome: 'mismatch', attempts: 1 });
        return false;
      }
      observation.finish({ count: 1, attempts: 1 });
      this.remember(nextOf(this.last));
      return true;
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
    const observation = this.host.observation('renewLease');
    let reply: LeaseReply;
    try {
      reply = await this.host.lease(this.names, argsOf('renew', this.last, next, this.owner, this.settings),
        Math.max(1, Math.min(this.settings.timeoutMs, this.validUntil - sentAt)));
    } catch (err) {
      observation.fail(err, { attempts: 1 });
      if (isStoreReset(err)) this.lose('store-reset', err);
      // Refused until an operator acknowledges it: no renewal can succeed.
      else if (isStoreRollback(err)) this.lose('rollback', err);
      // Another attempt, soon: one whose predecessor committed unseen learns it from the mismatch.
      else this.scheduleRenew(Math.min(RETRY_MAX_MS, this.settings.renewIntervalMs / 4));
      return;
    } finally {
      this.pending = undefined;
    }
    observation.finish(reply[0] === LEASE_DONE ? { count: 1, attempts: 1 } : { outcome: 'mismatch', attempts: 1 });
    if (this.controller.signal.aborted) return;
    if (reply[0] === LEASE_DONE) {
      this.last = next;
      this.remember(next);
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
      else if (isStoreRollback(err)) this.lose('rollback', err);
    }
  }
}
