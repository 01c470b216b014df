/**
 * Watches: a key's heads as they commit, without polling. A watch listens on its key's bucket
 * channel (where `compareAndSet-4.lua` announces each commit as `<seqno><member>`), and reads the
 * head whenever an announcement for its key names a seqno above the last it yielded, and after
 * every gap the subscriber reports; an announcement that carries its version (notice.ts) is yielded
 * without a read. It only ever holds a flag "the head must be read", never a
 * queue, so a slow consumer gets the latest head and no backlog. Without pub/sub (`mode: 'poll'`),
 * and while a subscription is down, it reads the head every `pollIntervalMs`.
 *
 * Bounded at scale: a watch holds the same few objects after a million heads as after one (no
 * promise lives as long as the watch and collects a reaction per read); many watches cost one
 * `abort` listener per caller signal and store, not one each (`running.ts`); and they start in
 * turns, at most `STARTING` at once (subscribed and their first head read), the others queued
 * (`limiter.ts`), so that starting 100,000 is one short step per watch, not one long burst.
 */
import { performance } from 'node:perf_hooks';
import { determinate, ExternalError } from './errors.js';
import type { KeyNames } from './layout.js';
import { Limiter } from './limiter.js';
import type { Turn } from './limiter.js';
import { NoticeReader } from './notice.js';
import { Loop, Running } from './running.js';
import { encodeSeqNo, formatSeqNo } from './seqno.js';
import type { Subscriber, Subscription } from './subscriber.js';
import type { VersionedData, WatchOptions } from './types.js';

/** What the watches of one store use. */
export interface WatchHost {
  /** Reads a key's head (an ExternalError when it cannot). */
  head(key: string): Promise<VersionedData | null>;
  /** Makes the store's subscriber, on the first pub/sub watch. */
  openSubscriber(): Subscriber;
  /** The epoch id the store knows for a key's bucket ('' for none): carried notices must match it. */
  knownEpoch(names: KeyNames): string;
}

function isStoreReset(err: unknown): boolean {
  return err instanceof ExternalError && (err.code === 'store-reset' || err.code === 'store-rollback');
}

/** Delay before the first retry of a failed head read; doubles up to the poll interval. */
const RETRY_MIN_MS = 50;

/** Watches of a store starting at once: subscribing and reading their first head (see `Watches.starting`). */
export const STARTING = 512;

/** Head reads of a store's watches in flight at once (see `Watches.reads`). */
export const HEAD_READS_IN_FLIGHT = 256;

/** The watches of one store: the shared subscriber, the watches to end on close or on abort. */
export class Watches {
  private subscriber: Subscriber | undefined;
  private closed = false;
  /** Every running watch, ended by `close()` or its caller's signal. */
  private readonly running = new Running<WatchState>();
  /**
   * Watches starting (from their first `next()` until their first head read settles), bounded:
   * 100,000 watches started in one loop otherwise all subscribed and waited at once, and their
   * subscriptions becoming ready woke them all in one burst that blocked the event loop ~1 s.
   */
  private readonly starting: Limiter;
  /**
   * The watches' head reads in flight, bounded: thousands of watches hearing one burst of
   * commits would otherwise put every read in flight at once, and that many live commands made
   * garbage collection, not Redis, the cost.
   */
  private readonly reads: Limiter;
  /**
   * The store's watch head reads failing: since when (`Date.now()`), the last failure and its
   * error; unset again by any read that succeeds. A watch waiting for its turn to start reads
   * nothing, so this is how it learns that the store is down.
   */
  private failing: { readonly since: number; last: number; error: unknown } | undefined;
  /**
   * Watches waiting for their turn to start, with when they began waiting, oldest first. While the
   * store is failing they end with its error `maxOutageMs` after the later of the two, as a
   * started watch does after its first failed read: otherwise, with Redis hung, the queue moved on
   * one read timeout per `STARTING` watches, and the last of 100,000 would only fail minutes later.
   */
  private readonly waiting = new Map<WatchState, number>();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: WatchHost, private readonly settings: Required<WatchOptions>,
    limits: { starting: number; reads: number } = { starting: STARTING, reads: HEAD_READS_IN_FLIGHT },
  ) {
    this.starting = new Limiter(limits.starting);
    this.reads = new Limiter(limits.reads);
  }

  /** The heads of `key`, as they commit, until `signal` aborts, the caller stops, or `close()`. */
  async *watch(key: string, names: KeyNames, signal: AbortSignal | undefined): AsyncGenerator<VersionedData, void, undefined> {
    if (this.closed || signal?.aborted === true) return;
    const state = new WatchState();
    this.running.add(state, signal);
    const start = this.starting.turn();
    // Ending while queued leaves the queue (at once: no promise waits for the turn in between).
    state.interrupt = () => start.end();
    this.waiting.set(state, Date.now());
    this.sweepLater();
    let subscription: Subscription | undefined;
    try {
      const started = await start.ready;
      this.waiting.delete(state);
      if (state.failure !== undefined) throw state.failure;
      if (!started || state.ended) return;
      state.interrupt = undefined;
      if (this.settings.mode === 'pubsub') subscription = this.subscribe(state, names);
      yield* this.follow(state, key, subscription, start);
    } finally {
      this.waiting.delete(state);
      start.end();
      subscription?.close();
      this.running.delete(state, signal);
    }
  }

  /** Ends every watch (their loops finish) and quits the subscriber connections. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.running.endAll();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    await subscriber?.close();
  }

  /** The loop of one watch: read the head when stale, yield it when newer, wait for the next reason. */
  private async *follow(
    state: WatchState, key: string, subscription: Subscription | undefined, start: Turn,
  ): AsyncGenerator<VersionedData, void, undefined> {
    const { pollIntervalMs, maxOutageMs } = this.settings;
    if (subscription !== undefined) await state.untilSubscribed(subscription, pollIntervalMs, maxOutageMs);
    state.stale = true;
    let failingSince: number | undefined;
    let retryMs = RETRY_MIN_MS;
    while (!state.ended) {
      const carried = state.carried;
      if (carried !== undefined) {
        state.carried = undefined;
        if (state.last === undefined || carried.wire > state.last) {
          state.last = carried.wire;
          yield carried.version;
          continue;
        }
      }
      if (state.stale) {
        state.stale = false;
        let head: VersionedData | null | undefined;
        try {
          head = await state.unlessEnded(this.reads.run(() => (state.ended ? Promise.resolve(undefined) : this.host.head(key))));
        } catch (err) {
          start.end();
          this.readFailed(err);
          failingSince ??= Date.now();
          // After a store reset seqnos start over: no later head can be told apart from an old one.
          if (Date.now() - failingSince >= maxOutageMs || isStoreReset(err)) throw err;
          state.stale = true;
          await state.wake.wait(retryMs);
          retryMs = Math.min(retryMs * 2, pollIntervalMs);
          continue;
        }
        start.end();
        if (head !== undefined) this.failing = undefined;
        failingSince = undefined;
        retryMs = RETRY_MIN_MS;
        if (state.ended || head === undefined) return;
        // A head never moves back (truncate keeps it): below one yielded, commits this watch saw
        // are gone, which the epoch check cannot always tell (versions yielded from announcements
        // teach it nothing).
        if (state.last !== undefined && (head === null || encodeSeqNo(head.seqno) < state.last)) {
          throw determinate('store-rollback', `watch of ${JSON.stringify(key)}: the head moved back from ` +
            `${formatSeqNo(BigInt(state.last))} to ${head === null ? 'no data' : formatSeqNo(head.seqno)}: ` +
            'commits it yielded are gone (a failover lost them)');
        }
        if (head !== null) {
          const seqno = encodeSeqNo(head.seqno);
          if (state.last === undefined || seqno > state.last) {
            state.last = seqno;
            yield head;
            continue;
          }
        }
      }
      const polling = subscription === undefined || !subscription.live;
      const woken = await state.wake.wait(polling ? pollIntervalMs : undefined);
      if (!woken) state.stale = true;
    }
  }

  /** A watch's head read failed: the store is failing, since now if it was not already. */
  private readFailed(err: unknown): void {
    const now = Date.now();
    if (this.failing === undefined) {
      this.failing = { since: now, last: now, error: err };
    } else {
      this.failing.last = now;
      this.failing.error = err;
    }
    this.sweepLater();
  }

  /** Ends the waiting watches whose time is up (see `waiting`), and plans the next look. */
  private sweep(): void {
    this.sweepTimer = undefined;
    const failing = this.failing;
    if (failing === undefined) return;
    const now = Date.now();
    for (const [state, since] of this.waiting) {
      // Oldest first: once one is not due, none after it is.
      if (Math.max(since, failing.since) + this.settings.maxOutageMs > now) break;
      // Still failing while it waited: a read failed since (the started watches retry at least
      // every poll interval). If none did, it waits on (so do the later ones) until one fails.
      if (failing.last < since) break;
      this.waiting.delete(state);
      state.failure = failing.error;
      state.end();
    }
    this.sweepLater();
  }

  /** Plans a sweep for when the oldest waiting watch is due, if the store is failing. */
  private sweepLater(): void {
    if (this.sweepTimer !== undefined || this.failing === undefined || this.closed) return;
    const oldest = this.waiting.values().next();
    if (oldest.done === true) return;
    const due = Math.max(oldest.value, this.failing.since) + this.settings.maxOutageMs;
    // Due, but no read failed since it began waiting: the next failure plans the sweep.
    if (due <= Date.now() && this.failing.last < oldest.value) return;
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(0, due - Date.now()));
    this.sweepTimer.unref?.();
  }

  /** The store's subscriber, made on first use; followers (follow.ts) share it. */
  openSubscriber(): Subscriber {
    this.subscriber ??= this.host.openSubscriber();
    return this.subscriber;
  }

  /** Listens on the key's channel: announcements of newer heads and gaps make the watch stale. */
  private subscribe(state: WatchState, names: KeyNames): Subscription {
    const notices = new NoticeReader(names.member);
    const host = this.host;
    const subscription = this.openSubscriber().listen(names.heads, {
      message(message) {
        const notice = notices.read(message);
        // Not newer than what is in hand (also the plain twin of a carried notice): nothing to do.
        const newest = state.carried?.wire ?? state.last;
        if (notice === undefined || (newest !== undefined && notice.seqno <= newest)) return;
        // Another epoch (a reset): only a read reports it (notice.ts).
        if (notice.data === undefined || notice.marker !== host.knownEpoch(names)) state.stale = true;
        else state.carried = { wire: notice.seqno, version: { seqno: BigInt(notice.seqno), data: notice.data } };
        state.wake.fire();
      },
      gap() {
        state.stale = true;
        state.wake.fire();
      },
      // Not stale yet: the loop wakes to wait with the poll interval while unsubscribed.
      down() {
        state.wake.fire();
      },
    });
    // Whatever committed before the subscription was in place is read once it is.
    subscription.ready.then(() => {
      state.subscribed = true;
      state.stale = true;
      state.wake.fire();
    }, () => undefined);
    return subscription;
  }
}

/** One watch's state, shared by its loop and its subscription's callbacks. */
class WatchState extends Loop {
  /** Whether the head must be read. */
  stale = false;
  /** The store's error, when the watch ended waiting for its turn because the store was failing. */
  failure: unknown;
  /** Whether the subscription became ready (every later commit is announced or a gap reported). */
  subscribed = false;
  /** The last head yielded, in its wire form: announcements compare as fixed-width strings. */
  last: string | undefined;
  /**
   * The newest version an announcement carried, to yield without a read: one at most, like the
   * flag, so a slow consumer still gets the latest, never a backlog.
   */
  carried: { readonly wire: string; readonly version: VersionedData } | undefined;

  /**
   * `read`'s result, or `undefined` as soon as the watch ends. Only this read is held, and only
   * until it settles (racing it against a promise that lives as long as the watch would leave a
   * reaction, and the head it resolved with, on that promise for every read).
   */
  unlessEnded<T>(read: Promise<T>): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve, reject) => {
      this.interrupt = () => resolve(undefined);
      read.then((value) => {
        this.interrupt = undefined;
        resolve(value);
      }, (err: unknown) => {
        this.interrupt = undefined;
        reject(err);
      });
    });
  }

  /**
   * Waits for the subscription to be ready, so that the first head is read once, after it.
   * Falls back to reading (and polling) when it is not ready after `pollIntervalMs` in which this
   * process could have heard it. An interval in which the event loop was mostly busy (e.g. the
   * caller starting thousands of watches, or their first heads coming in) does not count: the
   * subscription gets another one, up to `maxWaitMs` in all, rather than the watch reading a head
   * it would have to read again once subscribed.
   */
  async untilSubscribed(subscription: Subscription, pollIntervalMs: number, maxWaitMs: number): Promise<void> {
    const started = performance.now();
    while (!this.ended && !this.subscribed) {
      const before = eventLoopUtilization();
      if (await this.wake.wait(pollIntervalMs)) continue;
      await afterPendingIo();
      if (this.subscribed || subscription.live) return;
      const busy = eventLoopUtilization(before).utilization > BUSY_LOOP;
      if (!busy || performance.now() - started >= maxWaitMs) return;
    }
  }
}

/** Above this share of an interval spent running code, the event loop counts as busy. */
const BUSY_LOOP = 0.5;

const eventLoopUtilization = performance.eventLoopUtilization.bind(performance);

/** Resolves after the event loop has handled the I/O that was ready (a `setImmediate` turn). */
function afterPendingIo(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
