/**
 * Watches at scale, at small sizes (the bench measures the large ones): a watch's memory does not
 * grow with the heads it has yielded, and many watches on one caller signal cost one `abort`
 * listener, one head read each at start-up (even when the event loop was busy past the poll
 * interval), and no `MaxListenersExceededWarning`. On ioredis-mock and a real Redis.
 */
import { getEventListeners } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult } from '../lib/index.js';
import type { OperationEvent, RedisConsensusOptions } from '../lib/index.js';
import { backends } from './support/backends.js';
import type { Backend } from './support/backends.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Lets the current job end (WeakRef targets are kept until then), then collects. */
async function collect(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
}

/** Counts the `head` calls a store makes. */
function headCounter(): { options: RedisConsensusOptions; reads: () => number } {
  let reads = 0;
  return {
    options: { observer: { finished: (event: OperationEvent) => { if (event.operation === 'head') reads++; } } },
    reads: () => reads,
  };
}

function busyWait(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* the event loop is blocked, as by a burst of work */ }
}

for (const backend of await backends()) scaleSuite(backend);

function scaleSuite(backend: Backend): void {
  const test = suite(`watches at scale on ${backend.name}`);

  test('a watch does not keep the heads it has yielded (its memory does not grow per commit)', async () => {
    const store = await backend.store();
    const payload = Buffer.alloc(16 * 1024, 7);
    const heard = 60;
    try {
      assert.is(await store.consensus.compareAndSet('k', null, { seqno: 0n, data: payload }), CaSResult.Committed);
      const yielded: Array<WeakRef<object>> = [];
      let alive = -1;
      for await (const head of store.consensus.watch('k')) {
        yielded.push(new WeakRef(head));
        if (head.seqno === BigInt(heard - 1)) {
          await collect();
          alive = yielded.filter((ref) => ref.deref() !== undefined).length;
          break;
        }
        const next = { seqno: head.seqno + 1n, data: Buffer.alloc(16 * 1024, Number(head.seqno) & 0xff) };
        assert.is(await store.consensus.compareAndSet('k', head.seqno, next), CaSResult.Committed);
      }
      assert.is(yielded.length, heard, 'every commit was heard (one at a time)');
      // The head in hand is alive; every earlier one must be collectable.
      assert.ok(alive <= 2, `${alive} of ${heard} yielded heads are still reachable after GC`);
    } finally {
      await store.dispose();
    }
  });

  test('many watches on one signal: one abort listener, one head read each, no warning', async () => {
    const counter = headCounter();
    const store = await backend.store({ ...counter.options, watch: { pollIntervalMs: 30 } });
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => { warnings.push(warning); };
    process.on('warning', onWarning);
    const watches = 200;
    const keys = Array.from({ length: watches }, (_, i) => `w${i}`);
    try {
      await Promise.all(keys.map((key) => store.consensus.compareAndSet(key, null, { seqno: 0n, data: Buffer.from(key) })));
      const before = counter.reads();
      const ac = new AbortController();
      const iterators = keys.map((key) => store.consensus.watch(key, { signal: ac.signal })[Symbol.asyncIterator]());
      const firsts = iterators.map((iterator) => iterator.next());
      // Start-up passes the poll interval: the loop is busy for 5 intervals before anything is heard.
      busyWait(150);
      const heads = await Promise.all(firsts);
      assert.ok(heads.every((first, i) => !first.done && first.value.data.toString() === keys[i]), 'each watch yielded its head');
      // Each watch waits for its next head: one that read before it was subscribed reads again.
      const seconds = iterators.map((iterator) => iterator.next());
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.is(counter.reads() - before, watches, 'head reads at start-up');
      assert.is(getEventListeners(ac.signal, 'abort').length, 1, 'one abort listener for all the watches of a store');
      ac.abort();
      const ends = await Promise.all(seconds);
      assert.ok(ends.every((end) => end.done === true), 'every watch ended on abort');
      assert.is(getEventListeners(ac.signal, 'abort').length, 0);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message), []);
    } finally {
      process.off('warning', onWarning);
      await store.dispose();
    }
  });

  test('watches that stop remove their abort listener; the last one leaves none behind', async () => {
    const store = await backend.store();
    try {
      await store.consensus.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('0') });
      const ac = new AbortController();
      const iterators = Array.from({ length: 20 }, () => store.consensus.watch('k', { signal: ac.signal }));
      for (const iterator of iterators) assert.is((await iterator.next()).value?.seqno, 0n);
      assert.is(getEventListeners(ac.signal, 'abort').length, 1);
      for (const iterator of iterators.slice(1)) await iterator.return(undefined);
      assert.is(getEventListeners(ac.signal, 'abort').length, 1, 'one watch still uses the signal');
      await iterators[0]!.return(undefined);
      assert.is(getEventListeners(ac.signal, 'abort').length, 0);
      // Two stores on one signal: each ends its own watches.
      const other = await backend.peer(store);
      try {
        const mine = store.consensus.watch('k', { signal: ac.signal });
        const theirs = other.watch('k', { signal: ac.signal });
        assert.is((await mine.next()).value?.seqno, 0n);
        assert.is((await theirs.next()).value?.seqno, 0n);
        assert.is(getEventListeners(ac.signal, 'abort').length, 2);
        ac.abort();
        assert.is((await mine.next()).done, true);
        assert.is((await theirs.next()).done, true);
      } finally {
        await other.close();
      }
    } finally {
      await store.dispose();
    }
  });

  test.after(() => backend.close());
  test.run();
}
