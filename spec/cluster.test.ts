/**
 * Redis Cluster: a real cluster of 3 primaries + 3 replicas started by this file (ports
 * 7200-7205, bus 7300-7305). The shared contract suite runs on it; then the layout's hash tags
 * and spread, listKeys across primaries, WAIT on the right node, slots moved under load, and a
 * primary killed under load. The cluster is shared by every suite here and killed at the end.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import type { Cluster } from 'ioredis';
import { CaSResult, ExternalError, RedisConsensus } from '../lib/index.js';
import { BUCKETS, bucketOf, keyNames } from '../lib/layout.js';
import { keySlot } from '../lib/cluster.js';
import { hookAsking, slotPrimaryAddress } from '../lib/internals.js';
import { freshPrefix } from './support/backends.js';
import {
  audit, casWorkload, clusterAvailable, clusterBackend, command, deleteClusterPrefix, finishMove, infoFields, migrateKeys,
  moveSlot, ready, slotOwners, startCluster, until,
} from './support/cluster.js';
import type { TestCluster } from './support/cluster.js';
import { AWKWARD_KEYS, contractSuite } from './support/contract.js';

const BASE_PORT = 7200;

if (await clusterAvailable()) {
  const started = Date.now();
  const cluster = await startCluster(BASE_PORT);
  console.log(`[cluster] 3 primaries + 3 replicas ready in ${Date.now() - started} ms`);
  contractSuite(clusterBackend(cluster));
  layoutSuite(cluster);
  durabilitySuite(cluster);
  reshardSuite(cluster);
  failoverSuite(cluster);
}

/** A store on its own Cluster client, and a way to drop it. */
async function openStore(cluster: TestCluster, options: ConstructorParameters<typeof RedisConsensus>[1] = {}): Promise<{
  consensus: RedisConsensus;
  dispose(): Promise<void>;
}> {
  const prefix = options.prefix ?? freshPrefix('cluster');
  const consensus = await RedisConsensus.connectCluster(cluster.startupNodes, { ...options, prefix });
  return {
    consensus,
    async dispose() {
      await consensus.close();
      const cleaner = cluster.client();
      await deleteClusterPrefix(cleaner, prefix);
      await cleaner.quit();
    },
  };
}

function layoutSuite(cluster: TestCluster): void {
  const test = suite('cluster: key layout');

  test('every Redis key of any key string lands in one slot, as CLUSTER KEYSLOT computes it', async () => {
    const keys = [...AWKWARD_KEYS, '{{}}', '}}{{', '{x}{y}', 'shard-{0}', 'a'.repeat(1000)];
    for (const key of keys) {
      const names = keyNames('consensus', key);
      const slots = await Promise.all([names.versions, names.data, names.registry].map(
        async (name) => Number(await command(BASE_PORT, 'CLUSTER', 'KEYSLOT', name))));
      assert.equal(new Set(slots).size, 1, `${JSON.stringify(key)} spans slots ${slots}`);
      assert.is(slots[0], keySlot(names.versions), `keySlot disagrees with Redis for ${JSON.stringify(key)}`);
    }
  });

  test('10,000 keys spread evenly over buckets, slots and primaries', async () => {
    const owners = slotOwners(await cluster.topology());
    const perBucket = new Array<number>(BUCKETS).fill(0);
    const perPrimary = new Map<number, number>();
    const slots = new Set<number>();
    const count = 10_000;
    for (let i = 0; i < count; i++) {
      const names = keyNames('consensus', `shard-${i}`);
      const slot = keySlot(names.versions);
      slots.add(slot);
      perBucket[bucketOf(`shard-${i}`)]!++;
      const port = owners.get(slot)!.port;
      perPrimary.set(port, (perPrimary.get(port) ?? 0) + 1);
    }
    // Every bucket tag is its own slot: the registry sets spread over the cluster as the keys do.
    const bucketSlots = new Set(Array.from({ length: BUCKETS }, (_, bucket) => keySlot(`p:{${bucket}}:keys`)));
    const max = Math.max(...perBucket);
    const min = Math.min(...perBucket);
    const shares = [...perPrimary].sort().map(([port, n]) => `${port}: ${(100 * n / count).toFixed(1)}%`);
    console.log(`[cluster] 10,000 keys: ${slots.size} distinct slots (${bucketSlots.size} for ${BUCKETS} buckets); ` +
      `per bucket min ${min} max ${max} mean ${(count / BUCKETS).toFixed(1)}; per primary ${shares.join(', ')}`);
    assert.is(bucketSlots.size, BUCKETS);
    assert.is(slots.size, perBucket.filter((n) => n > 0).length);
    assert.ok(min >= 1 && max <= 3 * (count / BUCKETS), `bucket load ${min}..${max}`);
    assert.is(perPrimary.size, 3);
    for (const n of perPrimary.values()) assert.ok(n > count * 0.25 && n < count * 0.42, `primary share ${n}`);
  });

  test('listKeys shows each of 2,000 keys exactly once, across every primary', async () => {
    const store = await openStore(cluster);
    try {
      const keys = Array.from({ length: 2000 }, (_, i) => `listed-${i}`);
      for (let i = 0; i < keys.length; i += 200) {
        await Promise.all(keys.slice(i, i + 200).map(async (key) => {
          assert.is(await store.consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from(key) }), CaSResult.Committed);
        }));
      }
      const listed: string[] = [];
      for await (const key of store.consensus.listKeys()) listed.push(key);
      assert.is(listed.length, keys.length);
      assert.equal(listed.sort(), [...keys].sort());
    } finally {
      await store.dispose();
    }
  });

  test('the ioredis internals the library reads are there: the slot table and the ASKING hook', async () => {
    const client = cluster.client();
    try {
      await ready(client);
      const owners = slotOwners(await cluster.topology());
      // Every slot's primary, as the slot table names it, is the node that owns it.
      for (const slot of [0, 5000, 16383]) {
        const owner = owners.get(slot)!;
        assert.is(slotPrimaryAddress(client, slot), `127.0.0.1:${owner.port}`, `slot ${slot}`);
      }
      const node = client.nodes('master')[0]!;
      let asked = 0;
      assert.ok(hookAsking(node, () => asked++), 'a Cluster node connection has asking()');
      await node.asking();
      assert.is(asked, 1);
    } finally {
      await client.quit();
    }
  });

  test('a client given to the constructor gets a write connection that re-sends nothing', async () => {
    const client = cluster.client();
    const consensus = new RedisConsensus(client, { prefix: freshPrefix('given') });
    try {
      const writer = (consensus as unknown as { link: { writer: Cluster } }).link.writer;
      assert.is.not(writer, client);
      assert.is(writer.options?.redisOptions?.autoResendUnfulfilledCommands, false);
      assert.is(writer.options?.retryDelayOnFailover, 0);
      assert.is(await consensus.compareAndSet('k', null, { seqno: 1, data: Buffer.from('x') }), CaSResult.Committed);
      assert.is((await consensus.head('k'))?.seqno, 1n);
    } finally {
      await consensus.close();
      const cleaner = cluster.client();
      await deleteClusterPrefix(cleaner, consensus.prefix);
      await cleaner.quit();
      await client.quit();
    }
  });

  test.run();
}

function durabilitySuite(cluster: TestCluster): void {
  const test = suite('cluster: durability (WAIT)');

  test('WAIT goes to the primary of the key, which a replica then mirrors', async () => {
    const store = await openStore(cluster, { durability: { replicas: 1, timeoutMs: 2000 } });
    try {
      const nodes = await cluster.topology();
      const owners = slotOwners(nodes);
      for (const key of ['a', 'b', 'c', 'd', 'e', 'f']) {
        assert.is(await store.consensus.compareAndSet(key, null, { seqno: 7, data: Buffer.from(key) }), CaSResult.Committed);
        const names = keyNames(store.consensus.prefix, key);
        const owner = owners.get(keySlot(names.versions))!;
        const replica = nodes.find((node) => node.primaryId === owner.id)!;
        const reader = new Redis({ port: replica.port, lazyConnect: true });
        try {
          await reader.connect();
          await reader.call('READONLY');
          assert.equal(await reader.zrange(names.versions, '0', '-1'), ['0000000000000000007']);
        } finally {
          reader.disconnect();
        }
      }
    } finally {
      await store.dispose();
    }
  });

  test('a write redirected with ASK during a migration is waited for on the primary that ran it', async () => {
    const store = await openStore(cluster, { durability: { replicas: 1, timeoutMs: 500 } });
    const nodes = await cluster.topology();
    const owners = slotOwners(nodes);
    // Two keys of one slot (so of one bucket and one registry set).
    const first = 'ask-0';
    const slot = keySlot(keyNames(store.consensus.prefix, first).versions);
    let second = '';
    for (let i = 1; second === ''; i++) {
      if (keySlot(keyNames(store.consensus.prefix, `ask-${i}`).versions) === slot) second = `ask-${i}`;
    }
    const from = owners.get(slot)!;
    const to = nodes.find((node) => node.role === 'master' && !node.failed && node.id !== from.id)!;
    const toReplica = cluster.servers.find((server) => server.port === nodes.find((node) => node.primaryId === to.id)!.port)!;
    try {
      for (const key of [first, second]) {
        assert.is(await store.consensus.compareAndSet(key, null, { seqno: 1, data: Buffer.from('a') }), CaSResult.Committed);
      }
      // Every key of the slot is on the importing primary, the slot still migrating: scripts are
      // answered ASK by the source, and run on the importing primary.
      await migrateKeys(slot, from, to, 0);
      const asksBefore = (await redirects(cluster)).ASK!;
      assert.is(await store.consensus.compareAndSet(first, 1, { seqno: 2, data: Buffer.from('b') }), CaSResult.Committed);
      assert.ok((await redirects(cluster)).ASK! > asksBefore, 'the write was redirected with ASK');
      // The importing primary's replica frozen (the source's is fine): the WAIT must fall short.
      toReplica.pause();
      let failure: unknown;
      try {
        await store.consensus.compareAndSet(second, 1, { seqno: 2, data: Buffer.from('b') });
      } catch (err) {
        failure = err;
      } finally {
        toReplica.resume();
      }
      assert.instance(failure, ExternalError);
      assert.is((failure as ExternalError).determinate, false);
      assert.match((failure as Error).message, /only 0 of 1 replicas/);
    } finally {
      toReplica.resume();
      await finishMove(nodes, slot, to);
    }
    try {
      assert.is((await store.consensus.head(first))?.seqno, 2n);
      assert.is((await store.consensus.head(second))?.seqno, 2n);
    } finally {
      await store.dispose();
    }
  });

  test('more replicas than the cluster has: indeterminate, and the write is on the primary', async () => {
    const store = await openStore(cluster, { durability: { replicas: 2, timeoutMs: 200 } });
    try {
      let failure: unknown;
      try {
        await store.consensus.compareAndSet('k', null, { seqno: 1, data: Buffer.from('x') });
      } catch (err) {
        failure = err;
      }
      assert.instance(failure, ExternalError);
      assert.is((failure as ExternalError).determinate, false);
      assert.match((failure as Error).message, /committed on the primary but only 1 of 2 replicas/);
      assert.is((await store.consensus.head('k'))?.seqno, 1n);
    } finally {
      await store.dispose();
    }
  });

  test.run();
}

/** TRYAGAIN, ASK and MOVED replies given so far, summed over the live primaries. */
async function redirects(cluster: TestCluster): Promise<Record<string, number>> {
  const totals: Record<string, number> = { TRYAGAIN: 0, ASK: 0, MOVED: 0 };
  for (const node of await cluster.topology()) {
    if (node.role !== 'master' || node.failed) continue;
    const stats = infoFields(String(await command(node.port, 'INFO', 'errorstats')));
    for (const code of Object.keys(totals)) {
      totals[code]! += Number(/count=(\d+)/.exec(stats[`errorstat_${code}`] ?? '')?.[1] ?? 0);
    }
  }
  return totals;
}

function reshardSuite(cluster: TestCluster): void {
  const test = suite('cluster: resharding under load');

  test('a write whose keys a migration has split gets TRYAGAIN until they are together again, then commits', async () => {
    const store = await openStore(cluster, { timeoutMs: 10_000 });
    try {
      const key = 'split';
      assert.is(await store.consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
      const names = keyNames(store.consensus.prefix, key);
      const slot = keySlot(names.versions);
      const nodes = await cluster.topology();
      const primaries = nodes.filter((node) => node.role === 'master' && !node.failed);
      const from = slotOwners(nodes).get(slot)!;
      const to = primaries.find((node) => node.id !== from.id)!;
      await command(to.port, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id);
      await command(from.port, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id);
      await command(from.port, 'MIGRATE', '127.0.0.1', to.port, names.versions, 0, 5000);
      const before = await redirects(cluster);
      const started = Date.now();
      const write = store.consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from('v1') })
        .catch((err: unknown) => err);
      // Longer than ioredis's own TRYAGAIN budget (16 tries, 100 ms apart): Link.run retries after it.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      await moveSlot(nodes, slot, from, to, 0);
      assert.is(await write, CaSResult.Committed);
      const waited = Date.now() - started;
      const after = await redirects(cluster);
      console.log(`[cluster] split keys: the write committed after ${waited} ms; ` +
        `TRYAGAIN replies ${after.TRYAGAIN! - before.TRYAGAIN!}`);
      assert.ok(after.TRYAGAIN! - before.TRYAGAIN! >= 16, 'the script met TRYAGAIN');
      assert.equal((await store.consensus.scan(key, 0, 10)).map((version) => version.seqno), [0n, 1n]);
    } finally {
      await store.dispose();
    }
  });

  test('slots move between primaries while workers compare-and-set: no wrong outcome, no lost write', async () => {
    const stores = [await openStore(cluster, { timeoutMs: 3000 }), await openStore(cluster, { timeoutMs: 3000 })];
    const prefix = stores[0]!.consensus.prefix;
    const peer = await RedisConsensus.connectCluster(cluster.startupNodes, { prefix, timeoutMs: 3000 });
    try {
      const nodes = await cluster.topology();
      const owners = slotOwners(nodes);
      const primaries = nodes.filter((node) => node.role === 'master' && !node.failed);
      // Ten keys in ten different slots.
      const keys: string[] = [];
      const slots = new Set<number>();
      for (let i = 0; keys.length < 10; i++) {
        const slot = keySlot(keyNames(prefix, `moving-${i}`).versions);
        if (!slots.has(slot)) {
          slots.add(slot);
          keys.push(`moving-${i}`);
        }
      }
      const redirectsBefore = await redirects(cluster);
      const workload = casWorkload([stores[0]!.consensus, peer], keys, 6);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      let migratedKeys = 0;
      // Each slot goes to the next primary; the moves run one after another under load.
      for (const slot of slots) {
        const from = owners.get(slot)!;
        const to = primaries[(primaries.indexOf(primaries.find((node) => node.id === from.id)!) + 1) % primaries.length]!;
        migratedKeys += await moveSlot(nodes, slot, from, to, 40);
      }
      const moveMs = Date.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 300));
      await workload.stop();
      const redirectsAfter = await redirects(cluster);
      const after = slotOwners(await cluster.topology());
      for (const slot of slots) assert.is.not(after.get(slot)!.id, owners.get(slot)!.id, `slot ${slot} did not move`);
      const result = await audit(stores[0]!.consensus, workload);
      console.log(`[cluster] reshard: ${slots.size} slots (${migratedKeys} Redis keys) moved in ${moveMs} ms under load; ` +
        `outcomes ${JSON.stringify(workload.outcomes)}; errors ${JSON.stringify([...workload.errors])}; ` +
        `${result.acknowledged} acknowledged, ${result.lost.length} lost, ${result.phantom.length} phantom, ` +
        `${result.fromUncertain} stored from indeterminate writes; replies ` +
        Object.keys(redirectsAfter).map((code) => `${code} ${redirectsAfter[code]! - redirectsBefore[code]!}`).join(', '));
      assert.equal(result.lost, []);
      assert.equal(result.phantom, []);
      assert.ok(workload.outcomes.committed > 50, 'the workload made progress');
      // Redirects are refusals: none may surface as an indeterminate outcome.
      assert.is(workload.outcomes.indeterminate, 0, 'a redirect was reported as indeterminate');
    } finally {
      await peer.close();
      for (const store of stores) await store.dispose();
    }
  });

  test.run();
}

function failoverSuite(cluster: TestCluster): void {
  const test = suite('cluster: a primary dies under load');

  test('the promoted replica takes over; acknowledged writes lost with and without durability are reported', async () => {
    const plain = await openStore(cluster, { timeoutMs: 2000 });
    const durable = await openStore(cluster, { timeoutMs: 2000, durability: { replicas: 1, timeoutMs: 500 } });
    try {
      const nodes = await cluster.topology();
      const owners = slotOwners(nodes);
      const victim = owners.get(keySlot(keyNames(plain.consensus.prefix, 'x').versions))!;
      // Keys served by the victim, for both stores.
      const keysOn = (prefix: string): string[] => {
        const keys: string[] = [];
        for (let i = 0; keys.length < 8; i++) {
          if (owners.get(keySlot(keyNames(prefix, `k${i}`).versions))!.id === victim.id) keys.push(`k${i}`);
        }
        return keys;
      };
      const plainKeys = keysOn(plain.consensus.prefix);
      const durableKeys = keysOn(durable.consensus.prefix);
      // Each key's first commit on a replica before the load (with durability): a failover that
      // loses a bucket's first commit loses its store-epoch marker, and the bucket then reads as
      // reset (docs/deployment.md, "Store reset"); this case is about the writes after it.
      const firstWriter = await openStore(cluster, { prefix: plain.consensus.prefix, durability: { replicas: 1, timeoutMs: 5000 } });
      try {
        for (const key of plainKeys) await firstWriter.consensus.compareAndSet(key, null, { seqno: 0n, data: Buffer.from('first') });
      } finally {
        await firstWriter.consensus.close(); // not dispose(): that deletes the prefix's keys
      }
      for (const key of durableKeys) await durable.consensus.compareAndSet(key, null, { seqno: 0n, data: Buffer.from('first') });
      const plainLoad = casWorkload([plain.consensus], plainKeys, 4);
      const durableLoad = casWorkload([durable.consensus], durableKeys, 4);
      for (const load of [plainLoad, durableLoad]) for (const commits of load.acknowledged.values()) commits.set(0n, 'first');
      await new Promise((resolve) => setTimeout(resolve, 500));
      const killedAt = Date.now();
      await cluster.servers.find((server) => server.port === victim.port)!.crash();
      const survivor = nodes.find((node) => node.port !== victim.port)!.port;
      await until('a replica is promoted', 20_000, async () => {
        const view = await cluster.topology(survivor);
        return view.some((node) => node.primaryId === undefined && node.role === 'master' && !node.failed &&
          node.port !== victim.port && node.slots.length > 0 &&
          nodes.find((before) => before.id === node.id)?.primaryId === victim.id);
      });
      const promotedMs = Date.now() - killedAt;
      // The library keeps working on the promoted replica.
      const committedAtPromotion = plainLoad.outcomes.committed;
      // Or are refused: a commit the plain writers saw may be lost, and then they are refused in
      // its bucket (store-rollback) until an acknowledgement.
      const refused = (): number => [...plainLoad.errors].filter(([message]) => message.includes('rolled back'))
        .reduce((sum, [, count]) => sum + count, 0);
      await until('writes commit again on the promoted replica', 15_000,
        async () => plainLoad.outcomes.committed > committedAtPromotion + 20 || refused() > 0);
      const recoveredMs = Date.now() - killedAt;
      await plainLoad.stop();
      await durableLoad.stop();
      // The audit reads every key: buckets marked rolled back are acknowledged first.
      const acknowledged = await plain.consensus.acknowledgeStoreReset();
      console.log(`[cluster] rollbacks detected: ${refused()} calls refused, ${acknowledged.rolledBack} buckets marked`);
      const plainAudit = await audit(plain.consensus, plainLoad);
      if (plainAudit.lost.length > 0) assert.ok(refused() > 0, 'lost commits were detected');
      const durableAudit = await audit(durable.consensus, durableLoad);
      console.log(`[cluster] failover: replica promoted ${promotedMs} ms after the kill, writes back at ${recoveredMs} ms`);
      console.log(`[cluster] failover without durability: ${plainAudit.acknowledged} acknowledged, ` +
        `${plainAudit.lost.length} LOST ${JSON.stringify(plainAudit.lost)}; outcomes ${JSON.stringify(plainLoad.outcomes)}`);
      console.log(`[cluster] failover with durability {replicas: 1}: ${durableAudit.acknowledged} acknowledged, ` +
        `${durableAudit.lost.length} LOST ${JSON.stringify(durableAudit.lost)}; outcomes ${JSON.stringify(durableLoad.outcomes)}; ` +
        `errors ${JSON.stringify([...durableLoad.errors])}`);
      assert.equal(durableAudit.lost, []);
      assert.equal(plainAudit.phantom, []);
      assert.equal(durableAudit.phantom, []);
    } finally {
      await plain.dispose();
      await durable.dispose();
      await cluster.stop();
    }
  });

  test.run();
}
