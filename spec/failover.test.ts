/**
 * Failover truth (issue #19), on servers this file starts (ports 7740-7799):
 *
 * - `append` with `durability`: a version found committed by a resend after `replicas-short` is
 *   reported committed only once replicas confirm it (a replica frozen with SIGSTOP: the same
 *   indeterminate `replicas-short`; thawed between the attempts: committed, on the replica).
 * - `connect` / `check()` warn through the observer when durability is set and the primary has
 *   `min-replicas-to-write 0`.
 * - Real Sentinel failovers under load (spec/support/failover.ts): the primary frozen 4 s (SIGSTOP)
 *   then resumed, and the primary partitioned (with 2 processes on its side) then healed: with
 *   `durability: { replicas: 1 }` no acknowledged write is lost, and every process that saw a
 *   commit the failover lost is refused (`store-rollback`) before it reads or builds on the new
 *   history, until `acknowledgeStoreReset`. The partition is a TCP proxy that holds all traffic
 *   (loopback only; no network namespaces).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ExternalError, RedisConsensus } from '../lib/index.js';
import type { OperationEvent, StoreWarning } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { freshPrefix } from './support/backends.js';
import { command, infoFields, redisServerAvailable, startServer, stopServers, until } from './support/cluster.js';
import { describeFindings, runScenario, startSentinelGroup } from './support/failover.js';
import type { RedisServer } from './support/redis-server.js';

const url = (port: number): string => `redis://127.0.0.1:${port}`;
const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/** Starts a primary on `primary` and replicas on the next `replicas` ports, all in sync. */
export async function startReplicated(primary: number, replicas: number, args: string[] = []): Promise<RedisServer[]> {
  const servers = [await startServer(primary, args)];
  try {
    for (let i = 1; i <= replicas; i++) {
      servers.push(await startServer(primary + i, [...args, '--replicaof', '127.0.0.1', String(primary)]));
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
    assert.instance(err, ExternalError, String(err));
    return err as ExternalError;
  }
  throw new Error('expected an ExternalError');
}

if (redisServerAvailable()) {
  appendDurabilitySuite();
  sentinelSuite();
}

function sentinelSuite(): void {
  const test = suite('failover: Sentinel (1 primary, 2 replicas, 3 Sentinels), the primary frozen (SIGSTOP) 4 s under load');

  test('durability {replicas: 1} loses no acknowledged write; every process that saw a lost commit is refused (store-rollback)', async () => {
    const group = await startSentinelGroup(7750);
    try {
      const findings = await runScenario(group, 'sigstop');
      console.log(describeFindings('Sentinel, SIGSTOP 4 s', findings));
      assert.equal(findings.lost.get('append durable') ?? [], [], 'durable appends lost');
      assert.equal(findings.lost.get('cas durable') ?? [], [], 'durable compare-and-sets lost');
      assert.equal(findings.unnamed, [], 'every process that saw a lost commit is refused in its bucket');
      assert.ok((findings.acknowledged.get('append durable') ?? 0) > 0, 'durable appends were acknowledged');
      assert.ok(findings.afterAcknowledgement, 'after acknowledgeStoreReset every key takes appends again');
    } finally {
      await group.stop();
    }
  });

  test.run();
}

function appendDurabilitySuite(): void {
  const PRIMARY = 7740;
  const test = suite<{ servers: RedisServer[] }>('failover: append reports committed only what durability confirmed');
  test.before(async (context) => {
    context.servers = await startReplicated(PRIMARY, 1);
  });
  test.after(async (context) => {
    await stopServers(context.servers ?? []);
  });

  /** Commits seqno 0 of 'k' and waits until the replica has it (a slow replica must not fail the setup). */
  async function firstVersion(prefix: string): Promise<void> {
    const setup = await RedisConsensus.connect(url(PRIMARY), { prefix, durability: { replicas: 1, timeoutMs: 10_000 } });
    try {
      assert.is((await setup.append('k', () => bytes('zero'))).committed, true);
    } finally {
      await setup.close();
    }
  }

  test('connect and check() warn (observer, not stdout) when durability is set and the primary has min-replicas-to-write 0', async () => {
    const warnings: StoreWarning[] = [];
    const observer = { warning: (warning: StoreWarning) => warnings.push(warning) };
    const prefix = freshPrefix('min-replicas');
    const durable = await RedisConsensus.connect(url(PRIMARY), { prefix, observer, durability: { replicas: 1 } });
    try {
      assert.equal(warnings.map((warning) => warning.code), ['min-replicas-to-write'], 'at connect');
      assert.match(warnings[0]!.message, 'min-replicas-to-write 1');
      await durable.check();
      assert.is(warnings.length, 2, 'check() warns again');
      const plain = await RedisConsensus.connect(url(PRIMARY), { prefix, observer });
      await plain.check();
      await plain.close();
      assert.is(warnings.length, 2, 'no durability, no warning');
      await command(PRIMARY, 'CONFIG', 'SET', 'min-replicas-to-write', '1');
      try {
        await durable.check();
        const bounded = await RedisConsensus.connect(url(PRIMARY), { prefix, observer, durability: { replicas: 1 } });
        await bounded.close();
        assert.is(warnings.length, 2, 'min-replicas-to-write 1: no warning');
      } finally {
        await command(PRIMARY, 'CONFIG', 'SET', 'min-replicas-to-write', '0');
      }
    } finally {
      await durable.close();
    }
  });

  test('replica frozen: the resend finds its own bytes, and append still fails indeterminate (replicas-short)', async ({ servers }) => {
    const replica = servers[1]!;
    const events: OperationEvent[] = [];
    const prefix = freshPrefix('append-durable');
    await firstVersion(prefix);
    const consensus = await RedisConsensus.connect(url(PRIMARY), {
      prefix, durability: { replicas: 1, timeoutMs: 300 },
      observer: { finished: (event) => events.push(event) },
    });
    try {
      assert.is((await consensus.head('k'))?.seqno, 0n);
      replica.pause();
      try {
        const err = await rejection(consensus.append('k', () => bytes('one')));
        assert.is(err.code, 'replicas-short', err.message);
        assert.is(err.determinate, false);
        // The first send committed on the primary (WAIT fell short), the resend found its bytes.
        const attempts = events.filter((event) => event.operation === 'compareAndSet');
        assert.ok(attempts.length >= 2, `attempts: ${attempts.length}`);
        assert.is((await consensus.head('k'))?.data.toString(), 'one', 'it is on the primary');
      } finally {
        replica.resume();
      }
    } finally {
      await consensus.close();
    }
  });

  test('replica thawed between the attempts: the resend finds its bytes, WAITs, and reports committed; the replica has it', async ({ servers }) => {
    const replica = servers[1]!;
    let thaw = false;
    const prefix = freshPrefix('append-durable');
    await firstVersion(prefix);
    const consensus = await RedisConsensus.connect(url(PRIMARY), {
      prefix, durability: { replicas: 1, timeoutMs: 1000 },
      observer: {
        finished(event) {
          // The first attempt fell short of replicas: let the replica catch up before the resend.
          if (thaw && event.operation === 'compareAndSet' && event.outcome === 'indeterminate') replica.resume();
        },
      },
    });
    try {
      assert.is((await consensus.head('k'))?.seqno, 0n);
      replica.pause();
      thaw = true;
      const result = await consensus.append('k', () => bytes('one'));
      assert.is(result.committed, true);
      assert.is(result.head?.seqno, 1n);
      assert.ok(result.attempts >= 2, `attempts: ${result.attempts}`);
      assert.equal(await command(PRIMARY + 1, 'ZRANGE', keyNames(prefix, 'k').versions, 0, -1),
        ['0000000000000000000', '0000000000000000001'], 'the replica has it');
    } finally {
      replica.resume();
      await consensus.close();
    }
  });

  test('a partition (the primary and 2 processes cut off from the rest, healed after the failover): the same', async () => {
    const group = await startSentinelGroup(7750, [], true);
    try {
      const findings = await runScenario(group, 'partition');
      console.log(describeFindings('Sentinel, partition', findings));
      assert.equal(findings.lost.get('append durable') ?? [], [], 'durable appends lost');
      assert.equal(findings.lost.get('cas durable') ?? [], [], 'durable compare-and-sets lost');
      assert.equal(findings.unnamed, [], 'every process that saw a lost commit is refused in its bucket');
      assert.ok((findings.acknowledged.get('cas durable') ?? 0) > 0, 'durable compare-and-sets were acknowledged');
      assert.ok(findings.afterAcknowledgement, 'after acknowledgeStoreReset every key takes appends again');
    } finally {
      await group.stop();
    }
  });

  test.run();
}
