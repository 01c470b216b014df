/**
 * Replication and the `durability` option, on standalone servers this file starts: a primary with
 * two replicas (ports 7210-7212), and for failover a second trio (7213-7215) watched by a
 * Sentinel (7220). Redis replication is asynchronous: WAIT only tells how many replicas have a
 * write, so a write that falls short is reported indeterminate, although it did commit on the
 * primary.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import { CaSResult, ExternalError, RedisConsensus } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { SAFE_WRITE_OPTIONS } from '../lib/client.js';
import { deletePrefix, freshPrefix } from './support/backends.js';
import {
  audit, casWorkload, command, infoFields, redisServerAvailable, startSentinel, startServer, stopServers, until,
} from './support/cluster.js';
import type { RedisServer } from './support/redis-server.js';

const PRIMARY = 7210;
const url = (port: number): string => `redis://127.0.0.1:${port}`;

/** Starts a primary on `primary` and replicas on the next `replicas` ports, all in sync. */
async function startReplicated(primary: number, replicas: number): Promise<RedisServer[]> {
  const servers = [await startServer(primary)];
  try {
    for (let i = 1; i <= replicas; i++) {
      servers.push(await startServer(primary + i, ['--replicaof', '127.0.0.1', String(primary)]));
    }
    await until('the replicas are in sync', 10_000, async () => {
      const info = infoFields(String(await command(primary, 'INFO', 'replication')));
      return Number(info.connected_slaves) === replicas &&
        Array.from({ length: replicas }, (_, i) => info[`slave${i}`] ?? '').every((line) => line.includes('state=online'));
    });
    return servers;
  } catch (err) {
    await stopServers(servers);
    throw err;
  }
}

async function rejection(promise: Promise<unknown>): Promise<ExternalError> {
  try {
    await promise;
  } catch (err) {
    assert.instance(err, ExternalError);
    return err as ExternalError;
  }
  throw new Error('expected an ExternalError');
}

if (redisServerAvailable()) {
  durabilitySuite();
  failoverSuite();
}

function durabilitySuite(): void {
  const test = suite<{ servers: RedisServer[] }>('replication: durability (WAIT)');
  test.before(async (context) => {
    context.servers = await startReplicated(PRIMARY, 2);
  });
  test.after(async (context) => {
    await stopServers(context.servers ?? []);
  });

  test('durability met: Committed, and every replica has the version', async () => {
    const consensus = await RedisConsensus.connect(url(PRIMARY), {
      prefix: freshPrefix('durable'), durability: { replicas: 2, timeoutMs: 2000 },
    });
    try {
      assert.is(await consensus.compareAndSet('k', null, { seqno: 1, data: Buffer.from('one') }), CaSResult.Committed);
      assert.is(await consensus.compareAndSet('k', 1, { seqno: 2, data: Buffer.from('two') }), CaSResult.Committed);
      assert.is(await consensus.truncate('k', 2), 1);
      const names = keyNames(consensus.prefix, 'k');
      for (const port of [PRIMARY + 1, PRIMARY + 2]) {
        assert.equal(await command(port, 'ZRANGE', names.versions, 0, -1), ['0000000000000000002'], `replica ${port}`);
      }
    } finally {
      await consensus.close();
    }
  });

  test('more replicas asked for than exist: indeterminate, with the write committed on the primary', async () => {
    const consensus = await RedisConsensus.connect(url(PRIMARY), {
      prefix: freshPrefix('durable'), durability: { replicas: 3, timeoutMs: 300 },
    });
    try {
      const err = await rejection(consensus.compareAndSet('k', null, { seqno: 1, data: Buffer.from('one') }));
      assert.is(err.determinate, false);
      assert.match(err.message, /^indeterminate: compareAndSet committed on the primary but only 2 of 3 replicas acknowledged it within 300 ms/);
      assert.is((await consensus.head('k'))?.seqno, 1n);
      // A mismatch wrote nothing, so it waits for nobody.
      assert.is(await consensus.compareAndSet('k', null, { seqno: 5, data: Buffer.from('x') }), CaSResult.ExpectationMismatch);
    } finally {
      await consensus.close();
    }
  });

  test('a commit no replica acknowledged is not counted: a failover that loses it is no rollback', async (context) => {
    // Issue 19: the store counted its commit in the bucket's epoch before WAIT, so a failover to a
    // replica without that commit (which the caller was told is indeterminate) refused the whole
    // bucket as rolled back, for every process, until an operator acknowledged it.
    const prefix = freshPrefix('durable-uncounted');
    const names = keyNames(prefix, 'k');
    const options = { prefix, durability: { replicas: 2, timeoutMs: 300 } };
    const writer = await RedisConsensus.connect(url(PRIMARY), options);
    // A fresh store: its commit comes back in an envelope that teaches the bucket's marker.
    const fresh = await RedisConsensus.connect(url(PRIMARY), options);
    const raw = new Redis(url(PRIMARY));
    const replica = context.servers.find((server) => server.port === PRIMARY + 2)!;
    try {
      assert.is(await writer.compareAndSet('k', null, { seqno: 1, data: Buffer.from('one') }), CaSResult.Committed);
      const saved = await Promise.all([names.versions, names.data, names.epoch].map(async (key) => [key, await raw.dumpBuffer(key)] as const));
      replica.pause();
      try {
        const plain = await rejection(writer.compareAndSet('k', 1, { seqno: 2, data: Buffer.from('two') }));
        assert.is(plain.code, 'replicas-short');
        const taught = await rejection(fresh.compareAndSet('k', 2, { seqno: 3, data: Buffer.from('three') }));
        assert.is(taught.code, 'replicas-short');
      } finally {
        replica.resume();
      }
      // A failover to a replica that had seqno 1 but neither unacknowledged commit.
      for (const [key, dump] of saved) await raw.restore(key, 0, dump!, 'REPLACE');
      assert.is((await writer.head('k'))?.seqno, 1n, 'the writer reads, not refused as a rollback');
      assert.is((await fresh.head('k'))?.seqno, 1n, 'the fresh store reads, not refused as a rollback');
      assert.is(await writer.compareAndSet('k', 1, { seqno: 2, data: Buffer.from('again') }), CaSResult.Committed);
      assert.is(await fresh.compareAndSet('k', 2, { seqno: 3, data: Buffer.from('three') }), CaSResult.Committed);
    } finally {
      await writer.close();
      await fresh.close();
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });

  test('a replica stopped: indeterminate, the write is on the primary, and fewer replicas still suffice', async (context) => {
    await context.servers.find((server) => server.port === PRIMARY + 2)!.crash();
    await until('the primary sees one replica', 10_000, async () =>
      infoFields(String(await command(PRIMARY, 'INFO', 'replication'))).connected_slaves === '1');
    const prefix = freshPrefix('durable');
    const two = await RedisConsensus.connect(url(PRIMARY), { prefix, durability: { replicas: 2, timeoutMs: 300 } });
    const one = await RedisConsensus.connect(url(PRIMARY), { prefix, durability: { replicas: 1, timeoutMs: 2000 } });
    try {
      const err = await rejection(two.compareAndSet('k', null, { seqno: 1, data: Buffer.from('one') }));
      assert.is(err.determinate, false);
      assert.match(err.message, /only 1 of 2 replicas/);
      const raw = new Redis(url(PRIMARY));
      try {
        assert.equal(await raw.zrange(keyNames(prefix, 'k').versions, '0', '-1'), ['0000000000000000001']);
      } finally {
        raw.disconnect();
      }
      assert.is(await one.compareAndSet('k', 1, { seqno: 2, data: Buffer.from('two') }), CaSResult.Committed);
    } finally {
      await two.close();
      await one.close();
    }
  });

  test.run();
}

function failoverSuite(): void {
  const test = suite('replication: the primary dies under load, Sentinel promotes a replica');

  test('the library follows the promoted replica; acknowledged writes lost with and without durability are reported', async () => {
    const primary = PRIMARY + 3;
    const servers = await startReplicated(primary, 2);
    const sentinel = await startSentinel(7220, 'rc', primary);
    servers.push(sentinel);
    const prefix = freshPrefix('failover');
    const open = (options: ConstructorParameters<typeof RedisConsensus>[1]): RedisConsensus => {
      const client = new Redis({ sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: 'rc', ...SAFE_WRITE_OPTIONS });
      client.on('error', () => {});
      clients.push(client);
      return new RedisConsensus(client, { prefix, timeoutMs: 2000, ...options });
    };
    const clients: Redis[] = [];
    const loads: Array<{ stop(): Promise<void> }> = [];
    try {
      const plain = open({});
      const durable = open({ durability: { replicas: 1, timeoutMs: 500 } });
      // Each key's first commit on both replicas before the load: a failover that loses a bucket's
      // first commit loses its store-epoch marker, and the bucket then reads as reset
      // (docs/deployment.md, "Store reset"); this case is about the writes after it.
      for (const key of ['p0', 'p1', 'p2', 'p3', 'd0', 'd1', 'd2', 'd3']) {
        await plain.compareAndSet(key, null, { seqno: 0n, data: Buffer.from('first') });
      }
      const offset = Number(infoFields(String(await command(primary, 'INFO', 'replication'))).master_repl_offset);
      await until('the replicas have every first commit', 10_000, async () => {
        const offsets = await Promise.all([1, 2].map(async (i) =>
          Number(infoFields(String(await command(primary + i, 'INFO', 'replication'))).master_repl_offset)));
        return offsets.every((replicated) => replicated >= offset);
      });
      const plainLoad = casWorkload([plain], ['p0', 'p1', 'p2', 'p3'], 4);
      const durableLoad = casWorkload([durable], ['d0', 'd1', 'd2', 'd3'], 4);
      loads.push(plainLoad, durableLoad);
      // The first commits are acknowledged writes too (and replicated): audited with the rest.
      for (const load of [plainLoad, durableLoad]) for (const commits of load.acknowledged.values()) commits.set(0n, 'first');
      await new Promise((resolve) => setTimeout(resolve, 500));
      const killedAt = Date.now();
      await servers.find((server) => server.port === primary)!.crash();
      await until('Sentinel promotes a replica', 20_000, async () => {
        const [, port] = await command(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'rc') as [string, string];
        return Number(port) !== primary;
      });
      const promotedMs = Date.now() - killedAt;
      const committed = plainLoad.outcomes.committed;
      // Or are refused: a commit the plain writers saw may be lost, and then they are refused in
      // its bucket (store-rollback) until an acknowledgement.
      const refused = (): number => [...plainLoad.errors].filter(([message]) => message.includes('rolled back'))
        .reduce((sum, [, count]) => sum + count, 0);
      await until('writes commit again', 15_000, async () => plainLoad.outcomes.committed > committed + 20 || refused() > 0).catch((err: unknown) => {
        throw new Error(`${String(err)}; errors seen ${JSON.stringify([...plainLoad.errors])}`);
      });
      const recoveredMs = Date.now() - killedAt;
      await plainLoad.stop();
      await durableLoad.stop();
      // The audit reads every key: buckets marked rolled back are acknowledged first.
      const acknowledged = await plain.acknowledgeStoreReset();
      const reader = open({});
      const plainAudit = await audit(reader, plainLoad);
      const durableAudit = await audit(reader, durableLoad);
      console.log(`[replication] rollbacks detected: ${refused()} calls refused, ${acknowledged.rolledBack} buckets marked`);
      // Whoever saw a lost acknowledged commit was refused for it.
      if (plainAudit.lost.length > 0) assert.ok(refused() > 0, 'lost commits were detected');
      console.log(`[replication] Sentinel failover: promoted ${promotedMs} ms after the kill, writes back at ${recoveredMs} ms`);
      console.log(`[replication] without durability: ${plainAudit.acknowledged} acknowledged, ${plainAudit.lost.length} LOST ` +
        `${JSON.stringify(plainAudit.lost)}; outcomes ${JSON.stringify(plainLoad.outcomes)}`);
      console.log(`[replication] with durability {replicas: 1}: ${durableAudit.acknowledged} acknowledged, ` +
        `${durableAudit.lost.length} LOST ${JSON.stringify(durableAudit.lost)}; outcomes ${JSON.stringify(durableLoad.outcomes)}`);
      assert.equal(durableAudit.lost, []);
      assert.equal(plainAudit.phantom, []);
      assert.equal(durableAudit.phantom, []);
      await plain.close();
      await durable.close();
      await reader.close();
      const [, port] = await command(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'rc') as [string, string];
      const raw = new Redis(url(Number(port)));
      await deletePrefix(raw, prefix);
      raw.disconnect();
    } finally {
      // Also when the case failed: running workers would keep the test process alive.
      await Promise.all(loads.map((load) => load.stop()));
      for (const client of clients) client.disconnect();
      await stopServers(servers);
    }
  });

  test.run();
}
