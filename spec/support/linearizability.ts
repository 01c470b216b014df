/**
 * A linearizability checker for the consensus data type (CONTRACT.md, "Atomicity and order").
 *
 * Model of one key: the chain of committed versions (seqnos strictly increasing, each commit's
 * `expected` being the head before it) and how many of them a truncate has deleted. Operations:
 * - head → the last version, or null;
 * - compareAndSet(expected, next) → Committed (appends) iff the head seqno is `expected` (null:
 *   the key has no data), else ExpectationMismatch (no change);
 * - scan(from, limit) → the first `limit` live versions with seqno >= from;
 * - truncate(seqno) → how many live versions below `seqno` it deleted, iff the key has data and
 *   `seqno` <= head, else the "upper bound too high" error (no change).
 *
 * A history is linearizable when every operation can be given a point inside its
 * [start, end] interval so that the model, run in that order, gives the results that were seen.
 * Operations that failed determinately did nothing and are dropped. A write that failed
 * indeterminately may or may not have taken effect, at any point after its start (end = +∞).
 *
 * Algorithm: keys are independent (every operation touches one key), so each key's
 * sub-history is checked alone (P-compositionality), with a depth-first search in the style of
 * Wing & Gong and Lowe (WGL): repeatedly pick a "minimal" operation (one that no other pending
 * operation must precede in real time), apply it to the model if its result matches, and
 * backtrack when nothing fits. Three things bound the cost:
 *
 * 1. Memoisation. The model state is a function of WHICH operations were linearized, not of
 *    their order (commits only append above the head and each carries its own seqno; the
 *    deleted prefix is fixed by the largest truncate applied). So a configuration is just the
 *    linearized set; every set whose search failed is remembered and never explored again.
 *    Sets are keyed compactly as "everything before operation p, plus these few after it".
 * 2. Reads are linearized greedily. An operation that does not change the model (head, scan,
 *    a mismatch, a truncate that deleted nothing or was refused) and whose result fits the
 *    current state can be linearized immediately: moving it earlier in any valid order keeps
 *    that order valid (it is minimal, and the states around it do not change). So the search
 *    only ever branches on writes that changed something, and among compare-and-sets only on
 *    those whose `expected` is the current head (at most one of those can ever commit).
 * 3. Indeterminate writes are optional. "Did not take effect" is the same as removing the
 *    operation, so it is never searched as a step; "took effect" is tried only while it still
 *    could (a compare-and-set whose `expected` is the head now; a truncate that would delete
 *    something now), and an operation whose chance has passed (the head moved beyond its
 *    `expected`) is never looked at again.
 * Operations that can no longer fit at all (a commit whose `expected` is below the head, a head
 * read older than the head) cut a branch immediately. A budget of explored configurations turns
 * a pathological history into an "inconclusive" verdict instead of a hang.
 */

/** One version as the checker sees it: `data` is any string that identifies the bytes (e.g. hex). */
export interface Version {
  readonly seqno: bigint;
  readonly data: string;
}

/**
 * How an operation failed: `determinate` (it did not happen: dropped), `indeterminate` (a write
 * that may have happened), or truncate's `upper-bound-too-high` (a result of the model).
 */
export type Failure = 'determinate' | 'indeterminate' | 'upper-bound-too-high';

interface Timed {
  readonly key: string;
  /** Who ran it (for messages only). */
  readonly client?: number;
  /** When the call was made, on a clock shared by every client (e.g. ms since a common epoch). */
  readonly start: number;
  /** When it settled, on the same clock. Ignored for indeterminate writes (treated as +∞). */
  readonly end: number;
  readonly error?: Failure;
}

/** One call and what came of it. A result is present iff there is no `error`. */
export type Operation = Timed & (
  | { readonly op: 'head'; readonly result?: Version | null }
  | {
    readonly op: 'compareAndSet';
    readonly expected: bigint | null;
    readonly next: Version;
    readonly result?: 'Committed' | 'ExpectationMismatch';
  }
  | { readonly op: 'scan'; readonly from: bigint; readonly limit: bigint; readonly result?: readonly Version[] }
  | { readonly op: 'truncate'; readonly seqno: bigint; readonly result?: number }
);

/** The verdict on one key. */
export interface KeyVerdict {
  readonly key: string;
  /** `true`: linearizable; `false`: not; `'inconclusive'`: the search budget ran out. */
  readonly linearizable: boolean | 'inconclusive';
  /** Operations taken into account (determinate failures dropped). */
  readonly operations: number;
  /** Configurations explored. */
  readonly explored: number;
  /** Why not, when not: the furthest the search got and the operation it could not place. */
  readonly explanation?: string;
}

/** The verdict on a whole history. */
export interface Verdict {
  readonly linearizable: boolean | 'inconclusive';
  readonly operations: number;
  readonly keys: readonly KeyVerdict[];
}

/** Options of `checkLinearizable`. */
export interface CheckOptions {
  /** Most configurations explored per key before giving up as inconclusive. Default 2,000,000. */
  readonly budget?: number;
}

/** Checks a whole history, key by key. */
export function checkLinearizable(history: readonly Operation[], options: CheckOptions = {}): Verdict {
  const byKey = new Map<string, Operation[]>();
  for (const operation of history) {
    let list = byKey.get(operation.key);
    if (list === undefined) byKey.set(operation.key, list = []);
    list.push(operation);
  }
  const keys = [...byKey].map(([key, operations]) => checkKey(key, operations, options.budget ?? 2_000_000));
  const linearizable = keys.some((k) => k.linearizable === false)
    ? false
    : keys.some((k) => k.linearizable === 'inconclusive') ? 'inconclusive' : true;
  return { linearizable, operations: keys.reduce((sum, k) => sum + k.operations, 0), keys };
}

/** An operation prepared for the search. */
interface Step {
  readonly index: number;
  readonly source: Operation;
  readonly start: number;
  readonly end: number;
  /** An indeterminate write: may be left out. */
  readonly optional: boolean;
  /** Whether applying it can change the model (a commit, or a truncate that deleted some). */
  readonly writes: boolean;
  // The doubly linked list of pending required steps, in start order (WGL's "lift/unlift").
  prev: Step | null;
  next: Step | null;
}

const NO_HEAD = -1n;

/** The search over one key's sub-history. */
class KeySearch {
  private readonly steps: Step[];
  /** Sentinel of the list of pending required steps. */
  private readonly pending: Step;
  /** Optional compare-and-sets by `expected` ('' for null). */
  private readonly optionalCas = new Map<string, Step[]>();
  /** Optional truncates, ascending by seqno. */
  private readonly optionalTruncates: Step[] = [];
  private readonly linearized: Uint8Array;
  /** The model: the committed chain, of which `liveFrom` versions have been truncated. */
  private readonly chain: Version[] = [];
  private liveFrom = 0;
  /** Optional steps applied, in order (undone in reverse). */
  private readonly appliedOptional: Step[] = [];
  /** Highest index of a linearized required step. */
  private highest = -1;
  /** The undo log: what each linearization changed. */
  private readonly undo: Array<{ step: Step; liveFrom: number; highest: number }> = [];
  private readonly failed = new Set<string>();
  explored = 0;
  /** The deepest point reached, for the explanation. */
  private best = -1;
  private bestExplanation = '';

  constructor(operations: readonly Operation[]) {
    const kept = operations
      .filter((o) => o.error !== 'determinate' && !(o.error === 'indeterminate' && isRead(o)))
      .sort((a, b) => a.start - b.start);
    this.steps = kept.map((source, index) => {
      const optional = source.error === 'indeterminate';
      const writes = optional || (source.op === 'compareAndSet' && source.result === 'Committed') ||
        (source.op === 'truncate' && source.error === undefined && (source.result ?? 0) > 0);
      return { index, source, start: source.start, end: optional ? Infinity : source.end, optional, writes, prev: null, next: null };
    });
    this.linearized = new Uint8Array(this.steps.length);
    // The sentinel's source is never read.
    this.pending = { index: -1, source: kept[0]!, start: -Infinity, end: Infinity, optional: false, writes: false, prev: null, next: null };
    let last = this.pending;
    for (const step of this.steps) {
      if (step.optional) {
        if (step.source.op === 'compareAndSet') {
          const expected = seqnoKey(step.source.expected);
          let list = this.optionalCas.get(expected);
          if (list === undefined) this.optionalCas.set(expected, list = []);
          list.push(step);
        } else {
          this.optionalTruncates.push(step);
        }
        continue;
      }
      last.next = step;
      step.prev = last;
      last = step;
    }
    this.optionalTruncates.sort((a, b) => compare(truncateSeqno(a), truncateSeqno(b)));
  }

  get size(): number {
    return this.steps.length;
  }

  /** Runs the search; `undefined` when linearizable, else an explanation; throws Budget. */
  run(budget: number): string | undefined {
    this.greedy();
    if (this.pending.next === null) return undefined;
    const stack: Array<{ mark: number; choices: Step[]; next: number }> = [
      { mark: 0, choices: this.choices(), next: 0 },
    ];
    this.failed.add(this.configuration());
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      if (frame.next >= frame.choices.length) {
        stack.pop();
        this.rollback(frame.mark);
        continue;
      }
      const choice = frame.choices[frame.next++]!;
      const mark = this.undo.length;
      this.linearize(choice);
      this.greedy();
      if (this.pending.next === null) return undefined;
      const configuration = this.configuration();
      if (this.failed.has(configuration)) {
        this.rollback(mark);
        continue;
      }
      if (++this.explored > budget) throw new Budget();
      this.failed.add(configuration);
      stack.push({ mark, choices: this.choices(), next: 0 });
    }
    return this.bestExplanation;
  }

  // ---- the model ----

  private head(): Version | undefined {
    return this.chain[this.chain.length - 1];
  }

  private headSeqno(): bigint {
    return this.head()?.seqno ?? NO_HEAD;
  }

  /** Index in the chain of the first live version with seqno >= `seqno`. */
  private firstAtLeast(seqno: bigint): number {
    let low = this.liveFrom;
    let high = this.chain.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.chain[middle]!.seqno < seqno) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** Whether `step`, applied now, gives the result that was seen. */
  private fits(step: Step): boolean {
    const o = step.source;
    const head = this.head();
    switch (o.op) {
      case 'head':
        return o.result === null ? head === undefined : head !== undefined && sameVersion(head, o.result!);
      case 'compareAndSet': {
        const matches = o.expected === null ? head === undefined : head !== undefined && head.seqno === o.expected;
        return step.optional || o.result === 'Committed' ? matches : !matches;
      }
      case 'scan': {
        const result = o.result!;
        const first = this.firstAtLeast(o.from);
        const available = this.chain.length - first;
        const expectedLength = o.limit < BigInt(available) ? Number(o.limit) : available;
        if (result.length !== expectedLength) return false;
        return result.every((version, i) => sameVersion(this.chain[first + i]!, version));
      }
      case 'truncate': {
        if (head === undefined || o.seqno > head.seqno) return o.error === 'upper-bound-too-high';
        if (o.error === 'upper-bound-too-high') return false;
        const deleted = this.firstAtLeast(o.seqno) - this.liveFrom;
        return step.optional ? deleted > 0 : deleted === o.result;
      }
    }
  }

  /** Whether `step` (pending, required) can never fit again: the head and the floor only grow. */
  private hopeless(step: Step): boolean {
    const o = step.source;
    const head = this.headSeqno();
    if (o.op === 'compareAndSet' && o.result === 'Committed') {
      return (o.expected ?? NO_HEAD) < head;
    }
    if (o.op === 'head') return (o.result?.seqno ?? NO_HEAD) < head;
    if (o.op === 'scan') {
      const first = o.result![0];
      const floor = this.chain[this.liveFrom];
      return first !== undefined && floor !== undefined && first.seqno < floor.seqno;
    }
    return false;
  }

  private linearize(step: Step): void {
    this.undo.push({ step, liveFrom: this.liveFrom, highest: this.highest });
    this.linearized[step.index] = 1;
    const o = step.source;
    if (step.optional) {
      this.appliedOptional.push(step);
    } else {
      step.prev!.next = step.next;
      if (step.next !== null) step.next.prev = step.prev;
      if (step.index > this.highest) this.highest = step.index;
    }
    if (!step.writes) return;
    if (o.op === 'compareAndSet') this.chain.push(o.next);
    else if (o.op === 'truncate') this.liveFrom = this.firstAtLeast(o.seqno);
  }

  private rollback(mark: number): void {
    while (this.undo.length > mark) {
      const { step, liveFrom, highest } = this.undo.pop()!;
      this.linearized[step.index] = 0;
      this.liveFrom = liveFrom;
      this.highest = highest;
      if (step.optional) {
        this.appliedOptional.pop();
      } else {
        // Undone in reverse order, so the neighbours are exactly as they were (WGL's "unlift").
        step.prev!.next = step;
        if (step.next !== null) step.next.prev = step;
      }
      if (step.writes && step.source.op === 'compareAndSet') this.chain.pop();
    }
  }

  // ---- the search ----

  /**
   * The pending required steps that may go next: those that started before every pending step
   * ended (no pending step must precede them), and the earliest such end.
   */
  private window(): { minimal: Step[]; minEnd: number } {
    let minEnd = Infinity;
    const minimal: Step[] = [];
    // Sorted by start, and end > start: once a start passes minEnd, nothing later can lower it.
    for (let step = this.pending.next; step !== null && step.start <= minEnd; step = step.next) {
      minimal.push(step);
      if (step.end < minEnd) minEnd = step.end;
    }
    return { minimal: minimal.filter((step) => step.start <= minEnd), minEnd };
  }

  /** Linearizes every minimal step that changes nothing and fits now (safe: see the header). */
  private greedy(): void {
    for (let progress = true; progress;) {
      progress = false;
      for (const step of this.window().minimal) {
        if (!step.writes && this.fits(step)) {
          this.linearize(step);
          progress = true;
        }
      }
    }
  }

  /** The writes that may be linearized next, or none when a minimal step can never fit. */
  private choices(): Step[] {
    const { minimal, minEnd } = this.window();
    this.remember(minimal);
    if (minimal.some((step) => this.hopeless(step))) return [];
    const choices = minimal.filter((step) => step.writes && this.fits(step));
    choices.sort((a, b) => a.end - b.end);
    const head = this.head();
    for (const step of this.optionalCas.get(seqnoKey(head?.seqno ?? null)) ?? []) {
      if (step.start <= minEnd && this.linearized[step.index] === 0) choices.push(step);
    }
    if (head !== undefined && this.liveFrom < this.chain.length) {
      // Optional truncates that would delete something now: seqno in (first live, head].
      const floor = this.chain[this.liveFrom]!.seqno;
      const truncates = this.optionalTruncates;
      let low = 0;
      for (let high = truncates.length; low < high;) {
        const middle = (low + high) >>> 1;
        if (truncateSeqno(truncates[middle]!) <= floor) low = middle + 1;
        else high = middle;
      }
      for (let i = low; i < truncates.length && truncateSeqno(truncates[i]!) <= head.seqno; i++) {
        const step = truncates[i]!;
        if (step.start <= minEnd && this.linearized[step.index] === 0) choices.push(step);
      }
    }
    return choices;
  }

  /**
   * The linearized set, compactly: every required step before the first pending one is
   * linearized, so list only the pending ones up to the highest linearized, and the optional
   * steps applied.
   */
  private configuration(): string {
    const first = this.pending.next?.index ?? this.steps.length;
    let key = `${first}`;
    for (let step = this.pending.next?.next ?? null; step !== null && step.index < this.highest; step = step.next) {
      key += `,${step.index}`;
    }
    key += `/${this.highest}`;
    if (this.appliedOptional.length > 0) {
      key += '/' + this.appliedOptional.map((s) => s.index).sort((a, b) => a - b).join(',');
    }
    return key;
  }

  /** Keeps a description of the deepest point reached, to explain a failure. */
  private remember(minimal: Step[]): void {
    const depth = this.undo.length;
    if (depth <= this.best) return;
    this.best = depth;
    const stuck = minimal.reduce((a, b) => (b.end < a.end ? b : a));
    const live = this.chain.slice(this.liveFrom).map((v) => v.seqno).join(',');
    this.bestExplanation =
      `after placing ${depth} of ${this.steps.length} operations, state ` +
      `{head: ${describeVersion(this.head())}, live seqnos: [${live}]}; no order places ` +
      `${describeOperation(stuck.source)} (or the writes concurrent with it)`;
  }
}

class Budget extends Error {}

function checkKey(key: string, operations: readonly Operation[], budget: number): KeyVerdict {
  const search = new KeySearch(operations);
  try {
    const explanation = search.run(budget);
    return {
      key, operations: search.size, explored: search.explored, linearizable: explanation === undefined,
      ...(explanation === undefined ? {} : { explanation }),
    };
  } catch (err) {
    if (!(err instanceof Budget)) throw err;
    return {
      key, operations: search.size, explored: search.explored, linearizable: 'inconclusive',
      explanation: `gave up after exploring ${budget} configurations`,
    };
  }
}

function isRead(o: Operation): boolean {
  return o.op === 'head' || o.op === 'scan';
}

function sameVersion(a: Version, b: Version): boolean {
  return a.seqno === b.seqno && a.data === b.data;
}

function seqnoKey(seqno: bigint | null): string {
  return seqno === null ? '' : seqno.toString();
}

function truncateSeqno(step: Step): bigint {
  return (step.source as Extract<Operation, { op: 'truncate' }>).seqno;
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function describeVersion(version: Version | null | undefined): string {
  return version === null || version === undefined ? 'none' : `${version.seqno}:${version.data}`;
}

/** A one-line description of an operation, for failure messages. */
export function describeOperation(o: Operation): string {
  const who = o.client === undefined ? '' : `client ${o.client} `;
  const when = `[${o.start.toFixed(3)}, ${o.error === 'indeterminate' ? '∞' : o.end.toFixed(3)}]`;
  const outcome = o.error !== undefined ? o.error : (() => {
    switch (o.op) {
      case 'head': return describeVersion(o.result);
      case 'scan': return `[${(o.result ?? []).map((v) => describeVersion(v)).join(' ')}]`;
      default: return String(o.result);
    }
  })();
  const call = o.op === 'head' ? 'head()'
    : o.op === 'compareAndSet' ? `compareAndSet(${o.expected ?? 'null'}, ${describeVersion(o.next)})`
      : o.op === 'scan' ? `scan(${o.from}, ${o.limit})` : `truncate(${o.seqno})`;
  return `${who}${JSON.stringify(o.key)} ${call} → ${outcome} ${when}`;
}
