/**
 * Followers: every version of a key from a seqno, in order, each once, then each new one as it
 * commits (`RedisConsensus.follow`). A follower reads with `scan` in pages of at most `pageSize`
 * from the seqno after the last it has, and is woken by the store's subscriber (shared with the
 * watches): a plain announcement or a gap marks it stale (read again); a carried announcement
 * (notice.ts) whose `previous` is exactly the last version it has, and whose epoch marker is the
 * one the store knows (so that a reset is still reported, by a read), is appended without a read.
 *
 * Why that is sound: gaps in seqnos are allowed, so "the next version" is not "seqno + 1". A
 * carried notice names the head its commit was made on, and versions are only ever appended above
 * the head, so nothing lies between `previous` and the notice's seqno. Any other notice (older,
 * not chained, or too many waiting) just makes the follower read, from where it is.
 *
 * Truncation: a page whose first version is above the seqno wanted next (`expected`) is either a
 * gap the writers left or versions truncated before they were read. The follower then reads the
 * key's oldest stored seqno: if it is below `expected`, the version before `expected` is still
 * stored, truncation (which only ever deletes a prefix) has not reached it, so the page is whole
 * and the rest is a gap. Otherwise it cannot tell, and ends with a `TruncatedError` naming
 * `expected`: never a silent gap. Without `from`, the first page starts at whatever is oldest.
 *
 * Memory: at most one page read plus `pageSize` carried versions wait, however far behind the
 * consumer is, and a store's followers have at most `PAGE_READS_IN_FLIGHT` page reads in flight
 * together (the others wait their turn), however many follow. Reads that fail are retried (from where the follower is) until
 * `watch.maxOutageMs`; errors retrying cannot mend (`store-reset`, `store-rollback`,
 * `permission`, `payload-missing`...) end it at once.
 */
import { checkSignal, toSeqNo } from './arguments.js';
import { ExternalError, retryable } from './errors.js';
import type { KeyNames } from './layout.js';
import { Limiter } from './limiter.js';
import { NoticeReader } from './notice.js';
import { Loop, Running } from './running.js';
import { encodeSeqNo, formatSeqNo, SEQNO_MAX } from './seqno.js';
import type { SeqNo } from './seqno.js';
import type { Subscriber } from './subscriber.js';
import type { FollowOptions, VersionedData, WatchOptions } from './types.js';

/**
 * `follow` could not read versions it owes: the version before the next one wanted is no longer
 * stored, and the oldest stored version is above it, so the versions from `firstMissing` up to
 * (not including) `nextStored` may have been truncated before they were read (or never existed:
 * the store cannot tell). Determinate, code `truncated`.
 */
export class TruncatedError extends ExternalError {
  /** The first seqno that may be missing: the one the follower wanted next. */
  readonly firstMissing: SeqNo;
  /** The lowest seqno stored at or above `firstMissing` when it looked. */
  readonly nextStored: SeqNo;

  constructor(key: string, firstMissing: SeqNo, nextStored: SeqNo) {
    super(true, `follow of ${JSON.stringify(key)}: versions from ${formatSeqNo(firstMissing)} up to ` +
      `${formatSeqNo(nextStored)} (excluded) may have been truncated before they were read; nothing stored is older ` +
      `than ${formatSeqNo(nextStored)}`, { code: 'truncated' });
    this.name = 'TruncatedError';
    this.firstMissing = firstMissing;
    this.nextStored = nextStored;
  }
}

/** What the followers of one store use. */
export interface FollowHost {
  /** Up to `limit` versions with seqno >= `from`, ascending (the store's `scan`). */
  scan(key: string, from: SeqNo, limit: number): Promise<VersionedData[]>;
  /** The store's subscriber, shared with its watches. */
  subscriber(): Subscriber;
  /** The epoch marker the store knows for a key's bucket ('' for none): carried notices must match it. */
  knownEpoch(names: KeyNames): string;
}

/** The default `pageSize`, and its bound (one page is one script reply). */
export const DEFAULT_PAGE_SIZE = 256;
const MAX_PAGE_SIZE = 10_000;

/** Delay before the first retry of a failed read; doubles up to the poll interval. */
const RETRY_MIN_MS = 50;

/**
 * Page reads of a store's followers in flight at once (see `Follows.reads`). Fewer than the
 * watches' head reads: a page is up to `pageSize` versions, a head one.
 */
export const PAGE_READS_IN_FLIGHT = 64;

/** `follow`'s options, checked. @throws TypeError / RangeError. */
export function checkFollowOptions(options: FollowOptions): { from: SeqNo | undefined; pageSize: number; signal: AbortSignal | undefined } {
  if (typeof options !== 'object' || options === null) throw new TypeError('follow options must be an object');
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  if (typeof pageSize !== 'number' || !Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new RangeError(`options.pageSize must be an integer in [1, ${MAX_PAGE_SIZE}]; got ${String(pageSize)}`);
  }
  return {
    from: options.from === undefined ? undefined : toSeqNo(options.from, 'options.from'),
    pageSize, signal: checkSignal(options.signal),
  };
}

/** Whether a failed read must end the follower: retrying cannot mend it (an epoch error above all). */
function fatal(err: unknown): boolean {
  if (!(err instanceof ExternalError)) return true;
  return (err.code as string) === 'store-reset' || (err.code as string) === 'store-rollback' || !retryable(err);
}

/** One follower's end: its loop's wake-up and the read in flight, if any. */
class Follower extends Loop {}

/** The followers of one store: ending them all on close (one `abort` listener per caller signal, running.ts). */
export class Follows {
  private closed = false;
  private readonly running = new Running<Follower>();
  /**
   * The followers' page reads in flight, bounded (issue 20, as the watches' head reads): thousands
   * of followers starting, or hearing one burst of commits, would otherwise each have a scan in
   * flight, and as many pages of up to `pageSize` versions in memory at once.
   */
  private readonly reads: Limiter;

  constructor(
    private readonly host: FollowHost, private readonly settings: Required<WatchOptions>,
    limits: { reads: number } = { reads: PAGE_READS_IN_FLIGHT },
  ) {
    this.reads = new Limiter(limits.reads);
  }

  /** Every version of `key` from `from` (see `RedisConsensus.follow`). */
  async *follow(
    key: string, names: KeyNames, options: ReturnType<typeof checkFollowOptions>,
  ): AsyncGenerator<VersionedData, void, undefined> {
    const { from, pageSize, signal } = options;
    if (this.closed || signal?.aborted === true) return;
    const { pollIntervalMs, maxOutageMs } = this.settings;
    const follower = new Follower();
    const { wake } = follower;
    const ended = (): boolean => follower.ended;
    this.running.add(follower, signal);
    const cleanups: Array<() => void> = [() => this.running.delete(follower, signal)];
    /**
     * `read`'s result, or `undefined` as soon as the follower ends. Only this read is held, until it
     * settles: racing each read against a promise that lives as long as the follower would keep a
     * reaction, and the page it resolved with, on that promise for every page (issue 20's leak).
     */
    const unlessEnded = <T>(read: Promise<T>): Promise<T | undefined> => new Promise<T | undefined>((resolve, reject) => {
      if (ended()) {
        resolve(undefined);
        return;
      }
      follower.interrupt = () => resolve(undefined);
      read.then((value) => {
        follower.interrupt = undefined;
        resolve(value);
      }, (err: unknown) => {
        follower.interrupt = undefined;
        reject(err);
      });
    });
    /** Versions in hand, not yet yielded: ascending, contiguous with what was yielded. */
    const queue: VersionedData[] = [];
    /** The last version yielded or queued (wire form for notices): every wanted one up to it is in hand. */
    let tip: SeqNo | undefined;
    let tipWire: string | undefined;
    let stale = true;
    const notices = new NoticeReader(names.member);
    const host = this.host;
    const take = (version: VersionedData): void => {
      queue.push(version);
      tip = version.seqno;
      tipWire = encodeSeqNo(version.seqno);
    };
    const subscription = this.settings.mode === 'pubsub'
      ? this.host.subscriber().listen(names.heads, {
        message(message) {
          const notice = notices.read(message);
          if (notice === undefined || (tipWire !== undefined && notice.seqno <= tipWire)) return;
          // Chained to the version in hand, in the epoch known: nothing can lie between (module comment).
          if (notice.data !== undefined && tipWire !== undefined && notice.previous === tipWire && queue.length < pageSize &&
            notice.marker === host.knownEpoch(names)) {
            take({ seqno: BigInt(notice.seqno), data: notice.data });
          } else {
            stale = true;
          }
          wake.fire();
        },
        gap() {
          stale = true;
          wake.fire();
        },
        down() {
          wake.fire();
        },
      })
      : undefined;
    if (subscription !== undefined) {
      cleanups.push(() => subscription.close());
      subscription.ready.then(() => {
        stale = true;
        wake.fire();
      }, () => undefined);
    }

    /** Reads one page from after the tip; queues what it brings. Throws a TruncatedError. */
    const readPage = async (): Promise<void> => {
      const before = tip;
      const expected = before === undefined ? from : before + 1n;
      const page = await unlessEnded(this.scanInTurn(follower, key, expected ?? 0n, pageSize));
      if (page === undefined || ended()) return;
      // More may follow a full page: read again once the queue is yielded.
      if (page.length === pageSize) stale = true;
      // Notices may have queued versions while this read was in flight.
      if (tip !== before) {
        stale = true;
        return;
      }
      if (page.length === 0) return;
      const first = page[0]!.seqno;
      if (expected !== undefined && first > expected) {
        const oldest = await unlessEnded(this.scanInTurn(follower, key, 0n, 1));
        if (oldest === undefined || ended()) return;
        if (tip !== before) {
          stale = true;
          return;
        }
        if (oldest.length === 0 || oldest[0]!.seqno >= expected) throw new TruncatedError(key, expected, oldest[0]?.seqno ?? first);
      }
      for (const version of page) take(version);
    };

    try {
      if (subscription !== undefined) await unlessEnded(Promise.race([subscription.ready, delay(pollIntervalMs)]));
      let failingSince: number | undefined;
      let retryMs = RETRY_MIN_MS;
      while (!ended()) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        // Nothing can come after the largest seqno.
        if (tip === SEQNO_MAX) return;
        if (stale) {
          stale = false;
          try {
            await readPage();
          } catch (err) {
            if (ended()) return;
            failingSince ??= Date.now();
            if (fatal(err) || Date.now() - failingSince >= maxOutageMs) throw err;
            stale = true;
            await wake.wait(retryMs);
            retryMs = Math.min(retryMs * 2, pollIntervalMs);
            continue;
          }
          failingSince = undefined;
          retryMs = RETRY_MIN_MS;
          continue;
        }
        const polling = subscription === undefined || !subscription.live;
        if (!(await wake.wait(polling ? pollIntervalMs : undefined))) stale = true;
      }
    } finally {
      for (const cleanup of cleanups) cleanup();
    }
  }

  /**
   * A scan in its turn among the followers' reads; none once `follower` has ended (`undefined`).
   * Not given the caller's signal: each call would add a listener to it while in flight (thousands,
   * for thousands of followers on one signal); an abort ends the follower, which stops waiting for
   * the read at once (`unlessEnded`), and the read itself ends within its timeout.
   */
  private scanInTurn(follower: Follower, key: string, from: SeqNo, limit: number): Promise<VersionedData[] | undefined> {
    return this.reads.run(() => (follower.ended ? Promise.resolve(undefined) : this.host.scan(key, from, limit)));
  }

  /** Ends every follower (their loops finish). */
  close(): void {
    this.closed = true;
    this.running.endAll();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms).unref?.();
  });
}
