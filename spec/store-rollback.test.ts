/**
 * Store rollback (issue #19): commits a process has seen, gone from Redis while the rest of the
 * bucket stays (a failover to a replica that had not received them, a restart from an older
 * snapshot). Simulated here by restoring an older copy of a bucket's keys, on ioredis-mock and a
 * real Redis; spec/failover.test.ts makes a real Sentinel failover lose them.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { mockBackend, realRedisAvailable, redisBackend, rejection } from './support/backends.js';
import type { Backend, Store } from './support/backends.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/** Two keys in one bucket, and one in another. */
const KEY = 'orders/shard-1';
const OTHER = 'orders/shard-2';
function sameBucket(prefix: string): string {
  const bucket = keyNames(prefix, KEY).bucket;
  for (let i = 0; ; i++) if (keyNames(prefix, `peer-${i}`).bucket === bucket) return `peer-${i}`;
}

/** An older copy of a bucket's keys (the versions and data of `keys`, its registry and marker). */
type Copy = Array<{ name: string; type: string; value: unknown }>;

async function copyBucket(store: Store, keys: readonly string[]): Promise<Copy> {
  const names = new Set<string>();
  for (const key of keys) {
    const k = keyNames(store.prefix, key);
    for (const name of [k.versions, k.data, k.registry, k.epoch]) names.add(name);
  }
  const copy: Copy = [];
  for (const name of names) {
    const type = await store.raw.type(name);
    if (type === 'zset') copy.push({ name, type, value: await store.raw.zrange(name, 0, -1) });
    else if (type === 'hash') copy.push({ name, type, value: await store.raw.hgetallBuffer(name) });
    else if (type === 'set') copy.push({ name, type, value: await store.raw.smembers(name) });
    else if (type === 'string') copy.push({ name, type, value: await store.raw.getBuffer(name) });
    else copy.push({ name, type, value: undefined });
  }
  return copy;
}

/** Puts the bucket back as `copy` had it: what was committed since is gone, the rest is as it was. */
async function restoreBucket(store: Store, copy: Copy): Promise<void> {
  for (const { name, type, value } of copy) {
    await store.raw.del(name);
    if (type === 'zset') for (const member of value as string[]) await store.raw.zadd(name, 0, member);
    else if (type === 'hash') for (const [field, data] of Object.entries(value as Record<string, Buffer>)) await store.raw.hset(name, field, data);
    else if (type === 'set') await store.raw.sadd(name, ...(value as string[]));
    else if (type === 'string') await store.raw.set(name, value as Buffer);
  }
}

/** Commits `count` versions on top of the head, as the README's loop does. */
async function loop(consensus: RedisConsensus, key: string, count: number, label = key): Promise<void> {
  for (let i = 0; i < count; i++) {
    const head = await consensus.head(key);
    const next = { seqno: (head?.seqno ?? -1n) + 1n, data: bytes(`${label} ${i}`) };
    assert.is(await consensus.compareAndSet(key, head?.seqno ?? null, next), CaSResult.Committed);
  }
}

/** Asserts that `promise` rejects with a determinate `store-rollback` ExternalError. */
async function rolledBack(promise: Promise<unknown>, what: string, acknowledge = true): Promise<ExternalError> {
  const err = await rejection(promise);
  assert.instance(err, ExternalError, `${what}: ${String(err)}`);
  const external = err as ExternalError;
  assert.is(external.code, 'store-rollback', `${what}: ${external.message}`);
  assert.is(external.determinate, true, what);
  if (acknowledge) assert.match(external.message, 'ack-reset');
  return external;
}

interface Context {
  store: Store;
  consensus: RedisConsensus;
}

// Every await before the first suite runs: run alone (`node build/spec/<file>.js`), uvu starts at the
// first pause after a suite's run() and re-runs the queued suites for each later one.
const realRedis = await realRedisAvailable();

function storeRollbackSuite(backend: Backend): void {
  const test = suite<Context>(`store rollback on ${backend.name}`);
  test.before.each(async (context) => {
    context.store = await backend.store();
    context.consensus = context.store.consensus;
  });
  test.after.each(async ({ store }) => {
    await store.dispose();
  });
  test.after(async () => {
    await backend.close();
  });

  test('with durability, a commit no replica acknowledged is not counted: a failover that loses it is no rollback', async ({ store, consensus }) => {
    // No replica here (and no WAIT on ioredis-mock): every durable commit is indeterminate,
    // `replicas-short`, though written on the primary.
    const durability = { replicas: 1, timeoutMs: 50 };
    const writer = await backend.peer(store, { durability });
    const taught = await backend.peer(store, { durability });
    try {
      await loop(consensus, KEY, 1);
      assert.is((await writer.head(KEY))?.seqno, 0n, 'the writer knows the bucket\'s marker');
      const older = await copyBucket(store, [KEY]);
      const own = await rejection(writer.compareAndSet(KEY, 0n, { seqno: 1n, data: bytes('unacknowledged') }));
      assert.is((own as ExternalError).code, 'replicas-short');
      // A store that knew nothing: its commit comes back in an envelope teaching the marker.
      const enveloped = await rejection(taught.compareAndSet(KEY, 1n, { seqno: 2n, data: bytes('unacknowledged too') }));
      assert.is((enveloped as ExternalError).code, 'replicas-short');
      await restoreBucket(store, older);
      assert.is((await writer.head(KEY))?.seqno, 0n, 'the writer reads, not refused as a rollback');
      assert.is((await taught.head(KEY))?.seqno, 0n, 'the taught store reads, not refused as a rollback');
      await loop(consensus, KEY, 1, 'after');
    } finally {
      await writer.close();
      await taught.close();
    }
  });

  test('commits counted in the marker; a process that saw commits now gone is refused by every operation, nothing written', async ({ store, consensus }) => {
    await loop(consensus, KEY, 3);
    const older = await copyBucket(store, [KEY]);
    await loop(consensus, KEY, 2);
    assert.match(String(await store.raw.get(keyNames(store.prefix, KEY).epoch)), /^first:[^|]+\|5\|/);
    await restoreBucket(store, older);
    const before = JSON.stringify(await copyBucket(store, [KEY]));
    await rolledBack(consensus.head(KEY), 'head');
    await rolledBack(consensus.scan(KEY, 0n, SCAN_ALL), 'scan');
    assert.is(JSON.stringify(await copyBucket(store, [KEY])), before, 'a read marks nothing');
    await rolledBack(consensus.compareAndSet(KEY, 2n, { seqno: 3n, data: bytes('again?') }), 'compareAndSet');
    await rolledBack(consensus.compareAndSetWithHead(KEY, 4n, { seqno: 5n, data: bytes('on?') }), 'compareAndSetWithHead');
    await rolledBack(consensus.truncate(KEY, 1n), 'truncate');
    await rolledBack(consensus.append(KEY, () => bytes('append')), 'append');
    const versions = await store.raw.zrange(keyNames(store.prefix, KEY).versions, 0, -1);
    assert.equal(versions.map(Number), [0, 1, 2], 'no version written or deleted');
    assert.match(String(await store.raw.get(keyNames(store.prefix, KEY).epoch)), /^rollback:/, 'a write marked the bucket');
    // After the acknowledgement, append starts from the head as it is now (it forgot its own, 4).
    await consensus.acknowledgeStoreReset();
    assert.is((await consensus.append(KEY, () => bytes('after ack'))).head?.seqno, 3n);
  });

  test('the marker after 40 commits by two processes, in runs and alternating: one id, the count, the newest tag first and the older ones kept in order', async ({ store, consensus }) => {
    const peer = await backend.peer(store);
    const peerKey = sameBucket(store.prefix);
    const epoch = keyNames(store.prefix, KEY).epoch;
    const parse = (value: string): { id: string; count: number; tags: string[] } => {
      const [id, count, tags] = value.split('|') as [string, string, string];
      assert.is(tags.length % 8, 0, value);
      return { id, count: Number(count), tags: tags.match(/.{8}/g)! };
    };
    // Runs of one writer (each commit on the marker it knew: rewritten without being parsed)
    // and alternations (each writer first taught the other's commits by an envelope).
    const writers = [0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1];
    const heads: Array<bigint | null> = [null, null];
    let previous: { id: string; count: number; tags: string[] } | undefined;
    for (let i = 0; i < 40; i++) {
      const writer = writers[i % writers.length]!;
      const key = writer === 0 ? KEY : peerKey;
      const next = { seqno: heads[writer] === null ? 0n : heads[writer]! + 1n, data: bytes(`commit ${i}`) };
      assert.is(await (writer === 0 ? consensus : peer).compareAndSet(key, heads[writer]!, next), CaSResult.Committed);
      heads[writer] = next.seqno;
      const marker = parse(String(await store.raw.get(epoch)));
      assert.is(marker.count, i + 1, `count after commit ${i}`);
      assert.is(marker.tags.length, Math.min(i + 1, 32), `tags kept after commit ${i}`);
      if (previous !== undefined) {
        assert.is(marker.id, previous.id, `id after commit ${i}`);
        assert.equal(marker.tags.slice(1), previous.tags.slice(0, 31), `older tags after commit ${i}`);
        assert.not.ok(previous.tags.includes(marker.tags[0]!), `a fresh tag for commit ${i}`);
      }
      previous = marker;
    }
    // Both know the bucket as it is: neither is refused, and a third process learns it whole.
    assert.is((await consensus.head(peerKey))?.seqno, heads[1]);
    assert.is((await peer.head(KEY))?.seqno, heads[0]);
    const third = await backend.peer(store);
    assert.is(await third.compareAndSet(KEY, heads[0]!, { seqno: heads[0]! + 1n, data: bytes('third') }), CaSResult.Committed);
    assert.is(parse(String(await store.raw.get(epoch))).count, 41);
    await third.close();
    await peer.close();
  });

  test('the mark holds for every process, the ones that never saw the lost commits too, until acknowledged; then all go on', async ({ store, consensus }) => {
    await loop(consensus, KEY, 2);
    const older = await copyBucket(store, [KEY]);
    await loop(consensus, KEY, 1);
    await restoreBucket(store, older);
    const late = await backend.peer(store);
    // Before anyone marked it, a process that never saw the lost commit cannot tell.
    assert.is((await late.head(KEY))?.seqno, 1n);
    await rolledBack(consensus.compareAndSet(KEY, 1n, { seqno: 2n, data: bytes('x') }), 'the process that saw it');
    const err = await rolledBack(late.head(KEY), 'a process that never saw it, after the mark');
    assert.match(err.message, 'was rolled back');
    await rolledBack(late.compareAndSet(KEY, 1n, { seqno: 2n, data: bytes('x') }), 'its write');
    const acknowledged = await late.acknowledgeStoreReset();
    assert.is(acknowledged.rolledBack, 1);
    assert.is(acknowledged.reset, 0);
    assert.is((await consensus.head(KEY))?.seqno, 1n, 'the data as it is now');
    assert.is(await consensus.compareAndSet(KEY, 1n, { seqno: 2n, data: bytes('after ack') }), CaSResult.Committed);
    assert.is(await late.compareAndSet(KEY, 2n, { seqno: 3n, data: bytes('late') }), CaSResult.Committed);
    await late.close();
  });

  test('a rewritten history (the same count reached again with other commits) is named too: seqnos with two payloads never pass', async ({ store, consensus }) => {
    const peerKey = sameBucket(store.prefix);
    await loop(consensus, KEY, 2);
    const older = await copyBucket(store, [KEY, peerKey]);
    await loop(consensus, KEY, 2, 'lost');
    await restoreBucket(store, older);
    // A process that never saw the lost commits makes as many, and more, in the bucket.
    const late = await backend.peer(store);
    await loop(late, KEY, 2, 'other');
    await loop(late, peerKey, 3);
    await rolledBack(consensus.head(KEY), 'head of the key whose seqnos 2 and 3 now hold other payloads');
    await rolledBack(consensus.compareAndSet(KEY, 3n, { seqno: 4n, data: bytes('on top?') }), 'compareAndSet');
    await late.close();
  });

  test('a bucket without the lost commits goes on, and processes that saw no lost commit go on until a write marks the bucket', async ({ store, consensus }) => {
    assert.is.not(keyNames(store.prefix, KEY).bucket, keyNames(store.prefix, OTHER).bucket);
    await loop(consensus, OTHER, 2);
    await loop(consensus, KEY, 1);
    const older = await copyBucket(store, [KEY]);
    await loop(consensus, KEY, 1);
    await restoreBucket(store, older);
    await rolledBack(consensus.head(KEY), 'the rolled-back bucket');
    await loop(consensus, OTHER, 1);
    assert.is((await consensus.head(OTHER))?.seqno, 2n);
  });

  test('a watch that saw a commit now gone ends with store-rollback', async ({ store }) => {
    const watching = await backend.peer(store, { watch: { mode: 'poll', pollIntervalMs: 20, maxOutageMs: 60_000 } });
    await loop(watching, KEY, 1);
    const older = await copyBucket(store, [KEY]);
    await loop(watching, KEY, 1);
    const heads = watching.watch(KEY)[Symbol.asyncIterator]();
    assert.is((await heads.next()).value?.seqno, 1n);
    await restoreBucket(store, older);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve('still watching after 5 s'), 5000); });
    await rolledBack(Promise.race([heads.next(), late.then((text) => { throw new Error(String(text)); })]), 'the watch');
    clearTimeout(timer);
    await watching.close();
  });

  test('a watch whose head moved back below one it yielded ends with store-rollback, also where the epoch check cannot tell', async ({ store }) => {
    const watching = await backend.peer(store, { watch: { mode: 'poll', pollIntervalMs: 20, maxOutageMs: 60_000 } });
    await loop(watching, KEY, 1);
    // The marker is left as it is now: its count and tags name no loss, only the head shows one
    // (as for a watch that took its versions from carried announcements, which teach no count).
    const older = (await copyBucket(store, [KEY])).filter(({ name }) => name !== keyNames(store.prefix, KEY).epoch);
    await loop(watching, KEY, 2);
    const heads = watching.watch(KEY)[Symbol.asyncIterator]();
    assert.is((await heads.next()).value?.seqno, 2n);
    await restoreBucket(store, older);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve('still watching after 5 s'), 5000); });
    const err = await rolledBack(Promise.race([heads.next(), late.then((text) => { throw new Error(String(text)); })]), 'the watch', false);
    clearTimeout(timer);
    assert.match(err.message, 'moved back from SeqNo(2) to SeqNo(0)');
    await watching.close();
  });

  test('append refuses instead of moving its remembered head back, where the epoch check cannot tell (over 32 commits since in the bucket)', async ({ store, consensus }) => {
    const peerKey = sameBucket(store.prefix);
    await consensus.append(KEY, () => bytes('zero'));
    const older = await copyBucket(store, [KEY, peerKey]);
    await consensus.append(KEY, () => bytes('one'));
    await consensus.append(KEY, () => bytes('two'));
    await restoreBucket(store, older);
    const late = await backend.peer(store);
    await loop(late, peerKey, 40);
    // What cannot be detected: the bucket holds 40 commits the process never saw, and its own
    // count's tag is no longer kept; its head() goes through.
    assert.is((await consensus.head(KEY))?.seqno, 0n);
    // append remembers head 2 of KEY and meets head 0: it refuses, and writes nothing.
    const err = await rolledBack(consensus.append(KEY, () => bytes('three')), 'append', false);
    assert.match(err.message, "head moved back from SeqNo(2) to SeqNo(0): ");
    assert.equal((await store.raw.zrange(keyNames(store.prefix, KEY).versions, 0, -1)).map(Number), [0]);
    // Refused once: the next append starts from the head as it is now.
    assert.is((await consensus.append(KEY, () => bytes('three'))).head?.seqno, 1n);
    await late.close();
  });

  test('append forgets the head it remembered when refused, so after the acknowledgement it starts from the head as it is', async ({ store, consensus }) => {
    for (let i = 0; i < 3; i++) await consensus.append(KEY, () => bytes(`v${i}`));
    const older = await copyBucket(store, [KEY]);
    for (let i = 3; i < 5; i++) await consensus.append(KEY, () => bytes(`v${i}`));
    await restoreBucket(store, older);
    await rolledBack(consensus.append(KEY, () => bytes('on the lost head?')), 'append on its remembered head 4');
    await consensus.acknowledgeStoreReset();
    const after = await consensus.append(KEY, () => bytes('after ack'));
    assert.is(after.head?.seqno, 3n, 'on head 2, as stored now');
    assert.is(after.attempts, 1, 'no spurious mismatch on the forgotten head');
  });

  test('upgrade: a marker of the previous format (no count) is adopted, counted from its next commit, and guards rollbacks from then on', async ({ store }) => {
    const { epoch } = keyNames(store.prefix, KEY);
    const writer = await backend.peer(store);
    await loop(writer, KEY, 2);
    // What the previous release left: its marker, without a count, and its data.
    await store.raw.set(epoch, 'first:0123456789abcdef');
    const upgraded = await backend.peer(store);
    assert.is((await upgraded.head(KEY))?.seqno, 1n);
    const older = await copyBucket(store, [KEY]);
    await loop(upgraded, KEY, 1);
    assert.match(String(await store.raw.get(epoch)), /^first:0123456789abcdef\|1\|[A-Za-z0-9_-]{8}$/);
    await restoreBucket(store, older);
    await rolledBack(upgraded.head(KEY), 'after its first counted commit was lost');
    await writer.close();
    await upgraded.close();
  });

  test('upgrade: data from before markers existed gets a counted marker on its next commit', async ({ store }) => {
    const { epoch } = keyNames(store.prefix, KEY);
    const writer = await backend.peer(store);
    await loop(writer, KEY, 2);
    await store.raw.del(epoch);
    const upgraded = await backend.peer(store);
    await loop(upgraded, KEY, 1);
    assert.match(String(await store.raw.get(epoch)), /^first:[A-Za-z0-9_-]{8}\|1\|[A-Za-z0-9_-]{8}$/);
    assert.is((await upgraded.head(KEY))?.seqno, 2n);
    await writer.close();
    await upgraded.close();
  });

  test.run();
}

storeRollbackSuite(mockBackend());
if (realRedis) storeRollbackSuite(redisBackend());
