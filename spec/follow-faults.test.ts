/**
 * `follow` under faults, on servers this file starts on ports 7840-7879 (standalone 7840, Sentinel
 * 7841-7844, Cluster 7850-7855 with its bus on 7870-7875): the follower's connections killed 20
 * times during writes, a Redis restart with AOF, a Sentinel failover (writers with
 * `durability: { replicas: 1 }`), and a Cluster resharding then a primary's failover. After each,
 * every follower must have yielded exactly its key's stored history from seqno 0: same seqnos,
 * same data, in order, no gap, no duplicate.
 *
 * Before a failover kills a primary, writes are paused there (`CLIENT PAUSE WRITE`) until its
 * replica has everything: a follower reads from the primary, so a version it yielded that never
 * reached the replica would be lost by the failover (docs/follow.md). Writers keep writing into
 * the pause and through the failover.
 */
import { setMaxListeners } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import { RedisConsensus } from '../lib/index.js';
import type { RedisConsensusOptions } from '../lib/index.js';
import { keySlot } from '../lib/cluster.js';
import { keyNames } from '../lib/layout.js';
import { SAFE_WRITE_OPTIONS } from '../lib/client.js';
import {
  command, infoFields, moveSlot, redisServerAvailable, slotOwners, startCluster, startServer, startSentinel, until,
} from './support/cluster.js';
import { RedisServer } from './support/redis-server.js';
import { assertExactly, record } from './support/follow.js';
import type { Recorded } from './support/follow.js';
import { sleep, writeLoad } from './support/watch.js';
import type { WriteLoad } from './support/watch.js';

const PORTS = { standalone: 7840, primary: 7841, replica: 7842, sentinel: 7843, replica2: 7844, cluster: 7850, clusterBus: 20 } as const;

/** 20 followers from seqno 0 over 10 keys, in small pages so that reads and notices interleave. */
function followMany(consensus: RedisConsensus, signal: AbortSignal): Recorded[] {
  const keys = Array.from({ length: 10 }, (_, i) => `f${i}`);
  return Array.from({ length: 20 }, (_, i) => record(consensus, keys[i % keys.length]!, { from: 0, signal, pageSize: 8 }));
}

function keysOf(followers: readonly Recorded[]): string[] {
  return [...new Set(followers.map((followed) => followed.key))];
}

async function assertAllExactly(reader: RedisConsensus, followers: readonly Recorded[]): Promise<number> {
  let versions = 0;
  for (const followed of followers) versions += await assertExactly(reader, followed, 0n, 15_000);
  return versions;
}

/** Pauses writes on the primary at `port` until the replica at `replicaPort` has all it has. */
async function drainTo(port: number, replicaPort: number): Promise<void> {
  await command(port, 'CLIENT', 'PAUSE', 60_000, 'WRITE');
  const offset = Number(infoFields(String(await command(port, 'INFO', 'replication'))).master_repl_offset);
  await until('the replica has every write', 10_000, async () =>
    Number(infoFields(String(await command(replicaPort, 'INFO', 'replication'))).master_repl_offset) >= offset);
}

if (redisServerAvailable()) {
  standaloneSuite();
  sentinelSuite();
  clusterSuite();
}

function standaloneSuite(): void {
  const test = suite('follow under faults: standalone');

  test('the follower\'s connections killed 20 times during writes: every follower yielded exactly the history', async () => {
    const server = await RedisServer.start({ port: PORTS.standalone });
    const raw = new Redis(server.url);
    const following = await RedisConsensus.connect(server.url, { prefix: 'kill', timeoutMs: 1000 }, { connectionName: 'follower' });
    const writers = await RedisConsensus.connect(server.url, { prefix: 'kill' });
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    try {
      const followers = followMany(following, ac.signal);
      const load = writeLoad(writers, keysOf(followers), 6, ac.signal);
      await load.commitsAfter(50, 5000);
      let kills = 0;
      for (let round = 0; round < 20; round++) {
        // Each round kills the follower's connections once they are back (reads and pub/sub).
        let ids: string[] = [];
        for (const deadline = Date.now() + 10_000; ids.length < 2; await sleep(10)) {
          ids = String(await raw.client('LIST')).split('\n').filter((line) => / name=follower /.test(line))
            .map((line) => /id=(\d+)/.exec(line)![1]!);
          assert.ok(Date.now() < deadline, `round ${round}: the follower's connections are not back: ${ids.length}`);
        }
        for (const id of ids) kills += Number(await raw.client('KILL', 'ID', id));
        await sleep(100);
      }
      await load.commitsAfter(50, 5000);
      await load.stop();
      const versions = await assertAllExactly(writers, followers);
      console.log(`[follow] ${kills} connections killed in 20 rounds under ${JSON.stringify(load.outcomes)}: ` +
        `20 followers yielded exactly their histories (${versions} versions)`);
      assert.ok(kills >= 40, `killed ${kills} connections`);
    } finally {
      ac.abort();
      await following.close();
      await writers.close();
      raw.disconnect();
      await server.stop();
    }
  });

  test('Redis restarts (AOF, fsync always) under writes: every follower yielded exactly the history', async () => {
    const server = await RedisServer.start({ port: PORTS.standalone, args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    const following = await RedisConsensus.connect(server.url, { prefix: 'restart', timeoutMs: 1000 });
    const writers = await RedisConsensus.connect(server.url, { prefix: 'restart', timeoutMs: 1000 });
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    try {
      const followers = followMany(following, ac.signal);
      const load = writeLoad(writers, keysOf(followers), 6, ac.signal);
      await load.commitsAfter(100, 5000);
      await server.crash();
      await sleep(500);
      await server.start();
      await load.commitsAfter(100, 15_000);
      await load.stop();
      const versions = await assertAllExactly(writers, followers);
      console.log(`[follow] restart under ${JSON.stringify(load.outcomes)}: 20 followers yielded exactly their histories (${versions} versions)`);
      // (The writers' retries may absorb a 0.5 s outage whole: their failures are only reported.)
    } finally {
      ac.abort();
      await following.close();
      await writers.close();
      await server.stop();
    }
  });

  test.run();
}

function sentinelSuite(): void {
  const test = suite('follow under faults: Sentinel');

  test('the primary dies, Sentinel promotes its replica (writers with durability replicas: 1): every follower yielded exactly the history', async () => {
    const servers: RedisServer[] = [];
    const clients: Redis[] = [];
    const stores: RedisConsensus[] = [];
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    try {
      const primary = await startServer(PORTS.primary);
      servers.push(primary);
      const replica = await startServer(PORTS.replica, ['--replicaof', '127.0.0.1', String(PORTS.primary)]);
      servers.push(replica);
      // A second replica, which Sentinel points at the promoted one: the writers need a replica.
      const spare = await startServer(PORTS.replica2, ['--replicaof', '127.0.0.1', String(PORTS.primary), '--replica-priority', '0']);
      servers.push(spare);
      for (const port of [replica.port, spare.port]) {
        await until('the replicas are in sync', 10_000, async () =>
          infoFields(String(await command(port, 'INFO', 'replication'))).master_link_status === 'up');
      }
      servers.push(await startSentinel(PORTS.sentinel, 'ff', PORTS.primary));
      const connect = (options: RedisConsensusOptions): RedisConsensus => {
        const client = new Redis({ sentinels: [{ host: '127.0.0.1', port: PORTS.sentinel }], name: 'ff', ...SAFE_WRITE_OPTIONS });
        client.on('error', () => {});
        clients.push(client);
        const store = new RedisConsensus(client, { prefix: 'sentinel', timeoutMs: 2000, ...options });
        stores.push(store);
        return store;
      };
      const following = connect({});
      const writers = connect({ durability: { replicas: 1, timeoutMs: 1000 } });
      const followers = followMany(following, ac.signal);
      const load = writeLoad(writers, keysOf(followers), 6, ac.signal);
      await load.commitsAfter(100, 10_000);
      await drainTo(primary.port, replica.port);
      await primary.crash();
      await until('Sentinel promotes the replica', 20_000, async () => {
        const [, port] = await command(PORTS.sentinel, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'ff') as [string, string];
        return Number(port) === replica.port;
      });
      // The writers need a replica again: Sentinel points the spare at the promoted primary (slow on
      // a loaded machine: the wait is generous, and measured).
      const promotedAt = Date.now();
      await until('the promoted primary has a replica', 90_000, async () =>
        Number(infoFields(String(await command(replica.port, 'INFO', 'replication'))).connected_slaves) >= 1);
      const replicatedMs = Date.now() - promotedAt;
      await load.commitsAfter(100, 30_000);
      await load.stop();
      const versions = await assertAllExactly(writers, followers);
      console.log(`[follow] Sentinel failover (the promoted primary had a replica ${replicatedMs} ms after the promotion) under ` +
        `${JSON.stringify(load.outcomes)}: 20 followers yielded exactly their ` +
        `histories (${versions} versions)`);
      assert.ok(load.outcomes.failed > 0, 'the failover was felt by the writers');
    } finally {
      ac.abort();
      for (const store of stores) await store.close();
      for (const client of clients) client.disconnect();
      await Promise.all(servers.map((server) => server.stop()));
    }
  });

  test.run();
}

function clusterSuite(): void {
  const test = suite('follow under faults: Cluster');

  test('slots move between primaries, then a primary dies: every follower yielded exactly the history', async () => {
    const cluster = await startCluster(PORTS.cluster, PORTS.clusterBus);
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const followingClient = cluster.client();
    const writingClient = cluster.client();
    const following = new RedisConsensus(followingClient, { prefix: 'cf', timeoutMs: 2000 });
    const writers = new RedisConsensus(writingClient, { prefix: 'cf', timeoutMs: 2000 });
    const loads: WriteLoad[] = [];
    try {
      const followers = followMany(following, ac.signal);
      const keys = keysOf(followers);
      const load = writeLoad(writers, keys, 6, ac.signal);
      loads.push(load);
      await load.commitsAfter(100, 10_000);
      const nodes = await cluster.topology();
      const owners = slotOwners(nodes);
      const primaries = nodes.filter((node) => node.role === 'master' && !node.failed && node.slots.length > 0);
      const slots = [...new Set(keys.slice(0, 4).map((key) => keySlot(keyNames('cf', key).versions)))];
      for (const slot of slots) {
        const from = owners.get(slot)!;
        const to = primaries[(primaries.findIndex((node) => node.id === from.id) + 1) % primaries.length]!;
        await moveSlot(nodes, slot, from, to, 20);
      }
      await load.commitsAfter(100, 10_000);
      const after = await cluster.topology();
      const victim = slotOwners(after).get(slots[0]!)!;
      const replica = after.find((node) => node.primaryId === victim.id)!;
      await drainTo(victim.port, replica.port);
      await cluster.servers.find((server) => server.port === victim.port)!.crash();
      const survivor = cluster.servers.find((server) => server.running)!.port;
      await until('a replica serves the slots of the dead primary', 30_000, async () =>
        slotOwners(await cluster.topology(survivor)).get(slots[0]!)?.id !== victim.id);
      await load.commitsAfter(100, 20_000);
      await load.stop();
      const versions = await assertAllExactly(writers, followers);
      console.log(`[follow] Cluster: ${slots.length} slots moved, then a primary failed over, under ` +
        `${JSON.stringify(load.outcomes)}: 20 followers yielded exactly their histories (${versions} versions)`);
    } finally {
      await Promise.all(loads.map((load) => load.stop()));
      ac.abort();
      await following.close();
      await writers.close();
      followingClient.disconnect();
      writingClient.disconnect();
      await cluster.stop();
    }
  });

  test.run();
}
