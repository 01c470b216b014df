/**
 * A bound on how many tasks of one kind run at once: thousands of watches starting together would
 * otherwise subscribe and read all at once, and that many live commands and loops made garbage
 * collection, and one long burst of callbacks, the cost of starting 100,000 watches (issue 20).
 */

/** One place in a limiter: taken at once when one is free, else when the turns before it end. */
export interface Turn {
  /** Resolves with true when the turn comes, with false if it left the queue first (`end()`). */
  readonly ready: Promise<boolean>;
  /** Gives the place back, or leaves the queue if the turn has not come yet. Idempotent. */
  end(): void;
}

/** A waiting or running turn. */
class Place implements Turn {
  readonly ready: Promise<boolean>;
  /** 'waiting' until started, 'running' until ended. */
  state: 'waiting' | 'running' | 'ended' = 'waiting';
  start!: (started: boolean) => void;

  constructor(private readonly limiter: Limiter) {
    this.ready = new Promise<boolean>((resolve) => {
      this.start = resolve;
    });
  }

  end(): void {
    const was = this.state;
    this.state = 'ended';
    if (was === 'running') this.limiter.released();
    // Left the queue: skipped when its turn would come.
    else if (was === 'waiting') this.start(false);
  }
}

/** Runs at most `max` turns at once; the others wait, first come first served. */
export class Limiter {
  private active = 0;
  /** Waiting places from index `first` on (`shift()` on a long array measured O(n)). */
  private waiting: Array<Place | undefined> = [];
  private first = 0;

  constructor(private readonly max: number) {}

  /** A place in line: `end()` it exactly when done, whether or not its turn came. */
  turn(): Turn {
    const place = new Place(this);
    if (this.active < this.max) this.begin(place);
    else this.waiting.push(place);
    return place;
  }

  /** `task` in its turn. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    const turn = this.turn();
    try {
      await turn.ready;
      return await task();
    } finally {
      turn.end();
    }
  }

  /** A running place ended: the next waiting one (skipping those that left) starts. */
  released(): void {
    this.active--;
    while (this.active < this.max) {
      const place = this.next();
      if (place === undefined) return;
      if (place.state === 'waiting') this.begin(place);
    }
  }

  private begin(place: Place): void {
    this.active++;
    place.state = 'running';
    place.start(true);
  }

  private next(): Place | undefined {
    if (this.first >= this.waiting.length) return undefined;
    const place = this.waiting[this.first];
    this.waiting[this.first++] = undefined;
    if (this.first === this.waiting.length) {
      this.waiting = [];
      this.first = 0;
    } else if (this.first >= 1024 && this.first * 2 >= this.waiting.length) {
      this.waiting = this.waiting.slice(this.first);
      this.first = 0;
    }
    return place;
  }
}
