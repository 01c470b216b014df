/**
 * The running loops of one store's watches or followers, each ended by the store's `close()` or by
 * its caller's `signal`, with one `abort` listener per signal however many loops use it: Node's
 * EventTarget checks for a duplicate on every add (O(n)), so a listener per loop made starting
 * n loops on one signal O(n²) (100,000 watches took 200 s, issue 20).
 */

/** A loop that can be told to end. */
export interface Endable {
  end(): void;
}

/** The loops one store runs of one kind (`watch.ts`, `follow.ts`). */
export class Running<T extends Endable> {
  private readonly all = new Set<T>();
  /** The loops of each caller signal, which has one `abort` listener of this registry. */
  private readonly bySignal = new Map<AbortSignal, Set<T>>();

  /** This registry's one listener on each signal: ends the loops using it. */
  private readonly abortLoops = (event: Event): void => {
    const loops = this.bySignal.get(event.target as AbortSignal);
    if (loops === undefined) return;
    for (const loop of loops) loop.end();
  };

  add(loop: T, signal: AbortSignal | undefined): void {
    this.all.add(loop);
    if (signal === undefined) return;
    let loops = this.bySignal.get(signal);
    if (loops === undefined) {
      loops = new Set();
      this.bySignal.set(signal, loops);
      signal.addEventListener('abort', this.abortLoops, { once: true });
    }
    loops.add(loop);
  }

  /** A loop finished: the last one of a signal takes the listener away. */
  delete(loop: T, signal: AbortSignal | undefined): void {
    this.all.delete(loop);
    if (signal === undefined) return;
    const loops = this.bySignal.get(signal);
    if (loops === undefined) return;
    loops.delete(loop);
    if (loops.size > 0) return;
    this.bySignal.delete(signal);
    signal.removeEventListener('abort', this.abortLoops);
  }

  /** Ends every loop and takes every listener away (the store closes). */
  endAll(): void {
    for (const loop of this.all) loop.end();
    this.all.clear();
    for (const [signal, loops] of this.bySignal) {
      signal.removeEventListener('abort', this.abortLoops);
      loops.clear();
    }
    this.bySignal.clear();
  }
}

/**
 * One loop's end, shared by a watch and a follower: `end()` wakes the loop and settles what it
 * waits for (a read, its turn to start), so it ends at once whatever it was doing.
 */
export class Loop implements Endable {
  readonly wake = new Wake();
  ended = false;
  /** Settles what the loop waits for, if anything, as ended. */
  interrupt: (() => void) | undefined;

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.wake.fire();
    this.interrupt?.();
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
