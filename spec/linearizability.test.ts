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
extra.run();
