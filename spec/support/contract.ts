/**
 * The shared contract suite: every rule of CONTRACT.md, run against any backend (ioredis-mock,
 * a real Redis, a Redis Cluster). Test names read as sentences of the contract.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, SCAN_ALL, SEQNO_MAX } from '../../lib/index.js';
import type { RedisConsensus, VersionedData } from '../../lib/index.js';
import type { Backend, Store } from './backends.js';
import { snapshot } from './snapshot.js';

interface Context {
  store: Store;
  consensus: RedisConsensus;
}

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/** Keys that stress the layout: empty, braces (Cluster hash tags), separators, non-ASCII. */
export const AWKWARD_KEYS = [
  '', ' ', '{', '}', '{}', '{a}', '}{', 'a{b}c', ':', 'a:b', '::', '"', '\\', 'keys', 'v:x', 'd:x',
  '*', '?', '[a]', '\0', 'a\0b', '\n', 'é', 'e\u0301', '日本語のキー', '🦀', '\uD800', '\uDC00x',
];

/** Commits seqnos 0..count-1 (payload `v<i>`) to `key`, sequentially. */
export async function appendVersions(consensus: RedisConsensus, key: string, count: number, first = 0): Promise<void> {
  let expected: bigint | null = first === 0 ? null : BigInt(first - 1);
  for (let i = first; i < first + count; i++) {
    const result = await consensus.compareAndSet(key, expected, { seqno: BigInt(i), data: bytes(`v${i}`) });
    assert.is(result, CaSResult.Committed);
    expected = BigInt(i);
  }
}

async function listed(consensus: RedisConsensus): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of consensus.listKeys()) keys.push(key);
  return keys.sort();
}

function seqnos(versions: VersionedData[]): bigint[] {
  return versions.map((version) => version.seqno);
}

async function rejectsWith(promise: Promise<unknown>, check: (err: unknown) => void): Promise<void> {
  try {
    await promise;
  } catch (err) {
    check(err);
    return;
  }
  assert.unreachable('expected a rejection');
}

/** Registers and runs the contract suite on `backend`. */
export function contractSuite(backend: Backend): void {
  const test = suite<Context>(`contract on ${backend.name}`);
  test.before.each(async (context) => {
    context.store = await backend.store();
    context.consensus = context.store.consensus;
  });
  test.after.each(async (context) => {
    await context.store.dispose();
  });
  test.after(async () => {
    await backend.close();
  });

  // head

  test('head is null for a key with no data', async ({ consensus }) => {
    assert.is(await consensus.head('nothing-here'), null);
  });

  test('head is the version with the highest seqno', async ({ consensus }) => {
    await appendVersions(consensus, 'k', 3);
    const head = await consensus.head('k');
    assert.is(head?.seqno, 2n);
    assert.equal(Buffer.from(head!.data), bytes('v2'));
    assert.ok(Buffer.isBuffer(head!.data));
  });

  // compareAndSet

  test('compareAndSet with expected null commits on an empty key, whatever next.seqno is', async ({ consensus }) => {
    assert.is(await consensus.compareAndSet('zero', null, { seqno: 0n, data: bytes('a') }), CaSResult.Committed);
    assert.is(await consensus.compareAndSet('seven', null, { seqno: 7, data: bytes('b') }), CaSResult.Committed);
    assert.is(await consensus.compareAndSet('max', null, { seqno: SEQNO_MAX, data: bytes('c') }), CaSResult.Committed);
    assert.is((await consensus.head('zero'))?.seqno, 0n);
    assert.is((await consensus.head('seven'))?.seqno, 7n);
    assert.is((await consensus.head('max'))?.seqno, SEQNO_MAX);
  });

  test('compareAndSet with expected null on a key with data is a mismatch and changes nothing', async ({ consensus, store }) => {
    await appendVersions(consensus, 'k', 1);
    const before = await snapshot(store.raw, store.prefix);
    assert.is(await consensus.compareAndSet('k', null, { seqno: 5n, data: bytes('x') }), CaSResult.ExpectationMismatch);
    assert.is(await snapshot(store.raw, store.prefix), before);
  });

  test('compareAndSet with a seqno on an empty key is a mismatch and never creates the key', async ({ consensus, store }) => {
    assert.is(await consensus.compareAndSet('ghost', 0n, { seqno: 1n, data: bytes('x') }), CaSResult.ExpectationMismatch);
    assert.is(await consensus.head('ghost'), null);
    assert.equal(await listed(consensus), []);
    assert.is(await snapshot(store.raw, store.prefix), '');
  });

  test('compareAndSet when the head is above or below expected is a mismatch and changes nothing', async ({ consensus, store }) => {
    await appendVersions(consensus, 'k', 3);
    const before = await snapshot(store.raw, store.prefix);
    assert.is(await consensus.compareAndSet('k', 1n, { seqno: 9n, data: bytes('x') }), CaSResult.ExpectationMismatch);
    assert.is(await consensus.compareAndSet('k', 3n, { seqno: 9n, data: bytes('x') }), CaSResult.ExpectationMismatch);
    assert.is(await snapshot(store.raw, store.prefix), before);
  });

  test('compareAndSet allows gaps: expected 5, next 10 commits', async ({ consensus }) => {
    await consensus.compareAndSet('k', null, { seqno: 5n, data: bytes('five') });
    assert.is(await consensus.compareAndSet('k', 5n, { seqno: 10n, data: bytes('ten') }), CaSResult.Committed);
    assert.equal(seqnos(await consensus.scan('k', 0n, SCAN_ALL)), [5n, 10n]);
  });

  test('compareAndSet rejects next.seqno <= expected with a RangeError naming both, and changes nothing', async ({ consensus, store }) => {
    await consensus.compareAndSet('k', null, { seqno: 5n, data: bytes('five') });
    const before = await snapshot(store.raw, store.prefix);
    await rejectsWith(consensus.compareAndSet('k', 5n, { seqno: 5n, data: bytes('x') }), (err) => {
      assert.instance(err, RangeError);
      assert.is((err as Error).message,
        'new seqno must be strictly greater than expected. Got new: SeqNo(5) expected: SeqNo(5)');
    });
    await rejectsWith(consensus.compareAndSet('k', 5n, { seqno: 4n, data: bytes('x') }), (err) => assert.instance(err, RangeError));
    assert.is(await snapshot(store.raw, store.prefix), before);
  });

  test('compareAndSet of one expected seqno commits at most once among racing writers', async ({ consensus, store }) => {
    const peer = await backend.peer(store);
    try {
      await consensus.compareAndSet('race', null, { seqno: 0n, data: bytes('start') });
      const writers = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? consensus : peer)
        .compareAndSet('race', 0n, { seqno: 1n + BigInt(i), data: bytes(`w${i}`) }));
      const results = await Promise.all(writers);
      assert.is(results.filter((result) => result === CaSResult.Committed).length, 1);
      const winner = results.indexOf(CaSResult.Committed);
      const head = await peer.head('race');
      assert.is(head?.seqno, 1n + BigInt(winner));
      assert.equal(Buffer.from(head!.data), bytes(`w${winner}`));
    } finally {
      await peer.close();
    }
  });

  // compareAndSetWithHead

  test('compareAndSetWithHead on a mismatch returns the head as head() reads it, seqnos above 2^53 and empty payloads included', async ({ consensus }) => {
    const high = 2n ** 53n + 1n;
    assert.is(await consensus.compareAndSet('k', null, { seqno: high, data: new Uint8Array(0) }), CaSResult.Committed);
    const stale = await consensus.compareAndSetWithHead('k', high - 1n, { seqno: high + 5n, data: bytes('x') });
    assert.is(stale.result, CaSResult.ExpectationMismatch);
    const head = await consensus.head('k');
    assert.is(stale.head?.seqno, high);
    assert.is(stale.head?.seqno, head?.seqno);
    assert.ok(Buffer.isBuffer(stale.head!.data));
    assert.equal(Buffer.from(stale.head!.data), Buffer.from(head!.data));
    assert.is(stale.head!.data.length, 0);
    await consensus.compareAndSet('k', high, { seqno: SEQNO_MAX, data: Buffer.from([0, 0xff, 0x80]) });
    const above = await consensus.compareAndSetWithHead('k', null, { seqno: 1n, data: bytes('y') });
    assert.is(above.result, CaSResult.ExpectationMismatch);
    assert.is(above.head?.seqno, SEQNO_MAX);
    assert.equal(above.head!.data.toString('hex'), '00ff80');
  });

  test('compareAndSetWithHead on a key with no data returns a null head and changes nothing', async ({ consensus, store }) => {
    const before = await snapshot(store.raw, store.prefix);
    const outcome = await consensus.compareAndSetWithHead('empty', 3n, { seqno: 4n, data: bytes('x') });
    assert.equal(outcome, { result: CaSResult.ExpectationMismatch, head: null });
    assert.is(await consensus.head('empty'), null);
    assert.is(await snapshot(store.raw, store.prefix), before);
    assert.equal(await listed(consensus), []);
  });

  test('compareAndSetWithHead on a commit returns the version committed', async ({ consensus }) => {
    const outcome = await consensus.compareAndSetWithHead('k', null, { seqno: 0n, data: bytes('first') });
    assert.is(outcome.result, CaSResult.Committed);
    assert.is(outcome.head?.seqno, 0n);
    assert.equal(Buffer.from(outcome.head!.data), bytes('first'));
    assert.equal(await consensus.head('k'), outcome.head);
  });

  // append

  test('append on a key with no data commits seqno 0, and each next append the head plus 1', async ({ consensus }) => {
    const seen: Array<bigint | null> = [];
    const update = (head: VersionedData | null): Buffer => {
      seen.push(head?.seqno ?? null);
      return bytes(`after ${head?.seqno ?? 'nothing'}`);
    };
    const first = await consensus.append('k', update);
    assert.equal(first, { committed: true, head: { seqno: 0n, data: bytes('after nothing') }, attempts: 1 });
    const second = await consensus.append('k', update);
    assert.is(second.committed, true);
    assert.is(second.head?.seqno, 1n);
    assert.equal(seen, [null, 0n]);
    assert.equal((await consensus.scan('k', 0n, SCAN_ALL)).map((v) => v.data.toString()), ['after nothing', 'after 0']);
  });

  test('append after another writer moved the head commits on top of that head', async ({ consensus, store }) => {
    const peer = await backend.peer(store);
    try {
      await consensus.append('k', () => bytes('mine'));
      await appendVersions(peer, 'k', 3, 1);
      const seen: Array<bigint | null> = [];
      const appended = await consensus.append('k', (head) => {
        seen.push(head?.seqno ?? null);
        return bytes(`on ${head?.seqno}`);
      });
      assert.is(appended.head?.seqno, 4n);
      // It guessed the head it remembered (0), lost, and retried on the head the mismatch brought.
      assert.equal(seen, [0n, 3n]);
      assert.is(appended.attempts, 2);
      assert.equal((await peer.head('k'))?.data, bytes('on 3'));
    } finally {
      await peer.close();
    }
  });

  test('append whose update returns undefined writes nothing', async ({ consensus, store }) => {
    await appendVersions(consensus, 'k', 2);
    const before = await snapshot(store.raw, store.prefix);
    const stopped = await consensus.append('k', (head) => (head?.data.toString() === 'v1' ? undefined : bytes('no')));
    assert.equal(stopped, { committed: false, head: { seqno: 1n, data: bytes('v1') }, attempts: 0 });
    const onEmpty = await consensus.append('empty', () => undefined);
    assert.equal(onEmpty, { committed: false, head: null, attempts: 0 });
    assert.is(await snapshot(store.raw, store.prefix), before);
    assert.equal(await listed(consensus), ['k']);
  });

  test('append gives up after maxAttempts lost races with a determinate ExternalError naming the bound', async ({ consensus, store }) => {
    const peer = await backend.peer(store);
    try {
      await appendVersions(peer, 'k', 1);
      let calls = 0;
      // Every attempt loses: another writer commits between the update and its compare-and-set.
      await rejectsWith(consensus.append('k', async (head) => {
        calls++;
        const seqno = (head?.seqno ?? -1n) + 1n;
        await peer.compareAndSet('k', head?.seqno ?? null, { seqno, data: bytes(`peer ${seqno}`) });
        return bytes(`mine ${calls}`);
      }, { maxAttempts: 3, backoff: { minDelayMs: 0, maxDelayMs: 0 } }), (err) => {
        assert.instance(err, ExternalError);
        assert.is((err as ExternalError).determinate, true);
        assert.match((err as Error).message, /^determinate: append to "k" gave up: maxAttempts \(3\) reached after 3 attempts, 3 lost races/);
      });
      assert.is(calls, 3);
      const all = await peer.scan('k', 0n, SCAN_ALL);
      assert.equal(seqnos(all), [0n, 1n, 2n, 3n]);
      assert.not.ok(all.some((version) => version.data.toString().startsWith('mine')));
    } finally {
      await peer.close();
    }
  });

  test('append gives up when its time bound passes with a determinate ExternalError naming timeoutMs', async ({ consensus, store }) => {
    const before = await snapshot(store.raw, store.prefix);
    await rejectsWith(consensus.append('k', async () => {
      await new Promise((resolve) => setTimeout(resolve, 60));
      return bytes('too late');
    }, { timeoutMs: 30 }), (err) => {
      assert.instance(err, ExternalError);
      assert.is((err as ExternalError).determinate, true);
      assert.match((err as Error).message, /gave up: timeoutMs \(30 ms\) reached after 0 attempts/);
    });
    assert.is(await snapshot(store.raw, store.prefix), before);
  });

  // scan

  test('scan returns up to limit versions with seqno >= from, ascending', async ({ consensus }) => {
    await appendVersions(consensus, 'k', 10);
    assert.equal(seqnos(await consensus.scan('k', 3n, 4)), [3n, 4n, 5n, 6n]);
    assert.equal(seqnos(await consensus.scan('k', 8, 100n)), [8n, 9n]);
    const versions = await consensus.scan('k', 0n, 2);
    assert.equal(versions.map((version) => Buffer.from(version.data).toString()), ['v0', 'v1']);
  });

  test('scan is [] for a key with no data and for from above the head', async ({ consensus }) => {
    assert.equal(await consensus.scan('empty', 0n, SCAN_ALL), []);
    await appendVersions(consensus, 'k', 3);
    assert.equal(await consensus.scan('k', 3n, SCAN_ALL), []);
    assert.equal(await consensus.scan('k', SEQNO_MAX, SCAN_ALL), []);
  });

  test('scan with limit 0 returns [] and SCAN_ALL returns everything', async ({ consensus }) => {
    await appendVersions(consensus, 'k', 5);
    assert.equal(await consensus.scan('k', 0n, 0), []);
    assert.equal(await consensus.scan('k', 0n, 0n), []);
    assert.equal(seqnos(await consensus.scan('k', 0n, SCAN_ALL)), [0n, 1n, 2n, 3n, 4n]);
    assert.equal(seqnos(await consensus.scan('k', 0n, Number.MAX_SAFE_INTEGER)), [0n, 1n, 2n, 3n, 4n]);
    assert.equal(seqnos(await consensus.scan('k', 0n, 2n ** 31n)), [0n, 1n, 2n, 3n, 4n]);
  });

  test('scan orders seqnos numerically across digit counts', async ({ consensus }) => {
    const values = [9n, 10n, 99n, 100n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, SEQNO_MAX - 1n, SEQNO_MAX];
    let expected: bigint | null = null;
    for (const seqno of values) {
      assert.is(await consensus.compareAndSet('k', expected, { seqno, data: bytes(String(seqno)) }), CaSResult.Committed);
      expected = seqno;
    }
    const all = await consensus.scan('k', 0n, SCAN_ALL);
    assert.equal(seqnos(all), values);
    assert.equal(all.map((version) => Buffer.from(version.data).toString()), values.map(String));
    assert.equal(seqnos(await consensus.scan('k', 2n ** 53n, 2)), [2n ** 53n, 2n ** 53n + 1n]);
  });

  // truncate

  test('truncate deletes every version below seqno and returns how many', async ({ consensus }) => {
    await appendVersions(consensus, 'k', 6);
    assert.is(await consensus.truncate('k', 4n), 4);
    assert.equal(seqnos(await consensus.scan('k', 0n, SCAN_ALL)), [4n, 5n]);
  });

  test('truncate is idempotent and never deletes the head', async ({ consensus }) => {
    await appendVersions(consensus, 'k', 3);
    assert.is(await consensus.truncate('k', 2), 2);
    assert.is(await consensus.truncate('k', 2), 0);
    assert.is(await consensus.truncate('k', 0n), 0);
    assert.equal(seqnos(await consensus.scan('k', 0n, SCAN_ALL)), [2n]);
    assert.is((await consensus.head('k'))?.seqno, 2n);
  });

  test('truncate within a gap deletes only what is below', async ({ consensus }) => {
    await consensus.compareAndSet('k', null, { seqno: 1n, data: bytes('a') });
    await consensus.compareAndSet('k', 1n, { seqno: 10n, data: bytes('b') });
    assert.is(await consensus.truncate('k', 5n), 1);
    assert.equal(seqnos(await consensus.scan('k', 0n, SCAN_ALL)), [10n]);
  });

  test('truncate of a key with no data rejects as a determinate ExternalError', async ({ consensus, store }) => {
    await rejectsWith(consensus.truncate('empty', 0n), (err) => {
      assert.instance(err, ExternalError);
      assert.is((err as ExternalError).determinate, true);
      assert.match((err as Error).message, /^determinate: upper bound too high for truncate: SeqNo\(0\)/);
    });
    assert.is(await snapshot(store.raw, store.prefix), '');
  });

  test('truncate above the head rejects as a determinate ExternalError naming the seqno', async ({ consensus, store }) => {
    await appendVersions(consensus, 'k', 6);
    const before = await snapshot(store.raw, store.prefix);
    await rejectsWith(consensus.truncate('k', 6n), (err) => {
      assert.instance(err, ExternalError);
      assert.is((err as ExternalError).determinate, true);
      assert.is((err as Error).message, 'determinate: upper bound too high for truncate: SeqNo(6)');
    });
    assert.is(await snapshot(store.raw, store.prefix), before);
  });

  test('a truncated key keeps its head and stays listed', async ({ consensus }) => {
    await appendVersions(consensus, 'k', 4);
    await consensus.truncate('k', 3n);
    assert.is((await consensus.head('k'))?.seqno, 3n);
    assert.equal(await listed(consensus), ['k']);
    assert.is(await consensus.compareAndSet('k', 3n, { seqno: 4n, data: bytes('more') }), CaSResult.Committed);
  });

  // listKeys

  test('listKeys yields every key that ever had a committed version, once', async ({ consensus }) => {
    for (const key of ['a', 'b', 'c']) await appendVersions(consensus, key, 2);
    await consensus.compareAndSet('never', 3n, { seqno: 4n, data: bytes('x') });
    assert.equal(await listed(consensus), ['a', 'b', 'c']);
  });

  test('listKeys of an empty store yields nothing', async ({ consensus }) => {
    assert.equal(await listed(consensus), []);
  });

  // data and keys

  test('payloads round-trip byte-exact: every byte value, empty, and views into larger buffers', async ({ consensus }) => {
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
    await consensus.compareAndSet('k', null, { seqno: 0n, data: everyByte });
    await consensus.compareAndSet('k', 0n, { seqno: 1n, data: new Uint8Array(0) });
    await consensus.compareAndSet('k', 1n, { seqno: 2n, data: backing.subarray(2, 5) });
    await consensus.compareAndSet('k', 2n, { seqno: 3n, data: bytes('\uFFFD\u0000é') });
    const all = await consensus.scan('k', 0n, SCAN_ALL);
    assert.equal(all.map((version) => Buffer.from(version.data).toString('hex')),
      [everyByte.toString('hex'), '', '010203', bytes('\uFFFD\u0000é').toString('hex')]);
    assert.equal(Buffer.from((await consensus.head('k'))!.data), bytes('\uFFFD\u0000é'));
    await consensus.truncate('k', 1n);
    assert.equal(Buffer.from((await consensus.scan('k', 0n, 1))[0]!.data), Buffer.alloc(0));
  });

  test('a 16 MiB payload round-trips byte-exact', async ({ consensus }) => {
    const big = Buffer.alloc(16 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    await consensus.compareAndSet('big', null, { seqno: 0n, data: big });
    assert.ok(Buffer.from((await consensus.head('big'))!.data).equals(big));
  });

  test('awkward keys are stored apart from each other and listed exactly', async ({ consensus }) => {
    for (const [i, key] of AWKWARD_KEYS.entries()) {
      assert.is(await consensus.compareAndSet(key, null, { seqno: BigInt(i), data: bytes(`key ${i}`) }), CaSResult.Committed);
    }
    for (const [i, key] of AWKWARD_KEYS.entries()) {
      const head = await consensus.head(key);
      assert.is(head?.seqno, BigInt(i), `head of ${JSON.stringify(key)}`);
      assert.equal(Buffer.from(head!.data).toString(), `key ${i}`);
    }
    assert.equal(await listed(consensus), [...AWKWARD_KEYS].sort());
  });

  test('stores under different prefixes do not see each other', async ({ store }) => {
    const other = await backend.store();
    try {
      await appendVersions(store.consensus, 'shared-name', 2);
      assert.is(await other.consensus.head('shared-name'), null);
      assert.equal(await listed(other.consensus), []);
      assert.is(await other.consensus.compareAndSet('shared-name', null, { seqno: 7n, data: bytes('mine') }), CaSResult.Committed);
      assert.is((await store.consensus.head('shared-name'))?.seqno, 1n);
    } finally {
      await other.dispose();
    }
  });

  test('outputs are bigints and Buffers whatever the inputs were', async ({ consensus }) => {
    await consensus.compareAndSet('k', null, { seqno: 3, data: new Uint8Array([1]) });
    const [version] = await consensus.scan('k', 0, 10);
    assert.is(typeof version!.seqno, 'bigint');
    assert.ok(Buffer.isBuffer(version!.data));
  });

  test.run();
}
