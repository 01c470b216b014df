/**
 * Deadlines of calls in flight, kept by one timer instead of a `setTimeout` per call.
 *
 * A timer per call costs a timer-list insertion and removal on every call (the hot path of a
 * worker doing tens of thousands of calls a second). Here the one timer is armed for the earliest
 * deadline; since calls mostly share one timeout, later calls have later deadlines and arming is
 * rare. When it fires it expires what is due and re-arms for the next deadline. It keeps the
 * process alive only while some deadline is pending, as the per-call timers did.
 */

import { ArraySet } from './array-set.js';
import type { Indexed } from './array-set.js';

/** One pending deadline; `expire` runs once, when `at` (a `Date.now()` time) has passed. */
export interface Deadline extends Indexed {
  readonly at: number;
  readonly expire: () => void;
}

export class Deadlines {
  private readonly pending = new ArraySet<Deadline>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires; Infinity when none is armed. */
  private armedAt = Infinity;

  /** Calls `expire` at `at` unless `delete` comes first. */
  add(at: number, expire: () => void): Deadline {
    const deadline: Deadline = { at, expire, index: -1 };
    this.pending.add(deadline);
    if (at < this.armedAt) this.arm(at);
    else if (this.pending.size === 1) this.timer?.ref();
    return deadline;
  }

  /** Forgets a deadline (its call settled). */
  delete(deadline: Deadline): void {
    this.pending.delete(deadline);
    // Nothing pending: an idle process may exit; the timer finds nothing to do if it fires.
    if (this.pending.size === 0) this.timer?.unref();
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(this.fire, Math.max(0, at - Date.now()));
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedAt = Infinity;
    // Timers may fire a millisecond before Date.now() reaches `at`: such a deadline re-arms.
    const now = Date.now();
    let next = Infinity;
    // Iterates over a copy, so expiring (which deletes) is safe.
    for (const deadline of this.pending) {
      if (deadline.at <= now) {
        this.pending.delete(deadline);
        deadline.expire();
      } else if (deadline.at < next) {
        next = deadline.at;
      }
    }
    if (next < this.armedAt) this.arm(next);
  };
}
