/**
 * A store reset under its users (issue #11): every bucket's epoch marker, checked by every script
 * in the same call. The shared suite runs on ioredis-mock, a real Redis and a Redis Cluster of its
 * own, and resets the store by deleting its keys; then, on a private redis-server without
 * persistence, the README's loop meets a real restart, and the CLI's `ack-reset` lets it go on;
 * and on the Cluster, one primary restarts empty while the others keep their data.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Cluster, Redis } from 'ioredis';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL } from '../lib/index.js';
import { keySlot } from '../lib/cluster.js';
import { keyNames } from '../lib/layout.js';
import { deletePrefix, freshPrefix, mockBackend, realRedisAvailable, redisBackend, rejection, REQUIRE_REDIS } from './support/backends.js';
import type { Backend, Store } from './support/backends.js';
import {
  clusterBackend, command, deleteClusterPrefix, infoFields, startServer, stopServers, until,
} from './support/cluster.js';
import type { TestCluster } from './support/cluster.js';
import { AWKWARD_KEYS } from './support/contract.js';
import { RedisServer, redisServerAvailable } from './support/redis-server.js';
import { snapshot } from './support/snapshot.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/** Two keys in different buckets. */
const KEY = 'orders/shard-1';
const OTHER = 'orders/shard-2';

/** Commits seqnos 0..count-1 to `key` as the README's loop does: head, then compareAndSet head + 1. */
async function readmeLoop(consensus: RedisConsensus, key: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const head = await consensus.head(key);
    const next = { seqno: (head?.seqno ?? -1n) + 1n, data: bytes(`${key} ${i}`) };
    assert.is(await consensus.compareAndSet(key, head?.seqno ?? null, next), CaSResult.Committed);
  }
}

/** Asserts that `promise` rejects with a determinate `store-reset` ExternalError. */
async function refused(promise: Promise<unknown>, what: string): Promise<ExternalError> {
  const err = await rejection(promise);
  assert.instance(err, ExternalError, `${what}: ${String(err)}`);
  const external = err as ExternalError;
  assert.is(external.code, 'store-reset', `${what}: ${external.message}`);
  assert.is(external.determinate, true, what);
  assert.match(external.message, /^determinate: /);
  assert.match(external.message, 'ack-reset');
  return external;
}

/** Everything stored under the prefix but the epoch markers: the data a refused call must not touch. */
async function data(store: Store): Promise<string> {
  return (await snapshot(store.raw, store.prefix)).split('\n').filter((line) => !line.includes(':epoch"')).join('\n');
}

interface Context {
  store: Store;
  consensus: RedisConsensus;
}

// Every await before the first suite runs: run alone (`node build/spec/<file>.js`), uvu starts at the
// first pause after a suite's run() and re-runs the queued suites for each later one.
const realRedis = await realRedisAvailable();

function storeResetSuite(backend: Backend): void {
  const test = suite<Context>(`store reset on ${backend.name}`);
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

  test('a fresh store just works, and its first commit in a bucket writes the bucket\'s epoch marker', async ({ store, consensus }) => {
    const { epoch } = keyNames(store.prefix, KEY);
    assert.is(await consensus.head(KEY), null);
    assert.is(await store.raw.exists(epoch), 0, 'a read writes no marker');
    await readmeLoop(consensus, KEY, 3);
    assert.is(await store.raw.exists(epoch), 1);
    const peer = await backend.peer(store);
    assert.is((await peer.head(KEY))?.seqno, 2n);
    assert.is(await peer.compareAndSet(KEY, 2n, { seqno: 3n, data: bytes('peer') }), CaSResult.Committed);
    assert.is(await consensus.compareAndSet(KEY, 3n, { seqno: 4n, data: bytes('back') }), CaSResult.Committed);
    await peer.close();
  });

  test('after a reset, compareAndSet, compareAndSetWithHead, truncate, head and scan are refused (determinate, store-reset) and change no data', async ({ store, consensus }) => {
    await readmeLoop(consensus, KEY, 3);
    await deletePrefix(store.raw, store.prefix);
    const before = await data(store);
    await refused(consensus.head(KEY), 'head');
    await refused(consensus.scan(KEY, 0n, SCAN_ALL), 'scan');
    // The README loop's next write, and a writer starting over at seqno 0: neither commits.
    await refused(consensus.compareAndSet(KEY, 2n, { seqno: 3n, data: bytes('lost?') }), 'compareAndSet');
    await refused(consensus.compareAndSet(KEY, null, { seqno: 0n, data: bytes('again?') }), 'compareAndSet from null');
    await refused(consensus.compareAndSetWithHead(KEY, null, { seqno: 0n, data: bytes('again?') }), 'compareAndSetWithHead');
    await refused(consensus.truncate(KEY, 0n), 'truncate');
    await refused(consensus.append(KEY, () => bytes('append')), 'append');
    assert.is(await data(store), before, 'no version, payload or registry entry was written');
    const registry: string[] = [];
    for await (const key of consensus.listKeys()) registry.push(key);
    assert.equal(registry, []);
  });

  test('the refusal stays: calls are refused again and again until the reset is acknowledged', async ({ store, consensus }) => {
    await readmeLoop(consensus, KEY, 2);
    await deletePrefix(store.raw, store.prefix);
    for (let i = 0; i < 3; i++) {
      await refused(consensus.head(KEY), `head ${i}`);
      await refused(consensus.compareAndSet(KEY, null, { seqno: 0n, data: bytes('x') }), `compareAndSet ${i}`);
    }
  });

  test('a process that starts after a writer met the reset is refused in that bucket too', async ({ store, consensus }) => {
    await readmeLoop(consensus, KEY, 2);
    await deletePrefix(store.raw, store.prefix);
    await refused(consensus.compareAndSet(KEY, 1n, { seqno: 2n, data: bytes('x') }), 'the old writer');
    const late = await backend.peer(store);
    const err = await refused(late.head(KEY), 'a new process reading');
    assert.match(err.message, 'marked reset');
    await refused(late.compareAndSet(KEY, null, { seqno: 0n, data: bytes('fresh start?') }), 'a new process writing');
    await late.close();
  });

  test('a reset is per bucket: a bucket whose data is still there goes on', async ({ store, consensus }) => {
    assert.is.not(keyNames(store.prefix, KEY).bucket, keyNames(store.prefix, OTHER).bucket);
    await readmeLoop(consensus, KEY, 2);
    await readmeLoop(consensus, OTHER, 2);
    const names = keyNames(store.prefix, KEY);
    await store.raw.del(names.versions, names.data, names.registry, names.epoch);
    await refused(consensus.head(KEY), 'the reset bucket');
    await readmeLoop(consensus, OTHER, 1);
    assert.is((await consensus.head(OTHER))?.seqno, 2n);
  });

  test('after acknowledgeStoreReset every process writes again, from the data as it is now', async ({ store, consensus }) => {
    await readmeLoop(consensus, KEY, 3);
    await readmeLoop(consensus, OTHER, 1);
    await deletePrefix(store.raw, store.prefix);
    await refused(consensus.compareAndSet(KEY, 2n, { seqno: 3n, data: bytes('x') }), 'before');
    const operator = await backend.peer(store);
    const acknowledged = await operator.acknowledgeStoreReset();
    assert.equal(acknowledged, { buckets: 1024, reset: 1, rolledBack: 0, unmarked: 1023 });
    // The old writer adopts the new marker on its next call, in either bucket.
    assert.is(await consensus.head(KEY), null);
    assert.is(await consensus.head(OTHER), null);
    await readmeLoop(consensus, KEY, 2);
    assert.is(await consensus.truncate(KEY, 1n), 1);
    assert.is((await operator.head(KEY))?.seqno, 1n);
    await readmeLoop(operator, OTHER, 1);
    const appended = await consensus.append(OTHER, () => bytes('appended'));
    assert.is(appended.committed && appended.head.seqno, 1n);
    await operator.close();
  });

  test('acknowledging a store that was not reset only replaces the markers: every process goes on', async ({ store, consensus }) => {
    const peer = await backend.peer(store);
    await readmeLoop(consensus, KEY, 2);
    await readmeLoop(peer, KEY, 1);
    const acknowledged = await peer.acknowledgeStoreReset();
    assert.equal(acknowledged, { buckets: 1024, reset: 0, rolledBack: 0, unmarked: 1023 });
    assert.equal(await peer.acknowledgeStoreReset(), { buckets: 1024, reset: 0, rolledBack: 0, unmarked: 0 }, 'idempotent');
    await readmeLoop(consensus, KEY, 1);
    await readmeLoop(peer, KEY, 1);
    assert.is((await consensus.head(KEY))?.seqno, 4n);
    await peer.close();
  });

  test('data written without a marker (by 0.1.0) gets one on the next write, and nothing fails', async ({ store, consensus }) => {
    await readmeLoop(consensus, KEY, 2);
    await readmeLoop(consensus, OTHER, 3);
    // As 0.1.0 left it: versions, payloads and registry, no markers.
    await store.raw.del(keyNames(store.prefix, KEY).epoch, keyNames(store.prefix, OTHER).epoch);
    const upgraded = await backend.peer(store);
    assert.is((await upgraded.head(KEY))?.seqno, 1n);
    assert.is((await upgraded.scan(OTHER, 0n, SCAN_ALL)).length, 3);
    assert.is(await upgraded.compareAndSet(KEY, 0n, { seqno: 1n, data: bytes('stale') }), CaSResult.ExpectationMismatch);
    assert.is(await store.raw.exists(keyNames(store.prefix, KEY).epoch), 0, 'a mismatch writes no marker');
    await readmeLoop(upgraded, KEY, 1);
    assert.is(await upgraded.truncate(OTHER, 2n), 2);
    assert.is(await store.raw.exists(keyNames(store.prefix, KEY).epoch), 1);
    assert.is(await store.raw.exists(keyNames(store.prefix, OTHER).epoch), 1);
    // And from now on a reset is noticed.
    await deletePrefix(store.raw, store.prefix);
    await refused(upgraded.head(KEY), 'after the upgrade');
    await upgraded.close();
  });

  test('a process started after the reset that writes before any old writer cannot tell; the old writer is refused, then so is it', async ({ store, consensus }) => {
    await readmeLoop(consensus, KEY, 3);
    await deletePrefix(store.raw, store.prefix);
    const late = await backend.peer(store);
    // The documented limit: to it, the empty store is a new one.
    await readmeLoop(late, KEY, 1);
    await refused(consensus.compareAndSet(KEY, 2n, { seqno: 3n, data: bytes('x') }), 'the old writer');
    await refused(late.compareAndSet(KEY, 0n, { seqno: 1n, data: bytes('y') }), 'the new writer, once the bucket is marked reset');
    assert.is((await store.raw.zcard(keyNames(store.prefix, KEY).versions)), 1);
    await late.close();
  });

  test('a watch ends at once with store-reset when its store is reset', async ({ store }) => {
    const watching = await backend.peer(store, { watch: { mode: 'poll', pollIntervalMs: 20, maxOutageMs: 60_000 } });
    await readmeLoop(watching, KEY, 1);
    const heads = watching.watch(KEY)[Symbol.asyncIterator]();
    assert.is((await heads.next()).value?.seqno, 0n);
    await deletePrefix(store.raw, store.prefix);
    // Not after maxOutageMs: a watch that went on would not end at all (its head is gone).
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve('still watching after 5 s'), 5000); });
    await refused(Promise.race([heads.next(), late.then((text) => { throw new Error(String(text)); })]), 'the watch');
    clearTimeout(timer);
    await watching.close();
  });

  test.run();
}

const layout = suite('store reset: layout');

layout('a bucket\'s epoch marker is in the slot of every key of the bucket (so one script can check it, on a Cluster too)', () => {
  for (const key of [...AWKWARD_KEYS, KEY, OTHER]) {
    const names = keyNames('app', key);
    assert.is(keySlot(names.epoch), keySlot(names.versions), JSON.stringify(key));
    assert.is(names.epoch, `app:{${names.bucket}}:epoch`);
  }
});


const canStart = redisServerAvailable();
if (!canStart && REQUIRE_REDIS) throw new Error('REQUIRE_REDIS=1 but redis-server is not on PATH');

/** 3 primaries, no replicas, data and cluster-bus ports all in this spec's range (7540-7559). */
const CLUSTER_PORTS = [7550, 7551, 7552];

async function startSmallCluster(): Promise<{ servers: RedisServer[]; cluster: TestCluster }> {
  const servers: RedisServer[] = [];
  try {
    await Promise.all(CLUSTER_PORTS.map(async (port, i) => servers.push(await startServer(port, [
      '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000',
      '--cluster-port', String(7553 + i), '--cluster-require-full-coverage', 'no',
    ]))));
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...CLUSTER_PORTS.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}\n${created.stderr}`);
    await clusterOk();
  } catch (err) {
    await stopServers(servers);
    throw err;
  }
  const startupNodes = CLUSTER_PORTS.map((port) => ({ host: '127.0.0.1', port }));
  // clusterBackend needs only these two of a TestCluster (which support/cluster.ts makes with 6
  // servers and cluster-bus ports outside this spec's range).
  const cluster = {
    startupNodes,
    client: (options = {}) => {
      const client = new Cluster(startupNodes, options);
      client.on('error', () => {});
      return client;
    },
  } as Pick<TestCluster, 'startupNodes' | 'client'> as TestCluster;
  return { servers, cluster };
}

/** The port of the primary serving `slot`. */
async function ownerOf(slot: number): Promise<number> {
  const ranges = await command(CLUSTER_PORTS[0]!, 'CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>;
  return Number(ranges.find(([first, last]) => first <= slot && slot <= last)![2][1]);
}

/** Waits until every node of the small cluster reports cluster_state:ok. */
function clusterOk(): Promise<void> {
  return until('the cluster is ok', 20_000, async () => {
    const states = await Promise.all(CLUSTER_PORTS.map(async (port) => infoFields(String(await command(port, 'CLUSTER', 'INFO')))));
    return states.every((fields) => fields['cluster_state'] === 'ok');
  });
}

// Started before any suite runs (see the top of this file).
const small = canStart ? await startSmallCluster() : undefined;

layout.run();
storeResetSuite(mockBackend());
if (realRedis) storeResetSuite(redisBackend());

if (small !== undefined) {
  const { servers, cluster } = small;
  storeResetSuite(clusterBackend(cluster));
  const onCluster = suite('store reset: a Cluster primary restarted without persistence');

  onCluster.after(async () => {
    await stopServers(servers);
  });

  onCluster('only the keys of the restarted primary\'s slots are refused; the other primaries\' go on', async () => {
    const prefix = freshPrefix('reset-cluster');
    const writer = await RedisConsensus.connectCluster(cluster.startupNodes, { prefix });
    const slotOf = (key: string): number => keySlot(keyNames(prefix, key).versions);
    const bucketsOf = (keys: string[]): number => new Set(keys.map((key) => keyNames(prefix, key).bucket)).size;
    try {
      const keys = Array.from({ length: 24 }, (_, i) => `shard-${i}`);
      for (const key of keys) await readmeLoop(writer, key, 2);
      // The primary serving the first key's slot restarts empty (its nodes.conf keeps its slots).
      const port = await ownerOf(slotOf(keys[0]!));
      const owners = await Promise.all(keys.map((key) => ownerOf(slotOf(key))));
      const lost = keys.filter((_, i) => owners[i] === port);
      const kept = keys.filter((_, i) => owners[i] !== port);
      assert.ok(kept.length > 0, `${lost.length} keys on the restarted primary, ${kept.length} elsewhere`);
      const restarted = servers.find((server) => server.port === port)!;
      await restarted.shutdown();
      await restarted.start();
      await clusterOk();
      for (const key of lost) await refused(writer.compareAndSet(key, 1n, { seqno: 2n, data: bytes('x') }), key);
      for (const key of kept) await readmeLoop(writer, key, 1);
      const acknowledged = await writer.acknowledgeStoreReset();
      assert.is(acknowledged.reset, bucketsOf(lost));
      assert.is(acknowledged.unmarked, 1024 - bucketsOf(keys));
      for (const key of lost) {
        assert.is(await writer.head(key), null);
        await readmeLoop(writer, key, 1);
      }
      for (const key of kept) assert.is((await writer.head(key))?.seqno, 2n);
    } finally {
      await writer.close();
      const cleaner = cluster.client();
      await deleteClusterPrefix(cleaner, prefix);
      await cleaner.quit();
    }
  });

  onCluster.run();
}

const CLI = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));

/** Runs the CLI; stdin is an empty pipe (not a terminal). */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end();
  });
}

const restart = suite('store reset: a redis-server restarted without persistence');

restart('the README loop gets store-reset after the restart, not a silent re-commit at seqno 0; ack-reset lets it go on', async () => {
  if (!canStart) return;
  const server = await RedisServer.startInRange(7540, 7549, { args: ['--save', '', '--appendonly', 'no'] });
  const prefix = freshPrefix('reset');
  const writer = await RedisConsensus.connect(server.url, { prefix });
  const raw = new Redis(server.url, { lazyConnect: true });
  raw.on('error', () => {});
  try {
    await readmeLoop(writer, KEY, 5);
    await server.shutdown();
    await server.start();
    // The next round of the loop: the head read is refused, and so is the write it would make.
    await refused(writer.head(KEY), 'head after the restart');
    await refused(writer.compareAndSet(KEY, 4n, { seqno: 5n, data: bytes('next') }), 'compareAndSet after the restart');
    await refused(writer.compareAndSet(KEY, null, { seqno: 0n, data: bytes('from zero') }), 'compareAndSet from null');
    assert.is(await raw.exists(keyNames(prefix, KEY).versions), 0, 'nothing was re-committed');

    const read = await cli(['--url', server.url, '--prefix', prefix, 'head', KEY]);
    assert.is(read.code, 5, read.stderr);
    assert.match(read.stderr, 'the store was reset');
    const unconfirmed = await cli(['--url', server.url, '--prefix', prefix, 'ack-reset']);
    assert.is(unconfirmed.code, 2, unconfirmed.stderr);
    const ack = await cli(['--url', server.url, '--prefix', prefix, '--json', 'ack-reset', '--yes']);
    assert.is(ack.code, 0, ack.stderr);
    assert.equal(JSON.parse(ack.stdout), { buckets: 1024, reset: 1, rolledBack: 0, unmarked: 1023 });

    assert.is(await writer.head(KEY), null, 'the data is gone, and the writer knows it');
    await readmeLoop(writer, KEY, 2);
    const printed = await cli(['--url', server.url, '--prefix', prefix, 'head', KEY]);
    assert.is(printed.code, 0, printed.stderr);
    assert.is(printed.stdout, `1\t${KEY} 1\n`);
  } finally {
    await writer.close();
    raw.disconnect();
    await server.stop();
  }
});

restart.run();
