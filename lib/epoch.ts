/**
 * The store epoch, client side: the epoch marker this store learned for each bucket, which every
 * script call passes back for its script to check (`lua/includes/epoch.lua` has the rules), and
 * the error of a call the check refused.
 *
 * A marker is learned from the envelope of a reply: when this store knew none for the bucket, or
 * when an acknowledgement replaced the one it knew. It is adopted only if the call was sent with the
 * marker known when the reply comes back, so that a reply to a call sent before another reply taught
 * a marker (two calls in flight across a reset) cannot replace it: the next call then finds the
 * marker it knows gone, and is refused, as it should be.
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

/** The epoch markers one store learned, by bucket. */
export class Epochs {
  private readonly markers: Array<string | undefined> = new Array<string | undefined>(BUCKETS);

  /** The marker to send for `bucket`: the one learned, or '' when none is. */
  known(bucket: number): string {
    return this.markers[bucket] ?? '';
  }

  /** Remembers `marker` for `bucket`, if the call that brought it was sent with the marker known now. */
  learn(bucket: number, sent: string, marker: string): void {
    if ((this.markers[bucket] ?? '') === sent) this.markers[bucket] = marker;
  }

  /** The error of a call the epoch check refused; `sent` is the marker it was sent with. */
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
}
