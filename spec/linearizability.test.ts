/**
 * The linearizability checker on hand-made histories: ones that are linearizable (some only by
 * reordering overlapping operations, or by deciding an indeterminate write did or did not
 * happen) and ones that are not. No Redis involved.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { checkLinearizable } from './support/linearizability.js';
import type { Operation, Version } from './support/linearizability.js';
import { checkHistory } from './support/workload.js';

const K = 'k';
const v = (seqno: number, data = `d${seqno}`): Version => ({ seqno: BigInt(seqno), data });

const head = (start: number, end: number, result: Version | null, key = K): Operation =>
  ({ key, op: 'head', start, end, result });
const cas = (
  start: number, end: number, expected: number | null, next: Version,
  result: 'Committed' | 'ExpectationMismatch' | 'indeterminate' | 'determinate', key = K,
): Operation => ({
  key, op: 'compareAndSet', start, end, expected: expected === null ? null : BigInt(expected), next,
  ...(result === 'indeterminate' || result === 'determinate' ? { error: result } : { result }),
});
const scan = (start: number, end: number, from: number, limit: number, result: Version[]): Operation =>
  ({ key: K, op: 'scan', start, end, from: BigInt(from), limit: BigInt(limit), result });
const truncate = (
  start: number, end: number, seqno: number, result: number | 'upper-bound-too-high' | 'indeterminate',
): Operation => ({
  key: K, op: 'truncate', start, end, seqno: BigInt(seqno),
  ...(typeof result === 'number' ? { result } : { error: result }),
});

function linearizable(history: Operation[]): void {
  const verdict = checkLinearizable(history);
  assert.is(verdict.linearizable, true, verdict.keys.map((k) => k.explanation).join('; '));
}

function notLinearizable(history: Operation[]): string {
  const verdict = checkLinearizable(history);
  assert.is(verdict.linearizable, false);
  const explanation = verdict.keys.find((k) => k.linearizable === false)?.explanation ?? '';
  assert.ok(explanation.length > 0, 'a failure comes with an explanation');
  return explanation;
}

const yes = suite('linearizable histories');

yes('a sequential history of every operation', () => {
  linearizable([
    head(0, 1, null),
    cas(2, 3, null, v(0), 'Committed'),
    cas(4, 5, 0, v(1), 'Committed'),
    cas(6, 7, 0, v(5), 'ExpectationMismatch'),
    scan(8, 9, 0, 10, [v(0), v(1)]),
    truncate(10, 11, 1, 1),
    truncate(12, 13, 1, 0),
    truncate(14, 15, 2, 'upper-bound-too-high'),
    scan(16, 17, 0, 10, [v(1)]),
    head(18, 19, v(1)),
  ]);
});

yes('overlapping operations that must be reordered against their start order', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    // The read starts first but saw the commit of the write that started after it.
    head(2, 10, v(1)),
    cas(3, 4, 0, v(1), 'Committed'),
    // Two truncates overlap; only the order 2-then-... explains the counts 1 and 0.
    truncate(11, 20, 1, 0),
    truncate(12, 13, 1, 1),
  ]);
});

yes('two writers race on the same expected: one commits, the other mismatches, in either start order', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 6, 0, v(1, 'a'), 'ExpectationMismatch'),
    cas(3, 5, 0, v(1, 'b'), 'Committed'),
    head(7, 8, v(1, 'b')),
  ]);
});

yes('an indeterminate write that took effect (seen later)', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'indeterminate'),
    head(4, 5, v(1)),
  ]);
});

yes('an indeterminate write that did not take effect', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1, 'lost'), 'indeterminate'),
    head(4, 5, v(0)),
    cas(6, 7, 0, v(1, 'won'), 'Committed'),
    scan(8, 9, 0, 10, [v(0), v(1, 'won')]),
  ]);
});

yes('an indeterminate write that took effect long after its call ended', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'indeterminate'),
    head(4, 5, v(0)),
    head(6, 7, v(1)),
  ]);
});

yes('an indeterminate truncate that did, and one that did not, take effect', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    cas(4, 5, 1, v(2), 'Committed'),
    truncate(6, 7, 1, 'indeterminate'),
    truncate(6, 7, 2, 'indeterminate'),
    scan(8, 9, 0, 10, [v(1), v(2)]),
  ]);
});

yes('determinate failures are dropped, whatever they claim', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'determinate'),
    head(4, 5, v(0)),
  ]);
});

yes('keys are independent', () => {
  linearizable([
    cas(0, 10, null, v(0), 'Committed', 'a'),
    cas(1, 2, null, v(0, 'x'), 'Committed', 'b'),
    head(3, 4, v(0, 'x'), 'b'),
    head(11, 12, v(0), 'a'),
  ]);
});

yes('scan with a limit and a from inside the history', () => {
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(2), 'Committed'),
    cas(4, 5, 2, v(7), 'Committed'),
    scan(6, 7, 1, 1, [v(2)]),
    scan(6, 7, 3, 5, [v(7)]),
    scan(6, 7, 8, 5, []),
    scan(6, 7, 0, 0, []),
  ]);
});

const no = suite('histories that are not linearizable');

no('a stale read after a completed commit', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    head(4, 5, v(0)),
  ]);
});

no('two commits on the same expected', () => {
  const why = notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 6, 0, v(1, 'a'), 'Committed'),
    cas(3, 5, 0, v(1, 'b'), 'Committed'),
  ]);
  assert.match(why, /compareAndSet\(0, 1:/);
});

no('a scan that mixes the states before and after a commit', () => {
  // The scan sees the truncate (0 gone) but not commit 2, which ended before the truncate began.
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    cas(4, 5, 1, v(2), 'Committed'),
    truncate(6, 9, 1, 1),
    scan(7, 8, 0, 10, [v(1)]),
  ]);
  // The same scan is fine while commit 2 is still in flight.
  linearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    cas(4, 10, 1, v(2), 'Committed'),
    truncate(6, 9, 1, 1),
    scan(7, 8, 0, 10, [v(1)]),
  ]);
});

no('a truncate count that no order explains', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    cas(4, 5, 1, v(2), 'Committed'),
    truncate(6, 7, 2, 3),
  ]);
});

no('two concurrent truncates that both claim the same deletions', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    truncate(4, 6, 1, 1),
    truncate(5, 7, 1, 1),
  ]);
});

no('a mismatch that no order explains', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'ExpectationMismatch'),
  ]);
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'ExpectationMismatch'),
  ]);
});

no('a truncate refused as too high below the head', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    truncate(4, 5, 1, 'upper-bound-too-high'),
  ]);
});

no('a read of data nobody wrote', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    head(2, 3, v(0, 'forged')),
  ]);
});

no('an indeterminate write cannot explain a read that ended before it started', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    head(2, 3, v(1)),
    cas(4, 5, 0, v(1), 'indeterminate'),
  ]);
});

no('the head is never truncated away', () => {
  notLinearizable([
    cas(0, 1, null, v(0), 'Committed'),
    truncate(2, 3, 0, 0),
    scan(4, 5, 0, 10, []),
  ]);
});

const scale = suite('the checker on larger histories');

scale('stays fast on a long history with many concurrent writers per step', () => {
  // 16 writers race on each step; exactly one commits, the rest mismatch; reads overlap.
  const history: Operation[] = [];
  let time = 0;
  let last: number | null = null;
  for (let step = 0; step < 300; step++) {
    const winner = step % 16;
    for (let writer = 0; writer < 16; writer++) {
      history.push(cas(time + writer, time + 40 + (writer * 7) % 13, last, v(step, `w${writer}s${step}`),
        writer === winner ? 'Committed' : writer % 5 === 0 ? 'indeterminate' : 'ExpectationMismatch'));
    }
    history.push(head(time + 60, time + 70, v(step, `w${winner}s${step}`)));
    last = step;
    time += 100;
  }
  const verdict = checkLinearizable(history);
  assert.is(verdict.linearizable, true);
  assert.is(verdict.operations, 300 * 17);
});

const reference = suite('the checker agrees with a brute-force search');

/** The model, written as plainly as possible, for the reference search. */
interface Model { chain: Version[]; floor: bigint }

/** Applies `o` to `model` if its result fits (or, for an indeterminate write, always); false if not. */
function step(model: Model, o: Operation): boolean {
  const live = model.chain.filter((version) => version.seqno >= model.floor);
  const head = model.chain[model.chain.length - 1];
  const same = (a: Version | undefined, b: Version | null | undefined): boolean =>
    (a === undefined) === (b === null || b === undefined) && (a === undefined || (a.seqno === b!.seqno && a.data === b!.data));
  switch (o.op) {
    case 'head':
      return same(head, o.result);
    case 'compareAndSet': {
      const matches = o.expected === null ? head === undefined : head?.seqno === o.expected;
      if (o.error === 'indeterminate') {
        if (matches) model.chain.push(o.next);
        return true;
      }
      if (o.result === 'Committed' && matches) model.chain.push(o.next);
      return (o.result === 'Committed') === matches;
    }
    case 'scan': {
      const expected = live.filter((version) => version.seqno >= o.from).slice(0, Number(o.limit));
      return expected.length === o.result!.length && expected.every((version, i) => same(version, o.result![i]));
    }
    case 'truncate': {
      const tooHigh = head === undefined || o.seqno > head.seqno;
      if (o.error === 'indeterminate') {
        if (!tooHigh && o.seqno > model.floor) model.floor = o.seqno;
        return true;
      }
      if (tooHigh) return o.error === 'upper-bound-too-high';
      const deleted = live.filter((version) => version.seqno < o.seqno).length;
      if (o.seqno > model.floor) model.floor = o.seqno;
      return o.error === undefined && deleted === o.result;
    }
  }
}

/** Every subset of the indeterminate writes, every order consistent with real time. */
function bruteForce(history: Operation[]): boolean {
  const kept = history.filter((o) => o.error !== 'determinate');
  const maybe = kept.filter((o) => o.error === 'indeterminate');
  const end = (o: Operation): number => (o.error === 'indeterminate' ? Infinity : o.end);
  for (let subset = 0; subset < 2 ** maybe.length; subset++) {
    const ops = kept.filter((o) => o.error !== 'indeterminate' || (subset >> maybe.indexOf(o)) & 1);
    const search = (done: Operation[], model: Model): boolean => {
      if (done.length === ops.length) return true;
      return ops.some((o) => {
        if (done.includes(o)) return false;
        if (ops.some((p) => p !== o && !done.includes(p) && end(p) < o.start)) return false;
        const next = { chain: [...model.chain], floor: model.floor };
        return step(next, o) && search([...done, o], next);
      });
    };
    if (search([], { chain: [], floor: -1n })) return true;
  }
  return false;
}

/** A small random history: ops run at random points inside their intervals, then maybe one is falsified. */
function randomHistory(random: () => number): Operation[] {
  const below = (n: number): number => Math.floor(random() * n);
  const model: Model = { chain: [], floor: -1n };
  const history: Operation[] = [];
  const count = 3 + below(5);
  for (let i = 0; i < count; i++) {
    const at = i * 10 + below(10);
    const start = at - below(25);
    const end = at + 1 + below(25);
    const head = model.chain[model.chain.length - 1];
    const live = model.chain.filter((version) => version.seqno >= model.floor);
    const dice = random();
    let o: Operation;
    if (dice < 0.45) {
      const expected = random() < 0.8 ? head?.seqno ?? null : BigInt(below(4));
      const next = { seqno: (expected ?? -1n) + 1n + BigInt(below(2)), data: `w${i}` };
      const matches = expected === null ? head === undefined : head?.seqno === expected;
      const indeterminate = random() < 0.25;
      if (matches && (!indeterminate || random() < 0.5)) model.chain.push(next);
      o = { key: K, op: 'compareAndSet', start, end, expected, next,
        ...(indeterminate ? { error: 'indeterminate' as const } : { result: matches ? 'Committed' as const : 'ExpectationMismatch' as const }) };
    } else if (dice < 0.6) {
      o = { key: K, op: 'head', start, end, result: head ?? null };
    } else if (dice < 0.8) {
      const from = BigInt(below(4));
      const limit = BigInt(below(4));
      o = { key: K, op: 'scan', start, end, from, limit,
        result: live.filter((version) => version.seqno >= from).slice(0, Number(limit)) };
    } else {
      const seqno = BigInt(below(5));
      const tooHigh = head === undefined || seqno > head.seqno;
      const deleted = live.filter((version) => version.seqno < seqno).length;
      const indeterminate = random() < 0.25;
      if (!tooHigh && (!indeterminate || random() < 0.5) && seqno > model.floor) model.floor = seqno;
      o = { key: K, op: 'truncate', start, end, seqno,
        ...(indeterminate ? { error: 'indeterminate' as const } : tooHigh ? { error: 'upper-bound-too-high' as const } : { result: deleted }) };
    }
    history.push(o);
  }
  if (random() < 0.5) {
    const victim = below(history.length);
    const o = history[victim]!;
    if (o.op === 'head') history[victim] = { ...o, result: o.result === null ? v(0, 'w0') : null };
    if (o.op === 'compareAndSet' && o.result !== undefined) {
      history[victim] = { ...o, result: o.result === 'Committed' ? 'ExpectationMismatch' : 'Committed' };
    }
    if (o.op === 'scan') history[victim] = { ...o, result: o.result!.length > 0 ? o.result!.slice(1) : [v(0, 'w0')] };
    if (o.op === 'truncate' && o.result !== undefined) history[victim] = { ...o, result: o.result + 1 };
  }
  return history;
}

reference('on 3,000 small random histories, linearizable or not', () => {
  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const tally = { linearizable: 0, not: 0 };
  for (let i = 0; i < 3000; i++) {
    const history = randomHistory(random);
    const expected = bruteForce(history);
    const verdict = checkLinearizable(history).linearizable;
    if (verdict !== expected) {
      assert.unreachable(`checker says ${verdict}, brute force ${expected}, on:\n` +
        history.map((o) => JSON.stringify(o, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x))).join('\n'));
    }
    tally[expected ? 'linearizable' : 'not']++;
  }
  // Both kinds were exercised in earnest.
  assert.ok(tally.linearizable > 500 && tally.not > 500, JSON.stringify(tally));
});

const extra = suite('the checks beside linearizability');

extra('flag a seqno committed twice, a scan with a hole, and unknown data', () => {
  const report = checkHistory([
    cas(0, 1, null, v(0, 'a'), 'Committed'),
    cas(2, 3, 0, v(1, 'b'), 'Committed'),
    cas(4, 5, 0, v(1, 'c'), 'Committed'),
    cas(6, 7, 1, v(2, 'd'), 'Committed'),
    scan(8, 9, 0, 10, [v(0, 'a'), v(2, 'd')]),
    head(10, 11, v(3, 'zz')),
  ], { linearizability: false });
  const text = report.violations.join('\n');
  assert.match(text, /seqno 1 committed twice/);
  assert.match(text, /hole/);
  assert.match(text, /nobody wrote/);
});

extra('flag an acknowledged commit missing from a later scan although never truncated', () => {
  const report = checkHistory([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'Committed'),
    scan(4, 5, 0, 10, [v(1)]),
  ], { linearizability: false });
  assert.is(report.lostWrites, 1);
});

extra('accept a clean history', () => {
  const report = checkHistory([
    cas(0, 1, null, v(0), 'Committed'),
    cas(2, 3, 0, v(1), 'indeterminate'),
    truncate(4, 5, 1, 1),
    scan(6, 7, 0, 10, [v(1)]),
  ]);
  assert.equal(report.violations, []);
  assert.is(report.lostWrites, 0);
  assert.is(report.linearizable, true);
});

yes.run();
no.run();
scale.run();
reference.run();
extra.run();
