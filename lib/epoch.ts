/**
 * The store epoch, client side: what this store knows of each bucket's epoch marker (its id, the
 * highest commit count it has seen there and that commit's tag), which every script call passes for
 * its script to check (`lua/includes/epoch.lua` has the rules), and the errors of a call the check
 * refused: `store-reset` (the marker gone or replaced) and `store-rollback` (commits this store had
 * seen are gone).
 *
 * What a store knows is learned from the envelope of a reply, and from its own commits: a commit
 * that went through without an envelope counted itself on the marker the call was sent with. Within
 * one marker id only a higher count is learned (replies may come back out of order). Another id is
 * adopted only if the call was sent under the id known when the reply comes back, so that a reply
 * to a call sent before another reply taught an id (two calls in flight across a reset) cannot
 * replace it: the next call then finds the id it knows gone, and is refused, as it should be.
 */
import { randomBytes } from 'node:crypto';
import { determinate } from './errors.js';
import type { ExternalError } from './errors.js';
import { BUCKETS } from './layout.js';
import type { KeyNames } from './layout.js';

/** A fresh random id for a marker a script may create (64 bits, as hex). */
export function freshEpochId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * The id part of what a store knows of a bucket's marker (`<id>` of `<id>|<count>|<tag>`): the same
 * in every process that knows the bucket's epoch, whatever commits each has seen; carried
 * announcements name it (notice.ts).
 */
export function epochIdOf(known: string): string {
  const bar = known.indexOf('|');
  return bar < 0 ? known : known.slice(0, bar);
}

/** Width of a commit tag (`TAG` in `lua/includes/epoch.lua`). */
export const TAG_WIDTH = 8;

/** Random tags, drawn from one buffer: a `randomBytes` call per commit would cost more than it. */
let tagPool = '';
let tagAt = 0;

/** A fresh random tag for a commit: 8 base64url characters (48 bits), never '|'. */
export function freshTag(): string {
  if (tagAt + TAG_WIDTH > tagPool.length) {
    tagPool = randomBytes(6 * 512).toString('base64url');
    tagAt = 0;
  }
  tagAt += TAG_WIDTH;
  return tagPool.slice(tagAt - TAG_WIDTH, tagAt);
}

/** What a store knows of one bucket's marker. */
class Known {
  constructor(
    /** What is sent: `<id>` or `<id>|<count>|<tag>`. */
    readonly wire: string,
    readonly id: string,
    readonly count: number,
  ) {}

  /** Parses a marker value (its kept tags are cut off) or a `wire`. */
  static of(value: string): Known {
    const bar = value.indexOf('|');
    if (bar < 0) return new Known(value, value, 0);
    const bar2 = value.indexOf('|', bar + 1);
    return new Known(value.slice(0, bar2 + 1 + TAG_WIDTH), value.slice(0, bar), Number(value.slice(bar + 1, bar2)));
  }
}

/** The epoch markers one store learned, by bucket. */
export class Epochs {
  private readonly buckets: Array<Known | undefined> = new Array<Known | undefined>(BUCKETS);

  /** What to send for `bucket`: what is known, or '' when nothing is. */
  known(bucket: number): string {
    return this.buckets[bucket]?.wire ?? '';
  }

  /**
   * What a commit sent with `sent` and `tag` expects the bucket's marker to start with once it
   * went through on the marker the call names (`countNextCommit` in `lua/includes/epoch.lua`):
   * `<id>|<count + 1>|<tag>`, or `tag` alone when `sent` names no count. The script writes it with
   * the tags it keeps instead of parsing and rebuilding the marker on every commit.
   */
  nextHead(bucket: number, sent: string, tag: string): string {
    const current = this.buckets[bucket];
    const base = current !== undefined && current.wire === sent ? current : Known.of(sent);
    return base.wire.length === base.id.length ? tag : `${base.id}|${base.count + 1}|${tag}`;
  }

  /** Learns from the marker value of an envelope to a call sent with `sent`. */
  learn(bucket: number, sent: string, marker: string): void {
    this.adopt(bucket, sent, Known.of(marker));
  }

  /**
   * Learns from a commit sent with `sent` and `head` (`nextHead`) that came back without an
   * envelope: it counted itself on the marker the call was sent with.
   */
  committed(bucket: number, sent: string, head: string): void {
    if (head.length === TAG_WIDTH) {
      // `sent` named no count: the commit is the first counted under its id.
      const id = epochIdOf(sent);
      this.adopt(bucket, sent, new Known(`${id}|1|${head}`, id, 1));
      return;
    }
    const current = this.buckets[bucket];
    // The common case: nothing was learned while the call was in flight.
    const base = current !== undefined && current.wire === sent ? current : Known.of(sent);
    this.adopt(bucket, sent, new Known(head, base.id, base.count + 1));
  }

  private adopt(bucket: number, sent: string, next: Known): void {
    const current = this.buckets[bucket];
    if (current === undefined) {
      if (sent === '') this.buckets[bucket] = next;
    } else if (current.id === next.id) {
      if (next.count > current.count) this.buckets[bucket] = next;
    } else if (sent !== '' && Known.of(sent).id === current.id) {
      this.buckets[bucket] = next;
    }
  }

  /** The error of a call the epoch check refused as reset; `sent` is what it was sent with. */
  refused(what: string, names: KeyNames, sent: string): ExternalError {
    const why = sent === ''
      ? `bucket ${names.bucket} of the store is marked reset (${names.epoch}): a process found the store's ` +
        'data reset under it there (a Redis restarted without persistence, a flush, deleted keys)'
      : `the store's data was reset under this process: the epoch marker it knew for bucket ${names.bucket} ` +
        `(${names.epoch}) is gone or was replaced (a Redis restarted without persistence, a flush, deleted keys)`;
    return determinate('store-reset', `${what} refused: ${why}; the call did nothing. Calls in this bucket stay ` +
      'refused until an operator acknowledges the reset (`redis-consensus ack-reset` or ' +
      'acknowledgeStoreReset()), accepting that the data committed before it is gone');
  }

  /** The error of a call the epoch check refused as rolled back; `sent` is what it was sent with. */
  rolledBack(what: string, names: KeyNames, sent: string): ExternalError {
    const seen = sent === '' ? '' : ` (this process saw ${Known.of(sent).count} commits counted by ${names.epoch})`;
    const why = `bucket ${names.bucket} of the store was rolled back: it no longer holds commits this process, or ` +
      `another that marked it rolled back, had seen there${seen}`;
    return determinate('store-rollback', `${what} refused: ${why}: its history was rolled back (a failover to a ` +
      'replica that had not received them, a restart from an older snapshot); the call did nothing. Calls in ' +
      'this bucket stay refused until an operator acknowledges it (`redis-consensus ack-reset` or ' +
      'acknowledgeStoreReset()), accepting that those commits are gone');
  }
}
