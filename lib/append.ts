/**
 * `append`: the read → compare-and-set → retry loop every user writes, done once, well.
 *
 * - One round trip when the head is known: each store remembers the last head it saw of each key
 *   (its own commit, or the head a mismatch brought back), and uses it only as the first
 *   `expected`. A stale guess costs one mismatch, which brings the fresh head with it.
 * - Single flight per key: appends to one key from one store take turns, each starting from the
 *   head the previous one committed, so they never race each other.
 * - Across processes: a lost race retries at once with the head it got back; from the second
 *   loss in a row on, it backs off with jitter.
 * - An indeterminate attempt is resolved, never guessed: the same version (same expected, seqno
 *   and bytes, so `update` is not run again) is sent again; its reply says whether the first
 *   one committed (and the two cannot both commit: they expect the same head). A version found
 *   committed that way is reported committed only once durability is met for it (`confirm`): the
 *   first send may have fallen short of replicas (`replicas-short`), and the resend that found it
 *   wrote nothing that a `WAIT` would wait for.
 * - A head never moves back: a mismatch that brings a head below the one the attempt expected
 *   means commits this store saw are gone (a rollback the epoch check could not name), and the
 *   append refuses (`store-rollback`) instead of committing on top of the older history.
 */
import { checkAppendOptions, checkKey, describe } from './arguments.js';
import type { AppendBounds } from './arguments.js';
import { determinate, ExternalError, indeterminate } from './errors.js';
import type { ExternalErrorCode } from './errors.js';
import { begin } from './observer.js';
import type { Report } from './observer.js';
import { formatSeqNo } from './seqno.js';
import type { SeqNo } from './seqno.js';
import { CaSResult } from './types.js';
import type {
  AppendOptions, AppendResult, AppendUpdate, CallOptions, CompareAndSetOutcome, Observer, VersionedData,
  VersionedDataInput,
} from './types.js';

/** What `append` uses of the store: its public operations (so each attempt is observed too). */
export interface AppendTarget {
  compareAndSetWithHead(key: string, expected: SeqNo | null, next: VersionedDataInput, options?: CallOptions): Promise<CompareAndSetOutcome>;
  head(key: string, options?: CallOptions): Promise<VersionedData | null>;
  scan(key: string, from: SeqNo, limit: number, options?: CallOptions): Promise<VersionedData[]>;
}

/**
 * Confirms durability of a version found committed (see `Operations.confirm`): true once replicas
 * have it (at once without durability), false when it is no longer stored.
 */
export type Confirm = (key: string, seqno: SeqNo, options?: CallOptions) => Promise<boolean>;

/** A version sent whose outcome is unknown: it is sent again, unchanged, until it is known. */
interface Pending {
  readonly expected: SeqNo | null;
  readonly next: VersionedData;
  readonly cause: ExternalError;
}

/** The appends of one store: the heads it remembers and whose turn it is on each key. */
export class Appender {
  private readonly heads: HeadMemory;
  /** Per key, the end of the queue of appends from this store: settles when the last one has. */
  private readonly turns = new Map<string, Promise<void>>();

  constructor(
    private readonly target: AppendTarget,
    private readonly defaults: AppendBounds,
    rememberHeads: number,
    private readonly observer: Observer | undefined,
    private readonly confirm: Confirm,
  ) {
    this.heads = new HeadMemory(rememberHeads);
  }

  async append(key: string, update: AppendUpdate, options?: AppendOptions): Promise<AppendResult> {
    checkKey(key);
    if (typeof update !== 'function') throw new TypeError(`update must be a function; got ${typeof update}`);
    const bounds = checkAppendOptions(options, this.defaults);
    const observation = begin(this.observer, 'append');
    const run = new Run(bounds);
    const previous = this.turns.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The next append waits for this one, and (if this one gives up waiting) for the one before.
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.turns.set(key, tail);
    try {
      if (previous !== undefined) await run.waitFor(previous, key);
      const result = await this.attempts(key, update, run);
      observation.finish({
        ...run.report(), count: result.committed ? 1 : 0, bytesWritten: result.committed ? result.head.data.length : 0,
      });
      return result;
    } catch (err) {
      observation.fail(err, run.report());
      throw err;
    } finally {
      release();
      if (this.turns.get(key) === tail) this.turns.delete(key);
    }
  }

  private async attempts(key: string, update: AppendUpdate, run: Run): Promise<AppendResult> {
    let head = this.heads.get(key);
    if (head === undefined) {
      head = await this.target.head(key, { timeoutMs: run.remainingOr(key, undefined) });
      this.heads.remember(key, head);
    }
    let pending: Pending | undefined;
    for (;;) {
      // No update is made for an attempt that could not be sent.
      run.remainingOr(key, pending, true);
      let expected: SeqNo | null;
      let next: VersionedData;
      if (pending !== undefined) {
        ({ expected, next } = pending);
      } else {
        const data = await run.bounded(update, head, key);
        if (data === undefined) return { committed: false, head, attempts: run.attempts };
        if (!(data instanceof Uint8Array)) {
          throw new TypeError(`update must return a Uint8Array or undefined; got ${describe(data)}`);
        }
        expected = head === null ? null : head.seqno;
        next = { seqno: head === null ? 0n : head.seqno + 1n, data: Buffer.from(data) };
      }
      const timeoutMs = run.nextAttempt(key, pending);
      let outcome: CompareAndSetOutcome;
      try {
        outcome = await this.target.compareAndSetWithHead(key, expected, next, { timeoutMs });
      } catch (err) {
        if (!(err instanceof ExternalError)) throw err;
        // The history this store remembers is gone: once acknowledged, start from the head as it is.
        if (err.code === 'store-reset' || err.code === 'store-rollback') this.heads.forget(key);
        // Sent and unknown: send the same version again. A determinate failure of that resend
        // leaves the first one as unknown as it was; after a store reset, unknowable.
        if (!err.determinate) pending = { expected, next, cause: err };
        else if (pending === undefined) throw err;
        else if (err.code === 'store-reset' || err.code === 'store-rollback') throw run.unresolved(key, pending, err.message);
        continue;
      }
      if (outcome.result === CaSResult.Committed) {
        this.heads.remember(key, next);
        return { committed: true, head: next, attempts: run.attempts };
      }
      run.mismatches++;
      const current = outcome.head;
      if (expected !== null && (current === null || current.seqno < expected)) {
        // Refused once, then forgotten: the next append starts from the head as it is now.
        this.heads.forget(key);
        throw run.movedBack(key, pending, expected, current);
      }
      if (pending !== undefined) {
        const mine = await this.settle(key, pending, current, run);
        if (mine) {
          await this.durable(key, pending, run);
          this.heads.remember(key, current);
          return { committed: true, head: pending.next, attempts: run.attempts };
        }
        pending = undefined;
      }
      this.heads.remember(key, current);
      head = current;
      await run.lost();
    }
  }

  /**
   * Makes sure durability was met for `pending`, found committed by a resend.
   * @throws ExternalError (indeterminate, `replicas-short` when replicas fell short) otherwise.
   */
  private async durable(key: string, pending: Pending, run: Run): Promise<void> {
    let stored: boolean;
    try {
      stored = await this.confirm(key, pending.next.seqno, { timeoutMs: run.remainingOr(key, pending) });
    } catch (err) {
      const why = `it was found committed, then confirming its durability failed: ${(err as Error).message}`;
      if (err instanceof ExternalError && err.code === 'replicas-short') {
        throw indeterminate('replicas-short', `append to ${JSON.stringify(key)}: ${formatSeqNo(pending.next.seqno)} may ` +
          `not survive a failover (${why})`, err, run.attempts);
      }
      throw run.unresolved(key, pending, why);
    }
    if (!stored) throw run.unresolved(key, pending, 'it was found committed, then no longer stored (truncated or lost)');
  }

  /**
   * Whether `pending` committed, given the head a later attempt of it met: its seqno is taken
   * iff the head is at or above it, and then it is ours iff the bytes there are ours.
   * @throws ExternalError (indeterminate) when that seqno is gone (truncated) and no one can tell.
   */
  private async settle(key: string, pending: Pending, current: VersionedData | null, run: Run): Promise<boolean> {
    const { seqno, data } = pending.next;
    // A head below our seqno: it is not taken, and a head never comes back down to `expected`.
    if (current === null || current.seqno < seqno) return false;
    if (current.seqno === seqno) return current.data.equals(data);
    let at: VersionedData | undefined;
    try {
      [at] = await this.target.scan(key, seqno, 1, { timeoutMs: run.remainingOr(key, pending) });
    } catch (err) {
      throw run.unresolved(key, pending, `reading ${formatSeqNo(seqno)} back failed: ${(err as Error).message}`);
    }
    if (at?.seqno === seqno) return at.data.equals(data);
    throw run.unresolved(key, pending, `${formatSeqNo(seqno)} is no longer stored (truncated), so whether it was ours cannot be read back`);
  }
}

/** The bookkeeping of one append: its bounds, attempts, lost races and waits. */
class Run {
  attempts = 0;
  mismatches = 0;
  private lossesInRow = 0;
  private waitedMs = 0;
  private readonly started = performance.now();
  private readonly deadline: number;

  constructor(private readonly bounds: AppendBounds) {
    this.deadline = this.started + bounds.timeoutMs;
  }

  report(): Report {
    return { attempts: this.attempts, mismatches: this.mismatches, waitedMs: this.waitedMs };
  }

  /** Waits for the appends ahead of this one on the same key, within the time bound. */
  async waitFor(previous: Promise<void>, key: string): Promise<void> {
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), Math.max(0, this.deadline - started));
    });
    const late = await Promise.race([previous.then(() => false), timedOut]);
    clearTimeout(timer);
    this.waitedMs += performance.now() - started;
    if (late) throw this.bound(key, undefined, 'while waiting for earlier appends to the same key from this store');
  }

  /**
   * `update(head)`, within the append's time bound: an update that never settles must not hold
   * the append, nor the appends queued behind it on the key. Nothing was sent for this attempt.
   */
  async bounded(update: AppendUpdate, head: VersionedData | null, key: string): Promise<Uint8Array | undefined> {
    const made = update(head);
    // A synchronous update has settled already: no timer for it (the common case).
    if (typeof (made as PromiseLike<unknown> | undefined)?.then !== 'function') return made as Uint8Array | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, this.deadline - performance.now()));
    });
    try {
      const data = await Promise.race([made, timedOut]);
      if (data === TIMED_OUT) throw this.bound(key, undefined, '', ', while update was running');
      return data;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counts an attempt about to be sent and gives its timeout; throws when a bound is reached. */
  nextAttempt(key: string, pending: Pending | undefined): number {
    const timeoutMs = this.remainingOr(key, pending, true);
    this.attempts++;
    return timeoutMs;
  }

  /** The time left, or the error of the bound reached (with `attempt`: attempts count too). */
  remainingOr(key: string, pending: Pending | undefined, attempt = false): number {
    if (attempt && this.attempts >= this.bounds.maxAttempts) throw this.bound(key, pending);
    const remaining = this.deadline - performance.now();
    if (remaining < 1) throw this.bound(key, pending);
    return remaining;
  }

  /** After a lost race: at once the first time in a row, then with backoff and jitter. */
  async lost(): Promise<void> {
    this.lossesInRow++;
    if (this.lossesInRow < 2) return;
    const { minDelayMs, maxDelayMs } = this.bounds.backoff;
    const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** (this.lossesInRow - 2));
    // Equal jitter: at least half the ceiling, so that a crowd spreads out, and never all of it.
    const delay = Math.min(ceiling / 2 + Math.random() * (ceiling / 2), this.deadline - performance.now());
    if (delay <= 0) return;
    const started = performance.now();
    await new Promise((resolve) => setTimeout(resolve, delay));
    this.waitedMs += performance.now() - started;
  }

  /** The error for a bound reached: determinate unless a version sent is still unknown. */
  bound(key: string, pending: Pending | undefined, where = '', during = ''): ExternalError {
    const elapsed = Math.round(performance.now() - this.started);
    const exhausted = this.attempts >= this.bounds.maxAttempts;
    const which = exhausted
      ? `maxAttempts (${this.bounds.maxAttempts}) reached`
      : `timeoutMs (${this.bounds.timeoutMs} ms) reached${where === '' ? '' : ` ${where}`}`;
    const code = exhausted ? 'attempts-exhausted' : 'timeout';
    const did = `after ${this.attempts} attempts, ${this.mismatches} lost races, in ${elapsed} ms${during}`;
    if (pending !== undefined) return this.unresolved(key, pending, `${which} ${did}`, code);
    return new ExternalError(true, `append to ${JSON.stringify(key)} gave up: ${which} ${did}; nothing was written`,
      { attempts: this.attempts, code });
  }

  /** The error of a mismatch whose head is below the one the attempt expected: a rollback. */
  movedBack(key: string, pending: Pending | undefined, expected: SeqNo, current: VersionedData | null): ExternalError {
    const why = `the key's head moved back from ${formatSeqNo(expected)} to ` +
      `${current === null ? 'no data' : formatSeqNo(current.seqno)}: commits this store saw are gone (a failover lost them)`;
    if (pending !== undefined) return this.unresolved(key, pending, why);
    return determinate('store-rollback', `append to ${JSON.stringify(key)} refused: ${why}; nothing was written. ` +
      'The epoch check could not tell (see "Store rollback" in docs/deployment.md), so other calls in the bucket ' +
      'go on, and so does the next append, from the head as it is now', undefined, this.attempts);
  }

  /** An append whose version may or may not have committed (code: the bound, else the unknown attempt's). */
  unresolved(key: string, pending: Pending, why: string, code: ExternalErrorCode = pending.cause.code): ExternalError {
    return new ExternalError(false, `append to ${JSON.stringify(key)}: ${formatSeqNo(pending.next.seqno)} may or may ` +
      `not have committed (${why}); read ${formatSeqNo(pending.next.seqno)} back to learn which`,
    { cause: pending.cause, attempts: this.attempts, code });
  }
}

/** What `Run.bounded` races an update against. */
const TIMED_OUT = Symbol('timed out');

/**
 * The last head seen of each key, least recently used first out; a head only ever moves forward
 * (an older one seen late, e.g. from a slow reply, never replaces a newer one).
 */
class HeadMemory {
  private readonly heads = new Map<string, VersionedData | null>();

  constructor(private readonly capacity: number) {}

  /** The head last seen of `key`, or `undefined` when none is remembered. */
  get(key: string): VersionedData | null | undefined {
    const head = this.heads.get(key);
    if (head === undefined) return undefined;
    this.heads.delete(key);
    this.heads.set(key, head);
    return head;
  }

  forget(key: string): void {
    this.heads.delete(key);
  }

  remember(key: string, head: VersionedData | null): void {
    if (this.capacity === 0) return;
    const known = this.heads.get(key);
    if (known !== undefined && (head === null || (known !== null && known.seqno >= head.seqno))) return;
    this.heads.delete(key);
    this.heads.set(key, head);
    if (this.heads.size > this.capacity) this.heads.delete(this.heads.keys().next().value!);
  }
}
