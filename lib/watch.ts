/**
 * Watches: a key's heads as they commit, without polling. A watch listens on its key's bucket
 * channel (where `compareAndSet-4.lua` announces each commit, notice.ts), yields the version an
 * announcement carries when it is above the last it yielded, and otherwise reads the
 * head whenever an announcement for its key names a seqno above the last it yielded, and after
 * every gap the subscriber reports. It only ever holds a flag "the head must be read", never a
 * queue, so a slow consumer gets the latest head and no backlog. Without pub/sub (`mode: 'poll'`),
 * and while a subscription is down, it reads the head every `pollIntervalMs`.
 */
import { setMaxListeners } from 'node:events';
import { ExternalError } from './errors.js';
import type { KeyNames } from './layout.js';
import { NoticeReader } from './notice.js';
import { encodeSeqNo } from './seqno.js';
import type { Subscriber } from './subscriber.js';
import type { VersionedData, WatchOptions } from './types.js';

/** What the watches of one store use. */
export interface WatchHost {
  /** Reads a key's head (an ExternalError when it cannot). */
  head(key: string): Promise<VersionedData | null>;
  /** Makes the store's subscriber, on the first pub/sub watch. */
  openSubscriber(): Subscriber;
  /** The epoch marker the store knows for a key's bucket ('' for none): carried notices must match it. */
  knownEpoch(names: KeyNames): string;
}

function isStoreReset(err: unknown): boolean {
  return err instanceof ExternalError && err.code === 'store-reset';
}

/** Delay before the first retry of a failed head read; doubles up to the poll interval. */
const RETRY_MIN_MS = 50;

/** The watches of one store: the shared subscriber, and ending them all on close. */
export class Watches {
  private subscriber: Subscriber | undefined;
  private readonly stopped = new AbortController();

  constructor(private readonly host: WatchHost, private readonly settings: Required<WatchOptions>) {
    // Every watch listens for the store's close: any number of them is expected.
    setMaxListeners(0, this.stopped.signal);
  }

  /** The heads of `key`, as they commit, until `signal` aborts, the caller stops, or `close()`. */
  async *watch(key: string, names: KeyNames, signal: AbortSignal | undefined): AsyncGenerator<VersionedData, void, undefined> {
    if (this.stopped.signal.aborted || signal?.aborted === true) return;
    const { pollIntervalMs, maxOutageMs } = this.settings;
    const wake = new Wake();
    const ended = (): boolean => this.stopped.signal.aborted || signal?.aborted === true;
    const cleanups: Array<() => void> = [];
    const end = new Promise<void>((resolve) => {
      const onEnd = (): void => {
        wake.fire();
        resolve();
      };
      this.stopped.signal.addEventListener('abort', onEnd, { once: true });
      signal?.addEventListener('abort', onEnd, { once: true });
      cleanups.push(() => {
        this.stopped.signal.removeEventListener('abort', onEnd);
        signal?.removeEventListener('abort', onEnd);
      });
    });
    /** The last head yielded, in its wire form: announcements compare as fixed-width strings. */
    let last: string | undefined;
    let stale = true;
    // Issue 21: the newest version an announcement carried (notice.ts), to yield without a read.
    // One at most, like the flag: a slow consumer still gets the latest, never a backlog.
    const notices = new NoticeReader(names.member);
    const host = this.host;
    let carried: { wire: string; version: VersionedData } | undefined;
    const subscription = this.settings.mode === 'pubsub'
      ? this.openSubscriber().listen(names.heads, {
        message(message) {
          const notice = notices.read(message);
          // Not newer than what is in hand (also the plain twin of a carried notice): nothing to do.
          const newest = carried?.wire ?? last;
          if (notice === undefined || (newest !== undefined && notice.seqno <= newest)) return;
          // Another epoch (a reset): only a read reports it (notice.ts).
          if (notice.data === undefined || notice.marker !== host.knownEpoch(names)) stale = true;
          else if (carried === undefined || notice.seqno > carried.wire) {
            carried = { wire: notice.seqno, version: { seqno: BigInt(notice.seqno), data: notice.data } };
          }
          wake.fire();
        },
        gap() {
          stale = true;
          wake.fire();
        },
        // Not stale yet: the loop wakes to wait with the poll interval while unsubscribed.
        down() {
          wake.fire();
        },
      })
      : undefined;
    if (subscription !== undefined) {
      cleanups.push(() => subscription.close());
      // Whatever committed before the subscription was in place is read once it is.
      subscription.ready.then(() => {
        stale = true;
        wake.fire();
      }, () => undefined);
    }
    try {
      if (subscription !== undefined) await Promise.race([subscription.ready, end, delay(pollIntervalMs)]);
      let failingSince: number | undefined;
      let retryMs = RETRY_MIN_MS;
      while (!ended()) {
        if (carried !== undefined) {
          const { wire, version } = carried;
          carried = undefined;
          if (last === undefined || wire > last) {
            last = wire;
            yield version;
            continue;
          }
        }
        if (stale) {
          stale = false;
          let head: VersionedData | null | undefined;
          try {
            head = await Promise.race([this.host.head(key), end.then(() => undefined)]);
          } catch (err) {
            failingSince ??= Date.now();
            // After a store reset seqnos start over: no later head can be told apart from an old one.
            if (Date.now() - failingSince >= maxOutageMs || isStoreReset(err)) throw err;
            stale = true;
            await wake.wait(retryMs);
            retryMs = Math.min(retryMs * 2, pollIntervalMs);
            continue;
          }
          failingSince = undefined;
          retryMs = RETRY_MIN_MS;
          if (ended() || head === undefined) return;
          if (head !== null) {
            const seqno = encodeSeqNo(head.seqno);
            if (last === undefined || seqno > last) {
              last = seqno;
              yield head;
              continue;
            }
          }
        }
        const polling = subscription === undefined || !subscription.live;
        const woken = await wake.wait(polling ? pollIntervalMs : undefined);
        if (!woken) stale = true;
      }
    } finally {
      for (const cleanup of cleanups) cleanup();
    }
  }

  /** Ends every watch (their loops finish) and quits the subscriber connections. */
  async close(): Promise<void> {
    this.stopped.abort();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    await subscriber?.close();
  }

  /** The store's subscriber, made on first use; followers (follow.ts) share it. */
  openSubscriber(): Subscriber {
    this.subscriber ??= this.host.openSubscriber();
    return this.subscriber;
  }
}

/** A wake-up flag: `fire` before or during a `wait` ends that wait; none is lost. */
export class Wake {
  private fired = false;
  private resolve: ((woken: boolean) => void) | undefined;

  fire(): void {
    this.fired = true;
    const resolve = this.resolve;
    this.resolve = undefined;
    resolve?.(true);
  }

  /** Waits for a `fire` (true) or `timeoutMs` (false); forever without a timeout. */
  async wait(timeoutMs?: number): Promise<boolean> {
    if (this.fired) {
      this.fired = false;
      return true;
    }
    let timer: NodeJS.Timeout | undefined;
    const woken = await new Promise<boolean>((resolve) => {
      this.resolve = resolve;
      if (timeoutMs !== undefined) timer = setTimeout(() => resolve(false), timeoutMs);
    });
    clearTimeout(timer);
    this.resolve = undefined;
    this.fired = false;
    return woken;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms).unref?.();
  });
}
