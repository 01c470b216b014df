import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { toLimit, toSeqNo } from '../lib/arguments.js';
import { decodeSeqNo, encodeSeqNo, SEQNO_MAX } from '../lib/seqno.js';

test('seqnos encode as 19 digits whose byte order is numeric order', () => {
  const values = [0n, 1n, 9n, 10n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 2n, SEQNO_MAX];
  const encoded = values.map(encodeSeqNo);
  for (const wire of encoded) assert.is(wire.length, 19);
  assert.equal([...encoded].sort(), encoded);
  assert.equal(encoded.map((wire) => decodeSeqNo(wire)), values);
  assert.equal(encoded.map((wire) => decodeSeqNo(Buffer.from(wire))), values);
});

test('toSeqNo accepts bigints and safe non-negative numbers, and nothing else', () => {
  assert.is(toSeqNo(5, 'x'), 5n);
  assert.is(toSeqNo(SEQNO_MAX, 'x'), SEQNO_MAX);
  assert.throws(() => toSeqNo(-1, 'x'), RangeError);
  assert.throws(() => toSeqNo(SEQNO_MAX + 1n, 'x'), RangeError);
  assert.throws(() => toSeqNo(1.5, 'x'), RangeError);
  assert.throws(() => toSeqNo(Number.NaN, 'x'), RangeError);
  assert.throws(() => toSeqNo(2 ** 53, 'x'), RangeError);
  assert.throws(() => toSeqNo('1', 'x'), TypeError);
  assert.throws(() => toSeqNo(null, 'x'), TypeError);
});

test('toLimit accepts integers in [0, SCAN_ALL]', () => {
  assert.is(toLimit(0), 0n);
  assert.is(toLimit(2 ** 60), 2n ** 60n);
  assert.throws(() => toLimit(2 ** 63), RangeError);
  assert.throws(() => toLimit(-1n), RangeError);
  assert.throws(() => toLimit(0.5), RangeError);
  assert.throws(() => toLimit('3'), TypeError);
});

test.run();
