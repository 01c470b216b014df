/**
 * The bookkeeping under every call in flight: ArraySet (the collection of calls) and Deadlines (one
 * timer for all of their deadlines). Waits are a few tens of milliseconds; nothing here asserts
 * speed, only which deadlines fire and that none fires early.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Deadlines } from '../lib/deadlines.js';
import { ArraySet } from '../lib/array-set.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const arraySet = suite('ArraySet');

arraySet('adds and deletes in any order, each member once, and clears what it deletes', () => {
  const set = new ArraySet<{ name: string; index: number }>();
  const items = ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name, index: -1 }));
  for (const item of items) set.add(item);
  assert.is(set.size, 5);
  set.delete(items[1]!);
  set.delete(items[4]!);
  set.delete(items[1]!);
  assert.is(set.size, 3);
  assert.equal([...set].map((item) => item.name).sort(), ['a', 'c', 'd']);
  assert.is(items[1]!.index, -1);
  for (const item of set) set.delete(item);
  assert.is(set.size, 0);
  assert.equal([...set], []);
});

arraySet('ignores a member of another ArraySet', () => {
  const one = new ArraySet<{ index: number }>();
  const other = new ArraySet<{ index: number }>();
  const a = { index: -1 };
  const b = { index: -1 };
  one.add(a);
  other.add(b);
  one.delete(b);
  assert.is(one.size, 1);
  assert.is(other.size, 1);
});

arraySet.run();

const deadlines = suite('Deadlines');

deadlines('each deadline fires once, not before its time, in any order of adding', async () => {
  const timer = new Deadlines();
  const fired: Array<[string, number]> = [];
  const started = Date.now();
  const at = (ms: number): number => started + ms;
  for (const [name, ms] of [['late', 60], ['early', 10], ['middle', 30]] as const) {
    timer.add(at(ms), () => fired.push([name, Date.now() - started]));
  }
  await sleep(120);
  assert.equal(fired.map(([name]) => name), ['early', 'middle', 'late']);
  for (const [name, elapsed] of fired) {
    const due = { early: 10, middle: 30, late: 60 }[name as 'early' | 'middle' | 'late'];
    assert.ok(elapsed >= due, `${name} fired after ${elapsed} ms, due at ${due} ms`);
  }
});

deadlines('a deleted deadline never fires; a later one still does', async () => {
  const timer = new Deadlines();
  const fired: string[] = [];
  const now = Date.now();
  const first = timer.add(now + 10, () => fired.push('first'));
  timer.add(now + 40, () => fired.push('second'));
  timer.delete(first);
  await sleep(80);
  assert.equal(fired, ['second']);
});

deadlines('a deadline added while the timer waits for a later one fires on time', async () => {
  const timer = new Deadlines();
  const fired: string[] = [];
  const now = Date.now();
  timer.add(now + 200, () => fired.push('late'));
  timer.add(now + 10, () => fired.push('early'));
  await sleep(60);
  assert.equal(fired, ['early']);
  await sleep(200);
  assert.equal(fired, ['early', 'late']);
});

deadlines('a deadline already past fires on the next turn', async () => {
  const timer = new Deadlines();
  let fired = false;
  timer.add(Date.now() - 5, () => {
    fired = true;
  });
  assert.is(fired, false);
  await sleep(20);
  assert.is(fired, true);
});

deadlines.run();
