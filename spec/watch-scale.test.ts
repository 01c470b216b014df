/**
 * Watches at scale, at small sizes (the bench measures the large ones): a watch's memory does not
 * grow with the heads it has yielded, and many watches (or followers) on one caller signal cost
 * one `abort` listener, one head read each at start-up (even when the event loop was busy past the
 * poll interval; counted by the observer, and by Redis itself on a private server), and no
 * `MaxListenersExceededWarning`; at most `STARTING` watches start at once, the others queued, and
 * followers have at most `PAGE_READS_IN_FLIGHT` page reads in flight together.
 * On ioredis-mock and a real Redis.
 */
import { getEventListeners } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, RedisConsensus } from '../lib/index.js';
import type { OperationEvent, RedisConsensusOptions, VersionedData } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { determinate } from '../lib/errors.js';
import { DEFAULT_WATCH } from '../lib/options.js';
import type { ChannelListener, Subscriber, Subscription } from '../lib/subscriber.js';
import { Watches } from '../lib/watch.js';
import { Follows } from '../lib/follow.js';
import { backends } from './support/backends.js';
import type { Backend } from './support/backends.js';
import { infoFields } from './support/cluster.js';
import { RedisServer, redisServerAvailable } from './support/redis-server.js';

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

  test('many followers on one signal: one abort listener, none left once they end', async () => {
    const store = await backend.store();
    try {
      await store.consensus.compareAndSet('f', null, { seqno: 0n, data: Buffer.from('0') });
      const ac = new AbortController();
      const followers = Array.from({ length: 100 }, () => store.consensus.follow('f', { from: 0n, signal: ac.signal }));
      for (const follower of followers) assert.is((await follower.next()).value?.seqno, 0n);
      assert.is(getEventListeners(ac.signal, 'abort').length, 1, 'one abort listener for all the followers of a store');
      const watch = store.consensus.watch('f', { signal: ac.signal });
      assert.is((await watch.next()).value?.seqno, 0n);
      assert.is(getEventListeners(ac.signal, 'abort').length, 2, 'one for the watches, one for the followers');
      await followers[0]!.return(undefined);
      assert.is(getEventListeners(ac.signal, 'abort').length, 2, 'the others still use the signal');
      const pending = followers.slice(1).map((follower) => follower.next());
      ac.abort();
      assert.ok((await Promise.all(pending)).every((end) => end.done === true), 'every follower ended on abort');
      assert.is((await watch.next()).done, true);
      assert.is(getEventListeners(ac.signal, 'abort').length, 0);
    } finally {
      await store.dispose();
    }
  });

  test.after(() => backend.close());
  test.run();
}

/**
 * Watches of a fake store whose subscriptions and head reads settle only when the test says: how
 * many watches are starting (subscribed, their first head not answered yet), now and at most.
 */
function startingRig(): {
  watches: Watches;
  starting: () => number;
  mostStarting: () => number;
  /** Makes pending subscriptions ready and answers pending head reads until `done` settles. */
  settleUntil: (done: Promise<unknown>) => Promise<void>;
} {
  const pendingReady: Array<() => void> = [];
  const pendingHeads: Array<() => void> = [];
  let starting = 0;
  let most = 0;
  const subscriber: Subscriber = {
    listen(_channel: string, _listener: ChannelListener): Subscription {
      starting++;
      most = Math.max(most, starting);
      let live = false;
      const ready = new Promise<void>((resolve) => pendingReady.push(() => {
        live = true;
        resolve();
      }));
      return { ready, get live() { return live; }, close() { /* nothing held */ } };
    },
    close: async () => undefined,
  };
  const watches = new Watches({
    head(key: string): Promise<VersionedData | null> {
      return new Promise((resolve) => pendingHeads.push(() => {
        starting--;
        resolve({ seqno: 0n, data: Buffer.from(key) });
      }));
    },
    openSubscriber: () => subscriber,
    knownEpoch: () => '',
  }, { ...DEFAULT_WATCH, pollIntervalMs: 60_000 }, { starting: 8, reads: 256 });
  return {
    watches,
    starting: () => starting,
    mostStarting: () => most,
    settleUntil: async (done) => {
      let settled = false;
      void done.then(() => { settled = true; }, () => { settled = true; });
      for (let round = 0; round < 100 && !settled; round++) {
        await new Promise((resolve) => setImmediate(resolve));
        assert.ok(starting <= 8, `${starting} watches starting at once`);
        for (const ready of pendingReady.splice(0)) ready();
        for (const head of pendingHeads.splice(0)) head();
      }
      assert.ok(settled, 'settled');
    },
  };
}

const starting = suite('watches start in turns');

starting('at most STARTING watches subscribe and read their first head at once; the rest queue, and every one gets its head', async () => {
  const rig = startingRig();
  const ac = new AbortController();
  const keys = Array.from({ length: 50 }, (_, i) => `s${i}`);
  const iterators = keys.map((key) => rig.watches.watch(key, keyNames('p', key), ac.signal));
  const firsts = Promise.all(iterators.map((iterator) => iterator.next()));
  await new Promise((resolve) => setImmediate(resolve));
  assert.is(rig.starting(), 8, 'eight started, the others wait');
  await rig.settleUntil(firsts);
  const heads = await firsts;
  assert.ok(heads.every((first, i) => !first.done && first.value.data.toString() === keys[i]), 'each watch got its own head');
  assert.is(rig.mostStarting(), 8, 'at most 8 at once');
  assert.is(rig.starting(), 0);
  assert.is(getEventListeners(ac.signal, 'abort').length, 1);
  const ends = Promise.all(iterators.map((iterator) => iterator.next()));
  ac.abort();
  assert.ok((await ends).every((end) => end.done === true));
  assert.is(getEventListeners(ac.signal, 'abort').length, 0);
  await rig.watches.close();
});

starting('a watch waiting for its turn ends at once when its signal aborts, and gives up its place', async () => {
  const rig = startingRig();
  const busy = new AbortController();
  const first = Array.from({ length: 8 }, (_, i) => rig.watches.watch(`b${i}`, keyNames('p', `b${i}`), busy.signal));
  const firstHeads = Promise.all(first.map((iterator) => iterator.next()));
  const waiting = new AbortController();
  const queued = rig.watches.watch('q', keyNames('p', 'q'), waiting.signal);
  const queuedNext = queued.next();
  const last = rig.watches.watch('last', keyNames('p', 'last'), undefined);
  const lastHead = last.next();
  await new Promise((resolve) => setImmediate(resolve));
  assert.is(rig.starting(), 8, 'the ninth and tenth wait');
  waiting.abort();
  assert.is((await queuedNext).done, true, 'the queued watch ended without its turn');
  await rig.settleUntil(Promise.all([firstHeads, lastHead]));
  assert.is((await lastHead).value?.data.toString(), 'last', 'the turn went on to the next in line');
  assert.is(rig.mostStarting(), 8);
  busy.abort();
  const lastEnd = last.next();
  await rig.watches.close();
  assert.is((await lastEnd).done, true, 'close ends the rest');
});

starting('one head read per watch at start-up, counted by Redis (a private server)', async () => {
  if (!redisServerAvailable()) return;
  // A password: another process looking for a free port may PING this server, refused without AUTH.
  const server = await RedisServer.startInRange(7600, 7619, { args: ['--requirepass', 'scale'] });
  const url = server.url.replace('redis://', 'redis://:scale@');
  const consensus = await RedisConsensus.connect(url, { prefix: 'scale', watch: { pollIntervalMs: 30 } });
  const raw = new Redis(url);
  try {
    const watches = 300;
    const keys = Array.from({ length: watches }, (_, i) => `r${i}`);
    await Promise.all(keys.map((key) => consensus.compareAndSet(key, null, { seqno: 0n, data: Buffer.from(key) })));
    const scripts = async (): Promise<number> => Object.entries(infoFields(await raw.info('commandstats')))
      .filter(([field]) => field.startsWith('cmdstat_eval'))
      .reduce((sum, [, stats]) => sum + Number(/calls=(\d+)/.exec(stats)?.[1] ?? 0), 0);
    const before = await scripts();
    const ac = new AbortController();
    const iterators = keys.map((key) => consensus.watch(key, { signal: ac.signal }));
    const firsts = iterators.map((iterator) => iterator.next());
    busyWait(150);
    const heads = await Promise.all(firsts);
    assert.ok(heads.every((first, i) => !first.done && first.value.data.toString() === keys[i]));
    const seconds = iterators.map((iterator) => iterator.next());
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.is(await scripts() - before, watches, 'script calls (head reads) while the watches started');
    ac.abort();
    await Promise.all(seconds);
  } finally {
    raw.disconnect();
    await consensus.close();
    await server.stop();
  }
});

/**
 * Watches of a fake store, polling, whose head reads take 100 ms and fail with a timeout until
 * `failingUntil` (a hung Redis), two starting at once: how many distinct keys were read.
 */
function failingRig(maxOutageMs: number, failingUntil: () => number): { watches: Watches; readKeys: Set<string> } {
  const readKeys = new Set<string>();
  const watches = new Watches({
    head(key: string): Promise<VersionedData | null> {
      readKeys.add(key);
      return new Promise((resolve, reject) => setTimeout(() => {
        if (Date.now() < failingUntil()) reject(determinate('timeout', 'the head read timed out'));
        else resolve({ seqno: 0n, data: Buffer.from(key) });
      }, 100));
    },
    openSubscriber: () => {
      throw new Error('polling watches have no subscriber');
    },
    knownEpoch: () => '',
  }, { ...DEFAULT_WATCH, mode: 'poll', pollIntervalMs: 100, maxOutageMs }, { starting: 2, reads: 256 });
  return { watches, readKeys };
}

starting('with the store failing, watches waiting for their turn end with its error maxOutageMs on, without reading', async () => {
  // Before: the queue moved on two watches per failed read (100 ms), so the 40th only read, and
  // failed, after ~2 s plus maxOutageMs, and every one of the 40 read.
  const rig = failingRig(300, () => Infinity);
  const keys = Array.from({ length: 40 }, (_, i) => `w${i}`);
  const results = await Promise.allSettled(keys.map((key) => rig.watches.watch(key, keyNames('p', key), undefined).next()));
  for (const result of results) {
    assert.is(result.status, 'rejected');
    const reason = (result as PromiseRejectedResult).reason as unknown;
    assert.instance(reason, ExternalError);
    assert.is((reason as ExternalError).code, 'timeout', 'the store\'s own error');
  }
  assert.ok(rig.readKeys.size < keys.length / 2, `${rig.readKeys.size} of ${keys.length} watches read before the waiting ones ended`);
  await rig.watches.close();
});

starting('a store that recovers within maxOutageMs ends no waiting watch: each gets its head', async () => {
  const recovered = Date.now() + 150;
  const rig = failingRig(1000, () => recovered);
  const keys = Array.from({ length: 20 }, (_, i) => `r${i}`);
  const firsts = await Promise.all(keys.map((key) => rig.watches.watch(key, keyNames('p', key), undefined).next()));
  assert.ok(firsts.every((first, i) => first.done !== true && first.value.data.toString() === keys[i]));
  assert.is(rig.readKeys.size, keys.length);
  await rig.watches.close();
});

starting.run();

const followers = suite('followers read pages in turns');

followers('at most the limit of page reads in flight; every follower gets its versions; one ended while waiting never reads', async () => {
  const pending: Array<() => void> = [];
  let inFlight = 0;
  let most = 0;
  const scanned: string[] = [];
  const signalsGiven = new Set<unknown>();
  const follows = new Follows({
    // A signal would come after the limit: the host's scan no longer takes one (see below).
    scan(key: string, from: bigint, ...rest: unknown[]): Promise<VersionedData[]> {
      signalsGiven.add(rest[1]);
      scanned.push(key);
      inFlight++;
      most = Math.max(most, inFlight);
      return new Promise((resolve) => pending.push(() => {
        inFlight--;
        resolve(from === 0n ? [{ seqno: 0n, data: Buffer.from(key) }] : []);
      }));
    },
    subscriber: () => {
      throw new Error('polling followers have no subscriber');
    },
    knownEpoch: () => '',
  }, { ...DEFAULT_WATCH, mode: 'poll', pollIntervalMs: 60_000 }, { reads: 4 });
  const ac = new AbortController();
  const keys = Array.from({ length: 40 }, (_, i) => `f${i}`);
  const options = { from: 0n, pageSize: 10, signal: ac.signal };
  const iterators = keys.map((key) => follows.follow(key, keyNames('p', key), options));
  const firsts = Promise.all(iterators.map((iterator) => iterator.next()));
  const leaving = new AbortController();
  const queued = follows.follow('leaves', keyNames('p', 'leaves'), { ...options, signal: leaving.signal });
  const queuedNext = queued.next();
  await new Promise((resolve) => setImmediate(resolve));
  assert.is(inFlight, 4, 'four page reads in flight, the others wait');
  leaving.abort();
  assert.is((await queuedNext).done, true, 'a follower ended while waiting ends at once');
  let settled = false;
  void firsts.then(() => { settled = true; });
  for (let round = 0; round < 200 && !settled; round++) {
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(inFlight <= 4, `${inFlight} page reads in flight at once`);
    for (const answer of pending.splice(0)) answer();
  }
  assert.ok(settled, 'every follower got its first version');
  const heads = await firsts;
  assert.ok(heads.every((first, i) => !first.done && first.value.data.toString() === keys[i]), 'each follower its own key');
  assert.is(most, 4, 'at most 4 at once');
  assert.is(scanned.length, 40, 'one read per follower, none for the one that ended waiting');
  assert.equal([...signalsGiven], [undefined], 'no page read is given the caller\'s signal (a listener on it each)');
  assert.not.ok(scanned.includes('leaves'));
  const ends = Promise.all(iterators.map((iterator) => iterator.next()));
  ac.abort();
  assert.ok((await ends).every((end) => end.done === true));
  follows.close();
});

followers.run();
